#include "discovery/model/join.h"

#include "base/address.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <initializer_list>
#include <tuple>
#include <utility>

namespace routemesh::discovery {
namespace {

namespace json = boost::json;

StateError invalid(std::string path, std::string message) {
  return StateError{std::move(path), std::move(message), false};
}

// A string field: absent is "" (or an error when required), anything but a string an error.
boost::system::result<std::string, StateError> string_field(const json::object& o,
                                                            std::string_view key, bool required) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    if (required) {
      return invalid(std::string(key), "required");
    }
    return {boost::system::in_place_value};
  }
  if (!v->is_string()) {
    return invalid(std::string(key), "expected a string");
  }
  // in_place_value: a StateError can be built from a string too (C++20 aggregate init).
  return {boost::system::in_place_value, v->get_string().data(), v->get_string().size()};
}

std::string lenient_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string{};
}

// Node ids in the state: 16 hex digits (the Raft id in hex), never all zero (no node).
bool is_node_id(std::string_view id) {
  if (id.size() != 16 || id == "0000000000000000") {
    return false;
  }
  for (const char c : id) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) {
      return false;
    }
  }
  return true;
}

}  // namespace

boost::system::result<json::object, StateError> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value value = json::parse(body, ec);
  if (ec) {
    return invalid("", "request body is not valid JSON: " + ec.message());
  }
  if (!value.is_object()) {
    return invalid("", "request body must be a JSON object");
  }
  return std::move(value.as_object());
}

std::string encode_join_request(const JoinRequest& request) {
  json::object o{{"name", request.name},
                 {"role", request.role == NodeRole::manager ? "manager" : "worker"},
                 {"api", request.api}};
  if (!request.peer.empty()) {
    o["peer"] = request.peer;
  }
  if (!request.overlay.empty()) {
    o["overlay"] = request.overlay;
  }
  if (!request.token.empty()) {
    o["token"] = request.token;
  }
  if (!request.csr.empty()) {
    o["csr"] = request.csr;
  }
  return json::serialize(o);
}

boost::system::result<JoinRequest, StateError> parse_join_request(std::string_view body) {
  auto object = parse_object(body);
  if (!object) {
    return object.error();
  }
  const json::object& o = *object;
  for (const auto& kv : o) {
    bool known = false;
    for (std::string_view k : {"name", "role", "api", "peer", "overlay", "token", "csr"}) {
      known = known || kv.key() == k;
    }
    if (!known) {
      return invalid(std::string(kv.key()), "unknown field");
    }
  }
  JoinRequest join;
  std::string role;
  for (auto [key, out, required] :
       {std::tuple{"name", &join.name, true}, std::tuple{"role", &role, true},
        std::tuple{"api", &join.api, true}, std::tuple{"peer", &join.peer, false},
        std::tuple{"overlay", &join.overlay, false}, std::tuple{"token", &join.token, false},
        std::tuple{"csr", &join.csr, false}}) {
    auto value = string_field(o, key, required);
    if (!value) {
      return value.error();
    }
    *out = std::move(*value);
  }
  if (role == "manager") {
    join.role = NodeRole::manager;
  } else if (role == "worker") {
    join.role = NodeRole::worker;
  } else {
    return invalid("role", "must be manager or worker");
  }
  if (!base::parse_host_port(join.api)) {
    return invalid("api", "expected IP:PORT (the joining node's admin address)");
  }
  if (join.role == NodeRole::manager && join.peer.empty()) {
    return invalid("peer", "required for managers (Raft IP:PORT)");
  }
  if (!join.peer.empty() && !base::parse_host_port(join.peer)) {
    return invalid("peer", "expected IP:PORT");
  }
  if (!join.overlay.empty() && !base::parse_host_port(join.overlay)) {
    return invalid("overlay", "expected IP:PORT");
  }
  if (join.role == NodeRole::worker) {
    join.peer.clear();
  }
  return join;
}

JoinReply make_join_reply(const ClusterState& state, const std::string& node_id) {
  JoinReply reply;
  reply.cluster_id = state.cluster_id;
  reply.node_id = node_id;
  for (const auto& [id, n] : state.nodes) {
    if (n.role == NodeRole::manager) {
      reply.managers.push_back(JoinManager{id, n.name, n.address, n.peer});
    }
  }
  return reply;
}

std::string encode_join_reply(const JoinReply& reply) {
  json::array managers;
  for (const auto& m : reply.managers) {
    managers.push_back(
        json::object{{"id", m.id}, {"name", m.name}, {"api", m.api}, {"peer", m.peer}});
  }
  json::object o{{"cluster_id", reply.cluster_id},
                 {"node_id", reply.node_id},
                 {"managers", std::move(managers)}};
  for (auto [key, value] :
       {std::pair{"certificate", &reply.certificate}, std::pair{"ca", &reply.ca},
        std::pair{"manager_key", &reply.manager_key}}) {
    if (!value->empty()) {
      o[key] = *value;
    }
  }
  std::string body = json::serialize(o);
  body += '\n';
  return body;
}

boost::system::result<JoinReply, StateError> decode_join_reply(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return invalid("", "expected a JSON object");
  }
  const json::object& o = v.as_object();
  JoinReply reply;
  reply.cluster_id = lenient_string(o, "cluster_id");
  reply.node_id = lenient_string(o, "node_id");
  if (!is_node_id(reply.node_id)) {
    return invalid("node_id", "expected 16 hex digits, not all zero");
  }
  if (const json::value* m = o.if_contains("managers"); m != nullptr && m->is_array()) {
    for (const auto& e : m->get_array()) {
      if (!e.is_object()) {
        continue;
      }
      const json::object& mo = e.get_object();
      JoinManager manager{lenient_string(mo, "id"), lenient_string(mo, "name"),
                          lenient_string(mo, "api"), lenient_string(mo, "peer")};
      if (!manager.api.empty()) {
        reply.managers.push_back(std::move(manager));
      }
    }
  }
  reply.certificate = lenient_string(o, "certificate");
  reply.ca = lenient_string(o, "ca");
  reply.manager_key = lenient_string(o, "manager_key");
  return reply;
}

}  // namespace routemesh::discovery
