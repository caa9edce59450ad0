// Why a thread of its own and not a strand of a pool: the compile is CPU-bound and long at scale
// (tens of ms at 10,000 services), and proxy publish blocks until every proxy thread adopted the
// table; a dedicated thread keeps both away from the control thread, the proxy threads' own
// io_contexts and from each other's queues. Why a copy of the state: the Store and the
// WatchClient mutate their state in place on the control thread, and the copy is a fraction of
// the compile (bench/README.md, state_copy vs compile); with the coalescing it happens at most
// once per compile, not once per write. Why deltas when there are some: they make even that
// O(change). The replica applies them with the same store::apply as the managers' state
// machines and a worker's watch replica (deterministic: the same commands from the same state
// land on the same state); any doubt (a delta that does not land on its revision) falls back to
// a copy.

#include "cmd/route_publisher.h"

#include "base/metrics.h"
#include "cmd/coalescer.h"
#include "discovery/agent/join_client.h"
#include "discovery/dns/view.h"
#include "discovery/model/state_index.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_machine.h"
#include "mesh/health/tracker.h"
#include "mesh/route_table.h"
#include "tls/pki.h"

#include <prometheus/counter.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace routemesh::cmd {

namespace asio = boost::asio;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

struct RoutePublisher::Impl {
  Impl(asio::any_io_executor control_executor, std::string node, Sinks s,
       prometheus::Registry& registry)
      : control(std::move(control_executor)),
        local_node(std::move(node)),
        sinks(s),
        compiles(base::counter(registry, "routemesh_config_route_compiles_total",
                               "Route table compiles of a new cluster state")),
        coalesced(base::counter(registry, "routemesh_config_route_states_coalesced_total",
                                "Cluster states replaced by a newer one before their compile")),
        compile_seconds(base::gauge(registry, "routemesh_config_route_compile_seconds",
                                    "Duration of the last route compile (compile thread)")),
        copy_seconds(base::gauge(registry, "routemesh_config_route_state_copy_seconds",
                                 "Duration of the last copy of the state for a route compile "
                                 "(control thread)")),
        inputs(base::counter_family(registry, "routemesh_config_route_inputs_total",
                                    "How the route compile thread got each state: deltas or a "
                                    "copy")),
        by_deltas(inputs.Add({{"kind", "deltas"}})),
        by_copy(inputs.Add({{"kind", "copy"}})),
        work(asio::make_work_guard(compile_io)),
        thread([this] { compile_io.run(); }) {}

  // What the control thread hands the compile thread: the state, or the deltas from the
  // revision the compile thread's replica is at to the newest.
  struct Input {
    std::optional<discovery::ClusterState> copy;
    std::vector<discovery::store::Delta> deltas;
    std::uint64_t revision = 0;  // of the newest state
    std::string secrets_key;     // opens the table's sealed HTTPS keys ("" = none)
  };

  // What a compile hands back to the control thread.
  struct Result {
    std::shared_ptr<const discovery::dns::View> view;  // null without DNS
    std::vector<mesh::health::Target> targets;
    std::vector<std::string> managers;
    bool compiled = false;  // false: the compile failed, keep what the control thread has
    bool resync = false;    // the deltas did not apply: the next input must be a copy
    std::chrono::steady_clock::duration duration{};  // of the compile, publishing included
  };

