#include "discovery/manager/request.h"

#include "base/address.h"
#include "discovery/model/join.h"
#include "discovery/model/policy.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cstdio>

namespace routemesh::discovery::manager {
namespace {

namespace json = boost::json;

ApiError invalid(std::string field, std::string message) {
  return ApiError{400, "invalid", std::move(message), std::move(field)};
}

// The body as a JSON object (the model's parse_object, shared with the join request).
Parsed<json::value> parse_body(std::string_view body) {
  auto object = parse_object(body);
  if (!object) {
    return invalid(object.error().path, object.error().message);
  }
  return json::value(std::move(*object));
}

std::optional<std::uint64_t> parse_uint(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (err != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return n;
}

}  // namespace

unsigned http_status(store::errc code) {
  switch (code) {
    case store::errc::invalid:
      return 400;
    case store::errc::not_found:
      return 404;
    case store::errc::conflict:
    case store::errc::version_mismatch:
      return 409;
    case store::errc::key_reused:
      return 422;
  }
  return 400;
}

ApiError from_store_error(const store::Error& error) {
  return ApiError{http_status(error.code), std::string(store::to_string(error.code)), error.message,
                  error.field};
}

ApiError from_state_error(const StateError& e) {
  return ApiError{e.conflict ? 409u : 400u, e.conflict ? "conflict" : "invalid", e.message, e.path};
}

std::string error_body(const ApiError& error) {
  json::object e;
  e["code"] = error.code;
  e["message"] = error.message;
  e["field"] = error.field;
  std::string body = json::serialize(json::object{{"error", std::move(e)}});
  body += '\n';
  return body;
}

Parsed<std::optional<std::uint64_t>> version_param(
    const std::map<std::string, std::string>& query) {
  auto it = query.find("version");
  if (it == query.end()) {
    return std::optional<std::uint64_t>{};
  }
  auto n = parse_uint(it->second);
  if (!n) {
    return invalid("version", "expected a non-negative integer");
  }
  return std::optional<std::uint64_t>{*n};
}

bool consistent_param(const std::map<std::string, std::string>& query) {
  auto it = query.find("consistent");
  return it != query.end() &&
         (it->second == "1" || it->second == "true" || it->second == "yes" || it->second.empty());
}

Parsed<ReadMode> read_mode(const std::map<std::string, std::string>& query) {
  auto it = query.find("stale");
  if (it == query.end()) {
    return ReadMode::linearizable;
  }
  const std::string& v = it->second;
  if (v == "false" || v == "0" || v == "no") {
    return ReadMode::linearizable;
  }
  if (!(v.empty() || v == "true" || v == "1" || v == "yes")) {
    return invalid("stale", "expected true or false");
  }
  if (consistent_param(query)) {
    return invalid("stale",
                   "stale=true (this node's copy) and consistent=1 (through the leader) "
                   "contradict each other; give one");
  }
  return ReadMode::stale;
}

Parsed<std::optional<store::RequestKey>> request_key(
    const std::map<std::string, std::string>& headers, std::string_view method,
    std::string_view target, std::string_view body) {
  auto it = headers.find(std::string(kIdempotencyKeyHeader));
  if (it == headers.end()) {
    return std::optional<store::RequestKey>{};
  }
  if (!store::valid_request_key(it->second)) {
    return invalid("Idempotency-Key", "expected 1-128 printable ASCII characters");
  }
  // FNV-1a, 64 bits: not a defence against anyone, only a check that a retry is the same
  // request. Fields are separated by bytes that cannot occur in a method or a target.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::string_view text) {
    for (unsigned char c : text) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  };
  mix(method);
  mix(" ");
  mix(target);
  mix("\n");
  mix(body);
  return std::optional<store::RequestKey>{store::RequestKey{it->second, hex_id(h)}};
}

Parsed<ServiceSpec> parse_service_spec(std::string_view body,
                                       const std::optional<std::string>& name_from_path) {
  auto parsed = parse_body(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    return *e;
  }
  json::object& o = std::get<json::value>(parsed).as_object();
  if (o.contains("vips")) {
    return invalid("service.vips", "assigned by the store; leave it out");
  }
  if (name_from_path) {
    const json::value* name = o.if_contains("name");
    if (name == nullptr) {
      o["name"] = *name_from_path;
    } else if (!name->is_string() || name->get_string() != *name_from_path) {
      return invalid("service.name", "must match the name in the path (" + *name_from_path + ")");
    }
  }
  const bool has_version = o.contains("version");
  if (has_version && !name_from_path) {
    return invalid("service.version", "only an update (PUT) takes a version");
  }
  StateError error;
  auto service = store::service_from_json(std::get<json::value>(parsed), "service", error);
  if (!service) {
    return from_state_error(error);
  }
  ServiceSpec spec;
  if (has_version) {
    spec.version = service->version;
  }
  service->version = 0;
  spec.service = std::move(*service);
  return spec;
}

Parsed<Network> parse_network_spec(std::string_view body) {
  auto parsed = parse_body(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    return *e;
  }
  const json::object& o = std::get<json::value>(parsed).as_object();
  for (const auto& kv : o) {
    if (kv.key() != "name" && kv.key() != "subnet") {
      return invalid("network." + std::string(kv.key()), "unknown field");
    }
  }
  StateError error;
  auto network = store::network_from_json(std::get<json::value>(parsed), "network", error);
  if (!network) {
    return from_state_error(error);
  }
  return *network;
}

Parsed<Policy> parse_policy_spec(std::string_view body, const std::string& generated_id) {
  auto parsed = parse_body(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    return *e;
  }
  json::object o = std::get<json::value>(parsed).as_object();
  for (const auto& kv : o) {
    const std::string_view key = kv.key();
    if (key != "from" && key != "to" && key != "port" && key != "action" && key != "priority") {
      return invalid("policy." + std::string(key), "unknown field");
    }
  }
  o["id"] = generated_id;
  StateError error;
  auto policy = store::policy_from_json(json::value(std::move(o)), "policy", error);
  if (!policy) {
    return from_state_error(error);
  }
  // The grammar without the state: conflicts are the store's to find.
  const auto errors = validate_policy(ClusterState{}, *policy, "policy");
  if (!errors.empty()) {
    return from_state_error(errors.front());
  }
  return *policy;
}

Parsed<Task> parse_task_spec(std::string_view body, const std::string& generated_id) {
  auto parsed = parse_body(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    return *e;
  }
  StateError error;
  store::detail::FieldReader r(std::get<json::value>(parsed), "task", error);
  Task task;
  std::string address;
  std::uint64_t port = 0;
  std::string health;
  r.only({"id", "service", "node", "address", "port", "health"});
  r.string("id", task.id);
  r.string("service", task.service, true);
  r.string("node", task.node);
  r.string("address", address, true);
  r.uint("port", port, 65535);
  r.string("health", health);
  if (!r.ok()) {
    return from_state_error(error);
  }
  auto parsed_address = base::parse_host_port(address, {.port_optional = true});
  if (!parsed_address) {
    return invalid("task.address", "expected IP:PORT or IP, e.g. 127.0.0.1:9001");
  }
  task.address = std::move(parsed_address->host);
  const std::uint16_t address_port = parsed_address->port;
  if (address_port != 0 && port != 0 && address_port != port) {
    return invalid("task.port", "differs from the port in task.address");
  }
  task.port = address_port != 0 ? address_port : static_cast<std::uint16_t>(port);
  if (!health.empty()) {
    auto h = store::parse_task_health(health);
    if (!h) {
      return invalid("task.health", "must be unknown, healthy, unhealthy or draining");
    }
    task.health = *h;
  }
  if (task.id.empty()) {
    task.id = generated_id;
  }
  return task;
}

Parsed<store::TaskUpdate> parse_task_update(std::string_view body, const std::string& id) {
  auto parsed = parse_body(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    return *e;
  }
  StateError error;
  store::detail::FieldReader r(std::get<json::value>(parsed), "", error);
  std::string health;
  store::TaskUpdate update;
  update.id = id;
  r.only({"health", "version"});
  r.string("health", health, true);
  r.optional_uint("version", update.version);
  if (!r.ok()) {
    return from_state_error(error);
  }
  auto h = store::parse_task_health(health);
  if (!h) {
    return invalid("health", "must be unknown, healthy, unhealthy or draining");
  }
  update.health = *h;
  return update;
}

std::vector<std::string> path_segments(std::string_view path, std::string_view prefix) {
  std::vector<std::string> out;
  if (!path.starts_with(prefix)) {
    return out;
  }
  path.remove_prefix(prefix.size());
  while (!path.empty()) {
    auto slash = path.find('/');
    std::string_view seg = path.substr(0, slash);
    if (!seg.empty()) {
      out.emplace_back(seg);
    }
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string hex_id(std::uint64_t bits) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(bits));
  return std::string(buf, 16);
}

}  // namespace routemesh::discovery::manager
