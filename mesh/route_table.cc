#include "mesh/route_table.h"

#include "base/address.h"
#include "base/prefetch.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

namespace routemesh::mesh {

namespace {

namespace json = boost::json;
using discovery::ClusterState;
using discovery::Service;
using discovery::Task;
using discovery::TaskHealth;

// An address policy::parse_address parsed from `text`, as the table keeps it.
void set_ip(IpAddress& ip, const policy::AddressKey& address, const std::string& text) {
  std::memcpy(ip.bytes.data(), address.bytes.data(), address.size);
  ip.v6 = address.size == 16;
  ip.text = text;
}

std::optional<IpAddress> parse_ip(const std::string& text) {
  policy::AddressKey address;
  if (!policy::parse_address(text, address)) {
    return std::nullopt;
  }
  IpAddress ip;
  set_ip(ip, address, text);
  return ip;
}

// The order of RouteTable::vips: by address family, address bytes, port. Integers, not the
// address text: at 10,000 services, sorting by text was a tenth of a compile.
std::tuple<bool, const std::array<std::uint8_t, 16>&, std::uint16_t> vip_order(const IpAddress& ip,
                                                                               std::uint16_t port) {
  return {ip.v6, ip.bytes, port};
}

std::string endpoint_key(const IpAddress& ip, std::uint16_t port, const std::string& node) {
  char digits[8];
  const auto end = std::to_chars(digits, digits + sizeof digits, port).ptr;
  std::string key;
  key.reserve(ip.text.size() + 8 + node.size());
  if (ip.v6) {
    key += '[';
    key += ip.text;
    key += ']';
  } else {
    key += ip.text;
  }
  key += ':';
  key.append(digits, end);
  if (!node.empty()) {
    key += '@';
    key += node;
  }
  return key;
}

// Builds clusters while keeping one cluster per (service, task port). Everything is hashed or
// reserved up front: compiling 10,000 services with 100,000 tasks must stay well under 50 ms,
// since every node compiles the whole table again for each new state.
class ClusterBuilder {
 public:
  ClusterBuilder(const ClusterState& state, std::string_view local_node, RouteTable& table)
      : local_node_(local_node), table_(table), view_(policy::view(state)) {
    // Nodes by name, each node's overlay address parsed once, not once per task.
    nodes_by_name_.reserve(state.nodes.size());
    for (const auto& [id, node] : state.nodes) {
      NodeInfo info{&node, nullptr};
      if (!node.overlay.empty()) {
        if (auto hop = parse_overlay(node.overlay)) {
          info.hop = std::make_shared<const OverlayHop>(*hop);
          table_.node_hops.emplace(id, std::move(*hop));
        }
      }
      nodes_by_name_[node.name] = std::move(info);
    }
    // The tasks grouped by service (a counting sort, which keeps id order within a service),
    // so a cluster costs what its own tasks cost.
    const std::vector<const Task*>& tasks = view_.tasks;
    service_begin_.assign(view_.services.size() + 1, 0);
    for (const auto& fact : view_.facts) {
      ++service_begin_[fact.service + 1];
    }
    for (std::size_t s = 1; s < service_begin_.size(); ++s) {
      service_begin_[s] += service_begin_[s - 1];
    }
    by_service_.resize(tasks.size());
    std::vector<std::uint32_t> next(service_begin_.begin(), service_begin_.end() - 1);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      by_service_[next[view_.facts[i].service]++] = static_cast<std::uint32_t>(i);
    }
    // Room for every task to be local (a single-node cluster): no rehash on the way.
    if (!local_node_.empty()) {
      table_.local_targets.reserve(tasks.size());
    }
  }

  // The state's services in name order, and what the policy facts are compiled from.
  const policy::StateView& view() const { return view_; }

