#include "discovery/manager/liveness.h"

#include "base/spawn.h"
#include "discovery/manager/access.h"
#include "discovery/manager/request.h"

#include <prometheus/counter.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace routemesh::discovery::manager {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

admin::Response json_error(unsigned status, const std::string& code, const std::string& message,
                           const std::string& field) {
  return admin::Response{status, "application/json",
                         error_body(ApiError{status, code, message, field})};
}

class LivenessImpl final : public Liveness {
 public:
  LivenessImpl(asio::any_io_executor executor, store::Store& store, LivenessOptions options)
      : executor_(std::move(executor)), store_(store), options_(std::move(options)) {
    if (options_.registry != nullptr) {
      heartbeats_ = &prometheus::BuildCounter()
                         .Name("routemesh_cluster_heartbeats_received_total")
                         .Help("Node heartbeats this manager received")
                         .Register(*options_.registry)
                         .Add({});
      transitions_ = &prometheus::BuildCounter()
                          .Name("routemesh_cluster_node_status_changes_total")
                          .Help("Node status changes this manager wrote as leader, by new status")
                          .Register(*options_.registry);
    }
  }

  void register_handlers(admin::AdminServer& server) override {
    server.handle_async("/v1/heartbeat",
                        [this](admin::Request r) { return heartbeat(std::move(r)); });
  }

  void start() override {
    asio::co_spawn(executor_, run(), base::log_and_count("cluster: liveness"));
  }

  void stop() override { stopped_ = true; }

 private:
  asio::awaitable<admin::Response> heartbeat(admin::Request req) {
    if (req.method != "POST") {
      co_return json_error(405, "method_not_allowed", "use POST", "");
    }
    boost::system::error_code ec;
    json::value v = json::parse(req.body, ec);
    const json::value* node = nullptr;
    if (!ec && v.is_object()) {
      node = v.as_object().if_contains("node");
    }
    if (node == nullptr || !node->is_string() || node->get_string().empty() ||
        node->get_string().size() > 64) {
      co_return json_error(400, "invalid", "expected {\"node\": \"<node id>\"}", "node");
    }
    std::string id(node->get_string());
    // A node speaks for itself only (an admin may speak for any node).
    auto c = resolve_caller(req.caller, req.headers, store_.state(), options_.cluster_id);
    if (auto* e = std::get_if<ApiError>(&c)) {
      co_return admin::Response{e->status, "application/json", error_body(*e)};
    }
    const Caller& caller = std::get<Caller>(c);
    if (auto denied = authorize(caller, req.method, req.path)) {
      co_return admin::Response{denied->status, "application/json", error_body(*denied)};
    }
    const bool admin_user = caller.kind == Caller::Kind::user && caller.role == tls::Role::admin;
    if (!admin_user && caller.id != id) {
      co_return json_error(403, "forbidden",
                           describe(caller) + " may not send heartbeats for node " + id, "node");
    }
    if (store_.state().nodes.count(id) == 0) {
      co_return json_error(404, "not_found", "no node \"" + id + "\"", "node");
    }
    seen_[id] = Clock::now();
    if (heartbeats_ != nullptr) {
      heartbeats_->Increment();
    }
    co_return admin::Response{200, "application/json", "{}\n"};
  }

