#pragma once
// The immutable routing snapshot every proxy thread reads. Built by compile_route_table
// (pure) on the control thread and published as std::shared_ptr<const RouteTable> by atomic
// swap; never mutated after publication.

#include "discovery/model/labels.h"
#include "discovery/model/types.h"
#include "mesh/policy/policy.h"

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace routemesh::mesh {

using discovery::LbPolicy;

// A task address, parsed once so the data path never parses text.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};  // network order; v4 uses the first 4
  bool v6 = false;
  std::string text;  // as written, for logs and JSON
};

// Where a remote task's node accepts overlay streams.
struct OverlayHop {
  IpAddress ip;
  std::uint16_t port = 0;
};

struct Endpoint {
  std::string task_id;
  std::string node;  // the node the task runs on ("" = this node, outside cluster mode)
  IpAddress ip;
  std::uint16_t port = 0;
  // From the state: not unhealthy, not draining, its node not down. Passive health is per
  // thread, in the Balancer.
  bool healthy = true;
  bool draining = false;
  // The task runs on this node (or its node is unknown here, or has no overlay address: then
  // it is dialled directly, as before the overlay existed).
  bool local = true;
  // Set when !local: the task's node's overlay listener, one object per node shared by its
  // endpoints (an endpoint is built per task and port on every compile; a copy of the hop in
  // each made them a third larger).
  std::shared_ptr<const OverlayHop> via;
  // Stable identity across table swaps and nodes: "ip:port", or "ip:port@node" for a task
  // that names its node (two nodes may both run a task at 172.17.0.2:80). The balancer's
  // per-thread state, the upstream pool and the sticky cookie are keyed by it.
  std::string key;
};

// One service's HTTP or L4 backend set for one target port.
struct Cluster {
  std::string service;
  std::uint32_t index = 0;  // position in RouteTable::clusters
  LbPolicy lb = LbPolicy::round_robin;
  std::optional<std::string> sticky_cookie;
  bool prefer_local = false;  // pick among healthy local endpoints first
  discovery::ProxyProtocol proxy_protocol = discovery::ProxyProtocol::none;  // layer 4 only
  std::uint32_t drain_grace_ms = 30'000;
  std::vector<Endpoint> endpoints;
};

// A task of this node that overlay streams may target: the receiving side's whole check.
struct LocalTarget {
  std::string service;
  std::uint16_t port = 0;  // the task port streams may ask for
  IpAddress ip;
  discovery::ProxyProtocol proxy_protocol = discovery::ProxyProtocol::none;
};

struct PathRoute {
  std::string prefix;  // "/" matches everything
  std::uint32_t cluster = 0;
};

// Routes for one Host pattern, longest prefix first.
struct HostRoutes {
  std::string pattern;  // as in HostPattern::host
  bool wildcard = false;
  std::vector<PathRoute> paths;
};

// A published port forwarded at layer 4.
struct L4Route {
  std::uint16_t published = 0;
  std::uint32_t cluster = 0;
};

// A service's virtual IP on one network: every node accepts on vip:port for each target port
// of the service (its published ports' targets and its HTTP port) and balances at layer 4
// over the service's tasks, local or across the overlay.
struct VipRoute {
  IpAddress vip;
  std::uint16_t port = 0;
  std::uint32_t cluster = 0;
  std::string network;
};

// A service reached by SNI on the HTTPS port without decrypting (mesh.sni): spliced at layer 4.
struct SniRoute {
  std::string pattern;  // as in HostPattern::host: exact host, or ".suffix" for a wildcard
  bool wildcard = false;
  std::uint32_t cluster = 0;
};

// A certificate the HTTPS port terminates TLS with (the store's ingress certificates).
struct IngressCertificate {
  std::string host;  // exact, "*.suffix" or "*" (the default)
  std::string cert;  // PEM chain, leaf first
  std::string key;   // PEM private key
  std::string digest;
  std::uint64_t version = 0;
  bool operator==(const IngressCertificate&) const = default;
};

// Lets exact_hosts be searched with a std::string_view (C++20 heterogeneous lookup), so
// route() does not build a std::string per request.
struct HostHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

