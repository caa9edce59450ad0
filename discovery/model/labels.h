#pragma once
// Service labels -> how a service is exposed (docs/architecture.md, "Labels"). The one validator
// shared by the config file path and the store's state machine. Pure.

#include "discovery/model/types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace routemesh::discovery {

enum class LbPolicy { round_robin, least_request, random };

// One Host pattern: exact ("web.example.com") or wildcard ("*.example.com" -> suffix
// ".example.com"). Lower-cased, no port.
struct HostPattern {
  std::string host;  // exact host, or the suffix including the leading '.' for wildcards
  bool wildcard = false;
};

// A single HTTP route contributed by a service.
struct HttpExposure {
  std::vector<HostPattern> hosts;
  std::string path_prefix = "/";
  std::uint16_t port = 0;    // task port; 0 = the service's first target port
  std::string source_label;  // label key that declared it ("mesh.http" or the UCP key)
};

enum class ProxyProtocol { none, v1, v2 };

// An active health check, run by the node a task runs on (mesh.health.* labels).
struct HealthCheck {
  enum class Kind { tcp, http } kind = Kind::tcp;
  std::string path = "/";          // http: the request target
  std::uint16_t status_min = 200;  // http: a status in [min, max] passes
  std::uint16_t status_max = 399;
  std::uint16_t port = 0;  // 0 = the port traffic uses (HTTP port, else first target)
  std::uint32_t interval_ms = 2'000;
  std::uint32_t timeout_ms = 1'000;
  std::uint32_t healthy_threshold = 2;    // consecutive passes: unhealthy/unknown -> healthy
  std::uint32_t unhealthy_threshold = 3;  // consecutive failures: healthy -> unhealthy
  std::uint32_t start_period_ms = 0;      // failures in this time after a task appears do not count
  bool operator==(const HealthCheck&) const = default;
};

struct Exposure {
  std::vector<HttpExposure> http;  // mesh.http (+ .port/.path) and each UCP label
  // mesh.sni: TLS connections to the node's HTTPS port whose SNI this pattern covers are
  // spliced to the service untouched (passthrough), on mesh.sni.port (0 = the service's first
  // target port).
  std::optional<HostPattern> sni;
  std::uint16_t sni_port = 0;
  std::optional<std::string> sticky_cookie;
  LbPolicy lb = LbPolicy::round_robin;
  bool prefer_local = false;                           // mesh.lb.locality=prefer-local
  ProxyProtocol proxy_protocol = ProxyProtocol::none;  // layer 4 only
  std::optional<HealthCheck> health;                   // mesh.health.check
  std::uint32_t drain_grace_ms = 30'000;  // mesh.drain.grace_ms: long-lived connections to a
                                          // draining task are closed after this
};

// Label keys understood here.
inline constexpr const char* kLabelHttp = "mesh.http";
inline constexpr const char* kLabelHttpPort = "mesh.http.port";
inline constexpr const char* kLabelHttpPath = "mesh.http.path";
inline constexpr const char* kLabelSni = "mesh.sni";
inline constexpr const char* kLabelSniPort = "mesh.sni.port";
inline constexpr const char* kLabelSticky = "mesh.http.sticky";
inline constexpr const char* kLabelLb = "mesh.lb";
inline constexpr const char* kLabelUcpPrefix = "com.docker.ucp.mesh.http.";
inline constexpr const char* kLabelLocality = "mesh.lb.locality";
inline constexpr const char* kLabelProxyProtocol = "mesh.proxy_protocol";
inline constexpr const char* kLabelDrainGrace = "mesh.drain.grace_ms";
inline constexpr const char* kLabelHealthPrefix = "mesh.health.";

// "web.localhost" or "*.example.com" as written in a label.
std::string to_string(const HostPattern& pattern);

// Parses a service's labels. Errors carry paths relative to `path_prefix`, e.g.
// "services[1].labels.mesh.http: empty host". Unknown "mesh.*" labels are errors; other
// labels are ignored (they belong to the user).
// Exposure.http lists the mesh.http route first (if any), then one route per UCP label in
// key order. Appends to `errors`; never throws.
Exposure parse_labels(const std::map<std::string, std::string>& labels,
                      const std::string& path_prefix, std::vector<StateError>& errors);

}  // namespace routemesh::discovery
