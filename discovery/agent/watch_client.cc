#include "discovery/agent/watch_client.h"

#include "base/http_client.h"
#include "base/metrics.h"
#include "base/spawn.h"
#include "discovery/store/watch_stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace routemesh::discovery::agent {
namespace {

namespace asio = boost::asio;

struct WatchMetrics {
  explicit WatchMetrics(prometheus::Registry& registry)
      : reconnects(base::counter(registry, "routemesh_watch_reconnects_total",
                                 "Watch streams that ended and were opened again (possibly to "
                                 "another manager)")),
        revision(base::gauge(registry, "routemesh_watch_revision",
                             "Revision of the state replica this worker holds")) {}

  prometheus::Counter& reconnects;
  prometheus::Gauge& revision;
};

// Shared with the running coroutine, which may outlive the client object by one turn.
struct Shared {
  Shared(asio::any_io_executor ex, WatchOptions opt)
      : executor(std::move(ex)), options(std::move(opt)), backoff(executor) {}

  asio::any_io_executor executor;
  WatchOptions options;
  store::WatchReplica replica;
  store::LineSplitter lines;
  std::function<void(const ClusterState&)> callback;
  std::unique_ptr<WatchMetrics> metrics;
  asio::steady_timer backoff;
  std::string manager;
  std::size_t next = 0;
  bool stopped = false;
  bool resync = false;        // the next connection asks for a snapshot (from=0)
  bool told_refused = false;  // the log said the managers refuse this node's certificate
};

// Whether a stream ended because the manager refused this node's certificate as revoked (a
// revocation, or the node's removal: tls/README.md, "Revocation").
bool refused_as_revoked(const boost::system::error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
             SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED;
}

// Configured managers first, then those the state knows, without duplicates.
std::vector<std::string> candidates(const Shared& s) {
  std::vector<std::string> out = s.options.managers;
  for (const auto& [id, node] : s.replica.state().nodes) {
    if (node.role == NodeRole::manager && !node.address.empty() &&
        std::find(out.begin(), out.end(), node.address) == out.end()) {
      out.push_back(node.address);
    }
  }
  return out;
}

asio::awaitable<void> run(std::shared_ptr<Shared> s) {
  auto delay = s->options.backoff_min;
  bool first = true;
  while (!s->stopped) {
    auto list = candidates(*s);
    if (list.empty()) {
      spdlog::error("watch: no manager address known");
      co_return;
    }
    const std::string address = list[s->next % list.size()];
    if (!first && s->metrics) {
      s->metrics->reconnects.Increment();
    }
    first = false;
    if (s->resync) {
      s->replica.reset();
      s->resync = false;
    }
    const std::uint64_t from = s->replica.has_state() ? s->replica.revision() : 0;
    s->manager = address;
    s->lines.clear();
    bool progressed = false;
    std::string failure;
    // std::function objects built here, not converted from lambdas in the call below: see
    // api.cc commit() on GCC 12 and converted coroutine arguments.
    std::function<bool(std::string_view)> on_data = [&](std::string_view data) {
      s->lines.feed(data);
      if (s->lines.overflow()) {
        failure = "line too long";
        return false;
      }
      bool changed = false;
      while (auto line = s->lines.next_line()) {
        if (line->empty()) {
          continue;
        }
        auto r = s->replica.apply_line(*line);
        if (auto* error = std::get_if<std::string>(&r)) {
          failure = *error;
          s->resync = error->find("rejected") != std::string::npos ||
                      error->find("landed") != std::string::npos;
          break;
        }
        progressed = true;
        changed = changed || std::get<store::WatchEvent>(r) != store::WatchEvent::ping;
      }
      if (changed) {
        if (s->metrics) {
          s->metrics->revision.Set(static_cast<double>(s->replica.revision()));
        }
        if (s->callback) {
          s->callback(s->replica.state());
        }
      }
      return failure.empty() && !s->stopped;
    };
    std::function<void(unsigned, std::string)> on_error_body = [&](unsigned status,
                                                                   std::string body) {
      failure = "HTTP " + std::to_string(status) + " " + body;
    };
    spdlog::debug("watch: connecting to {} from revision {}", address, from);
    std::string target = "/v1/watch?from=" + std::to_string(from);
    auto ec = co_await base::http_stream(s->executor, address, std::move(target),
                                         s->options.connect_timeout, s->options.idle_timeout,
                                         on_data, on_error_body, s->options.tls);
    if (s->stopped) {
      co_return;
    }
    spdlog::warn("watch: stream from {} ended at revision {}: {}", address, s->replica.revision(),
                 failure.empty() ? ec.message() : failure);
    if (progressed) {
      s->told_refused = false;
    } else if (!s->told_refused && refused_as_revoked(ec)) {
      // Said once, in words: the warnings above repeat for every manager and every retry.
      s->told_refused = true;
      spdlog::error(
          "watch: {} refuses this node's certificate as revoked: the certificate was revoked "
          "(cert revoke) or this node was removed from the cluster (node rm); it gets no more of "
          "the state. A removed node takes part again only by joining again with a fresh "
          "data_dir",
          address);
    }
    s->manager.clear();
    ++s->next;  // another manager next time
    if (progressed) {
      delay = s->options.backoff_min;
    } else {
      delay = std::min(delay * 2, s->options.backoff_max);
    }
    s->backoff.expires_after(progressed ? s->options.backoff_min : delay);
    co_await s->backoff.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

class WatchClientImpl final : public WatchClient {
 public:
  WatchClientImpl(asio::any_io_executor executor, WatchOptions options)
      : shared_(std::make_shared<Shared>(std::move(executor), std::move(options))) {
    if (shared_->options.registry != nullptr) {
      shared_->metrics = std::make_unique<WatchMetrics>(*shared_->options.registry);
    }
  }
  ~WatchClientImpl() override { stop(); }

  void on_state(std::function<void(const ClusterState&)> callback) override {
    shared_->callback = std::move(callback);
  }

  void start() override {
    asio::co_spawn(shared_->executor, run(shared_), base::log_and_count("watch: client"));
  }

  void stop() override {
    shared_->stopped = true;
    shared_->backoff.cancel();
    shared_->callback = nullptr;
  }

  const ClusterState& state() const override { return shared_->replica.state(); }
  bool synced() const override { return shared_->replica.has_state(); }
  std::string manager() const override { return shared_->manager; }

 private:
  std::shared_ptr<Shared> shared_;
};

}  // namespace

std::unique_ptr<WatchClient> make_watch_client(asio::any_io_executor executor,
                                               WatchOptions options) {
  return std::make_unique<WatchClientImpl>(std::move(executor), std::move(options));
}

}  // namespace routemesh::discovery::agent
