#include "discovery/model/state.h"

#include "base/address.h"
#include "discovery/model/labels.h"
#include "discovery/model/state_index.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <string_view>

namespace routemesh::discovery {

namespace {

// Compares strings with digit runs compared as numbers, so "services[2]" sorts before
// "services[10]" and "web.2" before "web.10". Gives validate_state the config file's order.
bool natural_less(std::string_view a, std::string_view b) {
  std::size_t i = 0;
  std::size_t j = 0;
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      std::size_t ie = i;
      std::size_t je = j;
      while (ie < a.size() && is_digit(a[ie])) {
        ++ie;
      }
      while (je < b.size() && is_digit(b[je])) {
        ++je;
      }
      std::string_view na = a.substr(i, ie - i);
      std::string_view nb = b.substr(j, je - j);
      while (na.size() > 1 && na.front() == '0') {
        na.remove_prefix(1);
      }
      while (nb.size() > 1 && nb.front() == '0') {
        nb.remove_prefix(1);
      }
      if (na.size() != nb.size()) {
        return na.size() < nb.size();
      }
      if (na != nb) {
        return na < nb;
      }
      i = ie;
      j = je;
      continue;
    }
    if (a[i] != b[j]) {
      return a[i] < b[j];
    }
    ++i;
    ++j;
  }
  return (a.size() - i) < (b.size() - j);
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string service_path(const std::string& name,
                         const std::map<std::string, std::string>& service_paths) {
  auto it = service_paths.find(name);
  if (it != service_paths.end()) {
    return it->second;
  }
  return "services." + name;
}

// Config-derived tasks ("web.2") point back at their list entry ("services[0].tasks[1]").
std::string task_path(const Task& task, const std::map<std::string, std::string>& service_paths) {
  auto it = service_paths.find(task.service);
  if (it != service_paths.end() && task.id.size() > task.service.size() + 1 &&
      task.id.compare(0, task.service.size(), task.service) == 0 &&
      task.id[task.service.size()] == '.') {
    std::string_view n = std::string_view(task.id).substr(task.service.size() + 1);
    unsigned index = 0;
    auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), index);
    if (ec == std::errc() && ptr == n.data() + n.size() && index >= 1) {
      return it->second + ".tasks[" + std::to_string(index - 1) + "]";
    }
  }
  return "tasks." + task.id;
}

// What one service is checked against: the services other than itself. Two kinds:
// IndexedOthers (every other service of a state, through its StateIndex: validate_service) and
// AcceptedServices (the services validate_state accepted before this one, in config order).
// Each answers claim_owner / port_owner (another service holding it, or nullptr) and
// task_counts (the tasks naming the service).
struct IndexedOthers {
  const StateIndex& index;
  std::string_view self;

  const std::string* claim_owner(const HttpClaim& claim) const {
    return index.claim_owner(claim, self);
  }
  const std::string* port_owner(const PublishedPort& port) const {
    return index.port_owner(port, self);
  }
  StateIndex::TaskCounts task_counts(const std::string& service) const {
    return index.task_counts(service);
  }
};

// (service name, its tasks), sorted by name, one entry per name.
using TaskCountsByService = std::vector<std::pair<std::string_view, StateIndex::TaskCounts>>;

// validate_state's view: the first service (in config order) to claim a host+path or publish a
// port keeps it, so the later one gets the error.
class AcceptedServices {
 public:
  // `tasks`: the tasks of each service name, counted once for the whole state, sorted by name.
  explicit AcceptedServices(const TaskCountsByService& tasks) : tasks_(tasks) {}

