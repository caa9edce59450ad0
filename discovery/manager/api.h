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
//   POST    /v1/nodes/join                 {name, role, api, peer?, overlay?, token, csr}
//                                          -> {cluster_id, node_id, managers, certificate,
//                                              ca, manager_key (managers)}
//   GET     /v1/ca                         -> {certificate, digest, roots, key, rotation?}:
//                                              the signing root, every trusted root's digest,
//                                              where its key is ("state": sealed there;
//                                              "file": an external CA) and a running
//                                              rotation's progress
//   POST    /v1/ca/rotate                  {grace_s?} -> 201 {digest, retire_after,
//                                              worker_token, manager_token, revision}: a new
//                                              root (admin; tls/README.md, "Root rotation")
//   POST    /v1/certs                      {role: admin|operator|viewer, name, csr}
//                                          -> 201 {role, name, certificate, ca, not_after}
//   POST    /v1/cluster/tokens/ROLE/rotate -> {role, token, revision}: a new join token for
//                                              worker|manager; the old one stops working
//   GET     /v1/watch?from=REV             -> chunked NDJSON: snapshot | delta | ping lines
//
// Errors: {"error":{"code","message","field"}} with 400/401/403/404/405/409/422/503. Who may
// call what is discovery/manager/access.h (401 without a client certificate, 403 for a role
// that may not). Writes reaching a follower are forwarded to the leader's admin address (from
// state.nodes), over TLS with this node's certificate, with the header X-Routemesh-Forwarded
// and the original caller (a forwarded request is never forwarded again: 503 instead). A write
// answers after it was committed and applied on the leader; 503 when it is not within 5 s.
//
// Join: the leader checks the token (tls/token.h: the CA digest must be this cluster's, the
// secret must hash to the state's hash for the role asked for), then issues a certificate for
// the request's CSR naming the cluster, the new node id and its role. A refused join changes
// nothing, is logged once and counted (routemesh_cluster_join_refusals_total{reason}): 401 for
// a malformed token (reason malformed_token), another CA's digest (ca_mismatch) or a wrong or
// rotated secret (bad_secret), 400 for a bad certificate request (bad_csr).
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
#include "base/http_client.h"
#include "discovery/store/store.h"
#include "tls/pki.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace routemesh::discovery::manager {

struct ApiOptions {
  std::chrono::milliseconds forward_timeout{8000};  // a forwarded write waits for commit (5 s)
  std::chrono::milliseconds ping_interval{5000};    // watch keep-alive
  std::chrono::milliseconds reconcile_interval{500};
  // This cluster's id: a client certificate of another cluster is refused.
  std::string cluster_id;
  // The client TLS of calls to other managers (forwarding): this node's certificate and the
  // cluster CA (tls::client_context). Null = plain HTTP (unit tests).
  base::TlsContext client_tls;
  // The cluster CA's certificate (GET /v1/ca, join replies, token digests) and, when this
  // manager holds the CA key, the CA that signs joins and /v1/certs (null: such requests are
  // forwarded to the leader, or answered 503 on a leader without the key).
  std::string ca_pem;
  std::shared_ptr<const tls::CertificateAuthority> ca;
  // The manager key (tls/pki.h): joins of managers and their renewals carry it; a rotation
  // seals the new root's key with it. "" = none (an external CA, or a worker).
  std::string manager_key;
  // Lifetime of the node certificates this manager signs (joins, renewals):
  // cluster.cert_lifetime_s.
  std::chrono::seconds node_cert_lifetime{90 * 24 * 3600};
  // Lifetime of the user certificates it signs (cert issue, cert renew):
  // cluster.user_cert_lifetime_s.
  std::chrono::seconds user_cert_lifetime{365 * 24 * 3600};
  prometheus::Registry* registry = nullptr;  // optional: the join refusal counter
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
  // What this manager signs with from now on: the CA (opened from the state with the manager
  // key, or loaded from a file; used only while its root is the state's signing root) and the
  // manager key. Null and "" take them away (a demoted manager).
  virtual void set_signing(std::shared_ptr<const tls::CertificateAuthority> ca,
                           std::string manager_key) = 0;

 protected:
  Api() = default;
};

// `store` must outlive the Api.
// The state's secrets key (ClusterCa::secrets_key_wrapped, which seals the HTTPS keys in the
// state) opened with `manager_key`: "" when there is none, no manager key, or it does not open
// with this one (a manager that has not taken the current manager key yet).
std::string secrets_key_of(const ClusterCa& ca, const std::string& manager_key);

std::unique_ptr<Api> make_api(boost::asio::any_io_executor executor, store::Store& store,
                              ApiOptions options = {});

}  // namespace routemesh::discovery::manager
