#include "mesh/policy/policy.h"

#include <arpa/inet.h>
#include <algorithm>
#include <tuple>

namespace routemesh::mesh::policy {

namespace {

using discovery::PolicyPeerKind;

bool contains(std::span<const std::string> list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// The source is on `network`: a task of a service on it, or an address in its subnet.
bool on_network(const Source& source, std::string_view network,
                std::span<const NetworkRange> networks) {
  if (contains(source.networks, network)) {
    return true;
  }
  for (const auto& n : networks) {
    if (n.name == network) {
      return base::in_range(n.subnet, source.address, source.v6);
    }
  }
  return false;
}

bool from_matches(const Rule& rule, const Source& source, std::span<const NetworkRange> networks) {
  switch (rule.from.kind) {
    case PolicyPeerKind::service:
      return contains(source.services, rule.from.name);
    case PolicyPeerKind::network:
      return on_network(source, rule.from.name, networks);
    case PolicyPeerKind::cidr:
      return base::in_range(rule.from.range, source.address, source.v6);
  }
  return false;
}

// Larger is more specific, then more urgent: (kind, prefix, names a port, priority, deny).
auto rank_of(const Rule& r) {
  const int kind = r.from.kind == PolicyPeerKind::service   ? 3
                   : r.from.kind == PolicyPeerKind::network ? 2
                                                            : 1;
  const unsigned prefix = r.from.kind == PolicyPeerKind::cidr ? r.from.range.prefix : 0;
  return std::make_tuple(kind, prefix, r.port != 0, r.priority, r.action == PolicyAction::deny);
}

}  // namespace

bool outranks(const Rule& a, const Rule& b) {
  return rank_of(b) < rank_of(a);
}

Decision decide(const Source& source, const Destination& destination, std::span<const Rule> rules,
                std::span<const NetworkRange> networks) {
  const Rule* best = nullptr;
  for (const auto& rule : rules) {
    if (rule.service != destination.service) {
      continue;
    }
    if (destination.entry == Entry::published ? rule.port != destination.port
                                              : rule.port != 0 && rule.port != destination.port) {
      continue;
    }
    if (!from_matches(rule, source, networks)) {
      continue;
    }
    if (best == nullptr || outranks(rule, *best)) {
      best = &rule;
    }
  }
  if (best != nullptr) {
    return Decision{best->action == PolicyAction::allow, best, Reason::rule};
  }
  if (destination.entry == Entry::published) {
    return Decision{true, nullptr, Reason::published};
  }
  if (on_network(source, destination.network, networks)) {
    return Decision{true, nullptr, Reason::same_network};
  }
  return Decision{false, nullptr, Reason::other_network};
}

std::string_view to_string(Reason reason) {
  switch (reason) {
    case Reason::rule:
      return "rule";
    case Reason::same_network:
      return "same network";
    case Reason::other_network:
      return "isolation (another network)";
    case Reason::published:
      return "published port";
  }
  return "?";
}

std::string describe(const Decision& decision) {
  if (decision.rule != nullptr) {
    return "policy " + decision.rule->id;
  }
  return std::string(to_string(decision.reason));
}

Compiled compile(const discovery::ClusterState& state) {
  Compiled c;
  for (const auto& [id, p] : state.policies) {
    auto from = discovery::parse_policy_peer(p.from);
    auto to = discovery::parse_policy_peer(p.to);
    if (!from || !to || to->kind != PolicyPeerKind::service) {
      continue;
    }
    c.rules[to->name].push_back(Rule{id, std::move(*from), to->name, p.port, p.action, p.priority});
  }
  for (const auto& [name, n] : state.networks) {
    if (auto range = base::parse_ip_range(n.subnet)) {
      c.networks.push_back(NetworkRange{name, *range});
    }
  }
  for (const auto& [id, task] : state.tasks) {
    auto service = state.services.find(task.service);
    if (service == state.services.end()) {
      continue;
    }
    std::array<std::uint8_t, 16> bytes{};
    std::size_t size = 0;
    if (::inet_pton(AF_INET, task.address.c_str(), bytes.data()) == 1) {
      size = 4;
    } else if (::inet_pton(AF_INET6, task.address.c_str(), bytes.data()) == 1) {
      size = 16;
    } else {
      continue;
    }
    SourceInfo& info = c.sources[std::string(reinterpret_cast<const char*>(bytes.data()), size)];
    info.services.push_back(task.service);
    const auto& nets = service->second.networks;
    if (nets.empty()) {
      info.networks.push_back("ingress");  // the store's default network (no networks given)
    }
    info.networks.insert(info.networks.end(), nets.begin(), nets.end());
  }
  for (auto& [key, info] : c.sources) {
    for (auto* list : {&info.networks, &info.services}) {
      std::sort(list->begin(), list->end());
      list->erase(std::unique(list->begin(), list->end()), list->end());
    }
  }
  return c;
}

Decision check(const Compiled& compiled, const std::uint8_t* address, bool v6,
               const Destination& destination) {
  Source source;
  source.address = address;
  source.v6 = v6;
  const auto it =
      compiled.sources.find(std::string_view(reinterpret_cast<const char*>(address), v6 ? 16 : 4));
  if (it != compiled.sources.end()) {
    source.networks = it->second.networks;
    source.services = it->second.services;
  }
  const auto rules = compiled.rules.find(destination.service);
  std::span<const Rule> matching;
  if (rules != compiled.rules.end()) {
    matching = rules->second;
  }
  return decide(source, destination, matching, compiled.networks);
}

}  // namespace routemesh::mesh::policy
