#pragma once
// Failure detection. Every node tells every manager it is alive (POST /v1/heartbeat
// {"node":"<id>"}) every cluster.heartbeat_ms; each manager keeps the time it last heard from
// each node, in memory only (nothing is written per heartbeat). The leader alone acts: a node
// silent for cluster.node_down_after_ms becomes `down` in the store (its tasks leave every
// route table), and `ready` again once heartbeats resume (its checked tasks take traffic again
// when their checks pass). A new leader counts from its election, so it never marks a node
// down for silence it did not witness. Writes happen only on transitions. A heartbeat must come
// from the node it names (its certificate's node id; an admin certificate may send any), else
// 403 (discovery/manager/access.h).
//
// The same leader loop raises the overlay's key epoch (ClusterState::overlay_key_epoch) every
// `overlay_rekey` (cluster.overlay_rekey_s), counted from the last raise as stored, so a new
// leader keeps the schedule; every node then rekeys its encrypted overlay connections.

#include "admin/admin_server.h"
#include "discovery/store/store.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>

namespace routemesh::discovery::manager {

struct LivenessOptions {
  std::chrono::milliseconds down_after{5'000};
  std::chrono::milliseconds check_every{200};
  std::string self_id;                    // this manager's node id (always alive to itself)
  std::string cluster_id;                 // certificates of other clusters are refused
  std::chrono::seconds overlay_rekey{0};  // 0: the epoch is never raised
  prometheus::Registry* registry = nullptr;
};

class Liveness {
 public:
  virtual ~Liveness() = default;
  // POST /v1/heartbeat on the admin server.
  virtual void register_handlers(admin::AdminServer& server) = 0;
  virtual void start() = 0;
  virtual void stop() = 0;
};

std::unique_ptr<Liveness> make_liveness(boost::asio::any_io_executor executor, store::Store& store,
                                        LivenessOptions options);

}  // namespace routemesh::discovery::manager
