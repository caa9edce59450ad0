#pragma once
// JSON codec (Boost.JSON) for ClusterState and each object: used by Raft snapshots, the admin
// API, the watch stream and the commands. Pure, never throws (except std::bad_alloc).
//
// Shapes (keys in this order; maps become arrays sorted by name/id):
//   node
//   {"id","name","role":"manager|worker","address","peer","status":"ready|down|unknown","version"}
//   network  {"name","subnet","gateway","builtin","version"}
//   service  {"name","labels":{k:v},"networks":[..],"ports":[{"published","target","protocol"}],
//             "endpoint_mode":"vip|dnsrr","vips":{network:ip},"version"}
//   task
//   {"id","service","node","address","port","health":"unknown|healthy|unhealthy|draining","version"}
//   policy   {"id","from","to","port","action":"allow|deny","priority","version"}
//   state
//   {"revision","cluster_id","subnet_pool","nodes":[..],"networks":[..],"services":[..],"tasks":[..],
//    "policies":[..] (only when there are any)}

#include "discovery/model/types.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace routemesh::discovery::store {

std::string_view to_string(NodeRole role);
std::string_view to_string(NodeStatus status);
std::string_view to_string(EndpointMode mode);
std::string_view to_string(TaskHealth health);
std::optional<NodeRole> parse_node_role(std::string_view text);
std::optional<NodeStatus> parse_node_status(std::string_view text);
std::optional<EndpointMode> parse_endpoint_mode(std::string_view text);
std::optional<TaskHealth> parse_task_health(std::string_view text);

boost::json::object to_json(const Node& node);
boost::json::object to_json(const Network& network);
boost::json::object to_json(const Service& service);
boost::json::object to_json(const Task& task);
boost::json::object to_json(const Policy& policy);
boost::json::object to_json(const Revocation& revocation);
// With the private key: this is the state image. The API renders certificates without it.
boost::json::object to_json(const IngressCert& cert);
// The same without "key": what the API answers and lists.
boost::json::object public_json(const IngressCert& cert);
boost::json::object to_json(const ClusterCa& ca);
boost::json::object to_json(const ClusterState& state);

// Decoders for one object, as found in a command or a state image. Every key is optional
// except the identifying one ("id" for nodes and tasks, "name" otherwise); missing keys take
// the struct's defaults. Unknown keys and wrong types are errors. On failure returns nullopt
// and sets `error` to the first problem, its path below `path` (e.g. "service.ports[1].target").
std::optional<Node> node_from_json(const boost::json::value& value, const std::string& path,
                                   StateError& error);
std::optional<Network> network_from_json(const boost::json::value& value, const std::string& path,
                                         StateError& error);
std::optional<Service> service_from_json(const boost::json::value& value, const std::string& path,
                                         StateError& error);
std::optional<Task> task_from_json(const boost::json::value& value, const std::string& path,
                                   StateError& error);

// "id", "from", "to" and "action" are required here; the grammar of from/to is checked by
// discovery::validate_policy (apply), not by the decoder.
std::optional<Policy> policy_from_json(const boost::json::value& value, const std::string& path,
                                       StateError& error);
// "serial" is required; its spelling is checked by apply.
std::optional<Revocation> revocation_from_json(const boost::json::value& value,
                                               const std::string& path, StateError& error);

// "host", "cert" and "key" are required; their spelling is checked by apply.
std::optional<IngressCert> ingress_cert_from_json(const boost::json::value& value,
                                                  const std::string& path, StateError& error);

std::optional<ClusterCa> cluster_ca_from_json(const boost::json::value& value,
                                              const std::string& path, StateError& error);

// Whole state. decode_* return nullopt for anything malformed, including duplicate names/ids.
std::string encode_state(const ClusterState& state);
std::optional<ClusterState> state_from_json(const boost::json::value& value);
std::optional<ClusterState> decode_state(std::string_view text);

namespace detail {

// Reads one JSON object field by field, keeping the first error. Shared with commands.cc.
class FieldReader {
 public:
  FieldReader(const boost::json::value& value, std::string path, StateError& error);

  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const;
  // Fails (at "<path>.<key>") on the first key not in `known`.
  bool only(std::initializer_list<std::string_view> known);
  const boost::json::value* find(std::string_view key) const;
  bool fail(const std::string& path, std::string message);

  bool string(std::string_view key, std::string& out, bool required = false);
  bool uint(std::string_view key, std::uint64_t& out, std::uint64_t max, bool required = false);
  bool boolean(std::string_view key, bool& out);
  bool optional_uint(std::string_view key, std::optional<std::uint64_t>& out);

 private:
  const boost::json::object* object_ = nullptr;
  std::string path_;
  StateError& error_;
  bool ok_ = true;
};

}  // namespace detail

}  // namespace routemesh::discovery::store
