#pragma once
// The REST API of a manager, served by the admin server (admin/admin_server.h):
//
//   method  path                           body -> answer
//   GET     /v1/cluster                    -> {id, leader, term, commit, applied, revision,
//                                              members}
//   GET     /v1/services                   -> {revision, services}
//   POST    /v1/services                   spec -> 201 {revision, service}
//   GET     /v1/services/NAME              -> {revision, service}
//   PUT     /v1/services/NAME              spec + version? (compare-and-swap)
//                                          -> {revision, service}
//   DELETE  /v1/services/NAME[?version=V]  -> the deleted service (its tasks go too)
//   GET     /v1/networks                   -> {revision, networks}
//   POST    /v1/networks                   {name, subnet?} -> 201 {revision, network}
//   GET     /v1/networks/NAME              -> {revision, network}
//   DELETE  /v1/networks/NAME              -> the deleted network
//   GET     /v1/tasks[?service=S]          -> {revision, tasks}
//   POST    /v1/tasks                      {service, node?, address, port?, health?, id?} -> 201
//   GET     /v1/tasks/ID                   -> {revision, task}
//   PUT     /v1/tasks/ID                   {health, version?} -> {revision, task}
//   DELETE  /v1/tasks/ID                   -> the deleted task
//   GET     /v1/nodes, /v1/nodes/ID        -> state nodes + api, voter, learner, leader
//   DELETE  /v1/nodes/ID                   -> node.remove, then Raft remove_member
//   POST    /v1/nodes/ID/promote           -> a manager and a Raft voter
//   POST    /v1/nodes/ID/demote            -> a worker and a Raft learner
//   POST    /v1/nodes/join                 {name, role, api, peer?, token?}
//                                          -> {cluster_id, node_id, managers}
//   GET     /v1/watch?from=REV             -> chunked NDJSON: snapshot | delta | ping lines
//
// Errors: {"error":{"code","message","field"}} with 400/404/405/409/422/503. Writes reaching a
// follower are forwarded to the leader's admin address (from state.nodes) with the header
// X-Routemesh-Forwarded (a forwarded request is never forwarded again: 503 instead). A write
// answers after it was committed and applied on the leader; 503 when it is not within 5 s.
//
// Reads (every GET but the watch) are linearizable: the leader confirms its leadership with a
// quorum (read_index) and answers once it applied that point; other managers forward the read
// to it. A node that cannot reach a quorum answers 503. `?stale=true` answers from this node's
// copy with the headers X-Routemesh-Stale: true and X-Routemesh-Revision; `?consistent=1` is
// accepted (and changes nothing); both together are a 400.
//
// Writes may carry an Idempotency-Key header (1-128 printable ASCII characters, else 400). The
// key travels in the Raft entry (forwarded writes keep it); the state machine answers a repeat
// with the first outcome, and a key reused with another request with 422 key_reused. Details
// and the membership rules are in discovery/manager/README.md.
//
// Threading: the control thread only (the Store's executor), like the admin server.

#include "admin/admin_server.h"
#include "discovery/store/store.h"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>

namespace routemesh::discovery::manager {

struct ApiOptions {
  std::chrono::milliseconds forward_timeout{8000};  // a forwarded write waits for commit (5 s)
  std::chrono::milliseconds ping_interval{5000};    // watch keep-alive
  std::chrono::milliseconds reconcile_interval{500};
};

class Api {
 public:
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;
  virtual ~Api() = default;

  // Adds the handlers to `server` (before it starts).
  virtual void register_handlers(admin::AdminServer& server) = 0;
  // Starts the membership reconciler: while this node leads, every node the state lists as a
  // manager (with a peer address) is made a Raft voter — added as a learner, then promoted
  // once caught up — and every demoted one (role worker with a peer) a learner. Runs until
  // stop(); membership changes are one at a time (Raft's single-server changes).
  virtual void start() = 0;
  virtual void stop() = 0;

 protected:
  Api() = default;
};

// `store` must outlive the Api.
std::unique_ptr<Api> make_api(boost::asio::any_io_executor executor, store::Store& store,
                              ApiOptions options = {});

}  // namespace routemesh::discovery::manager
