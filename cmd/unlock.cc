#include "cmd/unlock.h"

#include "cmd/cluster_tls.h"
#include "config/config.h"
#include "tls/pki.h"

#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>
#include <variant>

namespace routemesh::cmd {

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_stop(int) {
  g_stop = 1;
}

constexpr std::size_t kMaxLine = 256;

// The address of `path`, or nullopt when it is too long for one.
std::optional<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return std::nullopt;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// One line (at most kMaxLine bytes) from `fd`, without its newline; reads time out after 5 s.
std::string read_line(int fd) {
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string line;
  char buffer[128];
  while (line.size() < kMaxLine && line.find('\n') == std::string::npos) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) {
      break;
    }
    line.append(buffer, static_cast<std::size_t>(n));
  }
  return line.substr(0, line.find('\n'));
}

void write_line(int fd, const std::string& text) {
  const std::string line = text + "\n";
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
}

// The answer to one key sent on the socket: "ok", or "refused: WHY".
std::string judge(const std::string& data_dir, const std::string& key) {
  if (!tls::is_manager_key(key)) {
    return "refused: not an unlock key (64 hexadecimal digits, as `routemesh cluster unlock-key` "
           "shows it)";
  }
  if (auto refused = check_unlock(data_dir, key)) {
    return "refused: " + *refused;
  }
  return "ok";
}

}  // namespace

std::string unlock_socket_path(const std::string& data_dir) {
  return data_dir + "/unlock.sock";
}

UnlockResult wait_for_unlock(const std::string& data_dir, const std::string& why) {
  UnlockResult result;
  const std::string path = unlock_socket_path(data_dir);
  const auto addr = unix_address(path);
  if (!addr) {
    spdlog::error("cluster: cannot wait for the unlock key: {} is too long for a Unix socket",
                  path);
    return result;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    spdlog::error("cluster: cannot wait for the unlock key: socket: {}", std::strerror(errno));
    return result;
  }
  ::unlink(path.c_str());  // one a manager killed while waiting left behind
  const mode_t mask = ::umask(0077);
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0 &&
                     ::chmod(path.c_str(), 0600) == 0 && ::listen(fd, 4) == 0;
  ::umask(mask);
  if (!bound) {
    spdlog::error("cluster: cannot wait for the unlock key on {}: {}", path, std::strerror(errno));
    ::close(fd);
    return result;
  }
  struct sigaction stop {};
  stop.sa_handler = on_stop;
  sigemptyset(&stop.sa_mask);
  struct sigaction old_term {};
  struct sigaction old_int {};
  g_stop = 0;
  ::sigaction(SIGTERM, &stop, &old_term);
  ::sigaction(SIGINT, &stop, &old_int);
  spdlog::warn(
      "cluster: {}; waiting for it: run `routemesh cluster unlock --config FILE` on this host "
      "(it asks for the key, or takes --unlock-key-file or ROUTEMESH_UNLOCK_KEY; socket {})",
      why, path);
  while (g_stop == 0) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) {
      continue;
    }
    const int client = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      continue;
    }
    const std::string key = trimmed(read_line(client));
    const std::string answer = judge(data_dir, key);
    write_line(client, answer);
    ::close(client);
    if (answer == "ok") {
      spdlog::info("cluster: unlocked by `routemesh cluster unlock`");
      result.outcome = UnlockWait::unlocked;
      result.key = key;
      break;
    }
    spdlog::warn("cluster: an unlock key sent to {} was refused: {}", path, answer.substr(9));
  }
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::close(fd);
  ::unlink(path.c_str());
  if (result.outcome != UnlockWait::unlocked) {
    result.outcome = UnlockWait::stopped;
    spdlog::info("cluster: stopped while locked");
  }
  return result;
}

int run_cluster_unlock(const std::string& config_path, const std::string& unlock_key_file) {
  auto parsed = config::load_file(config_path);
  if (auto* errors = std::get_if<std::vector<config::FieldError>>(&parsed)) {
    for (const auto& e : *errors) {
      std::fprintf(stderr, "routemesh: %s: %s%s%s\n", config_path.c_str(), e.path.c_str(),
                   e.path.empty() ? "" : ": ", e.message.c_str());
    }
    return 2;
  }
  const auto& cfg = std::get<config::NodeConfig>(parsed);
  if (!cfg.cluster_mode) {
    std::fprintf(stderr, "routemesh: %s: cluster: `cluster unlock` needs a cluster section\n",
                 config_path.c_str());
    return 2;
  }
  auto given = unlock_key_of(unlock_key_file);
  if (auto* e = std::get_if<1>(&given)) {
    std::fprintf(stderr, "routemesh: %s\n", e->c_str());
    return 2;
  }
  std::string key = std::move(std::get<0>(given));
  if (key.empty()) {
    if (::isatty(STDIN_FILENO) == 0) {
      std::fprintf(stderr,
                   "routemesh: no unlock key: give --unlock-key-file FILE, set "
                   "ROUTEMESH_UNLOCK_KEY, or run this on a terminal to type it\n");
      return 2;
    }
    auto typed = read_hidden_line("unlock key: ");
    if (!typed || !tls::is_manager_key(*typed)) {
      std::fprintf(stderr, "routemesh: not an unlock key (64 hexadecimal digits)\n");
      return 2;
    }
    key = std::move(*typed);
  }
  const std::string path = unlock_socket_path(cfg.cluster.data_dir);
  const auto addr = unix_address(path);
  if (!addr) {
    // The manager cannot wait there either (it says so and exits 2).
    std::fprintf(stderr,
                 "routemesh: %s is too long for a Unix socket; no manager can wait on it "
                 "(start it with --unlock-key-file, or give it a shorter data_dir)\n",
                 path.c_str());
    return 1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    std::fprintf(stderr,
                 "routemesh: no locked manager waits on %s (%s): is the node running, and "
                 "locked?\n",
                 path.c_str(), std::strerror(errno));
    if (fd >= 0) {
      ::close(fd);
    }
    return 1;
  }
  write_line(fd, key);
  const std::string answer = read_line(fd);
  ::close(fd);
  if (answer == "ok") {
    std::printf("unlocked: the manager took the key and goes on starting\n");
    return 0;
  }
  std::fprintf(stderr, "routemesh: %s\n",
               answer.empty() ? "the manager did not answer" : answer.c_str());
  return 1;
}

}  // namespace routemesh::cmd
