#include "discovery/store/state_machine.h"

#include "base/address.h"
#include "base/check.h"
#include "discovery/model/policy.h"
#include "discovery/model/state.h"
#include "discovery/store/commands.h"
#include "discovery/store/ipam.h"
#include "discovery/store/state_json.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace routemesh::discovery::store {

namespace json = boost::json;

namespace {

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

ApplyResult failure(errc code, std::string field, std::string message) {
  ApplyResult r;
  r.ok = false;
  r.error = Error{code, std::move(message), std::move(field)};
  return r;
}

// The first validator error decides the answer: one field per error, as the API reports it.
std::optional<ApplyResult> first_error(const std::vector<StateError>& errors) {
  if (errors.empty()) {
    return std::nullopt;
  }
  const auto& e = errors.front();
  return failure(e.conflict ? errc::conflict : errc::invalid, e.path, e.message);
}

std::optional<ApplyResult> check_version(const std::optional<std::uint64_t>& expected,
                                         std::uint64_t actual) {
  if (expected && *expected != actual) {
    return failure(errc::version_mismatch, "version",
                   "version " + std::to_string(*expected) + " does not match current version " +
                       std::to_string(actual));
  }
  return std::nullopt;
}

ApplyResult success(ClusterState& state, json::object object) {
  ApplyResult r;
  r.ok = true;
  r.revision = state.revision;
  r.object = std::move(object);
  return r;
}

bool valid_task_id(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

bool valid_node_id(const std::string& id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_sha256_hex(const std::string& hash) {
  return hash.size() == 64 && std::all_of(hash.begin(), hash.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Each op: validate against `state` without touching it, then commit the change and bump the
// revision in one place (commit()), so a rejected command cannot leave a partial change.
// `index_` describes `state_` before and after every operator() (each change to the state's maps
// is mirrored there), so no check needs a pass over the whole state.
class Applier {
 public:
  Applier(ClusterState& state, StateIndex& index) : state_(state), index_(index) {}

  std::uint64_t next_revision() const { return state_.revision + 1; }

  ApplyResult operator()(const NetworkCreate& c) {
    Network network = c.network;
    network.builtin = false;
    network.gateway.clear();
    if (state_.networks.count(network.name) != 0) {
      return failure(errc::conflict, "network.name",
                     "network " + quoted(network.name) + " already exists");
    }
    if (!base::is_object_name(network.name)) {
      return *first_error(validate_network(state_, network, "network"));
    }
    if (network.subnet.empty()) {
      auto subnet = allocate_subnet(state_, state_.subnet_pool);
      if (!subnet) {
        return failure(errc::conflict, "network.subnet",
                       "subnet pool " + state_.subnet_pool + " is exhausted");
      }
      network.subnet = *subnet;
    }
    if (auto e = first_error(validate_network(state_, network, "network"))) {
      return *e;
    }
    network.gateway = *gateway_of(network.subnet);
    network.version = next_revision();
    state_.revision = network.version;
    auto& stored = state_.networks[network.name] = std::move(network);
    return success(state_, to_json(stored));
  }

  ApplyResult operator()(const NetworkDelete& c) {
    auto it = state_.networks.find(c.name);
    if (it == state_.networks.end()) {
      return failure(errc::not_found, "name", "no network " + quoted(c.name));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    if (it->second.builtin) {
      return failure(errc::conflict, "name",
                     "network " + quoted(c.name) + " is built in and cannot be deleted");
    }
    if (const std::string* user = index_.service_on_network(c.name)) {
      return failure(errc::conflict, "name",
                     "network " + quoted(c.name) + " is in use by service " + quoted(*user));
    }
    json::object object = to_json(it->second);
    state_.networks.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

  ApplyResult operator()(const ServiceCreate& c) {
    if (state_.services.count(c.service.name) != 0) {
      return failure(errc::conflict, "service.name",
                     "service " + quoted(c.service.name) + " already exists");
    }
    return put_service(c.service, nullptr);
  }

  ApplyResult operator()(const ServiceUpdate& c) {
    auto it = state_.services.find(c.service.name);
    if (it == state_.services.end()) {
      return failure(errc::not_found, "service.name", "no service " + quoted(c.service.name));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    return put_service(c.service, &it->second);
  }

  ApplyResult operator()(const ServiceDelete& c) {
    auto it = state_.services.find(c.name);
    if (it == state_.services.end()) {
      return failure(errc::not_found, "name", "no service " + quoted(c.name));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    json::object object = to_json(it->second);
    // The service's tasks go with it (as `docker service rm` does): a task of an unknown
    // service is invalid state. Its VIPs are released by erasing the service.
    for (const auto& id : index_.task_ids(c.name)) {
      auto task = state_.tasks.find(id);
      RM_CHECK(task != state_.tasks.end(), "the state index lists a task the state lacks");
      index_.remove_task(task->second);
      state_.tasks.erase(task);
    }
    index_.remove_service(it->second);
    state_.services.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

  ApplyResult operator()(const TaskAdd& c) {
    Task task = c.task;
    if (!valid_task_id(task.id)) {
      return failure(errc::invalid, "task.id", "must be 1..64 characters from [A-Za-z0-9._-]");
    }
    if (state_.tasks.count(task.id) != 0) {
      return failure(errc::conflict, "task.id", "task " + quoted(task.id) + " already exists");
    }
    if (auto e = first_error(validate_task(state_, index_, task, "task", true))) {
      return *e;
    }
    task.version = next_revision();
    state_.revision = task.version;
    auto& stored = state_.tasks[task.id] = std::move(task);
    index_.add_task(stored);
    return success(state_, to_json(stored));
  }

  ApplyResult operator()(const TaskUpdate& c) {
    auto it = state_.tasks.find(c.id);
    if (it == state_.tasks.end()) {
      return failure(errc::not_found, "id", "no task " + quoted(c.id));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    it->second.health = c.health;
    it->second.version = next_revision();
    state_.revision = it->second.version;
    return success(state_, to_json(it->second));
  }

  ApplyResult operator()(const TaskRemove& c) {
    auto it = state_.tasks.find(c.id);
    if (it == state_.tasks.end()) {
      return failure(errc::not_found, "id", "no task " + quoted(c.id));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    json::object object = to_json(it->second);
    index_.remove_task(it->second);
    state_.tasks.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

  ApplyResult operator()(const NodeAdd& c) {
    Node node = c.node;
    if (!valid_node_id(node.id)) {
      return failure(errc::invalid, "node.id", "must be 16 lower-case hex digits");
    }
    if (state_.nodes.count(node.id) != 0) {
      return failure(errc::conflict, "node.id", "node " + quoted(node.id) + " already exists");
    }
    if (state_.removed_nodes.count(node.id) != 0) {
      return failure(errc::conflict, "node.id",
                     "node " + quoted(node.id) + " was removed; a node joins again with a new id");
    }
    if (auto e = first_error(validate_node(state_, index_, node, "node"))) {
      return *e;
    }
    if (node.address.empty()) {
      return failure(errc::invalid, "node.address", "required (admin API IP:PORT)");
    }
    if (node.role == NodeRole::manager && node.peer.empty()) {
      return failure(errc::invalid, "node.peer", "required for managers (Raft IP:PORT)");
    }
    node.version = next_revision();
    state_.revision = node.version;
    auto& stored = state_.nodes[node.id] = std::move(node);
    index_.add_node(stored);
    return success(state_, to_json(stored));
  }

  ApplyResult operator()(const NodeUpdate& c) {
    auto it = state_.nodes.find(c.id);
    if (it == state_.nodes.end()) {
      return failure(errc::not_found, "id", "no node " + quoted(c.id));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    if (!c.status && !c.role) {
      return failure(errc::invalid, "", "nothing to update: give status or role");
    }
    if (c.role == NodeRole::manager && it->second.peer.empty()) {
      return failure(
          errc::invalid, "role",
          "node " + quoted(it->second.name) + " has no peer address; it cannot be a manager");
    }
    if (c.status) {
      it->second.status = *c.status;
    }
    if (c.role) {
      it->second.role = *c.role;
    }
    it->second.version = next_revision();
    state_.revision = it->second.version;
    return success(state_, to_json(it->second));
  }

  ApplyResult operator()(const NodeRemove& c) {
    auto it = state_.nodes.find(c.id);
    if (it == state_.nodes.end()) {
      return failure(errc::not_found, "id", "no node " + quoted(c.id));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    const std::string& name = it->second.name;
    const std::size_t tasks = index_.tasks_on_node(name);
    if (tasks != 0) {
      return failure(errc::conflict, "id",
                     "node " + quoted(name) + " still runs " + std::to_string(tasks) +
                         " task(s); remove them first");
    }
    json::object object = to_json(it->second);
    state_.removed_nodes[c.id] = name;
    index_.remove_node(it->second);
    state_.nodes.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

  ApplyResult operator()(const ClusterSettingsUpdate& c) {
    if (!c.cluster_id && !c.subnet_pool && !c.worker_token_hash && !c.manager_token_hash &&
        !c.overlay_key_epoch) {
      return failure(errc::invalid, "",
                     "nothing to update: give cluster_id, subnet_pool, a token hash or "
                     "overlay_key_epoch");
    }
    if (c.overlay_key_epoch.has_value() != c.overlay_key_epoch_at.has_value()) {
      return failure(errc::invalid, "overlay_key_epoch_at",
                     "overlay_key_epoch and overlay_key_epoch_at go together");
    }
    if (c.overlay_key_epoch && *c.overlay_key_epoch <= state_.overlay_key_epoch) {
      return failure(errc::conflict, "overlay_key_epoch",
                     "the overlay key epoch is already " +
                         std::to_string(state_.overlay_key_epoch) + "; a new one must be greater");
    }
    for (const auto& [field, hash] : {std::pair{"worker_token_hash", &c.worker_token_hash},
                                      std::pair{"manager_token_hash", &c.manager_token_hash}}) {
      if (*hash && !is_sha256_hex(**hash)) {
        return failure(errc::invalid, field, "expected 64 lower-case hex digits (a SHA-256)");
      }
    }
    if (c.cluster_id) {
      if (c.cluster_id->empty()) {
        return failure(errc::invalid, "cluster_id", "must not be empty");
      }
      if (!state_.cluster_id.empty() && state_.cluster_id != *c.cluster_id) {
        return failure(errc::conflict, "cluster_id",
                       "cluster id is already " + quoted(state_.cluster_id));
      }
    }
    if (c.subnet_pool) {
      auto pool = parse_cidr(*c.subnet_pool);
      if (!pool || pool->prefix > 24) {
        return failure(errc::invalid, "subnet_pool",
                       "expected an IPv4 CIDR with prefix /24 or shorter, e.g. 10.10.0.0/16");
      }
    }
    if (c.cluster_id) {
      state_.cluster_id = *c.cluster_id;
    }
    if (c.subnet_pool) {
      state_.subnet_pool = *c.subnet_pool;
    }
    if (c.worker_token_hash) {
      state_.worker_token_hash = *c.worker_token_hash;
    }
    if (c.manager_token_hash) {
      state_.manager_token_hash = *c.manager_token_hash;
    }
    if (c.overlay_key_epoch) {
      state_.overlay_key_epoch = *c.overlay_key_epoch;
      state_.overlay_key_epoch_at = *c.overlay_key_epoch_at;
    }
    state_.revision = next_revision();
    return success(state_, json::object{{"cluster_id", state_.cluster_id},
                                        {"subnet_pool", state_.subnet_pool}});
  }

  ApplyResult operator()(const CaSet& c) {
    if (c.version != state_.ca.version) {
      return failure(errc::version_mismatch, "version",
                     "the CA record is at version " + std::to_string(state_.ca.version) + ", not " +
                         std::to_string(c.version) + " (a rotation started or ended)");
    }
    const ClusterCa& ca = c.ca;
    if (ca.roots.empty() || ca.roots.size() > 2) {
      return failure(errc::invalid, "ca.roots", "expected one root, or two while rotating");
    }
    for (std::size_t i = 0; i < ca.roots.size(); ++i) {
      if (ca.roots[i].find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return failure(errc::invalid, "ca.roots[" + std::to_string(i) + "]",
                       "expected a PEM certificate");
      }
    }
    if ((ca.roots.size() == 2) != ca.rotating()) {
      return failure(errc::invalid, "ca.started", "a rotation has two roots, and only a rotation");
    }
    if (ca.rotating() && (ca.cross_new.empty() || ca.cross_old.empty())) {
      return failure(errc::invalid, "ca.cross_new", "a rotation needs both cross certificates");
    }
    for (const auto& [field, hash] : {std::pair{"worker_token_hash", &c.worker_token_hash},
                                      std::pair{"manager_token_hash", &c.manager_token_hash}}) {
      if (*hash && !is_sha256_hex(**hash)) {
        return failure(errc::invalid, field, "expected 64 lower-case hex digits (a SHA-256)");
      }
    }
    state_.ca = ca;
    if (c.worker_token_hash) {
      state_.worker_token_hash = *c.worker_token_hash;
    }
    if (c.manager_token_hash) {
      state_.manager_token_hash = *c.manager_token_hash;
    }
    state_.ca.version = next_revision();
    state_.revision = state_.ca.version;
    return success(state_, json::object{{"version", state_.ca.version},
                                        {"roots", state_.ca.roots.size()},
                                        {"started", state_.ca.started}});
  }

  ApplyResult operator()(const CaReissued& c) {
    if (!state_.ca.rotating() || state_.ca.started != c.started) {
      return failure(errc::conflict, "started", "no such CA rotation is running");
    }
    if (state_.nodes.count(c.node) == 0) {
      return failure(errc::not_found, "node", "no node " + quoted(c.node));
    }
    state_.ca.reissued.insert(c.node);
    state_.ca.version = next_revision();
    state_.revision = state_.ca.version;
    return success(state_, json::object{{"node", c.node}, {"version", state_.ca.version}});
  }

  // Policies touch nothing else: no index, no cascade (a rule may name a service or network
  // that does not exist, so deleting those leaves rules alone).
  ApplyResult operator()(const PolicyCreate& c) {
    Policy policy = c.policy;
    if (!valid_node_id(policy.id)) {
      return failure(errc::invalid, "policy.id", "must be 16 lower-case hex digits");
    }
    if (state_.policies.count(policy.id) != 0) {
      return failure(errc::conflict, "policy.id",
                     "policy " + quoted(policy.id) + " already exists");
    }
    if (auto e = first_error(validate_policy(state_, policy, "policy"))) {
      return *e;
    }
    policy.version = next_revision();
    state_.revision = policy.version;
    auto& stored = state_.policies[policy.id] = std::move(policy);
    return success(state_, to_json(stored));
  }

  ApplyResult operator()(const PolicyDelete& c) {
    auto it = state_.policies.find(c.id);
    if (it == state_.policies.end()) {
      return failure(errc::not_found, "id", "no policy " + quoted(c.id));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    json::object object = to_json(it->second);
    state_.policies.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

  ApplyResult operator()(const CertRevoke& c) {
    Revocation revocation = c.revocation;
    if (!is_serial(revocation.serial)) {
      return failure(errc::invalid, "revocation.serial",
                     "expected 1 to 40 lower-case hex digits without leading zeros");
    }
    if (!revocation.name.empty() && !base::is_object_name(revocation.name)) {
      return failure(errc::invalid, "revocation.name",
                     "expected a name of [a-z0-9][a-z0-9_.-]{0,62}");
    }
    if (revocation.at < 0) {
      return failure(errc::invalid, "revocation.at", "must not be negative");
    }
    if (state_.revoked.count(revocation.serial) != 0) {
      return failure(errc::conflict, "revocation.serial",
                     "certificate " + quoted(revocation.serial) + " is already revoked");
    }
    revocation.version = next_revision();
    state_.revision = revocation.version;
    auto& stored = state_.revoked[revocation.serial] = std::move(revocation);
    return success(state_, to_json(stored));
  }

  // The manager that proposed it checked the PEM (tls::check_ingress_certificate); apply checks
  // only what it can without parsing certificates, so the state machine stays free of libcrypto.
  ApplyResult operator()(const IngressCertSet& c) {
    IngressCert cert = c.cert;
    if (!base::is_certificate_host(cert.host)) {
      return failure(errc::invalid, "cert.host",
                     "expected a lower-case host name, *.suffix (a wildcard) or * (the default "
                     "certificate)");
    }
    for (const auto& [field, pem] : {std::pair{"cert.cert", &cert.cert}, {"cert.key", &cert.key}}) {
      if (pem->size() > kMaxIngressPem || pem->find("-----BEGIN ") == std::string::npos) {
        return failure(errc::invalid, field, "expected PEM text of at most 64 KiB");
      }
    }
    if (!cert.digest.empty() && !is_sha256_hex(cert.digest)) {
      return failure(errc::invalid, "cert.digest", "expected 64 lower-case hex digits");
    }
    if (cert.not_after < 0) {
      return failure(errc::invalid, "cert.not_after", "must not be negative");
    }
    auto it = state_.ingress_certs.find(cert.host);
    if (c.cert.version != 0) {
      if (it == state_.ingress_certs.end()) {
        return failure(errc::not_found, "cert.host", "no certificate for " + quoted(cert.host));
      }
      if (auto e = check_version(c.cert.version, it->second.version)) {
        return *e;
      }
    }
    cert.version = next_revision();
    state_.revision = cert.version;
    auto& stored = state_.ingress_certs[cert.host] = std::move(cert);
    return success(state_, public_json(stored));
  }

  ApplyResult operator()(const IngressCertDelete& c) {
    auto it = state_.ingress_certs.find(c.host);
    if (it == state_.ingress_certs.end()) {
      return failure(errc::not_found, "host", "no certificate for " + quoted(c.host));
    }
    if (auto e = check_version(c.version, it->second.version)) {
      return *e;
    }
    json::object object = public_json(it->second);
    state_.ingress_certs.erase(it);
    state_.revision = next_revision();
    return success(state_, std::move(object));
  }

 private:
  static constexpr std::size_t kMaxIngressPem = 64 * 1024;

  // tls::serial_of's spelling: 1..40 lower-case hex digits, the first not 0.
  static bool is_serial(std::string_view text) {
    if (text.empty() || text.size() > 40 || text.front() == '0') {
      return false;
    }
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  }

  // Create (existing == nullptr) or replace a service: normalise, validate with the shared
  // validator, then keep the VIPs of networks it stays on and allocate the new ones.
  ApplyResult put_service(const Service& spec, const Service* existing) {
    Service service = spec;
    service.vips.clear();
    if (service.networks.empty()) {
      service.networks.push_back(kIngressNetwork);
    }
    if (auto e = first_error(validate_service(state_, index_, service, "service", "ports", true))) {
      return *e;
    }
    for (const auto& network : service.networks) {
      if (existing != nullptr) {
        auto kept = existing->vips.find(network);
        if (kept != existing->vips.end()) {
          service.vips[network] = kept->second;
          continue;
        }
      }
      auto vip = allocate_vip(state_, index_, network);
      if (!vip) {
        return failure(errc::conflict, "service.networks",
                       "no free address left on network " + quoted(network));
      }
      service.vips[network] = *vip;
    }
    service.version = next_revision();
    state_.revision = service.version;
    if (existing != nullptr) {
      index_.remove_service(*existing);
    }
    auto& stored = state_.services[service.name] = std::move(service);
    index_.add_service(stored);
    return success(state_, to_json(stored));
  }

  ClusterState& state_;
  StateIndex& index_;
};

}  // namespace

ClusterState initial_state() {
  ClusterState state;
  Network ingress;
  ingress.name = kIngressNetwork;
  ingress.subnet = kIngressSubnet;
  ingress.gateway = *gateway_of(kIngressSubnet);
  ingress.builtin = true;
  state.networks.emplace(ingress.name, std::move(ingress));
  return state;
}

ApplyResult apply(ClusterState& state, StateIndex& index, const Command& command) {
  return std::visit(Applier(state, index), command);
}

ApplyResult apply(ClusterState& state, const Command& command) {
  StateIndex index(state);
  return store::apply(state, index, command);
}

ApplyResult apply_json(ClusterState& state, std::string_view command_json) {
  auto decoded = decode_command(command_json);
  if (!decoded) {
    ApplyResult r;
    r.error = decoded.error();
    return r;
  }
  return store::apply(state, *decoded);
}

std::string encode_result(const ApplyResult& result) {
  json::object o;
  o["ok"] = result.ok;
  if (result.ok) {
    o["revision"] = result.revision;
    o["object"] = result.object;
  } else {
    o["error"] = json::object{{"code", to_string(result.error.code)},
                              {"message", result.error.message},
                              {"field", result.error.field}};
  }
  return json::serialize(o);
}

std::optional<ApplyResult> decode_result(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  const json::object* o = ec ? nullptr : value.if_object();
  if (o == nullptr) {
    return std::nullopt;
  }
  const json::value* ok = o->if_contains("ok");
  if (ok == nullptr || !ok->is_bool()) {
    return std::nullopt;
  }
  ApplyResult r;
  r.ok = ok->get_bool();
  if (r.ok) {
    const json::value* revision = o->if_contains("revision");
    const json::value* object = o->if_contains("object");
    if (revision == nullptr || object == nullptr ||
        !(revision->is_uint64() || (revision->is_int64() && revision->get_int64() >= 0))) {
      return std::nullopt;
    }
    r.revision = revision->is_uint64() ? revision->get_uint64()
                                       : static_cast<std::uint64_t>(revision->get_int64());
    r.object = *object;
    return r;
  }
  const json::value* error = o->if_contains("error");
  const json::object* e = error == nullptr ? nullptr : error->if_object();
  if (e == nullptr) {
    return std::nullopt;
  }
  auto text_of = [&](std::string_view key) -> std::optional<std::string> {
    const json::value* v = e->if_contains(key);
    if (v == nullptr || !v->is_string()) {
      return std::nullopt;
    }
    return std::string(v->get_string());
  };
  auto code = text_of("code");
  auto message = text_of("message");
  auto field = text_of("field");
  if (!code || !message || !field) {
    return std::nullopt;
  }
  for (errc c :
       {errc::invalid, errc::conflict, errc::not_found, errc::version_mismatch, errc::key_reused}) {
    if (to_string(c) == *code) {
      r.error = Error{c, *message, *field};
      return r;
    }
  }
  return std::nullopt;
}

}  // namespace routemesh::discovery::store
