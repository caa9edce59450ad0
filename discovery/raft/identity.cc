#include "discovery/raft/identity.h"

#include <boost/json.hpp>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace routemesh::discovery::raft {
namespace {

boost::system::error_code sys_error(int e) {
  return {e, boost::system::system_category()};
}

bool fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string format_node_id(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, id);
  return buf;
}

std::optional<std::uint64_t> parse_node_id(std::string_view text) {
  if (text.size() != 16) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : text) {
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (d < 0) {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

std::string identity_path(const std::string& data_dir) {
  return data_dir + "/identity.json";
}

boost::system::result<Identity> read_identity(const std::string& data_dir) {
  std::ifstream in(identity_path(data_dir));
  if (!in) {
    return sys_error(ENOENT);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(ss.str(), ec);
  if (ec || !v.is_object()) {
    return sys_error(EINVAL);
  }
  const auto& o = v.as_object();
  const auto* cluster = o.if_contains("cluster_id");
  const auto* node = o.if_contains("node_id");
  const auto* name = o.if_contains("name");
  if (cluster == nullptr || node == nullptr || name == nullptr || !cluster->is_string() ||
      !node->is_string() || !name->is_string()) {
    return sys_error(EINVAL);
  }
  auto id = parse_node_id(node->as_string());
  if (!id || *id == 0) {
    return sys_error(EINVAL);
  }
  return Identity{std::string(cluster->as_string()), *id, std::string(name->as_string())};
}

boost::system::result<void> write_identity(const std::string& data_dir, const Identity& id) {
  std::error_code fec;
  std::filesystem::create_directories(data_dir, fec);
  if (fec) {
    return sys_error(fec.value());
  }
  boost::json::object o;
  o["cluster_id"] = id.cluster_id;
  o["node_id"] = format_node_id(id.node_id);
  o["name"] = id.name;
  std::string text = boost::json::serialize(o) + "\n";
  std::string path = identity_path(data_dir);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      return sys_error(EIO);
    }
  }
  if (!fsync_path(tmp, O_RDONLY) || ::rename(tmp.c_str(), path.c_str()) != 0 ||
      !fsync_path(data_dir, O_RDONLY | O_DIRECTORY)) {
    return sys_error(errno != 0 ? errno : EIO);
  }
  return {};
}

}  // namespace routemesh::discovery::raft
