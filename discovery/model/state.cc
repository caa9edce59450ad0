#include "discovery/model/state.h"

#include "base/address.h"
#include "discovery/model/labels.h"

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

// Host+path claims and published ports of the services accepted so far. validate_state adds
// services in config order (so the second of two conflicting services gets the error);
// validate_service first adds every other service silently, then checks the one given.
class ServiceChecker {
 public:
  explicit ServiceChecker(const ClusterState& state) : state_(state) {
    for (const auto& [id, task] : state.tasks) {
      auto& counts = task_ports_[task.service];
      ++counts.first;
      if (task.port != 0) {
        ++counts.second;
      }
    }
  }

  void check_and_add(const Service& svc, const std::string& path, std::string_view ports_key,
                     std::vector<StateError>& errors, bool task_ports_later = false) {
    if (!base::is_object_name(svc.name)) {
      errors.push_back(StateError{path + ".name", "must match [a-z0-9][a-z0-9_.-]{0,62}"});
    }
    const std::string labels_path = path + ".labels";
    Exposure exposure = parse_labels(svc.labels, labels_path, errors);

    for (const auto& http : exposure.http) {
      const std::string label_path = labels_path + "." + http.source_label;
      for (const auto& host : http.hosts) {
        Claim claim{host.host, host.wildcard, http.path_prefix};
        auto [it, inserted] = claims_.emplace(claim, svc.name);
        if (!inserted) {
          errors.push_back(StateError{label_path,
                                      "host " + to_string(host) + " path " + http.path_prefix +
                                          " already claimed by service " + quoted(it->second) +
                                          " (second claim by service " + quoted(svc.name) + ")",
                                      true});
        }
      }
      // The task port for HTTP comes from the label, else the first target port, else each
      // task's own port; with none of them the route could never reach a task.
      if (http.port == 0 && svc.ports.empty()) {
        auto counts = task_ports_[svc.name];
        // The store takes the service before its tasks (task_ports_later); validate_task then
        // demands a port of each task, so only tasks already without one are an error here.
        const bool missing = task_ports_later ? counts.second != counts.first
                                              : counts.first == 0 || counts.second != counts.first;
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
      auto [it, inserted] =
          published_.emplace(std::make_pair(port.protocol, port.published), svc.name);
      if (!inserted) {
        errors.push_back(StateError{port_path,
                                    "published port " + std::to_string(port.published) + "/" +
                                        port.protocol + " already used by service " +
                                        quoted(it->second) + " (second use by service " +
                                        quoted(svc.name) + ")",
                                    true});
      }
    }

    std::set<std::string> seen;
    for (std::size_t i = 0; i < svc.networks.size(); ++i) {
      const std::string& name = svc.networks[i];
      const std::string net_path = path + ".networks[" + std::to_string(i) + "]";
      if (state_.networks.count(name) == 0) {
        errors.push_back(StateError{net_path, "unknown network " + quoted(name)});
      } else if (!seen.insert(name).second) {
        errors.push_back(StateError{net_path, "network " + quoted(name) + " listed twice"});
      }
    }
  }

 private:
  struct Claim {
    std::string host;
    bool wildcard;
    std::string path;
    auto operator<=>(const Claim&) const = default;
  };

  const ClusterState& state_;
  std::map<std::string, std::pair<std::size_t, std::size_t>> task_ports_;   // tasks, with port
  std::map<Claim, std::string> claims_;                                     // -> service name
  std::map<std::pair<std::string, std::uint16_t>, std::string> published_;  // (proto, port)
};

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

std::vector<StateError> validate_service(const ClusterState& state, const Service& service,
                                         const std::string& path, std::string_view ports_key,
                                         bool task_ports_later) {
  ServiceChecker checker(state);
  std::vector<StateError> ignored;
  for (const auto& [name, other] : state.services) {
    if (name != service.name) {
      checker.check_and_add(other, "services." + name, ports_key, ignored);
    }
  }
  std::vector<StateError> errors;
  checker.check_and_add(service, path, ports_key, errors, task_ports_later);
  return errors;
}

std::vector<StateError> validate_task(const ClusterState& state, const Task& task,
                                      const std::string& path, bool field_paths) {
  std::vector<StateError> errors;
  if (task.id.empty()) {
    errors.push_back(StateError{path + ".id", "required"});
  }
  if (state.services.count(task.service) == 0) {
    errors.push_back(StateError{field_paths ? path + ".service" : path,
                                "unknown service " + quoted(task.service)});
  }
  if (!base::is_ip_literal(task.address)) {
    errors.push_back(StateError{field_paths ? path + ".address" : path,
                                "address " + quoted(task.address) + " is not an IP literal"});
  }
  // The store's path (field_paths): a service may have been created without any port for its
  // HTTP route (validate_service's task_ports_later), so each of its tasks must carry one.
  auto svc = state.services.find(task.service);
  if (field_paths && task.port == 0 && svc != state.services.end() && svc->second.ports.empty()) {
    std::vector<StateError> ignored;
    Exposure exposure = parse_labels(svc->second.labels, "labels", ignored);
    bool needs_port = std::any_of(exposure.http.begin(), exposure.http.end(),
                                  [](const auto& http) { return http.port == 0; });
    if (needs_port) {
      errors.push_back(StateError{
          path + ".port", "service " + quoted(task.service) +
                              " has no mesh.http.port label and no published target port; the "
                              "task needs a port (IP:PORT)"});
    }
  }
  if (!task.node.empty() && !state.nodes.empty()) {
    bool known = std::any_of(state.nodes.begin(), state.nodes.end(),
                             [&](const auto& kv) { return kv.second.name == task.node; });
    if (!known) {
      errors.push_back(StateError{path + ".node", "unknown node " + quoted(task.node)});
    }
  }
  return errors;
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

std::vector<StateError> validate_node(const ClusterState& state, const Node& node,
                                      const std::string& path) {
  std::vector<StateError> errors;
  if (node.id.empty()) {
    errors.push_back(StateError{path + ".id", "required"});
  }
  if (!valid_node_name(node.name)) {
    errors.push_back(StateError{path + ".name", "must be 1..253 characters from [A-Za-z0-9._-]"});
  } else {
    for (const auto& [id, other] : state.nodes) {
      if (id != node.id && other.name == node.name) {
        errors.push_back(StateError{
            path + ".name",
            "node name " + quoted(node.name) + " already used by node " + quoted(id), true});
        break;
      }
    }
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

std::vector<StateError> validate_state(const ClusterState& state,
                                       const std::map<std::string, std::string>& service_paths) {
  std::vector<StateError> errors;
  auto append = [&errors](std::vector<StateError> more) {
    errors.insert(errors.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  };

  // Networks and nodes are checked pairwise against all others; an overlap or a duplicate
  // name is then reported at both objects, which is fine for states the config file never
  // produces (it has neither).
  for (const auto& [name, network] : state.networks) {
    append(validate_network(state, network, "networks." + name));
  }
  for (const auto& [id, node] : state.nodes) {
    append(validate_node(state, node, "nodes." + id));
  }

  // Visit services in the order of their paths (the config file's order when known), so
  // "the second one" of a conflict is the one written second.
  std::vector<std::pair<std::string, const Service*>> services;
  for (const auto& [name, svc] : state.services) {
    services.emplace_back(service_path(name, service_paths), &svc);
  }
  std::stable_sort(services.begin(), services.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  ServiceChecker checker(state);
  for (const auto& [path, svc] : services) {
    checker.check_and_add(*svc, path, "published", errors);
  }

  std::vector<std::pair<std::string, const Task*>> tasks;
  for (const auto& [id, task] : state.tasks) {
    tasks.emplace_back(task_path(task, service_paths), &task);
  }
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  for (const auto& [path, task] : tasks) {
    append(validate_task(state, *task, path));
  }
  return errors;
}

}  // namespace routemesh::discovery
