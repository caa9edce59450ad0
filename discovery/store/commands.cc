#include "discovery/store/commands.h"

#include "discovery/store/state_json.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <type_traits>

namespace routemesh::discovery::store {

namespace json = boost::json;

namespace {

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

void put_version(json::object& o, const std::optional<std::uint64_t>& version) {
  if (version) {
    o["version"] = *version;
  }
}

// Strips the fields the store assigns (version, VIPs, gateway, builtin) so the canonical
// command says only what the proposer asked for.
json::object spec_json(const Service& s) {
  json::object o = to_json(s);
  o.erase("vips");
  o.erase("version");
  return o;
}

json::object spec_json(const Network& n) {
  json::object o;
  o["name"] = n.name;
  if (!n.subnet.empty()) {
    o["subnet"] = n.subnet;
  }
  return o;
}

json::object spec_json(const Task& t) {
  json::object o = to_json(t);
  o.erase("version");
  return o;
}

json::object spec_json(const Node& n) {
  json::object o = to_json(n);
  o.erase("version");
  return o;
}

Error invalid(const StateError& e) {
  return Error{errc::invalid, e.message, e.path};
}

void policy_command_json(json::object& o, const PolicyCreate& c) {
  json::object p = to_json(c.policy);
  p.erase("version");
  o["policy"] = std::move(p);
}

void policy_command_json(json::object& o, const PolicyDelete& c) {
  o["id"] = c.id;
  put_version(o, c.version);
}

// The policy ops, or nullopt for another op (then `r` is untouched).
std::optional<DecodeResult> policy_command_from_json(detail::FieldReader& r, const std::string& op,
                                                     StateError& error) {
  if (op == "policy.create") {
    if (r.only({"op", "policy"})) {
      const json::value* v = r.find("policy");
      if (v == nullptr) {
        r.fail("policy", "required");
      } else if (auto p = policy_from_json(*v, "policy", error)) {
        return DecodeResult(PolicyCreate{std::move(*p)});
      }
    }
    return DecodeResult(invalid(error));
  }
  if (op == "cert.revoke") {
    if (r.only({"op", "revocation"})) {
      const json::value* v = r.find("revocation");
      if (v == nullptr) {
        r.fail("revocation", "required");
      } else if (auto revocation = revocation_from_json(*v, "revocation", error)) {
        return DecodeResult(CertRevoke{std::move(*revocation)});
      }
    }
    return DecodeResult(invalid(error));
  }
  if (op == "ingress.cert.set") {
    if (r.only({"op", "cert"})) {
      const json::value* v = r.find("cert");
      if (v == nullptr) {
        r.fail("cert", "required");
      } else if (auto cert = ingress_cert_from_json(*v, "cert", error)) {
        return DecodeResult(IngressCertSet{std::move(*cert)});
      }
    }
    return DecodeResult(invalid(error));
  }
  if (op == "ingress.cert.delete") {
    IngressCertDelete c;
    if (r.only({"op", "host", "version"}) && r.string("host", c.host, true) &&
        r.optional_uint("version", c.version)) {
      return DecodeResult(std::move(c));
    }
    return DecodeResult(invalid(error));
  }
  if (op == "policy.delete") {
    PolicyDelete c;
    if (r.only({"op", "id", "version"}) && r.string("id", c.id, true) &&
        r.optional_uint("version", c.version)) {
      return DecodeResult(std::move(c));
    }
    return DecodeResult(invalid(error));
  }
  return std::nullopt;
}

}  // namespace

std::string_view op_name(const Command& command) {
  return std::visit(overloaded{
                        [](const NetworkCreate&) { return "network.create"; },
                        [](const NetworkDelete&) { return "network.delete"; },
                        [](const ServiceCreate&) { return "service.create"; },
                        [](const ServiceUpdate&) { return "service.update"; },
                        [](const ServiceDelete&) { return "service.delete"; },
                        [](const TaskAdd&) { return "task.add"; },
                        [](const TaskUpdate&) { return "task.update"; },
                        [](const TaskRemove&) { return "task.remove"; },
                        [](const NodeAdd&) { return "node.add"; },
                        [](const NodeUpdate&) { return "node.update"; },
                        [](const NodeRemove&) { return "node.remove"; },
                        [](const ClusterSettingsUpdate&) { return "cluster.settings"; },
                        [](const PolicyCreate&) { return "policy.create"; },
                        [](const PolicyDelete&) { return "policy.delete"; },
                        [](const CertRevoke&) { return "cert.revoke"; },
                        [](const IngressCertSet&) { return "ingress.cert.set"; },
                        [](const IngressCertDelete&) { return "ingress.cert.delete"; },
                        [](const CaSet&) { return "ca.set"; },
                        [](const CaReissued&) { return "ca.reissued"; },
                    },
                    command);
}

json::object command_to_json(const Command& command) {
  json::object o;
  o["op"] = op_name(command);
  std::visit(overloaded{
                 [&](const NetworkCreate& c) { o["network"] = spec_json(c.network); },
                 [&](const NetworkDelete& c) {
                   o["name"] = c.name;
                   put_version(o, c.version);
                 },
                 [&](const ServiceCreate& c) { o["service"] = spec_json(c.service); },
                 [&](const ServiceUpdate& c) {
                   o["service"] = spec_json(c.service);
                   put_version(o, c.version);
                 },
                 [&](const ServiceDelete& c) {
                   o["name"] = c.name;
                   put_version(o, c.version);
                 },
                 [&](const TaskAdd& c) { o["task"] = spec_json(c.task); },
                 [&](const TaskUpdate& c) {
                   o["id"] = c.id;
                   o["health"] = to_string(c.health);
                   put_version(o, c.version);
                 },
                 [&](const TaskRemove& c) {
                   o["id"] = c.id;
                   put_version(o, c.version);
                 },
                 [&](const NodeAdd& c) { o["node"] = spec_json(c.node); },
                 [&](const NodeUpdate& c) {
                   o["id"] = c.id;
                   if (c.status) {
                     o["status"] = to_string(*c.status);
                   }
                   if (c.role) {
                     o["role"] = to_string(*c.role);
                   }
                   put_version(o, c.version);
                 },
                 [&](const NodeRemove& c) {
                   o["id"] = c.id;
                   put_version(o, c.version);
                 },
                 [&](const ClusterSettingsUpdate& c) {
                   if (c.cluster_id) {
                     o["cluster_id"] = *c.cluster_id;
                   }
                   if (c.subnet_pool) {
                     o["subnet_pool"] = *c.subnet_pool;
                   }
                   if (c.worker_token_hash) {
                     o["worker_token_hash"] = *c.worker_token_hash;
                   }
                   if (c.manager_token_hash) {
                     o["manager_token_hash"] = *c.manager_token_hash;
                   }
                   if (c.overlay_key_epoch) {
                     o["overlay_key_epoch"] = *c.overlay_key_epoch;
                   }
                   if (c.overlay_key_epoch_at) {
                     o["overlay_key_epoch_at"] = *c.overlay_key_epoch_at;
                   }
                 },
                 [&](const PolicyCreate& c) { policy_command_json(o, c); },
                 [&](const PolicyDelete& c) { policy_command_json(o, c); },
                 [&](const CertRevoke& c) {
                   json::object v = to_json(c.revocation);
                   v.erase("version");
                   o["revocation"] = std::move(v);
                 },
                 [&](const IngressCertSet& c) { o["cert"] = to_json(c.cert); },
                 [&](const IngressCertDelete& c) {
                   o["host"] = c.host;
                   put_version(o, c.version);
                 },
                 [&](const CaSet& c) {
                   json::object ca = to_json(c.ca);
                   ca.erase("version");
                   o["ca"] = std::move(ca);
                   o["version"] = c.version;
                   if (c.worker_token_hash) {
                     o["worker_token_hash"] = *c.worker_token_hash;
                   }
                   if (c.manager_token_hash) {
                     o["manager_token_hash"] = *c.manager_token_hash;
                   }
                 },
                 [&](const CaReissued& c) {
                   o["node"] = c.node;
                   o["started"] = c.started;
                 },
             },
             command);
  return o;
}

std::string encode_command(const Command& command) {
  return json::serialize(command_to_json(command));
}

DecodeResult command_from_json(const json::value& value) {
  StateError error;
  detail::FieldReader r(value, "", error);
  std::string op;
  if (!r.string("op", op, true)) {
    return invalid(error);
  }
  if (auto policy = policy_command_from_json(r, op, error)) {
    return std::move(*policy);
  }

  // Reads the object under `key` with `decode`, e.g. "service" -> Service.
  auto object = [&](std::string_view key, auto decode) -> decltype(decode(value, "", error)) {
    const json::value* v = r.find(key);
    if (v == nullptr) {
      r.fail(std::string(key), "required");
      return std::nullopt;
    }
    return decode(*v, std::string(key), error);
  };
  auto enum_field = [&](std::string_view key, auto parse, const char* choices, auto& out) -> bool {
    if (r.find(key) == nullptr) {
      return true;
    }
    std::string text;
    if (!r.string(key, text)) {
      return false;
    }
    auto parsed = parse(text);
    if (!parsed) {
      return r.fail(std::string(key), std::string("must be ") + choices);
    }
    out = *parsed;
    return true;
  };

  if (op == "network.create") {
    if (r.only({"op", "network"})) {
      if (auto n = object("network", network_from_json)) {
        return NetworkCreate{std::move(*n)};
      }
    }
  } else if (op == "network.delete" || op == "service.delete" || op == "task.remove" ||
             op == "node.remove") {
    const bool by_name = op == "network.delete" || op == "service.delete";
    const char* key = by_name ? "name" : "id";
    std::string name;
    std::optional<std::uint64_t> version;
    if (r.only({"op", key, "version"}) && r.string(key, name, true) &&
        r.optional_uint("version", version)) {
      if (op == "network.delete") {
        return NetworkDelete{std::move(name), version};
      }
      if (op == "service.delete") {
        return ServiceDelete{std::move(name), version};
      }
      if (op == "task.remove") {
        return TaskRemove{std::move(name), version};
      }
      return NodeRemove{std::move(name), version};
    }
  } else if (op == "service.create" || op == "service.update") {
    std::optional<std::uint64_t> version;
    const bool update = op == "service.update";
    bool fields_ok = update ? r.only({"op", "service", "version"}) : r.only({"op", "service"});
    if (fields_ok && r.optional_uint("version", version)) {
      if (auto s = object("service", service_from_json)) {
        if (update) {
          return ServiceUpdate{std::move(*s), version};
        }
        return ServiceCreate{std::move(*s)};
      }
    }
  } else if (op == "task.add") {
    if (r.only({"op", "task"})) {
      if (auto t = object("task", task_from_json)) {
        return TaskAdd{std::move(*t)};
      }
    }
  } else if (op == "task.update") {
    TaskUpdate c;
    if (r.only({"op", "id", "health", "version"}) && r.string("id", c.id, true) &&
        r.optional_uint("version", c.version)) {
      if (r.find("health") == nullptr) {
        r.fail("health", "required");
      } else if (enum_field("health", parse_task_health, "unknown, healthy, unhealthy or draining",
                            c.health)) {
        return c;
      }
    }
  } else if (op == "node.add") {
    if (r.only({"op", "node"})) {
      if (auto n = object("node", node_from_json)) {
        return NodeAdd{std::move(*n)};
      }
    }
  } else if (op == "node.update") {
    NodeUpdate c;
    if (r.only({"op", "id", "status", "role", "version"}) && r.string("id", c.id, true) &&
        r.optional_uint("version", c.version)) {
      NodeStatus status{};
      NodeRole role{};
      const bool has_status = r.find("status") != nullptr;
      const bool has_role = r.find("role") != nullptr;
      if (enum_field("status", parse_node_status, "ready, down or unknown", status) &&
          enum_field("role", parse_node_role, "manager or worker", role)) {
        if (has_status) {
          c.status = status;
        }
        if (has_role) {
          c.role = role;
        }
        return c;
      }
    }
  } else if (op == "cluster.settings") {
    ClusterSettingsUpdate c;
    std::string id;
    std::string pool;
    std::string worker;
    std::string manager;
    std::uint64_t epoch = 0;
    std::uint64_t epoch_at = 0;
    if (r.only({"op", "cluster_id", "subnet_pool", "worker_token_hash", "manager_token_hash",
                "overlay_key_epoch", "overlay_key_epoch_at"}) &&
        r.string("cluster_id", id) && r.string("subnet_pool", pool) &&
        r.string("worker_token_hash", worker) && r.string("manager_token_hash", manager) &&
        r.uint("overlay_key_epoch", epoch, std::numeric_limits<std::uint64_t>::max()) &&
        r.uint("overlay_key_epoch_at", epoch_at, std::numeric_limits<std::int64_t>::max())) {
      if (r.find("overlay_key_epoch") != nullptr) {
        c.overlay_key_epoch = epoch;
      }
      if (r.find("overlay_key_epoch_at") != nullptr) {
        c.overlay_key_epoch_at = static_cast<std::int64_t>(epoch_at);
      }
      if (r.find("cluster_id") != nullptr) {
        c.cluster_id = std::move(id);
      }
      if (r.find("subnet_pool") != nullptr) {
        c.subnet_pool = std::move(pool);
      }
      if (r.find("worker_token_hash") != nullptr) {
        c.worker_token_hash = std::move(worker);
      }
      if (r.find("manager_token_hash") != nullptr) {
        c.manager_token_hash = std::move(manager);
      }
      return c;
    }
  } else if (op == "ca.set") {
    CaSet c;
    std::string worker;
    std::string manager;
    if (r.only({"op", "ca", "version", "worker_token_hash", "manager_token_hash"}) &&
        r.uint("version", c.version, std::numeric_limits<std::uint64_t>::max(), true) &&
        r.string("worker_token_hash", worker) && r.string("manager_token_hash", manager)) {
      if (auto ca = object("ca", cluster_ca_from_json)) {
        c.ca = std::move(*ca);
        if (r.find("worker_token_hash") != nullptr) {
          c.worker_token_hash = std::move(worker);
        }
        if (r.find("manager_token_hash") != nullptr) {
          c.manager_token_hash = std::move(manager);
        }
        return c;
      }
    }
  } else if (op == "ca.reissued") {
    CaReissued c;
    std::uint64_t started = 0;
    if (r.only({"op", "node", "started"}) && r.string("node", c.node, true) &&
        r.uint("started", started, std::numeric_limits<std::int64_t>::max(), true)) {
      c.started = static_cast<std::int64_t>(started);
      return c;
    }
  } else {
    r.fail("op", "unknown op \"" + op + "\"");
  }
  return invalid(error);
}

DecodeResult decode_command(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec) {
    return Error{errc::invalid, "command is not valid JSON: " + ec.message(), ""};
  }
  return command_from_json(value);
}

