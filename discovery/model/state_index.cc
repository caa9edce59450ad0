#include "discovery/model/state_index.h"

#include "base/address.h"
#include "discovery/model/labels.h"

#include <iterator>

namespace routemesh::discovery {

namespace {

// Removes `value` from the set stored under `key`, and the key once its set is empty (so that
// an index equals a freshly built one whatever the history).
template <typename Map, typename Key>
void erase_member(Map& map, const Key& key, const std::string& value) {
  auto it = map.find(key);
  if (it == map.end()) {
    return;
  }
  it->second.erase(value);
  if (it->second.empty()) {
    map.erase(it);
  }
}

// The smallest member of the set under `key` other than `self`, or nullptr.
template <typename Map, typename Key>
const std::string* first_other(const Map& map, const Key& key, std::string_view self) {
  auto it = map.find(key);
  if (it == map.end()) {
    return nullptr;
  }
  for (const auto& member : it->second) {
    if (member != self) {
      return &member;
    }
  }
  return nullptr;
}

}  // namespace

std::vector<HttpClaim> http_claims(const Service& service) {
  std::vector<StateError> ignored;
  Exposure exposure = parse_labels(service.labels, "labels", ignored);
  std::vector<HttpClaim> out;
  for (const auto& http : exposure.http) {
    for (const auto& host : http.hosts) {
      out.push_back(HttpClaim{host.host, host.wildcard, http.path_prefix});
    }
  }
  return out;
}

std::vector<PublishedPort> published_ports(const Service& service) {
  std::vector<PublishedPort> out;
  for (const auto& port : service.ports) {
    if (port.published == 0 || port.target == 0) {
      continue;
    }
    if (port.protocol != "tcp" && port.protocol != "udp") {
      continue;
    }
    out.push_back(PublishedPort{port.protocol, port.published});
  }
  return out;
}

namespace detail {

void AddressSet::insert(std::uint32_t address) {
  if (counts_[address]++ != 0) {
    return;
  }
  const std::uint64_t a = address;
  auto next = ranges_.upper_bound(a);  // the first range starting above `a`
  const bool joins_next = next != ranges_.end() && next->first == a + 1;
  auto prev = next == ranges_.begin() ? ranges_.end() : std::prev(next);
  const bool joins_prev = prev != ranges_.end() && prev->second + 1 == a;
  if (joins_prev && joins_next) {
    prev->second = next->second;
    ranges_.erase(next);
  } else if (joins_prev) {
    prev->second = a;
  } else if (joins_next) {
    const std::uint64_t last = next->second;
    ranges_.erase(next);
    ranges_.emplace(a, last);
  } else {
    ranges_.emplace(a, a);
  }
}

void AddressSet::erase(std::uint32_t address) {
  auto count = counts_.find(address);
  if (count == counts_.end()) {
    return;
  }
  if (--count->second != 0) {
    return;
  }
  counts_.erase(count);
  const std::uint64_t a = address;
  // The range holding `a`: the last one starting at or below it (it exists: `a` was counted).
  auto it = std::prev(ranges_.upper_bound(a));
  const std::uint64_t first = it->first;
  const std::uint64_t last = it->second;
  if (first == a) {
    ranges_.erase(it);
  } else {
    it->second = a - 1;
  }
  if (last != a) {
    ranges_.emplace(a + 1, last);
  }
}

std::uint64_t AddressSet::first_free(std::uint64_t from) const {
  auto it = ranges_.upper_bound(from);
  if (it == ranges_.begin()) {
    return from;
  }
  --it;
  // Ranges are merged, so the address after the one holding `from` is free.
  return it->second >= from ? it->second + 1 : from;
}

}  // namespace detail

StateIndex::StateIndex(const ClusterState& state) {
  for (const auto& [name, service] : state.services) {
    add_service(service);
  }
  for (const auto& [id, task] : state.tasks) {
    add_task(task);
  }
  for (const auto& [id, node] : state.nodes) {
    add_node(node);
  }
}

void StateIndex::add_service(const Service& service) {
  for (auto& claim : http_claims(service)) {
    claims_[std::move(claim)].insert(service.name);
  }
  for (auto& port : published_ports(service)) {
    published_[std::move(port)].insert(service.name);
  }
  for (const auto& network : service.networks) {
    services_by_network_[network].insert(service.name);
  }
  for (const auto& [network, vip] : service.vips) {
    if (auto address = base::parse_ipv4(vip)) {
      vips_[network].insert(*address);
    }
  }
}

void StateIndex::remove_service(const Service& service) {
  for (const auto& claim : http_claims(service)) {
    erase_member(claims_, claim, service.name);
  }
  for (const auto& port : published_ports(service)) {
    erase_member(published_, port, service.name);
  }
  for (const auto& network : service.networks) {
    erase_member(services_by_network_, network, service.name);
  }
  for (const auto& [network, vip] : service.vips) {
    auto address = base::parse_ipv4(vip);
    auto it = vips_.find(network);
    if (!address || it == vips_.end()) {
      continue;
    }
    it->second.erase(*address);
    if (it->second.empty()) {
      vips_.erase(it);
    }
  }
}

void StateIndex::add_task(const Task& task) {
  auto& tasks = tasks_by_service_[task.service];
  if (!tasks.ids.insert(task.id).second) {
    return;
  }
  if (task.port != 0) {
    ++tasks.with_port;
  }
  ++tasks_by_node_[task.node];
}

void StateIndex::remove_task(const Task& task) {
  auto tasks = tasks_by_service_.find(task.service);
  if (tasks == tasks_by_service_.end() || tasks->second.ids.erase(task.id) == 0) {
    return;
  }
  if (task.port != 0) {
    --tasks->second.with_port;
  }
  if (tasks->second.ids.empty()) {
    tasks_by_service_.erase(tasks);
  }
  if (auto it = tasks_by_node_.find(task.node); it != tasks_by_node_.end()) {
    if (--it->second == 0) {
      tasks_by_node_.erase(it);
    }
  }
}

void StateIndex::add_node(const Node& node) {
  nodes_by_name_[node.name].insert(node.id);
}

void StateIndex::remove_node(const Node& node) {
  erase_member(nodes_by_name_, node.name, node.id);
}

const std::string* StateIndex::claim_owner(const HttpClaim& claim, std::string_view self) const {
  return first_other(claims_, claim, self);
}

const std::string* StateIndex::port_owner(const PublishedPort& port, std::string_view self) const {
  return first_other(published_, port, self);
}

StateIndex::TaskCounts StateIndex::task_counts(const std::string& service) const {
  auto it = tasks_by_service_.find(service);
  if (it == tasks_by_service_.end()) {
    return {};
  }
  return TaskCounts{it->second.ids.size(), it->second.with_port};
}

std::vector<std::string> StateIndex::task_ids(const std::string& service) const {
  auto it = tasks_by_service_.find(service);
  if (it == tasks_by_service_.end()) {
    return {};
  }
  return {it->second.ids.begin(), it->second.ids.end()};
}

std::size_t StateIndex::tasks_on_node(const std::string& node_name) const {
  auto it = tasks_by_node_.find(node_name);
  return it == tasks_by_node_.end() ? 0 : it->second;
}

const std::string* StateIndex::node_named(const std::string& name, std::string_view self_id) const {
  return first_other(nodes_by_name_, name, self_id);
}

bool StateIndex::has_node_named(const std::string& name) const {
  return nodes_by_name_.count(name) != 0;
}

const std::string* StateIndex::service_on_network(const std::string& network) const {
  auto it = services_by_network_.find(network);
  return it == services_by_network_.end() ? nullptr : &*it->second.begin();
}

std::uint64_t StateIndex::first_free_vip(const std::string& network, std::uint64_t from) const {
  auto it = vips_.find(network);
  return it == vips_.end() ? from : it->second.first_free(from);
}

}  // namespace routemesh::discovery