  // Clusters are made while compiling one service, and each service is compiled once, so the
  // (service, port) index only needs the current service's ports. `service_index` is the
  // service's position in view().services.
  std::uint32_t get(std::uint32_t service_index, std::uint16_t port,
                    const discovery::Exposure& exposure) {
    if (current_ != service_index) {
      current_ = service_index;
      current_ports_.clear();
    }
    for (const auto& [known, index] : current_ports_) {
      if (known == port) {
        return index;
      }
    }
    const Service& service = *view_.services[service_index];
    Cluster cluster;
    cluster.service = service.name;
    cluster.index = static_cast<std::uint32_t>(table_.clusters.size());
    cluster.lb = exposure.lb;
    cluster.sticky_cookie = exposure.sticky_cookie;
    cluster.prefer_local = exposure.prefer_local;
    cluster.proxy_protocol = exposure.proxy_protocol;
    cluster.drain_grace_ms = exposure.drain_grace_ms;
    const std::uint32_t begin = service_begin_[service_index];
    const std::uint32_t end = service_begin_[service_index + 1];
    cluster.endpoints.reserve(end - begin);
    for (std::uint32_t k = begin; k < end; ++k) {
      // The tasks are nodes of a map, apart in memory: ask for the next ones early (past this
      // service's: the next service compiled is the next one in by_service_).
      if (k + kAhead < by_service_.size()) {
        base::prefetch_object(view_.tasks[by_service_[k + kAhead]]);
      }
      // Built in place: an endpoint is a handful of strings, and there is one per task.
      Endpoint& endpoint = cluster.endpoints.emplace_back();
      if (!fill_endpoint(endpoint, by_service_[k], port, exposure.health.has_value())) {
        cluster.endpoints.pop_back();
        continue;
      }
      if (endpoint.local && !local_node_.empty()) {
        auto& targets = table_.local_targets[endpoint.task_id];
        const bool known = std::any_of(targets.begin(), targets.end(),
                                       [&](const auto& t) { return t.port == endpoint.port; });
        if (!known) {
          targets.push_back(
              LocalTarget{service.name, endpoint.port, endpoint.ip, exposure.proxy_protocol});
        }
      }
    }
    const std::uint32_t index = cluster.index;
    current_ports_.emplace_back(port, index);
    table_.clusters.push_back(std::move(cluster));
    return index;
  }

  // For a host-mode port: a copy of cluster `all` with only this node's tasks, or nullopt when
  // this node runs none (the port does not open here).
  std::optional<std::uint32_t> local_only(std::uint32_t all) {
    Cluster local = table_.clusters[all];
    std::erase_if(local.endpoints, [](const Endpoint& e) { return !e.local; });
    if (local.endpoints.empty()) {
      return std::nullopt;
    }
    local.index = static_cast<std::uint32_t>(table_.clusters.size());
    table_.clusters.push_back(std::move(local));
    return table_.clusters.back().index;
  }

 private:
  // Fills a default-constructed `endpoint` for task `i` of view_; false when the task cannot
  // be dialled. validate_state rejects bad addresses and missing ports; should one slip
  // through, the task is left out (policy::view drops a task whose address does not parse)
  // rather than routed to an address that cannot be dialled.
  // `checked`: the service has an active health check. Its node checks a task that names one,
  // so such a task takes traffic once a check passed (unknown = still starting).
  bool fill_endpoint(Endpoint& endpoint, std::uint32_t i, std::uint16_t port, bool checked) const {
    const Task& task = *view_.tasks[i];
    std::uint16_t effective = task.port != 0 ? task.port : port;
    if (effective == 0) {
      return false;
    }
    set_ip(endpoint.ip, view_.facts[i].address, task.address);  // parsed by policy::view
    endpoint.task_id = task.id;
    endpoint.node = task.node;
    endpoint.port = effective;
    endpoint.key = endpoint_key(endpoint.ip, effective, task.node);
    endpoint.draining = task.health == TaskHealth::draining;
    endpoint.healthy = task.health != TaskHealth::unhealthy && !endpoint.draining;
    if (checked && !task.node.empty() && task.health == TaskHealth::unknown) {
      endpoint.healthy = false;
    }
    // The task's node: its status, and where a task of another node is reached (that node's
    // overlay listener). A task of this node, of no or an unknown node, or of a node without a
    // valid overlay address is dialled directly (as before the overlay existed), and so is
    // every task outside cluster mode (no local node name).
    auto it = nodes_by_name_.find(task.node);
    if (it == nodes_by_name_.end()) {
      return true;
    }
    const NodeInfo& node = it->second;
    if (node.node->status == discovery::NodeStatus::down) {
      endpoint.healthy = false;
    }
    if (!local_node_.empty() && !task.node.empty() && task.node != local_node_ && node.hop) {
      endpoint.local = false;
      endpoint.via = node.hop;
    }
    return true;
  }

