#include "discovery/store/state_json.h"

#include "discovery/model/policy.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <limits>
#include <utility>

namespace routemesh::discovery::store {

namespace json = boost::json;

std::string_view to_string(NodeRole role) {
  switch (role) {
    case NodeRole::manager:
      return "manager";
    case NodeRole::worker:
      return "worker";
  }
  return "manager";
}

std::string_view to_string(NodeStatus status) {
  switch (status) {
    case NodeStatus::ready:
      return "ready";
    case NodeStatus::down:
      return "down";
    case NodeStatus::unknown:
      return "unknown";
  }
  return "unknown";
}

std::string_view to_string(EndpointMode mode) {
  switch (mode) {
    case EndpointMode::vip:
      return "vip";
    case EndpointMode::dnsrr:
      return "dnsrr";
  }
  return "vip";
}

std::string_view to_string(TaskHealth health) {
  switch (health) {
    case TaskHealth::unknown:
      return "unknown";
    case TaskHealth::healthy:
      return "healthy";
    case TaskHealth::unhealthy:
      return "unhealthy";
    case TaskHealth::draining:
      return "draining";
  }
  return "unknown";
}

std::optional<NodeRole> parse_node_role(std::string_view text) {
  if (text == "manager") {
    return NodeRole::manager;
  }
  if (text == "worker") {
    return NodeRole::worker;
  }
  return std::nullopt;
}

std::optional<NodeStatus> parse_node_status(std::string_view text) {
  if (text == "ready") {
    return NodeStatus::ready;
  }
  if (text == "down") {
    return NodeStatus::down;
  }
  if (text == "unknown") {
    return NodeStatus::unknown;
  }
  return std::nullopt;
}

std::optional<EndpointMode> parse_endpoint_mode(std::string_view text) {
  if (text == "vip") {
    return EndpointMode::vip;
  }
  if (text == "dnsrr") {
    return EndpointMode::dnsrr;
  }
  return std::nullopt;
}

std::optional<TaskHealth> parse_task_health(std::string_view text) {
  if (text == "unknown") {
    return TaskHealth::unknown;
  }
  if (text == "healthy") {
    return TaskHealth::healthy;
  }
  if (text == "unhealthy") {
    return TaskHealth::unhealthy;
  }
  if (text == "draining") {
    return TaskHealth::draining;
  }
  return std::nullopt;
}

json::object to_json(const Node& node) {
  json::object o;
  o["id"] = node.id;
  o["name"] = node.name;
  o["role"] = to_string(node.role);
  o["address"] = node.address;
  o["peer"] = node.peer;
  if (!node.overlay.empty()) {
    o["overlay"] = node.overlay;
  }
  o["status"] = to_string(node.status);
  o["version"] = node.version;
  return o;
}

json::object to_json(const Network& network) {
  json::object o;
  o["name"] = network.name;
  o["subnet"] = network.subnet;
  o["gateway"] = network.gateway;
  o["builtin"] = network.builtin;
  o["version"] = network.version;
  return o;
}

json::object to_json(const Service& service) {
  json::object o;
  o["name"] = service.name;
  json::object labels;
  for (const auto& [k, v] : service.labels) {
    labels[k] = v;
  }
  o["labels"] = std::move(labels);
  json::array networks;
  for (const auto& n : service.networks) {
    networks.emplace_back(n);
  }
  o["networks"] = std::move(networks);
  json::array ports;
  for (const auto& p : service.ports) {
    json::object port{{"published", p.published}, {"target", p.target}, {"protocol", p.protocol}};
    // Only when not the default, so states without them encode as they always did.
    if (p.mode != "ingress") {
      port["mode"] = p.mode;
    }
    if (!p.address.empty()) {
      port["address"] = p.address;
    }
    ports.emplace_back(std::move(port));
  }
  o["ports"] = std::move(ports);
  o["endpoint_mode"] = to_string(service.endpoint_mode);
  json::object vips;
  for (const auto& [network, ip] : service.vips) {
    vips[network] = ip;
  }
  o["vips"] = std::move(vips);
  o["version"] = service.version;
  return o;
}

json::object to_json(const Task& task) {
  json::object o;
  o["id"] = task.id;
  o["service"] = task.service;
  o["node"] = task.node;
  o["address"] = task.address;
  o["port"] = task.port;
  o["health"] = to_string(task.health);
  o["version"] = task.version;
  return o;
}

json::object to_json(const Policy& policy) {
  json::object o;
  o["id"] = policy.id;
  o["from"] = policy.from;
  o["to"] = policy.to;
  o["port"] = policy.port;
  o["action"] = discovery::to_string(policy.action);
  o["priority"] = policy.priority;
  o["version"] = policy.version;
  return o;
}

json::object to_json(const Revocation& revocation) {
  json::object o;
  o["serial"] = revocation.serial;
  o["name"] = revocation.name;
  o["at"] = revocation.at;
  o["version"] = revocation.version;
  return o;
}

json::object to_json(const IngressCert& cert) {
  json::object o;
  o["host"] = cert.host;
  o["cert"] = cert.cert;
  o["key"] = cert.key;
  o["digest"] = cert.digest;
  o["not_after"] = cert.not_after;
  o["version"] = cert.version;
  return o;
}

json::object public_json(const IngressCert& cert) {
  json::object o = to_json(cert);
  o.erase("key");
  return o;
}

json::object to_json(const ClusterCa& ca) {
  json::object o;
  json::array roots;
  for (const auto& root : ca.roots) {
    roots.emplace_back(root);
  }
  o["roots"] = std::move(roots);
  o["sealed_key"] = ca.sealed_key;
  o["cross_new"] = ca.cross_new;
  o["cross_old"] = ca.cross_old;
  o["started"] = ca.started;
  o["retire_after"] = ca.retire_after;
  json::array reissued;
  for (const auto& node : ca.reissued) {
    reissued.emplace_back(node);
  }
  o["reissued"] = std::move(reissued);
  if (!ca.manager_key_id.empty()) {
    o["manager_key_id"] = ca.manager_key_id;
    o["manager_key_wrapped"] = ca.manager_key_wrapped;
  }
  if (!ca.unlock_key_wrapped.empty()) {
    o["unlock_key_wrapped"] = ca.unlock_key_wrapped;
  }
  if (!ca.secrets_key_wrapped.empty()) {
    o["secrets_key_wrapped"] = ca.secrets_key_wrapped;
  }
  o["version"] = ca.version;
  return o;
}

json::object to_json(const ClusterState& state) {
  json::object o;
  o["revision"] = state.revision;
  o["cluster_id"] = state.cluster_id;
  o["subnet_pool"] = state.subnet_pool;
  if (!state.worker_token_hash.empty()) {
    o["worker_token_hash"] = state.worker_token_hash;
  }
  if (!state.manager_token_hash.empty()) {
    o["manager_token_hash"] = state.manager_token_hash;
  }
  if (state.overlay_key_epoch != 0) {  // absent until the first raise, as the token hashes
    o["overlay_key_epoch"] = state.overlay_key_epoch;
    o["overlay_key_epoch_at"] = state.overlay_key_epoch_at;
  }
  auto list = [](const auto& map) {
    json::array a;
    for (const auto& [key, object] : map) {
      a.emplace_back(to_json(object));
    }
    return a;
  };
  o["nodes"] = list(state.nodes);
  o["networks"] = list(state.networks);
  o["services"] = list(state.services);
  o["tasks"] = list(state.tasks);
  if (!state.policies.empty()) {  // absent when empty: images from before policies are unchanged
    o["policies"] = list(state.policies);
  }
  if (!state.revoked.empty()) {  // absent when empty, as policies
    o["revoked"] = list(state.revoked);
  }
  if (!state.ingress_certs.empty()) {  // absent when empty, as policies
    o["ingress_certs"] = list(state.ingress_certs);
  }
  if (!state.removed_nodes.empty()) {  // absent when empty, as policies
    json::object removed;
    for (const auto& [id, name] : state.removed_nodes) {
      removed[id] = name;
    }
    o["removed_nodes"] = std::move(removed);
  }
  if (!state.ca.roots.empty()) {  // absent until the first root rotation
    o["ca"] = to_json(state.ca);
  }
  return o;
}

namespace detail {

FieldReader::FieldReader(const json::value& value, std::string path, StateError& error)
    : object_(value.if_object()), path_(std::move(path)), error_(error) {
  if (object_ == nullptr) {
    fail(path_, "expected an object");
  }
}

std::string FieldReader::path_of(std::string_view key) const {
  if (path_.empty()) {
    return std::string(key);
  }
  return path_ + "." + std::string(key);
}

bool FieldReader::fail(const std::string& path, std::string message) {
  if (ok_) {
    ok_ = false;
    error_ = StateError{path, std::move(message)};
  }
  return false;
}

bool FieldReader::only(std::initializer_list<std::string_view> known) {
  if (!ok_) {
    return false;
  }
  for (const auto& kv : *object_) {
    bool found = false;
    for (auto k : known) {
      if (kv.key() == k) {
        found = true;
        break;
      }
    }
    if (!found) {
      return fail(path_of(kv.key()), "unknown field");
    }
  }
  return true;
}

const json::value* FieldReader::find(std::string_view key) const {
  if (object_ == nullptr) {
    return nullptr;
  }
  return object_->if_contains(key);
}

bool FieldReader::string(std::string_view key, std::string& out, bool required) {
  if (!ok_) {
    return false;
  }
  const json::value* v = find(key);
  if (v == nullptr) {
    return required ? fail(path_of(key), "required") : true;
  }
  const json::string* s = v->if_string();
  if (s == nullptr) {
    return fail(path_of(key), "expected a string");
  }
  out.assign(s->data(), s->size());
  return true;
}

bool FieldReader::uint(std::string_view key, std::uint64_t& out, std::uint64_t max, bool required) {
  if (!ok_) {
    return false;
  }
  const json::value* v = find(key);
  if (v == nullptr) {
    return required ? fail(path_of(key), "required") : true;
  }
  std::uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<std::uint64_t>(v->get_int64());
  } else {
    return fail(path_of(key), "expected a non-negative integer");
  }
  if (n > max) {
    return fail(path_of(key), "must be at most " + std::to_string(max));
  }
  out = n;
  return true;
}

bool FieldReader::boolean(std::string_view key, bool& out) {
  if (!ok_) {
    return false;
  }
  const json::value* v = find(key);
  if (v == nullptr) {
    return true;
  }
  if (!v->is_bool()) {
    return fail(path_of(key), "expected true or false");
  }
  out = v->get_bool();
  return true;
}

bool FieldReader::optional_uint(std::string_view key, std::optional<std::uint64_t>& out) {
  if (find(key) == nullptr) {
    return ok_;
  }
  std::uint64_t n = 0;
  if (!uint(key, n, std::numeric_limits<std::uint64_t>::max())) {
    return false;
  }
  out = n;
  return true;
}

}  // namespace detail