  const std::string* claim_owner(const HttpClaim& claim) const {
    auto it = claims_.find(claim);
    return it == claims_.end() ? nullptr : &it->second;
  }
  const std::string* port_owner(const PublishedPort& port) const {
    auto it = published_.find(port);
    return it == published_.end() ? nullptr : &it->second;
  }
  StateIndex::TaskCounts task_counts(const std::string& service) const {
    auto it = std::lower_bound(
        tasks_.begin(), tasks_.end(), std::string_view(service),
        [](const auto& entry, std::string_view name) { return entry.first < name; });
    return it == tasks_.end() || it->first != service ? StateIndex::TaskCounts{} : it->second;
  }
  void accept(const std::string& service, std::set<HttpClaim> claims,
              std::set<PublishedPort> ports) {
    for (auto& claim : claims) {
      claims_.emplace(claim, service);
    }
    for (auto& port : ports) {
      published_.emplace(port, service);
    }
  }

 private:
  const TaskCountsByService& tasks_;
  std::map<HttpClaim, std::string> claims_;
  std::map<PublishedPort, std::string> published_;
};

// What a service holds once checked: the claims and published ports nobody else held.
struct Held {
  std::set<HttpClaim> claims;
  std::set<PublishedPort> ports;
};

// The checks of one service (the one validator behind validate_service and validate_state):
// its own fields, then conflicts with `others` and with itself (a host+path or port listed twice
// is claimed by the service itself the second time). Appends to `errors`.
template <typename Others>
Held check_service(const ClusterState& state, const Others& others, const Service& svc,
                   const std::string& path, std::string_view ports_key, bool task_ports_later,
                   std::vector<StateError>& errors) {
  Held held;
  if (!base::is_object_name(svc.name)) {
    errors.push_back(StateError{path + ".name", "must match [a-z0-9][a-z0-9_.-]{0,62}"});
  }
  const std::string labels_path = path + ".labels";
  Exposure exposure = parse_labels(svc.labels, labels_path, errors);

  for (const auto& http : exposure.http) {
    const std::string label_path = labels_path + "." + http.source_label;
    for (const auto& host : http.hosts) {
      HttpClaim claim{host.host, host.wildcard, http.path_prefix};
      const std::string* owner = others.claim_owner(claim);
      if (owner == nullptr && held.claims.count(claim) != 0) {
        owner = &svc.name;
      }
      if (owner != nullptr) {
        errors.push_back(StateError{label_path,
                                    "host " + to_string(host) + " path " + http.path_prefix +
                                        " already claimed by service " + quoted(*owner) +
                                        " (second claim by service " + quoted(svc.name) + ")",
                                    true});
      } else {
        held.claims.insert(std::move(claim));
      }
    }
    // The task port for HTTP comes from the label, else the first target port, else each
    // task's own port; with none of them the route could never reach a task.
    if (http.port == 0 && svc.ports.empty()) {
      auto counts = others.task_counts(svc.name);
      // The store takes the service before its tasks (task_ports_later); validate_task then
      // demands a port of each task, so only tasks already without one are an error here.
      const bool missing = task_ports_later ? counts.with_port != counts.tasks
                                            : counts.tasks == 0 || counts.with_port != counts.tasks;
      if (missing) {
        errors.push_back(StateError{
            label_path,
            "no task port for HTTP: set mesh.http.port, publish a target port or give every "
            "task a port"});
      }
    }
  }

  for (std::size_t i = 0; i < svc.ports.size(); ++i) {
    const auto& port = svc.ports[i];
    const std::string port_path =
        path + "." + std::string(ports_key) + "[" + std::to_string(i) + "]";
    if (port.published == 0 || port.target == 0) {
      errors.push_back(StateError{port_path, "ports must be 1..65535"});
      continue;
    }
    if (port.protocol != "tcp" && port.protocol != "udp") {
      errors.push_back(StateError{port_path, "protocol must be tcp or udp"});
      continue;
    }
    if (port.mode != "ingress" && port.mode != "host") {
      errors.push_back(StateError{port_path + ".mode", "mode must be ingress or host"});
      continue;
    }
    if (!port.address.empty() && !base::is_ip_literal(port.address)) {
      errors.push_back(
          StateError{port_path + ".address", "address must be an IPv4 or IPv6 literal"});
      continue;
    }
    PublishedPort key{port.protocol, port.published};
    const std::string* owner = others.port_owner(key);
    if (owner == nullptr && held.ports.count(key) != 0) {
      owner = &svc.name;
    }
    if (owner != nullptr) {
      errors.push_back(StateError{port_path,
                                  "published port " + std::to_string(port.published) + "/" +
                                      port.protocol + " already used by service " + quoted(*owner) +
                                      " (second use by service " + quoted(svc.name) + ")",
                                  true});
    } else {
      held.ports.insert(std::move(key));
    }
  }

  std::set<std::string> seen;
  for (std::size_t i = 0; i < svc.networks.size(); ++i) {
    const std::string& name = svc.networks[i];
    const std::string net_path = path + ".networks[" + std::to_string(i) + "]";
    if (state.networks.count(name) == 0) {
      errors.push_back(StateError{net_path, "unknown network " + quoted(name)});
    } else if (!seen.insert(name).second) {
      errors.push_back(StateError{net_path, "network " + quoted(name) + " listed twice"});
    }
  }
  return held;
}