  static std::optional<OverlayHop> parse_overlay(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return std::nullopt;
    }
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    auto ip = parse_ip(host);
    const auto port = base::parse_port(std::string_view(text).substr(colon + 1));
    if (!ip || !port || *port == 0) {
      return std::nullopt;
    }
    return OverlayHop{std::move(*ip), *port};
  }

  static constexpr std::size_t kAhead = 4;  // how far ahead a walk of tasks prefetches

  struct NodeInfo {
    const discovery::Node* node = nullptr;
    std::shared_ptr<const OverlayHop> hop;  // its overlay listener, when it has a valid one
  };
  std::string_view local_node_;
  RouteTable& table_;
  policy::StateView view_;
  std::unordered_map<std::string_view, NodeInfo> nodes_by_name_;
  std::vector<std::uint32_t> service_begin_;  // per service: its first entry in by_service_
  std::vector<std::uint32_t> by_service_;     // task indices, grouped by service
  std::uint32_t current_ = ~std::uint32_t{0};
  std::vector<std::pair<std::uint16_t, std::uint32_t>> current_ports_;  // port -> cluster
};

void add_path(HostRoutes& routes, const std::string& prefix, std::uint32_t cluster) {
  // Two services claiming the same host+path is a validate_state error; if it gets here
  // anyway, the first service in name order keeps it.
  for (const auto& path : routes.paths) {
    if (path.prefix == prefix) {
      return;
    }
  }
  routes.paths.push_back(PathRoute{prefix, cluster});
}

void sort_paths(HostRoutes& routes) {
  std::sort(routes.paths.begin(), routes.paths.end(), [](const auto& a, const auto& b) {
    if (a.prefix.size() != b.prefix.size()) {
      return a.prefix.size() > b.prefix.size();
    }
    return a.prefix < b.prefix;
  });
}

// A prefix matches at a segment boundary: the path continues with nothing, '/', or the
// query ('?', RFC 3986 section 3.4). A prefix that already ends in '/' is its own boundary.
bool prefix_matches(std::string_view prefix, std::string_view path) {
  if (prefix == "/") {
    return true;
  }
  if (!path.starts_with(prefix)) {
    return false;
  }
  if (path.size() == prefix.size() || prefix.back() == '/') {
    return true;
  }
  char next = path[prefix.size()];
  return next == '/' || next == '?';
}

const PathRoute* match_path(const HostRoutes& routes, std::string_view path) {
  for (const auto& route : routes.paths) {
    if (prefix_matches(route.prefix, path)) {
      return &route;
    }
  }
  return nullptr;
}

// Reduces a Host header value (RFC 9110 section 7.2: uri-host [":" port]) to the host part.
// An IP-literal keeps its brackets ("[::1]:8080" -> "[::1]", RFC 3986 section 3.2.2). A bare
// value with several colons is not a valid Host; it is left whole and simply won't match.
std::string_view strip_port(std::string_view host) {
  if (host.starts_with('[')) {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    return host.substr(0, colon);
  }
  return host;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

RouteMatch match_lowered(std::string_view host, std::string_view path, const RouteTable& table) {
  RouteMatch match;
  const HostRoutes* routes = nullptr;
  if (auto it = table.exact_hosts.find(host); it != table.exact_hosts.end()) {
    routes = &it->second;
  } else {
    // Wildcards are sorted longest suffix first, so the first hit is the most specific.
    // The suffix keeps its leading '.', and the host must be longer than it, so
    // "*.example.com" never matches "example.com" itself.
    for (const auto& wildcard : table.wildcard_hosts) {
      if (host.size() > wildcard.pattern.size() && host.ends_with(wildcard.pattern)) {
        routes = &wildcard;
        break;
      }
    }
  }
  if (routes == nullptr) {
    return match;
  }
  const PathRoute* path_route = match_path(*routes, path);
  if (path_route == nullptr || path_route->cluster >= table.clusters.size()) {
    return match;
  }
  match.cluster = &table.clusters[path_route->cluster];
  match.host = routes;
  match.prefix = path_route->prefix;
  return match;
}

const char* lb_name(LbPolicy lb) {
  switch (lb) {
    case LbPolicy::round_robin:
      return "round_robin";
    case LbPolicy::least_request:
      return "least_request";
    case LbPolicy::random:
      return "random";
  }
  return "round_robin";
}

json::object host_json(const HostRoutes& routes, const RouteTable& table) {
  json::object host;
  host["pattern"] = routes.pattern;
  host["wildcard"] = routes.wildcard;
  json::array paths;
  for (const auto& path : routes.paths) {
    json::object p;
    p["prefix"] = path.prefix;
    p["service"] = table.clusters[path.cluster].service;
    paths.push_back(std::move(p));
  }
  host["paths"] = std::move(paths);
  return host;
}

}  // namespace