struct RouteTable {
  std::uint64_t revision = 0;
  std::vector<Cluster> clusters;
  std::unordered_map<std::string, HostRoutes, HostHash, std::equal_to<>>
      exact_hosts;                         // key: lower-case host
  std::vector<HostRoutes> wildcard_hosts;  // longest suffix first
  std::vector<L4Route> l4;                 // sorted by port
  std::vector<L4Route> udp;                // published UDP ports, sorted by port
  // Published ports routed by Host (HRM ports other than the node's http_port, e.g. a
  // service publishing 8081:80 with a mesh.http label makes 8081 an HTTP port too).
  std::vector<std::uint16_t> http_ports;
  // Published ports bound to an address of their own (PortMapping::address), by (udp?, port);
  // the others bind the node's listen address.
  std::map<std::pair<bool, std::uint16_t>, std::string> bind_addresses;
  std::vector<VipRoute> vips;      // sorted by (family, address, port)
  std::vector<VipRoute> udp_vips;  // the same for the services' UDP target ports
  // This node's tasks of exposed services, by task id: what an overlay preamble may name.
  std::unordered_map<std::string, std::vector<LocalTarget>> local_targets;
  // Network isolation and the store's policies (mesh/policy/policy.h), for the data path's
  // checks on VIP connections, HTTP requests on published ports and received overlay streams.
  policy::Compiled policy;
  // The HTTPS port: passthrough routes (exact hosts first, then wildcards, longest suffix
  // first; the first service in name order keeps a pattern claimed twice) and the
  // certificates for termination, by host.
  std::vector<SniRoute> sni_routes;
  std::vector<IngressCertificate> certificates;
  // The cluster's nodes, by id: the overlay accepts streams only from these. A removed node's
  // certificate stays valid until it expires, so its membership is what ends its access.
  std::set<std::string, std::less<>> nodes;
  // Each node's overlay listener, by node id (nodes with a valid overlay address): a sending
  // node checks that the certificate answering at an address is that of the node the table
  // puts there.
  std::map<std::string, OverlayHop, std::less<>> node_hops;
  // The store's overlay key epoch: an encrypted overlay connection made or rekeyed in an older
  // one updates its keys before it sends more.
  std::uint64_t overlay_key_epoch = 0;
};

// The passthrough route for a TLS server name (lower case, no trailing dot), or nullptr.
const SniRoute* find_sni_route(const RouteTable& table, std::string_view server_name);

// The VIP route for a connection accepted on vip:port (a datagram, with `udp`), or nullptr.
const VipRoute* find_vip_route(const RouteTable& table, std::string_view vip, std::uint16_t port,
                               bool udp = false);

// The local target named by an overlay preamble (task id and task port), or nullptr when the
// task is not one of this node's tasks of an exposed service on that port.
const LocalTarget* find_local_target(const RouteTable& table, std::string_view task_id,
                                     std::uint16_t port);

struct RouteMatch {
  const Cluster* cluster = nullptr;
  const HostRoutes* host = nullptr;
  std::string_view prefix;
};

// Compiles state into a table. Pure and deterministic. Assumes validate_state passed; a
// service whose labels fail to parse is skipped.
// `local_node` is this node's name: tasks of other known nodes with an overlay address are
// reached through that node's overlay; "" (outside cluster mode) makes every task local.
RouteTable compile_route_table(const discovery::ClusterState& state,
                               std::string_view local_node = {});

// Finds the route for a request. `host` may carry a port and any case; `path` is the
// request target's path (origin-form; an absolute-form target is reduced by the caller).
// Exact hosts win over wildcards, longer wildcard suffixes over shorter, longest path prefix
// wins; a prefix matches at a segment boundary ("/api" matches "/api" and "/api/x", not
// "/apix"). Returns a match with cluster == nullptr when nothing matches.
RouteMatch route(std::string_view host, std::string_view path, const RouteTable& table);

// The table as JSON text, for the admin API's /v1/routes.
std::string to_json(const RouteTable& table);

}  // namespace routemesh::mesh
