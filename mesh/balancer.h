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

  // Rebinds to a new table; per-endpoint stats carry over by Endpoint::key.
  void on_table(const RouteTable& table);

  // Chooses an endpoint of `cluster` (index into the table given to on_table).
  // `sticky` is the endpoint key from the sticky cookie, if any: used when that endpoint
  // exists and is not ejected. `exclude` (index) is skipped (retry on another endpoint).
  // Ejected or unhealthy endpoints are skipped; when all are ejected, returns nullopt.
  std::optional<Pick> pick(std::uint32_t cluster, std::uint64_t rnd, Clock::time_point now,
                           std::string_view sticky = {},
                           std::optional<std::uint32_t> exclude = std::nullopt);

  void on_start(std::uint32_t cluster, std::uint32_t endpoint);
  // Records the outcome; returns true when this outcome ejected the endpoint.
  bool on_finish(std::uint32_t cluster, std::uint32_t endpoint, Outcome outcome,
                 Clock::time_point now);

  const EndpointStats& stats_for_test(std::uint32_t cluster, std::uint32_t endpoint) const;

 private:
  config::HealthSettings health_;
  std::vector<std::vector<EndpointStats>> stats_;  // [cluster][endpoint]
  std::vector<std::uint64_t> rr_;                  // [cluster] round-robin cursor
  std::vector<std::vector<std::string>> keys_;     // [cluster][endpoint] -> Endpoint::key
  const RouteTable* table_ = nullptr;
};

}  // namespace routemesh::mesh
