#include "discovery/dns/view.h"

#include "base/address.h"
#include "discovery/model/labels.h"
#include "discovery/model/state.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace routemesh::discovery::dns {

namespace {

Labels split(const std::string& name) {
  Labels out;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = name.find('.', start);
    const std::size_t end = dot == std::string::npos ? name.size() : dot;
    out.push_back(name.substr(start, end - start));
    if (dot == std::string::npos) {
      break;
    }
    start = dot + 1;
  }
  return out;
}

Labels concat(Labels a, const Labels& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A task id can name the task in DNS when it is one label (RFC 1035 §2.3.4: at most 63
// octets) without dots.
bool is_label(const std::string& text) {
  return !text.empty() && text.size() <= 63 && text.find('.') == std::string::npos;
}

// The route table's rule (mesh/route_table.cc, make_endpoint), on the state itself.
bool takes_traffic(const ClusterState& state, const Task& task, bool checked) {
  if (task.health == TaskHealth::unhealthy || task.health == TaskHealth::draining) {
    return false;
  }
  if (checked && !task.node.empty() && task.health == TaskHealth::unknown) {
    return false;
  }
  for (const auto& [id, node] : state.nodes) {
    if (node.name == task.node && node.status == NodeStatus::down) {
      return false;
    }
  }
  return true;
}

// The ports a service's VIP accepts on (mesh/route_table.cc: the target ports and the HTTP
// routes' ports).
std::vector<std::uint16_t> target_ports(const Service& service, const Exposure& exposure) {
  std::vector<std::uint16_t> ports;
  const std::uint16_t first = service.ports.empty() ? 0 : service.ports.front().target;
  for (const auto& p : service.ports) {
    ports.push_back(p.target);
  }
  for (const auto& http : exposure.http) {
    ports.push_back(http.port != 0 ? http.port : first);
  }
  ports.erase(std::remove(ports.begin(), ports.end(), std::uint16_t{0}), ports.end());
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

}  // namespace

std::optional<Address> parse_address(const std::string& text) {
  Address a;
  if (::inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    return a;
  }
  if (::inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

bool may_query(const NetworkView& network, const Address& source) {
  if (!source.v6 && network.subnet) {
    const std::uint32_t a = (std::uint32_t{source.bytes[0]} << 24) |
                            (std::uint32_t{source.bytes[1]} << 16) |
                            (std::uint32_t{source.bytes[2]} << 8) | source.bytes[3];
    const unsigned prefix = network.subnet->prefix;
    const std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
    if ((a & mask) == network.subnet->network) {
      return true;
    }
  }
  return network.ptr.count(source) != 0;
}

std::string to_string(const Address& address) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(address.v6 ? AF_INET6 : AF_INET, address.bytes.data(), buf, sizeof buf);
  return buf;
}

View compile_view(const ClusterState& state) {
  View view;
  view.revision = state.revision;
  for (const auto& [name, network] : state.networks) {
    view.network_names.insert(name);
    if (auto cidr = base::parse_ipv4_cidr(network.subnet)) {
      view.subnets.push_back(*cidr);
    }
  }
  std::map<std::string, std::vector<const Task*>> tasks_of;
  for (const auto& [id, task] : state.tasks) {
    tasks_of[task.service].push_back(&task);
  }
  for (const auto& [name, network] : state.networks) {
    auto dns = dns_address_of(network.subnet);
    if (!dns) {
      continue;
    }
    NetworkView& nv = view.by_address[*dns];
    nv.name = name;
    nv.dns_address = *dns;
    nv.subnet = base::parse_ipv4_cidr(network.subnet);
  }
  std::map<std::string, NetworkView*> by_name;
  for (auto& [address, nv] : view.by_address) {
    by_name[nv.name] = &nv;
  }

  for (const auto& [name, service] : state.services) {
    view.service_names.insert(name);
    std::vector<StateError> errors;
    const Exposure exposure = parse_labels(service.labels, "services." + name, errors);
    ServiceView sv;
    sv.name = name;
    sv.mode = service.endpoint_mode;
    sv.target_ports = target_ports(service, exposure);
    for (const Task* task : tasks_of[name]) {
      auto address = parse_address(task->address);
      if (!address) {
        continue;
      }
      view.addresses.insert(*address);
      sv.tasks.push_back(TaskView{task->id, *address, task->port,
                                  takes_traffic(state, *task, exposure.health.has_value())});
    }
    for (const auto& [network, vip] : service.vips) {
      if (auto a = parse_address(vip)) {
        view.addresses.insert(*a);
      }
    }
    std::vector<std::string> networks = service.networks;
    for (const auto& [network, vip] : service.vips) {
      if (std::find(networks.begin(), networks.end(), network) == networks.end()) {
        networks.push_back(network);
      }
    }
    for (const auto& network : networks) {
      auto it = by_name.find(network);
      if (it == by_name.end()) {
        continue;
      }
      NetworkView& nv = *it->second;
      ServiceView here = sv;
      if (auto vip = service.vips.find(network); vip != service.vips.end()) {
        here.vip = parse_address(vip->second);
      }
      const Labels service_name = concat(split(name), split(network));
      if (here.vip) {
        nv.ptr[*here.vip].push_back(service_name);
      }
      for (const auto& task : here.tasks) {
        Labels task_name = concat({"tasks"}, service_name);
        if (is_label(task.id)) {
          std::string id = task.id;
          for (char& c : id) {
            if (c >= 'A' && c <= 'Z') {
              c = static_cast<char>(c - 'A' + 'a');
            }
          }
          task_name.insert(task_name.begin(), std::move(id));
        }
        nv.ptr[task.address].push_back(std::move(task_name));
      }
      nv.services.emplace(name, std::move(here));
    }
  }
  return view;
}

}  // namespace routemesh::discovery::dns
