#include "proxy/health/health_checker.h"

#include "base/address.h"
#include "base/http_client.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <utility>

namespace routemesh::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
using mesh::health::Clock;
using mesh::health::Target;
using mesh::health::Tracker;
using mesh::health::Verdict;

namespace {

const char* health_text(discovery::TaskHealth h) {
  switch (h) {
    case discovery::TaskHealth::healthy:
      return "healthy";
    case discovery::TaskHealth::unhealthy:
      return "unhealthy";
    case discovery::TaskHealth::draining:
      return "draining";
    case discovery::TaskHealth::unknown:
      break;
  }
  return "unknown";
}

// A written verdict the store has not shown yet is written again after this.
constexpr std::chrono::seconds kRewriteAfter{5};
constexpr std::chrono::milliseconds kWriteTimeout{3'000};

}  // namespace

struct HealthChecker::Probe {
  Target target;
  Tracker tracker;
  bool stopped = false;
  bool writing = false;
  std::optional<discovery::TaskHealth> written;  // last value written successfully
  Clock::time_point written_at;
  Probe(Target t, Clock::time_point now) : target(std::move(t)), tracker(target.check, now) {}
};

HealthChecker::HealthChecker(asio::any_io_executor executor, prometheus::Registry& registry)
    : executor_(std::move(executor)),
      checks_(prometheus::BuildCounter()
                  .Name("routemesh_health_checks_total")
                  .Help("Active health checks of this node's tasks, by kind and result")
                  .Register(registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("routemesh_health_transitions_total")
                       .Help("Verdict changes of this node's checked tasks, by new verdict")
                       .Register(registry)),
      writes_(prometheus::BuildCounter()
                  .Name("routemesh_health_writes_total")
                  .Help("Verdicts written to the store, by result (ok, conflict, error)")
                  .Register(registry)) {}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::stop() {
  stopped_ = true;
  for (auto& [id, p] : probes_) {
    p->stopped = true;
  }
  probes_.clear();
}

void HealthChecker::update(std::vector<Target> targets, std::vector<std::string> managers) {
  if (stopped_) {
    return;
  }
  managers_ = std::move(managers);
  std::map<std::string, std::shared_ptr<Probe>> next;
  const auto now = Clock::now();
  for (auto& t : targets) {
    auto it = probes_.find(t.task_id);
    if (it != probes_.end() && it->second->target.ip == t.ip && it->second->target.port == t.port &&
        it->second->target.check == t.check) {
      auto p = it->second;
      p->target.stored = t.stored;
      p->target.version = t.version;
      next.emplace(t.task_id, p);
      probes_.erase(it);
      maybe_write(p);
      continue;
    }
    auto p = std::make_shared<Probe>(std::move(t), now);
    next.emplace(p->target.task_id, p);
    spdlog::info("health: checking task {} of {} at {} every {} ms", p->target.task_id,
                 p->target.service, base::join_host_port(p->target.ip, p->target.port),
                 p->target.check.interval_ms);
    asio::co_spawn(executor_, probe_loop(p), asio::detached);
  }
  for (auto& [id, p] : probes_) {  // gone or changed
    p->stopped = true;
  }
  probes_ = std::move(next);
}

asio::awaitable<void> HealthChecker::probe_loop(std::shared_ptr<Probe> p) {
  asio::steady_timer pause(executor_);
  while (!p->stopped) {
    const bool passed = co_await check_once(p->target);
    if (p->stopped) {
      break;
    }
    const char* kind = p->target.check.kind == discovery::HealthCheck::Kind::http ? "http" : "tcp";
    checks_.Add({{"kind", kind}, {"result", passed ? "pass" : "fail"}}).Increment();
    if (auto changed = p->tracker.record(passed, Clock::now())) {
      transitions_.Add({{"to", mesh::health::to_string(*changed)}}).Increment();
      spdlog::info("health: task {} of {} is {} ({} passes, {} failures in a row)",
                   p->target.task_id, p->target.service, mesh::health::to_string(*changed),
                   p->tracker.passes(), p->tracker.failures());
    }
    maybe_write(p);
    pause.expires_after(std::chrono::milliseconds(p->target.check.interval_ms));
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<bool> HealthChecker::check_once(const Target& t) {
  const auto timeout = std::chrono::milliseconds(t.check.timeout_ms);
  if (t.check.kind == discovery::HealthCheck::Kind::http) {
    base::ClientRequest req;
    req.method = "GET";
    req.target = t.check.path;
    req.headers["User-Agent"] = "routemesh-health";
    std::string address = base::join_host_port(t.ip, t.port);
    auto res = co_await base::http_call(executor_, std::move(address), std::move(req), timeout);
    co_return res && res->status >= t.check.status_min && res->status <= t.check.status_max;
  }
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(t.ip, ec);
  if (ec) {
    co_return false;
  }
  beast::tcp_stream stream(executor_);
  stream.expires_after(timeout);
  asio::ip::tcp::endpoint endpoint(ip, t.port);
  auto [err] = co_await stream.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
  co_return !err;
}

void HealthChecker::maybe_write(const std::shared_ptr<Probe>& p) {
  auto want = mesh::health::stored_value(p->tracker.verdict());
  if (!want || p->stopped || p->writing || managers_.empty()) {
    return;
  }
  if (p->target.stored == *want || p->target.stored == discovery::TaskHealth::draining) {
    return;
  }
  if (p->written == want && Clock::now() - p->written_at < kRewriteAfter) {
    return;  // written; the state showing it is on its way
  }
  p->writing = true;
  asio::co_spawn(executor_, write(p, *want), asio::detached);
}

asio::awaitable<void> HealthChecker::write(std::shared_ptr<Probe> p, discovery::TaskHealth value) {
  const std::string body =
      json::serialize(json::object{{"health", health_text(value)}, {"version", p->target.version}});
  const std::string target = "/v1/tasks/" + p->target.task_id;
  const char* result = "error";
  const std::size_t n = managers_.size();
  for (std::size_t i = 0; i < n && !stopped_; ++i) {
    std::string address = managers_[(next_manager_ + i) % n];
    base::ClientRequest req;
    req.method = "PUT";
    req.target = target;
    req.body = body;
    auto res = co_await base::http_call(executor_, address, std::move(req), kWriteTimeout, tls_);
    if (res && res->status == 200) {
      result = "ok";
      p->written = value;
      p->written_at = Clock::now();
      break;
    }
    if (res && (res->status == 409 || res->status == 404)) {
      // The task changed (drained, updated) or went away since our state: the next state
      // decides again.
      result = "conflict";
      break;
    }
    spdlog::warn("health: cannot write task {} {} via {}: {}", p->target.task_id,
                 health_text(value), managers_[(next_manager_ + i) % n],
                 res ? "HTTP " + std::to_string(res->status) : res.error().message());
    next_manager_ = (next_manager_ + 1) % n;
  }
  if (!stopped_) {
    writes_.Add({{"result", result}}).Increment();
  }
  p->writing = false;
}

}  // namespace routemesh::proxy
