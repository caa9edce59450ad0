#include "discovery/raft/file_system.h"

#include <cerrno>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace routemesh::discovery::raft {
namespace {

namespace fs = std::filesystem;

boost::system::error_code last_error() {
  return {errno, boost::system::system_category()};
}

class PosixAppendFile final : public AppendFile {
 public:
  explicit PosixAppendFile(int fd) : fd_(fd) {}
  ~PosixAppendFile() override { ::close(fd_); }

  boost::system::error_code append(const std::uint8_t* p, std::size_t n) override {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        return last_error();
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return {};
  }

  boost::system::error_code sync() override {
    return ::fdatasync(fd_) == 0 ? boost::system::error_code{} : last_error();
  }

 private:
  int fd_;
};

class PosixDirLock final : public DirLock {
 public:
  explicit PosixDirLock(int fd) : fd_(fd) {}
  ~PosixDirLock() override { ::close(fd_); }  // releases the flock

 private:
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  boost::system::error_code create_directories(const std::string& dir) override {
    std::error_code ec;
    fs::create_directories(dir, ec);
    return ec ? boost::system::error_code(ec.value(), boost::system::system_category())
              : boost::system::error_code{};
  }

  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& de : fs::directory_iterator(dir, ec)) {
      if (de.is_regular_file(ec)) {
        out.push_back(de.path().filename().string());
      }
    }
    return out;
  }

  boost::system::error_code read(const std::string& path, Bytes& out) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      auto ec = last_error();
      ::close(fd);
      return ec;
    }
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.size()) {
      ssize_t r = ::read(fd, out.data() + got, out.size() - got);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r <= 0) {
        auto ec = r < 0 ? last_error()
                        : boost::system::errc::make_error_code(boost::system::errc::io_error);
        ::close(fd);
        return ec;
      }
      got += static_cast<std::size_t>(r);
    }
    ::close(fd);
    return {};
  }

  boost::system::result<std::unique_ptr<AppendFile>> open_append(const std::string& path,
                                                                 bool create) override {
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    // 0600: WAL segments and snapshots hold the state, HTTPS certificate keys included.
    int fd = ::open(path.c_str(), flags, 0600);
    if (fd < 0) {
      return last_error();
    }
    return std::unique_ptr<AppendFile>(std::make_unique<PosixAppendFile>(fd));
  }

  boost::system::error_code truncate(const std::string& path, std::uint64_t size) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    boost::system::error_code ec;
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0 || ::fsync(fd) != 0) {
      ec = last_error();
    }
    ::close(fd);
    return ec;
  }

  boost::system::error_code rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? boost::system::error_code{} : last_error();
  }

  boost::system::error_code remove(const std::string& path) override {
    return ::unlink(path.c_str()) == 0 ? boost::system::error_code{} : last_error();
  }

  boost::system::error_code sync_dir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      return last_error();
    }
    boost::system::error_code ec;
    if (::fsync(fd) != 0) {
      ec = last_error();
    }
    ::close(fd);
    return ec;
  }

  boost::system::result<std::unique_ptr<DirLock>> lock(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return last_error();
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      auto ec = last_error();
      ::close(fd);
      return ec;
    }
    return std::unique_ptr<DirLock>(std::make_unique<PosixDirLock>(fd));
  }

  bool locked(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return false;
    }
    // A shared lock fails only while someone holds the exclusive one (a running node).
    bool busy = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    return busy;
  }
};

}  // namespace

FileSystem& posix_file_system() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace routemesh::discovery::raft
