#include "base/file.h"

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace routemesh::base {
namespace {

boost::system::error_code last_error() {
  return {errno != 0 ? errno : EIO, boost::system::system_category()};
}

}  // namespace

boost::system::result<void> write_file_atomic(const std::string& dir, const std::string& name,
                                              const std::string& text, unsigned mode) {
  std::error_code created;
  std::filesystem::create_directories(dir, created);
  if (created) {
    return boost::system::error_code(created.value(), boost::system::system_category());
  }
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  // A leftover .tmp of another mode would keep its mode: start from a new file.
  ::unlink(tmp.c_str());
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) {
    return last_error();
  }
  errno = 0;
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::fsync(fd) == 0;
  const auto write_error = last_error();
  ::close(fd);
  if (!written) {
    return write_error;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return last_error();
  }
  // The rename is durable once the directory is; a failure here leaves the new file in place.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return std::nullopt;
  }
  return ss.str();
}

}  // namespace routemesh::base
