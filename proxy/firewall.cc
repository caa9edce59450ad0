#include "proxy/firewall.h"

#include "base/metrics.h"
#include "mesh/policy/nftables.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

extern char** environ;

namespace routemesh::proxy {

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// A pipe whose ends close themselves.
struct Pipe {
  int fds[2] = {-1, -1};
  bool open() { return ::pipe2(fds, O_CLOEXEC) == 0; }
  void close(int i) {
    if (fds[i] >= 0) {
      ::close(fds[i]);
      fds[i] = -1;
    }
  }
  ~Pipe() {
    close(0);
    close(1);
  }
};

}  // namespace

Firewall::Firewall(const config::FirewallSettings& settings,
                   std::vector<base::IpRange> user_space_only, prometheus::Registry& registry)
    : settings_(settings),
      user_space_only_(std::move(user_space_only)),
      ok_(base::counter_family(registry, "routemesh_firewall_applies_total",
                               "nft transactions run for the kernel firewall backend, by result")
              .Add({{"result", "ok"}})),
      failed_(
          base::counter_family(registry, "routemesh_firewall_applies_total",
                               "nft transactions run for the kernel firewall backend, by result")
              .Add({{"result", "failed"}})),
      missing_(
          base::counter_family(registry, "routemesh_firewall_applies_total",
                               "nft transactions run for the kernel firewall backend, by result")
              .Add({{"result", "missing"}})) {}

Firewall::~Firewall() {
  remove();
}

void Firewall::update(const mesh::RouteTable& table) {
  std::string script = mesh::policy::render_nftables(
      table.policy, mesh::policy::kernel_targets(table), user_space_only_);
  if (script == attempted_) {
    return;
  }
  attempted_ = std::move(script);
  std::string output;
  switch (run(attempted_, output)) {
    case Result::ok:
      ok_.Increment();
      if (!installed_) {
        spdlog::info("firewall: nftables table {} installed (revision {})", mesh::policy::kNftTable,
                     table.revision);
      } else {
        spdlog::debug("firewall: nftables table {} replaced (revision {})", mesh::policy::kNftTable,
                      table.revision);
      }
      installed_ = true;
      return;
    case Result::failed:
      failed_.Increment();
      spdlog::error(
          "firewall: `{} -f -` refused the ruleset of revision {}: {}; the previous table (if "
          "any) stays, policy is still enforced by the proxy",
          settings_.nft, table.revision, trimmed(output));
      return;
    case Result::missing:
      missing_.Increment();
      spdlog::error(
          "firewall: cannot run `{}` ({}): install the nftables package; policy is enforced by "
          "the proxy only",
          settings_.nft, output);
      return;
  }
}

void Firewall::remove() {
  if (!installed_) {
    return;
  }
  installed_ = false;
  attempted_.clear();
  std::string output;
  if (run(mesh::policy::nftables_removal(), output) == Result::ok) {
    spdlog::info("firewall: nftables table {} removed", mesh::policy::kNftTable);
  } else {
    spdlog::error("firewall: cannot remove nftables table {}: {}", mesh::policy::kNftTable,
                  trimmed(output));
  }
}

Firewall::Result Firewall::run(const std::string& script, std::string& output) const {
  Pipe in;
  Pipe out;
  if (!in.open() || !out.open()) {
    output = std::string("pipe: ") + std::strerror(errno);
    return Result::failed;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fds[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out.fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out.fds[1], 2);
  std::string nft = settings_.nft;
  std::string flag = "-f";
  std::string dash = "-";
  std::array<char*, 4> argv{nft.data(), flag.data(), dash.data(), nullptr};
  // The proxy ignores SIGPIPE process-wide (a write to an nft that exited early returns EPIPE
  // here); nft itself starts with default dispositions and no blocked signals.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int err = ::posix_spawnp(&pid, nft.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    output = std::strerror(err);
    return err == ENOENT || err == EACCES ? Result::missing : Result::failed;
  }
  in.close(0);
  out.close(1);

  // nft reads its whole input before it says anything, so writing all of it first and then
  // reading cannot deadlock; the deadline covers an nft that hangs.
  const auto deadline = std::chrono::steady_clock::now() + kNftTimeout;
  auto remaining_ms = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::int64_t>(0, left.count()));
  };
  bool timed_out = false;
  std::size_t written = 0;
  while (written < script.size()) {
    pollfd p{in.fds[1], POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms()) <= 0) {
      timed_out = true;
      break;
    }
    const ssize_t n = ::write(in.fds[1], script.data() + written, script.size() - written);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;  // nft closed its input: its exit status and output say why
    }
    written += static_cast<std::size_t>(n);
  }
  in.close(1);
  std::array<char, 4096> buf{};
  while (!timed_out) {
    pollfd p{out.fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms());
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      timed_out = true;
      break;
    }
    const ssize_t n = ::read(out.fds[0], buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    if (output.size() < 64 * 1024) {
      output.append(buf.data(), static_cast<std::size_t>(n));
    }
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    output = "no answer within " + std::to_string(kNftTimeout.count()) + " s; killed. " + output;
    return Result::failed;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return Result::ok;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return Result::missing;
  }
  if (output.empty()) {
    output = "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return Result::failed;
}

}  // namespace routemesh::proxy
