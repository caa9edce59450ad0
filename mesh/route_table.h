#pragma once
// The immutable routing snapshot every proxy thread reads. Built by compile_route_table
// (pure) on the control thread and published as std::shared_ptr<const RouteTable> by atomic
// swap; never mutated after publication.

#include "discovery/model/labels.h"
#include "discovery/model/types.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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

struct Endpoint {
  std::string task_id;
  std::string node;  // "" = local
  IpAddress ip;
  std::uint16_t port = 0;
  bool healthy = true;  // from the state (active health later); passive health is per thread
  // Stable identity across table swaps: "ip:port". Per-thread balancer state is keyed by it.
  std::string key;
};

// One service's HTTP or L4 backend set for one target port.
struct Cluster {
  std::string service;
  std::uint32_t index = 0;  // position in RouteTable::clusters
  LbPolicy lb = LbPolicy::round_robin;
  std::optional<std::string> sticky_cookie;
  std::vector<Endpoint> endpoints;
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
  // Published ports routed by Host (HRM ports other than the node's http_port, e.g. a
  // service publishing 8081:80 with a mesh.http label makes 8081 an HTTP port too).
  std::vector<std::uint16_t> http_ports;
};

struct RouteMatch {
  const Cluster* cluster = nullptr;
  const HostRoutes* host = nullptr;
  std::string_view prefix;
};

// Compiles state into a table. Pure and deterministic. Assumes validate_state passed; a
// service whose labels fail to parse is skipped.
RouteTable compile_route_table(const discovery::ClusterState& state);

// Finds the route for a request. `host` may carry a port and any case; `path` is the
// request target's path (origin-form; an absolute-form target is reduced by the caller).
// Exact hosts win over wildcards, longer wildcard suffixes over shorter, longest path prefix
// wins; a prefix matches at a segment boundary ("/api" matches "/api" and "/api/x", not
// "/apix"). Returns a match with cluster == nullptr when nothing matches.
RouteMatch route(std::string_view host, std::string_view path, const RouteTable& table);

// The table as JSON text, for the admin API's /v1/routes.
std::string to_json(const RouteTable& table);

}  // namespace routemesh::mesh