const LocalTarget* find_local_target(const RouteTable& table, std::string_view task_id,
                                     std::uint16_t port) {
  // An overlay preamble is short; a std::string for the lookup costs nothing next to a connect.
  auto it = table.local_targets.find(std::string(task_id));
  if (it == table.local_targets.end()) {
    return nullptr;
  }
  for (const auto& t : it->second) {
    if (t.port == port) {
      return &t;
    }
  }
  return nullptr;
}

const VipRoute* find_vip_route(const RouteTable& table, std::string_view vip, std::uint16_t port,
                               bool udp) {
  const auto key = parse_ip(std::string(vip));
  if (!key) {
    return nullptr;
  }
  const std::vector<VipRoute>& routes = udp ? table.udp_vips : table.vips;
  auto it = std::lower_bound(
      routes.begin(), routes.end(), vip_order(*key, port),
      [](const VipRoute& r, const auto& k) { return vip_order(r.vip, r.port) < k; });
  if (it == routes.end() || vip_order(it->vip, it->port) != vip_order(*key, port)) {
    return nullptr;
  }
  return &*it;
}

RouteTable compile_route_table(const ClusterState& state, std::string_view local_node) {
  RouteTable table;
  table.revision = state.revision;
  table.overlay_key_epoch = state.overlay_key_epoch;
  for (const auto& [id, node] : state.nodes) {
    table.nodes.insert(id);
  }
  ClusterBuilder clusters(state, local_node, table);
  std::map<std::string, HostRoutes> wildcards;  // suffix -> routes, merged across services
  table.exact_hosts.reserve(state.services.size());
  // Published ports already routed at layer 4 (TCP) and relayed (UDP): the first service in
  // name order keeps a port claimed twice.
  std::vector<bool> l4_taken(65536, false);
  std::vector<bool> udp_taken(65536, false);

  const std::vector<const Service*>& services = clusters.view().services;
  for (std::uint32_t s = 0; s < services.size(); ++s) {
    const Service& service = *services[s];
    std::vector<discovery::StateError> errors;
    auto exposure = discovery::parse_labels(service.labels, "services." + service.name, errors);
    if (!errors.empty()) {
      continue;
    }
    std::uint16_t first_target = service.ports.empty() ? 0 : service.ports.front().target;
    for (const auto& http : exposure.http) {
      std::uint16_t port = http.port != 0 ? http.port : first_target;
      std::uint32_t cluster = clusters.get(s, port, exposure);
      for (const auto& pattern : http.hosts) {
        HostRoutes& routes =
            pattern.wildcard ? wildcards[pattern.host] : table.exact_hosts[pattern.host];
        routes.pattern = pattern.host;
        routes.wildcard = pattern.wildcard;
        add_path(routes, http.path_prefix, cluster);
      }
    }
    if (exposure.sni) {
      const std::uint16_t port = exposure.sni_port != 0 ? exposure.sni_port : first_target;
      const bool taken =
          std::any_of(table.sni_routes.begin(), table.sni_routes.end(), [&](const SniRoute& r) {
            return r.pattern == exposure.sni->host && r.wildcard == exposure.sni->wildcard;
          });
      if (!taken) {
        table.sni_routes.push_back(
            SniRoute{exposure.sni->host, exposure.sni->wildcard, clusters.get(s, port, exposure)});
      }
    }
    // VIPs: one L4 route per (network VIP, target port).
    std::vector<std::uint16_t> vip_ports;
    for (const auto& p : service.ports) {
      if (p.protocol == "tcp") {
        vip_ports.push_back(p.target);
      }
    }
    for (const auto& http : exposure.http) {
      vip_ports.push_back(http.port != 0 ? http.port : first_target);
    }
    std::sort(vip_ports.begin(), vip_ports.end());
    vip_ports.erase(std::unique(vip_ports.begin(), vip_ports.end()), vip_ports.end());
    for (const auto& [network, vip_text] : service.vips) {
      auto vip = parse_ip(vip_text);
      if (!vip) {
        continue;
      }
      for (std::uint16_t port : vip_ports) {
        if (port != 0) {
          table.vips.push_back(VipRoute{*vip, port, clusters.get(s, port, exposure), network});
        }
      }
      for (const auto& p : service.ports) {
        const bool listed = std::any_of(
            table.udp_vips.begin(), table.udp_vips.end(),
            [&](const VipRoute& r) { return r.vip.text == vip->text && r.port == p.target; });
        if (p.protocol == "udp" && p.target != 0 && !listed) {
          table.udp_vips.push_back(
              VipRoute{*vip, p.target, clusters.get(s, p.target, exposure), network});
        }
      }
    }
    for (const auto& published : service.ports) {
      const bool host_mode = published.mode == "host";
      // Host mode: only where the service has a task, and only to those tasks.
      std::optional<std::uint32_t> cluster = clusters.get(s, published.target, exposure);
      if (host_mode) {
        cluster = clusters.local_only(*cluster);
        if (!cluster) {
          continue;
        }
      }
      if (!published.address.empty()) {
        table.bind_addresses[{published.protocol == "udp", published.published}] =
            published.address;
      }
      if (published.protocol == "udp") {
        if (!udp_taken[published.published]) {
          udp_taken[published.published] = true;
          table.udp.push_back(L4Route{published.published, *cluster});
        }
        continue;
      }
      if (!exposure.http.empty()) {
        // Routed by Host over the whole table: host mode decides where the port opens.
        table.http_ports.push_back(published.published);
        continue;
      }
      // A published port claimed twice is a validate_state error; first service wins.
      if (!l4_taken[published.published]) {
        l4_taken[published.published] = true;
        table.l4.push_back(L4Route{published.published, *cluster});
      }
    }
  }

  for (auto& [host, routes] : table.exact_hosts) {
    sort_paths(routes);
  }
  for (auto& [suffix, routes] : wildcards) {
    sort_paths(routes);
    table.wildcard_hosts.push_back(std::move(routes));
  }
  // std::map gave lexical order; a stable sort by length keeps it among equal lengths.
  std::stable_sort(
      table.wildcard_hosts.begin(), table.wildcard_hosts.end(),
      [](const auto& a, const auto& b) { return a.pattern.size() > b.pattern.size(); });
  std::sort(table.l4.begin(), table.l4.end(),
            [](const L4Route& a, const L4Route& b) { return a.published < b.published; });
  std::sort(table.udp.begin(), table.udp.end(),
            [](const L4Route& a, const L4Route& b) { return a.published < b.published; });
  for (auto* routes : {&table.vips, &table.udp_vips}) {
    std::sort(routes->begin(), routes->end(), [](const VipRoute& a, const VipRoute& b) {
      return vip_order(a.vip, a.port) < vip_order(b.vip, b.port);
    });
  }
  std::sort(table.http_ports.begin(), table.http_ports.end());
  table.http_ports.erase(std::unique(table.http_ports.begin(), table.http_ports.end()),
                         table.http_ports.end());
  // Exact patterns first, then wildcards by longest suffix: find_sni_route's first hit wins.
  std::stable_sort(table.sni_routes.begin(), table.sni_routes.end(),
                   [](const SniRoute& a, const SniRoute& b) {
                     if (a.wildcard != b.wildcard) {
                       return !a.wildcard;
                     }
                     return a.wildcard && a.pattern.size() > b.pattern.size();
                   });
  table.certificates.reserve(state.ingress_certs.size());
  for (const auto& [host, c] : state.ingress_certs) {
    table.certificates.push_back(IngressCertificate{c.host, c.cert, c.key, c.digest, c.version});
  }
  table.policy = policy::compile(state, clusters.view());
  return table;
}

