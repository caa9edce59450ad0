#pragma once
// A cluster node's route compile, off the control thread. Every new state (a manager's
// Store::on_state, a worker's watch stream) is offered to schedule(); the compile runs on the
// publisher's own thread, one at a time, always of the newest state (cmd/coalescer.h), and its
// results go where they belong:
//
//   control thread      schedule(): when no compile runs, hands the compile thread what it
//                       needs to hold the newest state itself: the deltas since the state it
//                       holds (use_deltas(); O(change)), or else a copy of the state (O(state));
//                       while a compile runs, only notes that a newer state waits
//   compile thread      brings its replica up to date (store::apply of the deltas, as a
//                       worker's watch replica does), then compile_route_table (opening
//                       sealed HTTPS keys, use_secrets()); reconciles the VIPs on lo, then
//                       publishes the table to the proxy threads (which waits until each
//                       adopted it) and sets the routemesh_config_route_table_revision gauge;
//                       only then the health targets (mesh::health::TargetCache), the
//                       managers' addresses and the DNS view, so a write is routed without
//                       waiting for them
//   control thread      the DNS view swap and the health checker's targets; then the next
//                       compile, if a newer state arrived meanwhile, once 10 ms (or the last
//                       compile's duration) have passed since the last one started
//
// So a write's commit, Raft's ticks and the admin API never wait for a compile. What the
// control thread still does per compile is O(change) with deltas (a manager); without them (a
// worker, a manager's first compile, one after a Raft snapshot or a gap in the deltas) it copies
// the state, O(state): about 6 ms at 10,000 services with one task each on the machine this was
// measured on (bench/README.md).
//
// Metrics: routemesh_config_route_compiles_total, routemesh_config_route_states_coalesced_total
// (states that a newer one replaced before they were compiled),
// routemesh_config_route_compile_seconds and routemesh_config_route_state_copy_seconds (the
// last compile's and copy's duration), routemesh_config_route_inputs_total{kind="deltas"|"copy"}
// (how the compile thread got each state).

#include "discovery/dns/server.h"
#include "discovery/model/types.h"
#include "discovery/store/types.h"
#include "proxy/firewall.h"
#include "proxy/health/health_checker.h"
#include "proxy/loopback_addresses.h"
#include "proxy/server.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace routemesh::cmd {

class RoutePublisher {
 public:
  // Everything it publishes to; each must outlive the publisher. `vips` (null unless node.vips)
  // is used from the compile thread only from now on: nothing else may touch it until the
  // publisher is stopped. `dns` is null unless node.dns. `control` is the control thread's
  // executor; `local_node` this node's name.
  struct Sinks {
    proxy::ProxyServer& proxy;
    prometheus::Gauge& revision;
    proxy::HealthChecker& checker;
    proxy::LoopbackAddresses* vips = nullptr;
    discovery::dns::Server* dns = nullptr;
    proxy::Firewall* firewall = nullptr;  // null unless firewall.backend is nftables
  };
  RoutePublisher(boost::asio::any_io_executor control, std::string local_node, Sinks sinks,
                 prometheus::Registry& registry);
  // Stops (see stop()).
  ~RoutePublisher();
  RoutePublisher(const RoutePublisher&) = delete;
  RoutePublisher& operator=(const RoutePublisher&) = delete;

  // A new state; control thread. `state` (owned by the Store or the WatchClient) must stay
  // valid until the next schedule() or stop(): it is copied when its compile starts, now or
  // after the compile in flight.
  void schedule(const discovery::ClusterState& state);

  // The deltas after a revision of the states given to schedule() (a manager's
  // Store::deltas_since: the committed commands, in order), or nullopt when they are no longer
  // kept. Called on the control thread when a compile starts. Without it every compile starts
  // from a copy of the state. Set before the first schedule().
  using DeltaSource =
      std::function<std::optional<std::vector<discovery::store::Delta>>(std::uint64_t after)>;
  void use_deltas(DeltaSource source);
  // A manager's state holds the HTTPS certificates' keys sealed (discovery::ClusterCa,
  // secrets_key_wrapped): `source` gives the secrets key that opens them ("" = none), on the
  // control thread when a compile starts, and the compile thread opens the sealed keys of the
  // table with it (each once while it stays the same). A key that does not open stays sealed,
  // and the proxy leaves its certificate out (logged and counted). Set before the first
  // schedule(); a worker needs none (its watch stream sends the keys opened).
  using SecretsSource = std::function<std::string()>;
  void use_secrets(SecretsSource source);

  // Drops any compile not started, waits for the one in flight (its table is still published
  // to the proxy, which must not be shut down yet) and joins the compile thread; nothing is
  // published afterwards. Control thread (or after the control thread ended). Idempotent.
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace routemesh::cmd