  // Control thread: start() now, or once the gap after the last compile's start has passed
  // (kMinGap, or as long as that compile took if longer). A burst of writes thus costs a
  // compile every few milliseconds, not one after the other for as long as it lasts: with
  // small tables each compile is quick, and a 3-manager cluster taking thousands of writes a
  // second spent a tenth of its CPU compiling, on every node. A state that arrives after a
  // quiet spell is compiled at once; the states that arrive meanwhile only replace the one
  // waiting (the gate stays closed until the compile starts).
  void start_after_gap() {
    if (stopped) {
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    const auto due =
        last_start + std::max<std::chrono::steady_clock::duration>(kMinGap, last_duration);
    if (now >= due) {
      start();
      return;
    }
    gap_timer.expires_at(due);
    gap_timer.async_wait([self = self_ref](const boost::system::error_code& ec) {
      if (ec) {
        return;
      }
      if (auto impl = self.lock()) {
        impl->start();
      }
    });
  }

  // Control thread: a compile may start; copy the newest state and hand it over.
  void start() {
    if (stopped) {
      return;
    }
    last_start = std::chrono::steady_clock::now();
    const discovery::ClusterState* newest = gate.begin();
    latest = newest;
    Input input;
    input.revision = newest->revision;
    if (deltas && replica_revision) {
      auto d = deltas(*replica_revision);
      // Contiguous from the replica's revision to the newest, or not usable.
      bool usable = d.has_value();
      std::uint64_t expect = *replica_revision;
      for (std::size_t i = 0; usable && i < d->size(); ++i) {
        usable = (*d)[i].revision == ++expect;
      }
      if (usable && expect == newest->revision) {
        input.deltas = std::move(*d);
      } else {
        replica_revision.reset();
      }
    }
    if (!replica_revision) {
      const auto t0 = std::chrono::steady_clock::now();
      input.copy = *newest;
      copy_seconds.Set(seconds_since(t0));
      by_copy.Increment();
    } else {
      by_deltas.Increment();
    }
    replica_revision = newest->revision;
    if (secrets) {
      input.secrets_key = secrets();
    }
    asio::post(compile_io,
               [this, input = std::move(input)]() mutable { compile(std::move(input)); });
  }

  // Compile thread: brings the replica to input.revision. False when a delta did not land.
  bool update_replica(Input& input) {
    if (input.copy) {
      replica = std::move(*input.copy);
      index = discovery::StateIndex(replica);
      return true;
    }
    for (const auto& delta : input.deltas) {
      auto command = discovery::store::command_from_json(*delta.command);
      if (!command) {
        return false;
      }
      // apply() is atomic: a rejection leaves the replica as it was.
      auto applied = discovery::store::apply(replica, index, *command);
      if (!applied.ok || replica.revision != delta.revision) {
        return false;
      }
    }
    return replica.revision == input.revision;
  }

  // Compile thread: replaces the sealed keys of the table's HTTPS certificates by their clear
  // text, from the last compile's when the sealed text is the same (unsealing costs a key
  // derivation).
  void open_keys(mesh::RouteTable& table, const std::string& secrets_key) {
    std::map<std::string, std::string> now;
    for (auto& c : table.certificates) {
      if (!tls::is_sealed_key(c.key)) {
        continue;
      }
      std::string clear;
      if (auto it = opened.find(c.key); it != opened.end()) {
        clear = it->second;
      } else if (!secrets_key.empty()) {
        if (auto key = tls::unseal_key(c.key, secrets_key)) {
          clear = std::move(*key);
        }
      }
      if (clear.empty()) {
        // Stays sealed: the proxy leaves the certificate out (counted). Said once per key.
        if (unopened.insert(c.key).second) {
          spdlog::warn(
              "route compile: the HTTPS key of {} is sealed with a secrets key this manager "
              "cannot open yet (it has not taken the current manager key); its certificate is "
              "left out until it does",
              c.host);
        }
        continue;
      }
      now.emplace(std::exchange(c.key, clear), clear);
    }
    opened = std::move(now);
  }

  // Compile thread.
  void compile(Input input) {
    const auto t0 = std::chrono::steady_clock::now();
    Result result;
    try {
      if (!update_replica(input)) {
        spdlog::warn(
            "route compile: the deltas to revision {} do not apply here; compiling from a copy "
            "of the state next",
            input.revision);
        result.resync = true;
        post_result(std::move(result));
        return;
      }
      const discovery::ClusterState& state = replica;
      auto compiled = mesh::compile_route_table(state, local_node);
      open_keys(compiled, input.secrets_key);
      auto table = std::make_shared<const mesh::RouteTable>(std::move(compiled));
      // The VIPs on lo before the table: the proxy binds its VIP listeners when it adopts it.
      if (sinks.vips != nullptr) {
        std::set<std::string> want;
        for (const auto* routes : {&table->vips, &table->udp_vips}) {
          for (const auto& v : *routes) {
            want.insert(v.vip.text);
          }
        }
        sinks.vips->reconcile(want);
      }
      sinks.proxy.publish(table);
      if (sinks.firewall != nullptr) {
        sinks.firewall->update(*table);  // after the proxy's swap: nft takes milliseconds
      }
      sinks.revision.Set(static_cast<double>(state.revision));
      // What the control thread takes over in finish(), after the proxy has the table: a write
      // is routed without waiting for the DNS view (as long again at 10,000 services).
      result.targets = targets.targets(state, local_node);
      result.managers = discovery::agent::manager_addresses(state);
      if (sinks.dns != nullptr) {
        result.view =
            std::make_shared<const discovery::dns::View>(discovery::dns::compile_view(state));
      }
      result.duration = std::chrono::steady_clock::now() - t0;
      compile_seconds.Set(seconds_since(t0));
      compiles.Increment();
      result.compiled = true;
    } catch (const std::exception& e) {
      // Only allocation can fail here (the cores never throw): keep the previous table, start
      // the next compile from a copy.
      spdlog::error("route compile of revision {} failed: {}", input.revision, e.what());
      result.resync = true;
    }
    post_result(std::move(result));
  }

  void post_result(Result result) {
    asio::post(control, [self = self_ref, result = std::move(result)]() mutable {
      if (auto impl = self.lock()) {
        impl->finish(std::move(result));
      }
    });
  }

  // Control thread: the parts of a compile that belong there, then the next compile.
  void finish(Result result) {
    if (stopped) {
      return;
    }
    if (result.compiled) {
      if (sinks.dns != nullptr) {
        sinks.dns->update(std::move(result.view));
      }
      sinks.checker.update(std::move(result.targets), std::move(result.managers));
    }
    if (result.resync) {
      replica_revision.reset();
    }
    last_duration = result.duration;
    const auto replaced = gate.replaced();
    coalesced.Increment(static_cast<double>(replaced - counted_replaced));
    counted_replaced = replaced;
    if (gate.finished()) {
      start_after_gap();
    } else if (result.resync && latest != nullptr && gate.offer(latest)) {
      start();  // the same state again, from a copy
    }
  }

  void stop() {
    if (stopped) {
      return;
    }
    stopped = true;
    gap_timer.cancel();
    work.reset();
    compile_io.stop();  // a compile in flight finishes; one not started is dropped
    if (thread.joinable()) {
      thread.join();
    }
  }

  asio::any_io_executor control;
  std::string local_node;
  Sinks sinks;
  prometheus::Counter& compiles;
  prometheus::Counter& coalesced;
  prometheus::Gauge& compile_seconds;
  prometheus::Gauge& copy_seconds;
  prometheus::Family<prometheus::Counter>& inputs;
  prometheus::Counter& by_deltas;
  prometheus::Counter& by_copy;
  // Control thread.
  Coalescer<const discovery::ClusterState*> gate;
  const discovery::ClusterState* latest = nullptr;  // the state of the last compile started
  DeltaSource deltas;                               // empty: always a copy
  SecretsSource secrets;                            // empty: no sealed keys to open
  // The revision the compile thread's replica is at once it has taken every input posted so
  // far; nullopt: the next input must be a copy.
  std::optional<std::uint64_t> replica_revision;
  std::uint64_t counted_replaced = 0;
  static constexpr std::chrono::milliseconds kMinGap{10};
  std::chrono::steady_clock::time_point last_start;     // of the last compile started
  std::chrono::steady_clock::duration last_duration{};  // of the last compile finished
  asio::steady_timer gap_timer{control};
  bool stopped = false;
  std::weak_ptr<Impl> self_ref;  // for the completions posted to the control thread
  // Compile thread.
  discovery::ClusterState replica;
  discovery::StateIndex index;  // of replica
  mesh::health::TargetCache targets;
  std::map<std::string, std::string> opened;  // sealed HTTPS key -> clear, of the last compile
  std::set<std::string> unopened;             // sealed HTTPS keys already logged as unopened
  // Last: the thread starts once everything above exists.
  asio::io_context compile_io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;
};

RoutePublisher::RoutePublisher(asio::any_io_executor control, std::string local_node, Sinks sinks,
                               prometheus::Registry& registry)
    : impl_(std::make_shared<Impl>(std::move(control), std::move(local_node), sinks, registry)) {
  impl_->self_ref = impl_;
}

RoutePublisher::~RoutePublisher() {
  stop();
}

void RoutePublisher::schedule(const discovery::ClusterState& state) {
  if (impl_->stopped) {
    return;
  }
  if (impl_->gate.offer(&state)) {
    // On a later turn: the write that produced this state (its reply, the Raft messages of the
    // same Ready) goes first, and a state newer still by then is the one copied.
    asio::post(impl_->control, [self = impl_->self_ref] {
      if (auto impl = self.lock()) {
        impl->start_after_gap();
      }
    });
  }
}

void RoutePublisher::use_deltas(DeltaSource source) {
  impl_->deltas = std::move(source);
}

void RoutePublisher::use_secrets(SecretsSource source) {
  impl_->secrets = std::move(source);
}

void RoutePublisher::stop() {
  impl_->stop();
}

}  // namespace routemesh::cmd