namespace {

using detail::FieldReader;

template <typename Enum, typename Parse>
bool read_enum(FieldReader& r, std::string_view key, Enum& out, Parse parse, const char* choices) {
  std::string text;
  if (r.find(key) == nullptr) {
    return r.ok();
  }
  if (!r.string(key, text)) {
    return false;
  }
  auto parsed = parse(text);
  if (!parsed) {
    return r.fail(r.path_of(key), std::string("must be ") + choices);
  }
  out = *parsed;
  return true;
}

bool read_port_number(FieldReader& r, std::string_view key, std::uint16_t& out) {
  std::uint64_t n = out;
  if (!r.uint(key, n, 65535)) {
    return false;
  }
  out = static_cast<std::uint16_t>(n);
  return true;
}

}  // namespace

std::optional<Node> node_from_json(const json::value& value, const std::string& path,
                                   StateError& error) {
  FieldReader r(value, path, error);
  Node node;
  r.only({"id", "name", "role", "address", "peer", "overlay", "status", "version"});
  r.string("id", node.id, true);
  r.string("name", node.name);
  read_enum(r, "role", node.role, parse_node_role, "manager or worker");
  r.string("address", node.address);
  r.string("peer", node.peer);
  r.string("overlay", node.overlay);
  read_enum(r, "status", node.status, parse_node_status, "ready, down or unknown");
  r.uint("version", node.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  return node;
}

std::optional<Network> network_from_json(const json::value& value, const std::string& path,
                                         StateError& error) {
  FieldReader r(value, path, error);
  Network network;
  r.only({"name", "subnet", "gateway", "builtin", "version"});
  r.string("name", network.name, true);
  r.string("subnet", network.subnet);
  r.string("gateway", network.gateway);
  r.boolean("builtin", network.builtin);
  r.uint("version", network.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  return network;
}

std::optional<Service> service_from_json(const json::value& value, const std::string& path,
                                         StateError& error) {
  FieldReader r(value, path, error);
  Service service;
  r.only({"name", "labels", "networks", "ports", "endpoint_mode", "vips", "version"});
  r.string("name", service.name, true);

  // {"k": "v"} maps of strings: labels and vips.
  auto string_map = [&](std::string_view key, std::map<std::string, std::string>& out) {
    const json::value* v = r.find(key);
    if (!r.ok() || v == nullptr) {
      return;
    }
    const json::object* o = v->if_object();
    if (o == nullptr) {
      r.fail(r.path_of(key), "expected an object");
      return;
    }
    for (const auto& kv : *o) {
      const json::string* s = kv.value().if_string();
      if (s == nullptr) {
        r.fail(r.path_of(key) + "." + std::string(kv.key()), "expected a string");
        return;
      }
      out[std::string(kv.key())] = std::string(s->data(), s->size());
    }
  };
  string_map("labels", service.labels);

  if (const json::value* v = r.find("networks"); r.ok() && v != nullptr) {
    const json::array* a = v->if_array();
    if (a == nullptr) {
      r.fail(r.path_of("networks"), "expected an array");
    } else {
      for (std::size_t i = 0; i < a->size() && r.ok(); ++i) {
        const json::string* s = (*a)[i].if_string();
        if (s == nullptr) {
          r.fail(r.path_of("networks") + "[" + std::to_string(i) + "]", "expected a string");
        } else {
          service.networks.emplace_back(s->data(), s->size());
        }
      }
    }
  }

  if (const json::value* v = r.find("ports"); r.ok() && v != nullptr) {
    const json::array* a = v->if_array();
    if (a == nullptr) {
      r.fail(r.path_of("ports"), "expected an array");
    } else {
      for (std::size_t i = 0; i < a->size() && r.ok(); ++i) {
        const std::string port_path = r.path_of("ports") + "[" + std::to_string(i) + "]";
        FieldReader pr((*a)[i], port_path, error);
        base::PortMapping port;
        pr.only({"published", "target", "protocol", "mode", "address"});
        read_port_number(pr, "published", port.published);
        read_port_number(pr, "target", port.target);
        pr.string("protocol", port.protocol);
        pr.string("mode", port.mode);
        pr.string("address", port.address);
        if (!pr.ok()) {
          r.fail(error.path, error.message);
          break;
        }
        service.ports.push_back(std::move(port));
      }
    }
  }
  read_enum(r, "endpoint_mode", service.endpoint_mode, parse_endpoint_mode, "vip or dnsrr");
  string_map("vips", service.vips);
  r.uint("version", service.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  return service;
}

std::optional<Task> task_from_json(const json::value& value, const std::string& path,
                                   StateError& error) {
  FieldReader r(value, path, error);
  Task task;
  r.only({"id", "service", "node", "address", "port", "health", "version"});
  r.string("id", task.id, true);
  r.string("service", task.service);
  r.string("node", task.node);
  r.string("address", task.address);
  read_port_number(r, "port", task.port);
  read_enum(r, "health", task.health, parse_task_health, "unknown, healthy, unhealthy or draining");
  r.uint("version", task.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  return task;
}

std::optional<Policy> policy_from_json(const json::value& value, const std::string& path,
                                       StateError& error) {
  FieldReader r(value, path, error);
  Policy policy;
  std::uint64_t priority = 0;
  r.only({"id", "from", "to", "port", "action", "priority", "version"});
  r.string("id", policy.id, true);
  r.string("from", policy.from, true);
  r.string("to", policy.to, true);
  read_port_number(r, "port", policy.port);
  if (r.ok() && r.find("action") == nullptr) {
    r.fail(r.path_of("action"), "required (allow or deny)");
  }
  read_enum(r, "action", policy.action, parse_policy_action, "allow or deny");
  r.uint("priority", priority, kMaxPolicyPriority);
  r.uint("version", policy.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  policy.priority = static_cast<std::uint32_t>(priority);
  return policy;
}

std::optional<Revocation> revocation_from_json(const json::value& value, const std::string& path,
                                               StateError& error) {
  FieldReader r(value, path, error);
  Revocation revocation;
  std::uint64_t at = 0;
  r.only({"serial", "name", "at", "version"});
  r.string("serial", revocation.serial, true);
  r.string("name", revocation.name);
  r.uint("at", at, std::numeric_limits<std::int64_t>::max());
  r.uint("version", revocation.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  revocation.at = static_cast<std::int64_t>(at);
  return revocation;
}

std::optional<IngressCert> ingress_cert_from_json(const json::value& value, const std::string& path,
                                                  StateError& error) {
  FieldReader r(value, path, error);
  IngressCert cert;
  std::uint64_t not_after = 0;
  r.only({"host", "cert", "key", "digest", "not_after", "version"});
  r.string("host", cert.host, true);
  r.string("cert", cert.cert, true);
  r.string("key", cert.key, true);
  r.string("digest", cert.digest);
  r.uint("not_after", not_after, std::numeric_limits<std::int64_t>::max());
  r.uint("version", cert.version, std::numeric_limits<std::uint64_t>::max());
  if (!r.ok()) {
    return std::nullopt;
  }
  cert.not_after = static_cast<std::int64_t>(not_after);
  return cert;
}

std::optional<ClusterCa> cluster_ca_from_json(const json::value& value, const std::string& path,
                                              StateError& error) {
  FieldReader r(value, path, error);
  ClusterCa ca;
  std::uint64_t started = 0;
  std::uint64_t retire_after = 0;
  r.only({"roots", "sealed_key", "cross_new", "cross_old", "started", "retire_after", "reissued",
          "manager_key_id", "manager_key_wrapped", "unlock_key_wrapped", "secrets_key_wrapped",
          "version"});
  r.string("sealed_key", ca.sealed_key);
  r.string("manager_key_id", ca.manager_key_id);
  r.string("manager_key_wrapped", ca.manager_key_wrapped);
  r.string("unlock_key_wrapped", ca.unlock_key_wrapped);
  r.string("secrets_key_wrapped", ca.secrets_key_wrapped);
  r.string("cross_new", ca.cross_new);
  r.string("cross_old", ca.cross_old);
  r.uint("started", started, std::numeric_limits<std::int64_t>::max());
  r.uint("retire_after", retire_after, std::numeric_limits<std::int64_t>::max());
  r.uint("version", ca.version, std::numeric_limits<std::uint64_t>::max());
  auto strings = [&r](std::string_view key, auto add) {
    const json::value* v = r.find(key);
    if (!r.ok() || v == nullptr) {
      return;
    }
    const json::array* a = v->if_array();
    if (a == nullptr) {
      r.fail(r.path_of(key), "expected an array");
      return;
    }
    for (std::size_t i = 0; i < a->size() && r.ok(); ++i) {
      const json::string* text = (*a)[i].if_string();
      if (text == nullptr) {
        r.fail(r.path_of(key) + "[" + std::to_string(i) + "]", "expected a string");
      } else {
        add(std::string(text->data(), text->size()));
      }
    }
  };
  strings("roots", [&ca](std::string root) { ca.roots.push_back(std::move(root)); });
  strings("reissued", [&ca](std::string node) { ca.reissued.insert(std::move(node)); });
  if (!r.ok()) {
    return std::nullopt;
  }
  ca.started = static_cast<std::int64_t>(started);
  ca.retire_after = static_cast<std::int64_t>(retire_after);
  return ca;
}

std::string encode_state(const ClusterState& state) {
  return json::serialize(to_json(state));
}

std::optional<ClusterState> state_from_json(const json::value& value) {
  StateError error;
  FieldReader r(value, "", error);
  ClusterState state;
  r.only({"revision", "cluster_id", "subnet_pool", "worker_token_hash", "manager_token_hash",
          "overlay_key_epoch", "overlay_key_epoch_at", "nodes", "networks", "services", "tasks",
          "policies", "revoked", "ingress_certs", "removed_nodes", "ca"});
  std::uint64_t epoch_at = 0;
  r.uint("overlay_key_epoch", state.overlay_key_epoch, std::numeric_limits<std::uint64_t>::max());
  r.uint("overlay_key_epoch_at", epoch_at, std::numeric_limits<std::int64_t>::max());
  state.overlay_key_epoch_at = static_cast<std::int64_t>(epoch_at);
  r.uint("revision", state.revision, std::numeric_limits<std::uint64_t>::max(), true);
  r.string("cluster_id", state.cluster_id);
  r.string("subnet_pool", state.subnet_pool);
  r.string("worker_token_hash", state.worker_token_hash);
  r.string("manager_token_hash", state.manager_token_hash);
  if (!r.ok()) {
    return std::nullopt;
  }
  // Each list: decode every element, keyed by its name/id; a duplicate key is malformed.
  auto list = [&](std::string_view key, auto& map, auto decode, auto key_of) {
    const json::value* v = r.find(key);
    if (v == nullptr) {
      return true;
    }
    const json::array* a = v->if_array();
    if (a == nullptr) {
      return false;
    }
    for (const auto& element : *a) {
      auto object = decode(element, std::string(key), error);
      if (!object) {
        return false;
      }
      std::string k = key_of(*object);
      if (!map.emplace(std::move(k), std::move(*object)).second) {
        return false;
      }
    }
    return true;
  };
  bool ok =
      list("nodes", state.nodes, node_from_json, [](const Node& n) { return n.id; }) &&
      list("networks", state.networks, network_from_json,
           [](const Network& n) { return n.name; }) &&
      list("services", state.services, service_from_json,
           [](const Service& s) { return s.name; }) &&
      list("tasks", state.tasks, task_from_json, [](const Task& t) { return t.id; }) &&
      list("policies", state.policies, policy_from_json, [](const Policy& p) { return p.id; }) &&
      list("revoked", state.revoked, revocation_from_json,
           [](const Revocation& v) { return v.serial; }) &&
      list("ingress_certs", state.ingress_certs, ingress_cert_from_json,
           [](const IngressCert& c) { return c.host; });
  if (!ok) {
    return std::nullopt;
  }
  if (const json::value* v = r.find("removed_nodes"); v != nullptr) {
    const json::object* removed = v->if_object();
    if (removed == nullptr) {
      return std::nullopt;
    }
    for (const auto& [id, name] : *removed) {
      if (!name.is_string()) {
        return std::nullopt;
      }
      state.removed_nodes.emplace(std::string(id), std::string(name.get_string()));
    }
  }
  if (const json::value* v = r.find("ca"); v != nullptr) {
    auto ca = cluster_ca_from_json(*v, "ca", error);
    if (!ca) {
      return std::nullopt;
    }
    state.ca = std::move(*ca);
  }
  return state;
}

std::optional<ClusterState> decode_state(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec) {
    return std::nullopt;
  }
  return state_from_json(value);
}

}  // namespace routemesh::discovery::store
