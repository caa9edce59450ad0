#pragma once
// The agent's side of joining a cluster (driver, Asio): the join client, and the list of
// managers a worker remembers in its data_dir so that a restarted worker finds a manager even
// when the one it joined through is gone. The messages are discovery/model/join.h; the server
// is the manager's POST /v1/nodes/join.
//
// A node joins with a token (tls/token.h), which pins the cluster CA by its digest: the node
// trusts no other CA, not even once (secure_join below).
//
// Threading: the control thread only.

#include "base/http_client.h"
#include "discovery/model/join.h"
#include "discovery/model/types.h"
#include "tls/credentials.h"
#include "tls/types.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace routemesh::discovery::agent {

struct JoinOptions {
  // How long the join keeps trying (a manager may still be starting or electing).
  std::chrono::milliseconds deadline{60000};
  std::chrono::milliseconds call_timeout{8000};  // one POST
  std::chrono::milliseconds retry_pause{500};
};

// POST /v1/nodes/join to the admin address `address` ("IP:PORT"), retried while the manager is
// unreachable or answers 503 (no leader yet), over `tls` (null: plain HTTP). nullopt when the
// join was refused (any other status), the reply was malformed or the deadline passed; the
// reason is logged.
boost::asio::awaitable<std::optional<JoinReply>> join_cluster(boost::asio::any_io_executor executor,
                                                              std::string address,
                                                              JoinRequest request,
                                                              JoinOptions options = {},
                                                              base::TlsContext tls = nullptr);

// What a node has after a secure join: the reply and its credentials for data_dir/tls.
struct Joined {
  JoinReply reply;
  tls::NodeCredentials credentials;
};

// The join of a node without an identity:
// 1. GET /v1/ca from `address` over TLS without verification (retried like the join); the
//    certificate's SHA-256 must be `token.ca_digest`, else the node refuses to go on (a wrong
//    token, or someone in the middle) and never sends its secret. From here on the node trusts
//    that CA and nothing else.
// 2. A new ECDSA P-256 key, and a certificate request for it.
// 3. join_cluster with the token and the request, over TLS verified against the pinned CA.
// 4. The reply's certificate must be issued by that CA for that key and name the node id and
//    role of the reply; a manager's reply must carry the CA's key (and it must match).
// nullopt on any refusal or failure (logged, with the reason).
boost::asio::awaitable<std::optional<Joined>> secure_join(boost::asio::any_io_executor executor,
                                                          std::string address, tls::JoinToken token,
                                                          JoinRequest request,
                                                          JoinOptions options = {});

// The admin addresses of the managers in a join reply, plus `join_address` when missing.
std::vector<std::string> managers_after_join(const JoinReply& reply,
                                             const std::string& join_address);

// The admin addresses of the managers in `state` (those that have one), in node-id order.
std::vector<std::string> manager_addresses(const ClusterState& state);

// data_dir/managers.json: {"managers":["IP:PORT",...]}. read_managers returns [] when the file
// is missing or malformed; write_managers replaces it atomically and logs a warning when it
// cannot (the worker keeps running on what it knows).
std::vector<std::string> read_managers(const std::string& data_dir);
void write_managers(const std::string& data_dir, const std::vector<std::string>& managers);

}  // namespace routemesh::discovery::agent
