#include "mesh/policy/policy.h"

#include "base/prefetch.h"

#include <arpa/inet.h>
#include <algorithm>
#include <cstring>
#include <string_view>
#include <tuple>
#include <unordered_map>

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

bool parse_address(const std::string& text, AddressKey& key) {
  if (::inet_pton(AF_INET, text.c_str(), key.bytes.data()) == 1) {
    key.size = 4;
  } else if (::inet_pton(AF_INET6, text.c_str(), key.bytes.data()) == 1) {
    key.size = 16;
  } else {
    return false;
  }
  return true;
}

StateView view(const discovery::ClusterState& state) {
  StateView v;
  v.services.reserve(state.services.size());
  std::unordered_map<std::string_view, std::uint32_t> by_name;
  by_name.reserve(state.services.size());
  for (const auto& [name, service] : state.services) {
    by_name.emplace(name, static_cast<std::uint32_t>(v.services.size()));
    v.services.push_back(&service);
  }
  v.facts.reserve(state.tasks.size());
  v.tasks.reserve(state.tasks.size());
  // A service's tasks are mostly adjacent in id order ("web.1", "web.2", ...): each run of
  // them costs one lookup of the service.
  std::string_view run_service;
  auto service = by_name.end();
  // A map's walk waits for each node in turn; an iterator a few nodes ahead asks for each
  // task's cache lines before the loop reads them (the walk itself then stays in the cache).
  constexpr int kAhead = 6;
  auto ahead = state.tasks.begin();
  for (int k = 0; k < kAhead && ahead != state.tasks.end(); ++k) {
    ++ahead;
  }
  for (const auto& [id, task] : state.tasks) {
    if (ahead != state.tasks.end()) {
      base::prefetch_object(&*ahead);
      ++ahead;
    }
    if (service == by_name.end() || task.service != run_service) {
      run_service = task.service;
      service = by_name.find(run_service);
    }
    if (service == by_name.end()) {
      continue;
    }
    StateView::TaskFact& fact = v.facts.emplace_back();
    if (!parse_address(task.address, fact.address)) {
      v.facts.pop_back();
      continue;
    }
    fact.service = service->second;
    v.tasks.push_back(&task);
  }
  return v;
}

Compiled compile(const discovery::ClusterState& state) {
  return compile(state, view(state));
}

Compiled compile(const discovery::ClusterState& state, const StateView& view) {
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
  c.facts.reserve(view.services.size());
  for (const discovery::Service* service : view.services) {
    SourceInfo f;
    f.services.push_back(service->name);
    if (service->networks.empty()) {
      f.networks.emplace_back("ingress");  // the store's default network (no networks given)
    } else {
      f.networks.assign(service->networks.begin(), service->networks.end());
      std::sort(f.networks.begin(), f.networks.end());
      f.networks.erase(std::unique(f.networks.begin(), f.networks.end()), f.networks.end());
    }
    c.facts.push_back(std::move(f));
  }
  const std::size_t per_service = c.facts.size();
  // At 100,000 tasks the index is a few MiB: each slot is asked for a few addresses ahead
  // (AddressIndex::prefetch), so the cache misses overlap; waiting on each in turn was most of
  // the compile's time here.
  constexpr std::size_t kAhead = 8;
  const auto& facts = view.facts;
  c.sources.reserve(facts.size());
  for (std::size_t i = 0; i < facts.size(); ++i) {
    if (i + kAhead < facts.size()) {
      c.sources.prefetch(facts[i + kAhead].address);
    }
    const AddressKey& key = facts[i].address;
    const std::uint32_t service = facts[i].service;
    auto [index, inserted] = c.sources.try_emplace(key, service);
    if (inserted || *index == service) {
      continue;
    }
    // Tasks of several services on one address: the union, in an entry of the address's own.
    if (*index < per_service) {
      SourceInfo own = c.facts[*index];
      *index = static_cast<std::uint32_t>(c.facts.size());
      c.facts.push_back(std::move(own));
    }
    const SourceInfo& more = c.facts[service];
    SourceInfo& merged = c.facts[*index];
    for (auto [to, from] : {std::pair{&merged.networks, &more.networks},
                            std::pair{&merged.services, &more.services}}) {
      to->insert(to->end(), from->begin(), from->end());
      std::sort(to->begin(), to->end());
      to->erase(std::unique(to->begin(), to->end()), to->end());
    }
  }
  return c;
}

const SourceInfo* Compiled::source(const std::uint8_t* address, bool v6) const {
  AddressKey key;
  key.size = v6 ? 16 : 4;
  std::memcpy(key.bytes.data(), address, key.size);
  const std::uint32_t* index = sources.find(key);
  return index == nullptr ? nullptr : &facts[*index];
}

