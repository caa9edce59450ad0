#include "discovery/store/store.h"

#include "base/metrics.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_machine.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <list>
#include <utility>

namespace routemesh::discovery::store {
namespace {

namespace asio = boost::asio;

struct StoreMetrics {
  explicit StoreMetrics(prometheus::Registry& registry)
      : commands(
            base::counter_family(registry, "routemesh_store_commands_total",
                                 "Commands applied by this replica's state machine, by result")),
        applied(commands.Add({{"result", "applied"}})),
        rejected(commands.Add({{"result", "rejected"}})),
        replayed(commands.Add({{"result", "replayed"}})),
        revision(base::gauge(registry, "routemesh_store_revision",
                             "Revision of this replica's cluster state")) {}

  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Counter& applied;
  prometheus::Counter& rejected;
  prometheus::Counter& replayed;  // a request key's first outcome answered again
  prometheus::Gauge& revision;
};

// Everything a posted notification or a waiting watch may touch after the Store is gone.
struct Shared {
  explicit Shared(asio::any_io_executor ex, std::size_t history)
      : executor(std::move(ex)), machine(history) {}

  asio::any_io_executor executor;
  StoreStateMachine machine;
  std::function<void(const ClusterState&)> callback;
  std::list<asio::steady_timer*> waiters;
  std::unique_ptr<StoreMetrics> metrics;
  bool notify_pending = false;
  bool stopped = false;

  void wake_all() {
    for (auto* timer : waiters) {
      timer->cancel();
    }
  }
};

// The raft::StateMachine the RaftNode drives: forwards to the StoreStateMachine and schedules
// one notification per burst. The driver applies a Ready's committed entries in one go, so a
// handler posted at the first apply runs after the whole batch.
class NotifyingStateMachine final : public raft::StateMachine {
 public:
  explicit NotifyingStateMachine(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  std::string apply(std::uint64_t index, std::string_view data) override {
    const auto before = shared_->machine.state().revision;
    const auto replayed_before = shared_->machine.replayed();
    std::string result = shared_->machine.apply(index, data);
    if (shared_->metrics) {
      if (shared_->machine.replayed() != replayed_before) {
        shared_->metrics->replayed.Increment();
      } else if (shared_->machine.state().revision != before) {
        shared_->metrics->applied.Increment();
      } else {
        shared_->metrics->rejected.Increment();
      }
    }
    changed();
    return result;
  }
  std::string snapshot() const override { return shared_->machine.snapshot(); }
  void restore(std::string_view data) override {
    shared_->machine.restore(data);
    changed();
  }

 private:
  void changed() {
    if (shared_->notify_pending) {
      return;
    }
    shared_->notify_pending = true;
    asio::post(shared_->executor, [shared = shared_] {
      shared->notify_pending = false;
      if (shared->stopped) {
        return;
      }
      if (shared->metrics) {
        shared->metrics->revision.Set(static_cast<double>(shared->machine.state().revision));
      }
      shared->wake_all();
      if (shared->callback) {
        shared->callback(shared->machine.state());
      }
    });
  }

  std::shared_ptr<Shared> shared_;
};

}  // namespace

struct Store::Impl {
  std::shared_ptr<Shared> shared;
  std::unique_ptr<NotifyingStateMachine> adapter;
  std::unique_ptr<raft::RaftNode> node;
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  stop();
}

boost::system::result<std::unique_ptr<Store>> Store::open(asio::any_io_executor executor,
                                                          StoreOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->shared = std::make_shared<Shared>(executor, options.history);
  if (options.registry != nullptr) {
    impl->shared->metrics = std::make_unique<StoreMetrics>(*options.registry);
  }
  impl->adapter = std::make_unique<NotifyingStateMachine>(impl->shared);
  auto node = raft::RaftNode::open(executor, std::move(options.raft), *impl->adapter,
                                   std::move(options.bootstrap));
  if (!node) {
    return node.error();
  }
  impl->node = std::move(*node);
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

const ClusterState& Store::state() const {
  return impl_->shared->machine.state();
}
const StoreStateMachine& Store::machine() const {
  return impl_->shared->machine;
}
raft::RaftNode& Store::raft() {
  return *impl_->node;
}
const raft::RaftNode& Store::raft() const {
  return *impl_->node;
}
bool Store::is_leader() const {
  return impl_->node->status().role == raft::Role::leader;
}

void Store::on_state(std::function<void(const ClusterState&)> callback) {
  impl_->shared->callback = std::move(callback);
}

asio::awaitable<ProposeResult> Store::propose(Command command, std::optional<RequestKey> request) {
  // A named argument moved in: GCC 12 destroys a prvalue coroutine argument twice when it is
  // created inside the co_await expression (double free seen in this code base).
  std::string data = encode_entry(Entry{std::move(command), std::move(request)});
  auto node_result = co_await impl_->node->propose(std::move(data));
  if (!node_result) {
    co_return node_result.error();
  }
  auto decoded = decode_result(*node_result);
  // The bytes come from our own StoreStateMachine::apply via encode_result.
  if (!decoded) {
    spdlog::error("store: undecodable apply result {}", *node_result);
    co_return raft::NodeError{raft::node_errc::stopped};
  }
  co_return std::move(*decoded);
}

asio::awaitable<ProposeResult> Store::propose(Command command) {
  return propose(std::move(command), std::nullopt);
}

std::optional<std::vector<Delta>> Store::deltas_since(std::uint64_t revision) const {
  return impl_->shared->machine.deltas_since(revision);
}

asio::awaitable<bool> Store::wait_for_change(std::uint64_t revision,
                                             std::chrono::milliseconds timeout) {
  std::shared_ptr<Shared> shared = impl_->shared;
  if (shared->stopped) {
    co_return false;
  }
  if (shared->machine.state().revision != revision) {
    co_return true;
  }
  asio::steady_timer timer(shared->executor);
  timer.expires_after(timeout);
  auto it = shared->waiters.insert(shared->waiters.end(), &timer);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  shared->waiters.erase(it);
  co_return !shared->stopped && shared->machine.state().revision != revision;
}

bool Store::stopped() const {
  return impl_->shared->stopped;
}

void Store::stop() {
  if (!impl_ || impl_->shared->stopped) {
    return;
  }
  impl_->shared->stopped = true;
  impl_->node->stop();
  impl_->shared->wake_all();
}

}  // namespace routemesh::discovery::store