  asio::awaitable<void> run() {
    asio::steady_timer pause(executor_);
    std::optional<Clock::time_point> leader_since;
    while (!stopped_ && !store_.stopped()) {
      pause.expires_after(options_.check_every);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      if (stopped_ || store_.stopped()) {
        break;
      }
      if (!store_.is_leader()) {
        leader_since.reset();
        continue;
      }
      const auto now = Clock::now();
      if (!leader_since) {
        leader_since = now;
      }
      if (!options_.self_id.empty()) {
        seen_[options_.self_id] = now;
      }
      std::vector<std::pair<std::string, NodeStatus>> changes;
      for (const auto& [id, n] : store_.state().nodes) {
        if (pending_.count(id) != 0) {
          continue;
        }
        auto it = seen_.find(id);
        const bool heard = it != seen_.end() && now - it->second < options_.down_after;
        if (n.status == NodeStatus::ready && !heard && now - *leader_since >= options_.down_after) {
          changes.emplace_back(id, NodeStatus::down);
        } else if (n.status != NodeStatus::ready && heard) {
          changes.emplace_back(id, NodeStatus::ready);
        }
      }
      for (auto& [id, status] : changes) {
        pending_.insert(id);
        asio::co_spawn(executor_, write(id, status, store_.state().nodes.at(id).version),
                       base::log_and_count("cluster: node status"));
      }
      maybe_raise_key_epoch();
      // Forget nodes that left the state.
      for (auto it = seen_.begin(); it != seen_.end();) {
        it = store_.state().nodes.count(it->first) == 0 ? seen_.erase(it) : std::next(it);
      }
    }
  }

  void maybe_raise_key_epoch() {
    if (options_.overlay_rekey.count() <= 0 || rekey_pending_) {
      return;
    }
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    const auto& state = store_.state();
    if (state.cluster_id.empty()) {
      return;  // not bootstrapped yet
    }
    // Never raised: count from when this manager first led, not from 1970.
    if (first_led_ == 0) {
      first_led_ = now;
    }
    const std::int64_t last =
        state.overlay_key_epoch_at != 0 ? state.overlay_key_epoch_at : first_led_;
    if (now < last + options_.overlay_rekey.count()) {
      return;
    }
    rekey_pending_ = true;
    asio::co_spawn(executor_, raise_key_epoch(state.overlay_key_epoch + 1, now),
                   base::log_and_count("cluster: overlay key epoch"));
  }

  asio::awaitable<void> raise_key_epoch(std::uint64_t epoch, std::int64_t now) {
    store::ClusterSettingsUpdate update;
    update.overlay_key_epoch = epoch;
    update.overlay_key_epoch_at = now;
    store::Command command = update;
    auto result = co_await store_.propose(std::move(command));
    rekey_pending_ = false;
    if (!result || !result->ok) {
      spdlog::info("cluster: could not raise the overlay key epoch to {} (will retry)", epoch);
      co_return;
    }
    spdlog::info("cluster: overlay key epoch {}: nodes rekey their overlay connections", epoch);
  }

  asio::awaitable<void> write(std::string id, NodeStatus status, std::uint64_t version) {
    store::NodeUpdate update;
    update.id = id;
    update.status = status;
    update.version = version;  // a concurrent change (role, removal) wins; the next round decides
    store::Command command = update;
    auto result = co_await store_.propose(std::move(command));
    pending_.erase(id);
    const char* word = status == NodeStatus::down ? "down" : "ready";
    if (!result || !result->ok) {
      spdlog::info("cluster: could not mark node {} {} (will retry)", id, word);
      co_return;
    }
    if (status == NodeStatus::down) {
      spdlog::warn("cluster: node {} is down: no heartbeat for {} ms", id,
                   options_.down_after.count());
    } else {
      spdlog::info("cluster: node {} is ready again", id);
    }
    if (transitions_ != nullptr) {
      transitions_->Add({{"to", word}}).Increment();
    }
  }

  asio::any_io_executor executor_;
  store::Store& store_;
  LivenessOptions options_;
  std::map<std::string, Clock::time_point> seen_;
  std::set<std::string> pending_;
  bool stopped_ = false;
  bool rekey_pending_ = false;
  std::int64_t first_led_ = 0;  // seconds since the epoch; 0 = not yet
  prometheus::Counter* heartbeats_ = nullptr;
  prometheus::Family<prometheus::Counter>* transitions_ = nullptr;
};

}  // namespace

std::unique_ptr<Liveness> make_liveness(asio::any_io_executor executor, store::Store& store,
                                        LivenessOptions options) {
  return std::make_unique<LivenessImpl>(std::move(executor), store, std::move(options));
}

}  // namespace routemesh::discovery::manager
