#pragma once
// Value types of the store's state machine: commands, results, errors, watch deltas. Values only
// (HAProxy "-t.h" idea); behaviour is in commands.h, state_machine.h, state_json.h.

#include "discovery/model/types.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace routemesh::discovery::store {

// Wire names: "network.create", ... (commands.h op_name). Ids (task, node) are chosen by the
// proposer, never inside apply, so every replica computes the same state.
struct NetworkCreate {
  Network network;  // name, subnet ("" = a /24 from the pool); gateway/builtin/version ignored
};
struct NetworkDelete {
  std::string name;
  std::optional<std::uint64_t> version;  // compare-and-swap when given
};
struct ServiceCreate {
  Service service;  // vips/version ignored (the store assigns them); no networks = ingress
};
struct ServiceUpdate {
  Service service;  // full replacement of the spec, found by name
  std::optional<std::uint64_t> version;
};
struct ServiceDelete {
  std::string name;
  std::optional<std::uint64_t> version;
};
struct TaskAdd {
  Task task;  // version ignored
};
struct TaskUpdate {
  std::string id;
  TaskHealth health = TaskHealth::unknown;
  std::optional<std::uint64_t> version;
};
struct TaskRemove {
  std::string id;
  std::optional<std::uint64_t> version;
};
struct NodeAdd {
  Node node;  // version ignored
};
struct NodeUpdate {
  std::string id;
  std::optional<NodeStatus> status;
  std::optional<NodeRole> role;
  std::optional<std::uint64_t> version;
};
struct NodeRemove {
  std::string id;
  std::optional<std::uint64_t> version;
};
// "cluster.settings": written by `cluster init` as the first command. Reserved for more.
struct ClusterSettingsUpdate {
  std::optional<std::string> cluster_id;   // may be set once
  std::optional<std::string> subnet_pool;  // IPv4 CIDR, prefix <= 24; affects new networks only
  // A join token's secret hash (64 lower-case hex digits): replaces the token of that role, so
  // the old one stops working once this applies.
  std::optional<std::string> worker_token_hash;
  std::optional<std::string> manager_token_hash;
  // The overlay's next key epoch (greater than the current one) and when it was raised
  // (seconds since the epoch, set by the proposer; both or neither).
  std::optional<std::uint64_t> overlay_key_epoch;
  std::optional<std::int64_t> overlay_key_epoch_at;
};

// "policy.create" / "policy.delete": service-to-service rules (discovery/model/policy.h).
struct PolicyCreate {
  Policy policy;  // id chosen by the proposer; version ignored
};
struct PolicyDelete {
  std::string id;
  std::optional<std::uint64_t> version;
};

// "cert.revoke": adds a certificate to the revoked list (kept for good: certificates live at
// most ten years, and the list is small).
struct CertRevoke {
  Revocation revocation;  // version ignored
};

// "ingress.cert.set" / "ingress.cert.delete": the HTTPS port's certificate for a host. A set
// replaces the host's certificate (with `version`, only if it is still that version).
struct IngressCertSet {
  IngressCert cert;  // version: the expected current version (0 = any, or none yet)
};
struct IngressCertDelete {
  std::string host;
  std::optional<std::uint64_t> version;
};

// "ca.set": replaces the cluster's CA record (a rotation's start or end, decided by the leader),
// only while the record is still at `version`. Token hashes, when given, replace the join
// tokens in the same step (tokens pin the root, so a rotation makes new ones).
struct CaSet {
  ClusterCa ca;  // version ignored
  std::uint64_t version = 0;
  std::optional<std::string> worker_token_hash;
  std::optional<std::string> manager_token_hash;
};
// "ca.reissued": node `node` received a certificate of the new root of the rotation that
// started at `started`.
struct CaReissued {
  std::string node;
  std::int64_t started = 0;
};

using Command = std::variant<NetworkCreate, NetworkDelete, ServiceCreate, ServiceUpdate,
                             ServiceDelete, TaskAdd, TaskUpdate, TaskRemove, NodeAdd, NodeUpdate,
                             NodeRemove, ClusterSettingsUpdate, PolicyCreate, PolicyDelete,
                             CertRevoke, IngressCertSet, IngressCertDelete, CaSet, CaReissued>;

// Why the store refused a command (an expected outcome, never an exception). The API answers
// invalid with HTTP 400, conflict 409, not_found 404, version_mismatch 409, key_reused 422 (an
// idempotency key that came first with another request). Zero is success, as for every
// error_code enum: the category is store::error_category() (error.h).
enum class errc { invalid = 1, conflict, not_found, version_mismatch, key_reused };

// A refusal: the code plus what the API reports with it.
struct Error {
  errc code = errc::invalid;
  std::string message;
  std::string field;  // key path in the command, e.g. "service.labels.mesh.http"; may be ""
  bool operator==(const Error&) const = default;
};

// Outcome of one command. ok: `revision` is the new state revision and `object` the object
// after the change (for deletes: as it was when deleted). !ok: `error`; nothing changed.
struct ApplyResult {
  bool ok = false;
  std::uint64_t revision = 0;
  boost::json::value object;
  Error error;
};

// A client's request id (the API's Idempotency-Key header) and a fingerprint of the request it
// came with. The state machine keeps the outcome of the first command proposed with each key and
// answers a later command with the same key with that outcome instead of applying it (the same
// fingerprint) or refuses it as key_reused (another fingerprint). The fingerprint is the
// proposer's business (the API hashes method, target and body); the store only compares it.
struct RequestKey {
  std::string key;          // 1..kMaxRequestKeyLength printable ASCII characters
  std::string fingerprint;  // at most kMaxRequestKeyLength characters
  bool operator==(const RequestKey&) const = default;
};
inline constexpr std::size_t kMaxRequestKeyLength = 128;

// One Raft entry of the store: a command, with the request key it was proposed with (if any).
struct Entry {
  Command command;
  std::optional<RequestKey> request;
};

// One applied command, for watch resumption. `command` is the canonical JSON of the command
// (commands.h command_to_json); applying it with apply() to the state at revision-1 yields
// the state at `revision`. Immutable and shared: the store's history, every watch stream and
// the route compile thread hold the same object (copying it for each reader showed as several
// percent of a leader's CPU samples at thousands of writes a second).
struct Delta {
  std::uint64_t revision = 0;
  std::shared_ptr<const boost::json::object> command;
};

}  // namespace routemesh::discovery::store
