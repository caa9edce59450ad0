#pragma once
// Per-proxy-thread load balancing and passive health. Pure: time and randomness come in as
// arguments. One Balancer per proxy thread, used only from that thread (no locks).

#include "config/types.h"
#include "mesh/route_table.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::mesh {

using Clock = std::chrono::steady_clock;

enum class Outcome {
  success,         // a response that is not 5xx
  server_error,    // a 5xx response from the endpoint
  connect_failed,  // connect refused / timed out / reset before any response byte
  local_abort,     // the client went away; says nothing about the endpoint
};

struct EndpointStats {
  std::uint32_t in_flight = 0;
  std::uint32_t consecutive_failures = 0;
  std::uint32_t ejections = 0;  // times ejected in a row; drives exponential backoff
  Clock::time_point ejected_until{};
};

struct Pick {
  std::uint32_t endpoint = 0;  // index into Cluster::endpoints
};

class Balancer {
 public:
  explicit Balancer(const config::HealthSettings& health);
  // New passive-health settings (a reload); endpoints already ejected keep their deadline.
  void set_health(const config::HealthSettings& health) { health_ = health; }

  // Rebinds to a new table; per-endpoint stats (in_flight included) carry over by
  // Endpoint::key within the same Cluster::service. Increments generation(). The Balancer
  // keeps a pointer to `table`: the caller (the proxy thread) keeps the table alive until
  // the next on_table.
  void on_table(const RouteTable& table);

  // Incremented by every on_table. A request records it at on_start; when it differs at
  // the end, the request's (cluster, endpoint) indices belong to an older table and it
  // reports through the key-based on_finish overload below.
  std::uint64_t generation() const { return generation_; }

  // Chooses an endpoint of `cluster` (index into the table given to on_table).
  // `sticky` is the endpoint key from the sticky cookie, if any: used when that endpoint
  // exists and is not ejected. `exclude` (index) is skipped (retry on another endpoint).
  // Ejected or unhealthy endpoints are skipped; when all are ejected, returns nullopt. With
  // Cluster::prefer_local, a usable local endpoint is chosen over any remote one.
  std::optional<Pick> pick(std::uint32_t cluster, std::uint64_t rnd, Clock::time_point now,
                           std::string_view sticky = {},
                           std::optional<std::uint32_t> exclude = std::nullopt);

  // on_start / on_finish take indices into the table the Balancer CURRENTLY holds (call
  // on_start right after pick, on the same thread, so no swap can come in between).
  // Out-of-range indices are ignored.
  void on_start(std::uint32_t cluster, std::uint32_t endpoint);
  // Records the outcome; returns true when this outcome ejected the endpoint.
  // success resets the failure count (and the backoff once the endpoint is back);
  // server_error / connect_failed count toward health.max_failures; local_abort only ends
  // the request. Failures reported while the endpoint is already ejected (requests started
  // before the ejection) do not eject it again.
  bool on_finish(std::uint32_t cluster, std::uint32_t endpoint, Outcome outcome,
                 Clock::time_point now);
  // For a request that may have outlived a table swap: `started_generation` is generation()
  // at on_start, `service` / `key` are Cluster::service and Endpoint::key from the table the
  // request used. If the generation is current this is the overload above; otherwise the
  // endpoint is looked up by (service, key) in the current table and the call is ignored
  // (returns false) when it no longer exists.
  bool on_finish(std::uint64_t started_generation, std::uint32_t cluster, std::uint32_t endpoint,
                 std::string_view service, std::string_view key, Outcome outcome,
                 Clock::time_point now);

  const EndpointStats& stats_for_test(std::uint32_t cluster, std::uint32_t endpoint) const;

 private:
  config::HealthSettings health_;
  std::vector<std::vector<EndpointStats>> stats_;  // [cluster][endpoint]
  std::vector<std::uint64_t> rr_;                  // [cluster] round-robin cursor
  std::vector<std::vector<std::string>> keys_;     // [cluster][endpoint] -> Endpoint::key
  std::vector<std::string> services_;              // [cluster] -> Cluster::service
  const RouteTable* table_ = nullptr;
  std::uint64_t generation_ = 0;
};

}  // namespace routemesh::mesh
