#include "mesh/balancer.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace routemesh::mesh {

namespace {

// SplitMix64 finaliser (Steele, Lea, Flood: "Fast splittable pseudorandom number
// generators", 2014). Spreads the caller's random word so that the two choices of
// least_request come from independent-looking halves even if `rnd` is weak in some bits.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string stats_key(std::string_view service, std::string_view key) {
  std::string out;
  out.reserve(service.size() + 1 + key.size());
  out.append(service);
  out.push_back('\0');  // service names cannot contain NUL, so the pair is unambiguous
  out.append(key);
  return out;
}

}  // namespace

Balancer::Balancer(const config::HealthSettings& health) : health_(health) {}

void Balancer::on_table(const RouteTable& table) {
  // Old stats by (service, endpoint key). in_flight moves too: requests started on the old
  // table finish after the swap and decrement it through the key-based on_finish.
  std::unordered_map<std::string, EndpointStats> old_stats;
  std::unordered_map<std::string, std::uint64_t> old_cursor;
  for (std::size_t c = 0; c < stats_.size(); ++c) {
    old_cursor.try_emplace(services_[c], rr_[c]);
    for (std::size_t e = 0; e < stats_[c].size(); ++e) {
      old_stats.try_emplace(stats_key(services_[c], keys_[c][e]), stats_[c][e]);
    }
  }

  const auto n = table.clusters.size();
  stats_.assign(n, {});
  keys_.assign(n, {});
  services_.assign(n, {});
  rr_.assign(n, 0);
  for (std::size_t c = 0; c < n; ++c) {
    const Cluster& cluster = table.clusters[c];
    services_[c] = cluster.service;
    // Keeping the cursor avoids every thread sending its next request to endpoint 0 after
    // each swap.
    if (auto it = old_cursor.find(cluster.service); it != old_cursor.end()) {
      rr_[c] = it->second;
    }
    stats_[c].resize(cluster.endpoints.size());
    keys_[c].reserve(cluster.endpoints.size());
    for (std::size_t e = 0; e < cluster.endpoints.size(); ++e) {
      const Endpoint& endpoint = cluster.endpoints[e];
      keys_[c].push_back(endpoint.key);
      if (auto it = old_stats.find(stats_key(cluster.service, endpoint.key));
          it != old_stats.end()) {
        stats_[c][e] = it->second;
      }
    }
  }
  table_ = &table;
  ++generation_;
}

std::optional<Pick> Balancer::pick(std::uint32_t cluster, std::uint64_t rnd, Clock::time_point now,
                                   std::string_view sticky, std::optional<std::uint32_t> exclude) {
  if (table_ == nullptr || cluster >= table_->clusters.size()) {
    return std::nullopt;
  }
  const auto& endpoints = table_->clusters[cluster].endpoints;
  const auto& stats = stats_[cluster];
  const auto n = static_cast<std::uint32_t>(endpoints.size());

  // No "panic mode" (Envoy routes to every host once too many are unhealthy): an ejected
  // endpoint stays out, and with none left the caller answers 503.
  bool local_only = false;  // prefer-local with a usable local endpoint: only those count
  auto candidate = [&](std::uint32_t i) {
    return endpoints[i].healthy && !(now < stats[i].ejected_until) && exclude != i &&
           (!local_only || endpoints[i].local);
  };

  if (!sticky.empty()) {
    for (std::uint32_t i = 0; i < n; ++i) {
      if (endpoints[i].key == sticky) {
        if (candidate(i)) {
          return Pick{i};
        }
        break;
      }
    }
  }

  if (table_->clusters[cluster].prefer_local) {
    local_only = true;
    bool any_local = false;
    for (std::uint32_t i = 0; i < n && !any_local; ++i) {
      any_local = candidate(i);
    }
    local_only = any_local;
  }

  std::uint32_t count = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    count += candidate(i) ? 1 : 0;
  }
  if (count == 0) {
    return std::nullopt;
  }
  // The k-th candidate (0-based) in index order.
  auto nth = [&](std::uint32_t k) {
    for (std::uint32_t i = 0; i < n; ++i) {
      if (candidate(i)) {
        if (k == 0) {
          return i;
        }
        --k;
      }
    }
    return n;  // unreachable: k < count
  };

  switch (table_->clusters[cluster].lb) {
    case LbPolicy::round_robin: {
      auto start = static_cast<std::uint32_t>(rr_[cluster] % n);
      for (std::uint32_t step = 0; step < n; ++step) {
        std::uint32_t i = (start + step) % n;
        if (candidate(i)) {
          rr_[cluster] = i + 1;
          return Pick{i};
        }
      }
      return std::nullopt;  // unreachable: count > 0
    }
    case LbPolicy::least_request: {
      // Power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load
      // Balancing", 2001): two distinct random candidates, the less loaded wins.
      if (count == 1) {
        return Pick{nth(0)};
      }
      std::uint64_t h = splitmix64(rnd);
      auto first = static_cast<std::uint32_t>((h & 0xffffffffULL) % count);
      auto second = static_cast<std::uint32_t>((h >> 32) % (count - 1));
      if (second >= first) {
        ++second;
      }
      std::uint32_t a = nth(first);
      std::uint32_t b = nth(second);
      return Pick{stats[b].in_flight < stats[a].in_flight ? b : a};
    }
    case LbPolicy::random:
      return Pick{nth(static_cast<std::uint32_t>(rnd % count))};
  }
  return std::nullopt;
}