namespace {

std::uint32_t v4_of(const AddressKey& key) {
  return std::uint32_t{key.bytes[0]} << 24 | std::uint32_t{key.bytes[1]} << 16 |
         std::uint32_t{key.bytes[2]} << 8 | key.bytes[3];
}

// Room for n in a table kept at most half full: a power of two, at least 8.
std::size_t capacity_for(std::size_t n) {
  std::size_t capacity = 8;
  while (capacity < 2 * n) {
    capacity *= 2;
  }
  return capacity;
}

}  // namespace

std::size_t AddressIndex::v4_slot_hint(std::uint32_t key) const {
  // Fibonacci hashing: neighbouring addresses (a subnet's tasks) land far apart.
  const auto h = static_cast<std::size_t>((std::uint64_t{key} * 0x9e3779b97f4a7c15ULL) >> 32);
  return h & (v4_.size() - 1);
}

std::size_t AddressIndex::v4_slot(std::uint32_t key) const {
  const std::size_t mask = v4_.size() - 1;
  for (std::size_t i = v4_slot_hint(key);; i = (i + 1) & mask) {
    if (v4_[i].value == kEmpty || v4_[i].key == key) {
      return i;
    }
  }
}

std::size_t AddressIndex::v6_slot(const AddressKey& key) const {
  const std::size_t h = std::hash<std::string_view>{}(key.view());
  const std::size_t mask = v6_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    if (v6_[i].key.size == 0 || v6_[i].key == key) {
      return i;
    }
  }
}

void AddressIndex::grow_v4(std::size_t capacity) {
  std::vector<V4Slot> old = std::move(v4_);
  v4_.assign(capacity, V4Slot{});
  for (const auto& slot : old) {
    if (slot.value != kEmpty) {
      v4_[v4_slot(slot.key)] = slot;
    }
  }
}

void AddressIndex::grow_v6(std::size_t capacity) {
  std::vector<V6Slot> old = std::move(v6_);
  v6_.assign(capacity, V6Slot{});
  for (const auto& slot : old) {
    if (slot.key.size != 0) {
      v6_[v6_slot(slot.key)] = slot;
    }
  }
}

void AddressIndex::reserve(std::size_t n) {
  if (const std::size_t capacity = capacity_for(n); capacity > v4_.size()) {
    grow_v4(capacity);
  }
}

std::pair<std::uint32_t*, bool> AddressIndex::try_emplace(const AddressKey& key,
                                                          std::uint32_t value) {
  if (key.size == 4) {
    if (2 * (v4_size_ + 1) > v4_.size()) {
      grow_v4(capacity_for(v4_size_ + 1));
    }
    const std::uint32_t k = v4_of(key);
    V4Slot& slot = v4_[v4_slot(k)];
    if (slot.value != kEmpty) {
      return {&slot.value, false};
    }
    slot.key = k;
    slot.value = value;
    ++v4_size_;
    return {&slot.value, true};
  }
  if (2 * (v6_size_ + 1) > v6_.size()) {
    grow_v6(capacity_for(v6_size_ + 1));
  }
  V6Slot& slot = v6_[v6_slot(key)];
  if (slot.key.size != 0) {
    return {&slot.value, false};
  }
  slot.key = key;
  slot.value = value;
  ++v6_size_;
  return {&slot.value, true};
}

void AddressIndex::prefetch(const AddressKey& key) const {
  if (key.size == 4 && !v4_.empty()) {
    __builtin_prefetch(&v4_[v4_slot_hint(v4_of(key))]);
  }
}

const std::uint32_t* AddressIndex::find(const AddressKey& key) const {
  if (key.size == 4) {
    if (v4_size_ == 0) {
      return nullptr;
    }
    const V4Slot& slot = v4_[v4_slot(v4_of(key))];
    return slot.value == kEmpty ? nullptr : &slot.value;
  }
  if (v6_size_ == 0) {
    return nullptr;
  }
  const V6Slot& slot = v6_[v6_slot(key)];
  return slot.key.size == 0 ? nullptr : &slot.value;
}

Decision check(const Compiled& compiled, const std::uint8_t* address, bool v6,
               const Destination& destination) {
  Source source;
  source.address = address;
  source.v6 = v6;
  if (const SourceInfo* facts = compiled.source(address, v6); facts != nullptr) {
    source.networks = facts->networks;
    source.services = facts->services;
  }
  const auto rules = compiled.rules.find(destination.service);
  std::span<const Rule> matching;
  if (rules != compiled.rules.end()) {
    matching = rules->second;
  }
  return decide(source, destination, matching, compiled.networks);
}

}  // namespace routemesh::mesh::policy