// The checks of one task. `path_of()` gives the task's path; it is called only when there is
// an error to report (validate_state has 100,000s of tasks and builds their paths only then).
// `service`: the task's service in `state` (nullptr when unknown), looked up by the caller.
template <typename PathOf>
void check_task(const ClusterState& state, const StateIndex& index, const Task& task,
                const Service* service, const PathOf& path_of, bool field_paths,
                std::vector<StateError>& errors) {
  if (task.id.empty()) {
    errors.push_back(StateError{path_of() + ".id", "required"});
  }
  if (service == nullptr) {
    errors.push_back(StateError{field_paths ? path_of() + ".service" : path_of(),
                                "unknown service " + quoted(task.service)});
  }
  if (!base::is_ip_literal(task.address)) {
    errors.push_back(StateError{field_paths ? path_of() + ".address" : path_of(),
                                "address " + quoted(task.address) + " is not an IP literal"});
  }
  // The store's path (field_paths): a service may have been created without any port for its
  // HTTP route (validate_service's task_ports_later), so each of its tasks must carry one.
  if (field_paths && task.port == 0 && service != nullptr && service->ports.empty()) {
    std::vector<StateError> ignored;
    Exposure exposure = parse_labels(service->labels, "labels", ignored);
    bool needs_port = std::any_of(exposure.http.begin(), exposure.http.end(),
                                  [](const auto& http) { return http.port == 0; });
    if (needs_port) {
      errors.push_back(StateError{path_of() + ".port",
                                  "service " + quoted(task.service) +
                                      " has no mesh.http.port label and no published target port; "
                                      "the task needs a port (IP:PORT)"});
    }
  }
  if (!task.node.empty() && !state.nodes.empty() && !index.has_node_named(task.node)) {
    errors.push_back(StateError{path_of() + ".node", "unknown node " + quoted(task.node)});
  }
}

bool valid_node_name(const std::string& name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string cidr_text(std::uint32_t network, unsigned prefix) {
  return std::to_string(network >> 24) + "." + std::to_string((network >> 16) & 0xff) + "." +
         std::to_string((network >> 8) & 0xff) + "." + std::to_string(network & 0xff) + "/" +
         std::to_string(prefix);
}

}  // namespace

std::vector<StateError> validate_service(const ClusterState& state, const StateIndex& index,
                                         const Service& service, const std::string& path,
                                         std::string_view ports_key, bool task_ports_later) {
  std::vector<StateError> errors;
  check_service(state, IndexedOthers{index, service.name}, service, path, ports_key,
                task_ports_later, errors);
  return errors;
}

std::vector<StateError> validate_service(const ClusterState& state, const Service& service,
                                         const std::string& path, std::string_view ports_key,
                                         bool task_ports_later) {
  return validate_service(state, StateIndex(state), service, path, ports_key, task_ports_later);
}

