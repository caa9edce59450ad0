#pragma once
// The join protocol's messages, defined once (pure: Boost.JSON, no I/O). A node without an
// identity sends POST /v1/nodes/join with a JoinRequest to any manager (the agent's join client,
// discovery/agent/join_client.h); the leader adds it to the state and answers a JoinReply (the
// manager's join handler, discovery/manager/api.cc).
//
//   request: {"name","role":"manager|worker","api":"IP:PORT","peer":"IP:PORT"?,
//             "overlay":"IP:PORT"?,"token"?,"csr"?}
//   reply:   {"cluster_id","node_id","managers":[{"id","name","api","peer"}...],
//             "certificate"?,"ca"?,"manager_key"?}
//
// The token (tls/token.h) says which role the node may join as; the csr is a PEM certificate
// request for the key the node made for itself, and the reply's certificate (PEM) is the
// manager's answer to it, issued by the cluster CA (`ca`, PEM). A manager's reply also carries
// the manager key (`manager_key`, 64 hex digits), which opens the CA's key that the state keeps
// sealed, so that every manager can sign (none with an external CA, whose key stays in files).
// Both travel only over TLS to a node that proved it holds the token and pinned the CA
// (discovery/agent/join_client.h).
//
// Errors are StateError values: `path` names the field ("" for the body as a whole), `message`
// says what is wrong; `conflict` is never set here.

#include "discovery/model/types.h"

#include <boost/json/object.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace routemesh::discovery {

// `peer` is required for managers and dropped for workers; the manager checks `token` and
// `csr` (parse_join_request only checks that they are strings).
// A request body as a JSON object, with the messages the admin API gives for every request
// body ("request body is not valid JSON: ...", "request body must be a JSON object"), path "".
boost::system::result<boost::json::object, StateError> parse_object(std::string_view body);

struct JoinRequest {
  std::string name;
  NodeRole role = NodeRole::worker;
  std::string api;   // the joining node's admin address "IP:PORT"
  std::string peer;  // its Raft address "IP:PORT" (managers only)
  std::string token;
  std::string overlay;  // its overlay listener "IP:PORT" ("" = none)
  std::string csr;      // PEM certificate request for the node's own key
  bool operator==(const JoinRequest&) const = default;
};

// The body of a join request (no trailing newline); optional fields only when not empty.
std::string encode_join_request(const JoinRequest& request);
// Unknown fields, a missing name/role/api, a role other than manager|worker, an api or peer
// that is not IP:PORT and a manager without a peer are errors naming that field.
boost::system::result<JoinRequest, StateError> parse_join_request(std::string_view body);

struct JoinManager {
  std::string id;
  std::string name;
  std::string api;   // admin address ("" while unknown)
  std::string peer;  // Raft address
  bool operator==(const JoinManager&) const = default;
};

struct JoinReply {
  std::string cluster_id;
  std::string node_id;  // the joined node's id in the state: 16 hex digits, not all zero
  std::vector<JoinManager> managers;
  std::string certificate;  // PEM: the node's certificate
  std::string ca;           // PEM: the cluster CA's certificate
  std::string manager_key;  // managers only: opens the state's sealed CA key (tls/pki.h)
  bool operator==(const JoinReply&) const = default;
};

// The reply for the node `node_id` of `state`: the cluster id and every manager of the state.
JoinReply make_join_reply(const ClusterState& state, const std::string& node_id);

// The body of a join reply, newline-terminated like every answer of the API; the PEM fields
// only when not empty.
std::string encode_join_reply(const JoinReply& reply);
// Lenient like the CLI's renderers: a missing cluster_id reads as "", managers that are not
// objects or have no "api" are skipped. Errors: not a JSON object, or no valid node_id.
boost::system::result<JoinReply, StateError> decode_join_reply(std::string_view body);

}  // namespace routemesh::discovery