bool valid_request_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxRequestKeyLength) {
    return false;
  }
  for (char c : key) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

std::string encode_entry(const Entry& entry) {
  if (!entry.request) {
    return encode_command(entry.command);
  }
  json::object o;
  o["request"] =
      json::object{{"key", entry.request->key}, {"fingerprint", entry.request->fingerprint}};
  o["command"] = command_to_json(entry.command);
  return json::serialize(o);
}

EntryResult decode_entry(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec) {
    return Error{errc::invalid, "command is not valid JSON: " + ec.message(), ""};
  }
  const json::object* o = value.if_object();
  if (o == nullptr || !o->contains("request")) {
    auto command = command_from_json(value);
    if (!command) {
      return command.error();
    }
    return Entry{std::move(*command), std::nullopt};
  }
  StateError error;
  detail::FieldReader r(value, "", error);
  r.only({"request", "command"});
  const json::value* command_value = r.find("command");
  if (r.ok() && command_value == nullptr) {
    r.fail("command", "required");
  }
  RequestKey request;
  if (r.ok()) {
    detail::FieldReader k(*r.find("request"), "request", error);
    k.only({"key", "fingerprint"});
    k.string("key", request.key, true);
    k.string("fingerprint", request.fingerprint);
    if (k.ok() && !valid_request_key(request.key)) {
      k.fail("request.key", "expected 1-128 printable ASCII characters");
    }
    if (k.ok() && request.fingerprint.size() > kMaxRequestKeyLength) {
      k.fail("request.fingerprint", "longer than 128 characters");
    }
  }
  if (!error.message.empty() || !r.ok()) {
    return invalid(error);
  }
  auto command = command_from_json(*command_value);
  if (!command) {
    return command.error();
  }
  return Entry{std::move(*command), std::move(request)};
}

}  // namespace routemesh::discovery::store