const SniRoute* find_sni_route(const RouteTable& table, std::string_view server_name) {
  for (const SniRoute& r : table.sni_routes) {
    if (r.wildcard ? server_name.size() > r.pattern.size() && server_name.ends_with(r.pattern)
                   : server_name == r.pattern) {
      return &r;
    }
  }
  return nullptr;
}

RouteMatch route(std::string_view host, std::string_view path, const RouteTable& table) {
  host = strip_port(host);
  if (host.ends_with('.')) {
    host.remove_suffix(1);
  }
  if (host.empty()) {
    return {};
  }
  // Host names compare case-insensitively (RFC 9110 section 4.2.3); the table holds them
  // lower-cased. Real hosts fit in 253 bytes, so the stack buffer is the normal case.
  constexpr std::size_t kStackHost = 255;
  if (host.size() <= kStackHost) {
    std::array<char, kStackHost> buffer;
    std::transform(host.begin(), host.end(), buffer.begin(), ascii_lower);
    return match_lowered(std::string_view(buffer.data(), host.size()), path, table);
  }
  std::string lowered(host);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), ascii_lower);
  return match_lowered(lowered, path, table);
}

std::string to_json(const RouteTable& table) {
  json::object root;
  root["revision"] = table.revision;

  json::array clusters;
  for (const auto& cluster : table.clusters) {
    json::object c;
    c["index"] = cluster.index;
    c["service"] = cluster.service;
    c["lb"] = lb_name(cluster.lb);
    if (cluster.sticky_cookie) {
      c["sticky"] = *cluster.sticky_cookie;
    } else {
      c["sticky"] = nullptr;
    }
    json::array endpoints;
    for (const auto& endpoint : cluster.endpoints) {
      json::object e;
      e["task"] = endpoint.task_id;
      e["node"] = endpoint.node;
      e["address"] = endpoint.ip.v6 ? "[" + endpoint.ip.text + "]:" + std::to_string(endpoint.port)
                                    : endpoint.ip.text + ":" + std::to_string(endpoint.port);
      e["key"] = endpoint.key;
      e["healthy"] = endpoint.healthy;
      e["draining"] = endpoint.draining;
      e["local"] = endpoint.local;
      if (endpoint.via) {
        e["via"] = endpoint.via->ip.text + ":" + std::to_string(endpoint.via->port);
      }
      endpoints.push_back(std::move(e));
    }
    c["endpoints"] = std::move(endpoints);
    clusters.push_back(std::move(c));
  }
  root["clusters"] = std::move(clusters);

  // exact_hosts is unordered; sort so that equal tables give equal text.
  std::vector<const HostRoutes*> exact;
  exact.reserve(table.exact_hosts.size());
  for (const auto& [host, routes] : table.exact_hosts) {
    exact.push_back(&routes);
  }
  std::sort(exact.begin(), exact.end(),
            [](const HostRoutes* a, const HostRoutes* b) { return a->pattern < b->pattern; });
  json::array hosts;
  for (const auto* routes : exact) {
    hosts.push_back(host_json(*routes, table));
  }
  for (const auto& routes : table.wildcard_hosts) {
    hosts.push_back(host_json(routes, table));
  }
  root["hosts"] = std::move(hosts);

  json::array l4;
  for (const auto& route : table.l4) {
    json::object r;
    r["port"] = route.published;
    r["service"] = table.clusters[route.cluster].service;
    l4.push_back(std::move(r));
  }
  root["l4"] = std::move(l4);
  json::array udp;
  for (const auto& route : table.udp) {
    udp.push_back(json::object{{"port", route.published},
                               {"service", table.clusters[route.cluster].service}});
  }
  root["udp"] = std::move(udp);

  json::array http_ports;
  for (auto port : table.http_ports) {
    http_ports.push_back(port);
  }
  root["http_ports"] = std::move(http_ports);
  json::array vips;
  for (const auto& v : table.vips) {
    vips.push_back(json::object{{"vip", v.vip.text},
                                {"port", v.port},
                                {"network", v.network},
                                {"service", table.clusters[v.cluster].service}});
  }
  root["vips"] = std::move(vips);
  json::array udp_vips;
  for (const auto& v : table.udp_vips) {
    udp_vips.push_back(json::object{{"vip", v.vip.text},
                                    {"port", v.port},
                                    {"network", v.network},
                                    {"service", table.clusters[v.cluster].service}});
  }
  root["udp_vips"] = std::move(udp_vips);
  json::array sni;
  for (const auto& r : table.sni_routes) {
    sni.push_back(json::object{{"sni", r.wildcard ? "*" + r.pattern : r.pattern},
                               {"service", table.clusters[r.cluster].service}});
  }
  root["sni"] = std::move(sni);
  json::array certificates;  // hosts and digests only: keys never leave the table
  for (const auto& c : table.certificates) {
    certificates.push_back(json::object{{"host", c.host}, {"digest", c.digest}});
  }
  root["certificates"] = std::move(certificates);
  return json::serialize(root);
}

}  // namespace routemesh::mesh