std::vector<StateError> validate_task(const ClusterState& state, const StateIndex& index,
                                      const Task& task, const std::string& path, bool field_paths) {
  std::vector<StateError> errors;
  auto service = state.services.find(task.service);
  check_task(
      state, index, task, service == state.services.end() ? nullptr : &service->second,
      [&path]() -> const std::string& { return path; }, field_paths, errors);
  return errors;
}

std::vector<StateError> validate_task(const ClusterState& state, const Task& task,
                                      const std::string& path, bool field_paths) {
  return validate_task(state, StateIndex(state), task, path, field_paths);
}

std::optional<std::string> dns_address_of(std::string_view subnet) {
  const auto cidr = base::parse_ipv4_cidr(subnet);
  if (!cidr || cidr->prefix > 30) {
    return std::nullopt;
  }
  const std::uint32_t a = cidr->network + 2;
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

std::vector<StateError> validate_network(const ClusterState& state, const Network& network,
                                         const std::string& path) {
  std::vector<StateError> errors;
  if (!base::is_object_name(network.name)) {
    errors.push_back(StateError{path + ".name", "must match [a-z0-9][a-z0-9_.-]{0,62}"});
  }
  if (network.subnet.empty()) {
    return errors;
  }
  const auto cidr = base::parse_ipv4_cidr(network.subnet);
  if (!cidr || cidr->prefix < 8 || cidr->prefix > 30) {
    errors.push_back(StateError{
        path + ".subnet",
        "expected an IPv4 CIDR with prefix /8../30 and no host bits set, e.g. 10.0.1.0/24"});
    return errors;
  }
  const std::uint64_t first = cidr->network;
  const std::uint64_t last = first + (std::uint64_t{1} << (32 - cidr->prefix)) - 1;
  for (const auto& [name, other] : state.networks) {
    if (name == network.name) {
      continue;
    }
    const auto other_cidr = base::parse_ipv4_cidr(other.subnet);
    if (!other_cidr) {
      continue;
    }
    const std::uint64_t other_first = other_cidr->network;
    const std::uint64_t other_last =
        other_first + (std::uint64_t{1} << (32 - other_cidr->prefix)) - 1;
    if (first <= other_last && other_first <= last) {
      errors.push_back(StateError{path + ".subnet",
                                  "subnet " + cidr_text(cidr->network, cidr->prefix) +
                                      " overlaps network " + quoted(name) + " (" + other.subnet +
                                      ")",
                                  true});
      break;
    }
  }
  return errors;
}

std::vector<StateError> validate_node(const ClusterState& state, const StateIndex& index,
                                      const Node& node, const std::string& path) {
  (void)state;
  std::vector<StateError> errors;
  if (node.id.empty()) {
    errors.push_back(StateError{path + ".id", "required"});
  }
  if (!valid_node_name(node.name)) {
    errors.push_back(StateError{path + ".name", "must be 1..253 characters from [A-Za-z0-9._-]"});
  } else if (const std::string* other = index.node_named(node.name, node.id)) {
    errors.push_back(StateError{
        path + ".name",
        "node name " + quoted(node.name) + " already used by node " + quoted(*other), true});
  }
  if (!node.address.empty() && !base::parse_host_port(node.address)) {
    errors.push_back(StateError{path + ".address", "expected IP:PORT"});
  }
  if (!node.peer.empty() && !base::parse_host_port(node.peer)) {
    errors.push_back(StateError{path + ".peer", "expected IP:PORT"});
  }
  if (!node.overlay.empty() && !base::parse_host_port(node.overlay)) {
    errors.push_back(StateError{path + ".overlay", "expected IP:PORT"});
  }
  return errors;
}

std::vector<StateError> validate_node(const ClusterState& state, const Node& node,
                                      const std::string& path) {
  return validate_node(state, StateIndex(state), node, path);
}

std::vector<StateError> validate_state(const ClusterState& state,
                                       const std::map<std::string, std::string>& service_paths) {
  std::vector<StateError> errors;
  auto append = [&errors](std::vector<StateError> more) {
    errors.insert(errors.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  };

  // Nodes by the index; services are checked against those accepted before them and against
  // their tasks' counts.
  StateIndex index;
  for (const auto& [id, node] : state.nodes) {
    index.add_node(node);
  }

  // One pass over the tasks (there may be 100,000s, scattered in memory) counts them per
  // service and checks each. Tasks are keyed by id, so a service's tasks usually come in one
  // run ("web.1", "web.2", ...): each run costs one lookup of its service. Tasks are reported
  // in the order of their paths, after the services; only tasks with errors need a path, so the
  // rest are checked without building or sorting one (the sort below is stable: tasks with
  // equal paths keep id order).
  // (A vector of runs, sorted and merged below: no allocation per service.)
  TaskCountsByService task_counts;
  std::vector<std::pair<std::string, std::vector<StateError>>> failed;
  StateIndex::TaskCounts* counts = nullptr;
  const Service* service = nullptr;
  std::string_view run;
  for (const auto& entry : state.tasks) {
    const Task& task = entry.second;  // a named reference: clang 14 cannot capture a binding
    if (counts == nullptr || task.service != run) {
      run = task.service;
      counts = &task_counts.emplace_back(run, StateIndex::TaskCounts{}).second;
      auto it = state.services.find(task.service);
      service = it == state.services.end() ? nullptr : &it->second;
    }
    ++counts->tasks;
    if (task.port != 0) {
      ++counts->with_port;
    }
    std::string path;
    auto path_of = [&]() -> const std::string& {
      if (path.empty()) {
        path = task_path(task, service_paths);
      }
      return path;
    };
    std::vector<StateError> task_errors;
    check_task(state, index, task, service, path_of, false, task_errors);
    if (!task_errors.empty()) {
      failed.emplace_back(path_of(), std::move(task_errors));
    }
  }
  std::stable_sort(task_counts.begin(), task_counts.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::size_t kept = 0;
  for (std::size_t i = 0; i < task_counts.size(); ++i) {
    if (kept != 0 && task_counts[kept - 1].first == task_counts[i].first) {
      task_counts[kept - 1].second.tasks += task_counts[i].second.tasks;
      task_counts[kept - 1].second.with_port += task_counts[i].second.with_port;
    } else {
      task_counts[kept++] = task_counts[i];
    }
  }
  task_counts.resize(kept);

  // Networks and nodes are checked against all others; an overlap or a duplicate name is then
  // reported at both objects, which is fine for states the config file never produces (it has
  // neither). Networks are few (a /24 each from the pool), so their overlaps are checked
  // pairwise.
  for (const auto& [name, network] : state.networks) {
    append(validate_network(state, network, "networks." + name));
  }
  for (const auto& [id, node] : state.nodes) {
    append(validate_node(state, index, node, "nodes." + id));
  }

  // Visit services in the order of their paths (the config file's order when known), so
  // "the second one" of a conflict is the one written second.
  std::vector<std::pair<std::string, const Service*>> services;
  services.reserve(state.services.size());
  for (const auto& [name, svc] : state.services) {
    services.emplace_back(service_path(name, service_paths), &svc);
  }
  std::stable_sort(services.begin(), services.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  AcceptedServices accepted(task_counts);
  for (const auto& [path, svc] : services) {
    Held held = check_service(state, accepted, *svc, path, "published", false, errors);
    accepted.accept(svc->name, std::move(held.claims), std::move(held.ports));
  }

  std::stable_sort(failed.begin(), failed.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  for (auto& [path, task_errors] : failed) {
    append(std::move(task_errors));
  }
  return errors;
}

}  // namespace routemesh::discovery