void Balancer::on_start(std::uint32_t cluster, std::uint32_t endpoint) {
  if (cluster >= stats_.size() || endpoint >= stats_[cluster].size()) {
    return;
  }
  ++stats_[cluster][endpoint].in_flight;
}

bool Balancer::on_finish(std::uint32_t cluster, std::uint32_t endpoint, Outcome outcome,
                         Clock::time_point now) {
  if (cluster >= stats_.size() || endpoint >= stats_[cluster].size()) {
    return false;
  }
  EndpointStats& s = stats_[cluster][endpoint];
  if (s.in_flight > 0) {
    --s.in_flight;
  }
  const bool ejected_now = now < s.ejected_until;
  switch (outcome) {
    case Outcome::local_abort:
      return false;
    case Outcome::success:
      s.consecutive_failures = 0;
      // A success after the ejection ended means the endpoint is back: the next ejection
      // starts from base_ejection_ms again. A success from a request that started before
      // the ejection says nothing about the recovery, so the backoff stays.
      if (!ejected_now) {
        s.ejections = 0;
      }
      return false;
    case Outcome::server_error:
    case Outcome::connect_failed:
      break;
  }
  if (ejected_now) {
    // Requests that were in flight when the endpoint was ejected report the same outage;
    // counting them would extend the ejection and double the backoff for nothing.
    return false;
  }
  ++s.consecutive_failures;
  const std::uint32_t threshold = std::max<std::uint32_t>(health_.max_failures, 1);
  if (s.consecutive_failures < threshold) {
    return false;
  }
  // base * 2^ejections, capped; the shift is bounded so it cannot overflow.
  std::uint64_t ms = health_.max_ejection_ms;
  if (s.ejections < 32) {
    ms = std::min<std::uint64_t>(std::uint64_t{health_.base_ejection_ms} << s.ejections,
                                 health_.max_ejection_ms);
  }
  s.ejected_until = now + std::chrono::milliseconds(ms);
  ++s.ejections;
  s.consecutive_failures = 0;
  return true;
}

bool Balancer::on_finish(std::uint64_t started_generation, std::uint32_t cluster,
                         std::uint32_t endpoint, std::string_view service, std::string_view key,
                         Outcome outcome, Clock::time_point now) {
  if (started_generation == generation_) {
    return on_finish(cluster, endpoint, outcome, now);
  }
  // Stale indices: find the endpoint by identity. Linear, but only for requests that
  // straddle a table swap.
  for (std::size_t c = 0; c < services_.size(); ++c) {
    if (services_[c] != service) {
      continue;
    }
    for (std::size_t e = 0; e < keys_[c].size(); ++e) {
      if (keys_[c][e] == key) {
        return on_finish(static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(e), outcome,
                         now);
      }
    }
  }
  return false;
}

const EndpointStats& Balancer::stats_for_test(std::uint32_t cluster, std::uint32_t endpoint) const {
  static const EndpointStats kNone{};
  if (cluster >= stats_.size() || endpoint >= stats_[cluster].size()) {
    return kNone;
  }
  return stats_[cluster][endpoint];
}

}  // namespace routemesh::mesh
