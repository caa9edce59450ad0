#include "mesh/balancer.h"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace routemesh;
using mesh::Balancer;
using mesh::Clock;
using mesh::LbPolicy;
using mesh::Outcome;
using namespace std::chrono_literals;

// A cluster whose endpoints have keys "10.0.0.<i>:80" for the given last octets.
mesh::Cluster make_cluster(const std::string& service, LbPolicy lb, std::vector<int> octets) {
  mesh::Cluster cluster;
  cluster.service = service;
  cluster.lb = lb;
  for (int octet : octets) {
    mesh::Endpoint endpoint;
    endpoint.task_id = service + "." + std::to_string(octet);
    endpoint.ip.text = "10.0.0." + std::to_string(octet);
    endpoint.ip.bytes[0] = 10;
    endpoint.ip.bytes[3] = static_cast<std::uint8_t>(octet);
    endpoint.port = 80;
    endpoint.key = endpoint.ip.text + ":80";
    cluster.endpoints.push_back(endpoint);
  }
  return cluster;
}

mesh::RouteTable make_table(std::vector<mesh::Cluster> clusters) {
  mesh::RouteTable table;
  for (std::size_t i = 0; i < clusters.size(); ++i) {
    clusters[i].index = static_cast<std::uint32_t>(i);
  }
  table.clusters = std::move(clusters);
  return table;
}

config::HealthSettings health(std::uint32_t failures = 3, std::uint32_t base_ms = 1000,
                              std::uint32_t max_ms = 5000) {
  config::HealthSettings h;
  h.max_failures = failures;
  h.base_ejection_ms = base_ms;
  h.max_ejection_ms = max_ms;
  return h;
}

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

std::uint32_t must_pick(Balancer& b, std::uint32_t cluster, std::uint64_t rnd = 0,
                        Clock::time_point now = kT0, std::string_view sticky = {},
                        std::optional<std::uint32_t> exclude = std::nullopt) {
  auto pick = b.pick(cluster, rnd, now, sticky, exclude);
  REQUIRE(pick.has_value());
  return pick->endpoint;
}

// Fails `endpoint` until it is ejected; returns how long the ejection lasts.
Clock::duration eject(Balancer& b, std::uint32_t endpoint, Clock::time_point now,
                      std::uint32_t failures) {
  for (std::uint32_t i = 0; i < failures; ++i) {
    b.on_start(0, endpoint);
    bool ejected = b.on_finish(0, endpoint, Outcome::server_error, now);
    REQUIRE(ejected == (i + 1 == failures));
  }
  return b.stats_for_test(0, endpoint).ejected_until - now;
}

}  // namespace

TEST_CASE("round robin cycles through endpoints in order", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2, 3})});
  Balancer b(health());
  b.on_table(table);
  std::vector<std::uint32_t> order;
  for (int i = 0; i < 7; ++i) {
    order.push_back(must_pick(b, 0, static_cast<std::uint64_t>(i) * 7919));
  }
  CHECK(order == std::vector<std::uint32_t>{0, 1, 2, 0, 1, 2, 0});
}

TEST_CASE("round robin skips unhealthy endpoints", "[balancer]") {
  auto cluster = make_cluster("web", LbPolicy::round_robin, {1, 2, 3});
  cluster.endpoints[1].healthy = false;
  auto table = make_table({cluster});
  Balancer b(health());
  b.on_table(table);
  std::vector<std::uint32_t> order;
  for (int i = 0; i < 4; ++i) {
    order.push_back(must_pick(b, 0));
  }
  CHECK(order == std::vector<std::uint32_t>{0, 2, 0, 2});
}

TEST_CASE("no endpoint when every endpoint is unhealthy or the cluster is empty", "[balancer]") {
  auto cluster = make_cluster("web", LbPolicy::random, {1, 2});
  cluster.endpoints[0].healthy = false;
  cluster.endpoints[1].healthy = false;
  auto table = make_table({cluster, make_cluster("empty", LbPolicy::round_robin, {})});
  Balancer b(health());
  b.on_table(table);
  CHECK_FALSE(b.pick(0, 1, kT0).has_value());
  CHECK_FALSE(b.pick(1, 1, kT0).has_value());
  CHECK_FALSE(b.pick(5, 1, kT0).has_value());  // out of range
}

TEST_CASE("sticky key picks its endpoint; unknown or ejected key falls back", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2, 3})});
  Balancer b(health(1));
  b.on_table(table);
  for (int i = 0; i < 3; ++i) {
    CHECK(must_pick(b, 0, 0, kT0, "10.0.0.3:80") == 2);
  }
  // A miss balances normally; the sticky hits above did not move the cursor.
  CHECK(must_pick(b, 0, 0, kT0, "10.0.0.9:80") == 0);
  CHECK(must_pick(b, 0, 0, kT0, "10.0.0.9:80") == 1);

  b.on_start(0, 2);
  REQUIRE(b.on_finish(0, 2, Outcome::connect_failed, kT0));
  CHECK(must_pick(b, 0, 0, kT0, "10.0.0.3:80") != 2);
}

TEST_CASE("exclude skips an endpoint unless it is the only candidate", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2}),
                           make_cluster("one", LbPolicy::round_robin, {1})});
  Balancer b(health());
  b.on_table(table);
  CHECK(must_pick(b, 0, 0, kT0, {}, 0) == 1);
  CHECK(must_pick(b, 0, 0, kT0, {}, 1) == 0);
  CHECK(must_pick(b, 0, 0, kT0, "10.0.0.1:80", 0) == 1);  // sticky loses to exclude
  CHECK_FALSE(b.pick(1, 0, kT0, {}, 0).has_value());
  for (std::uint64_t rnd = 0; rnd < 50; ++rnd) {
    auto random_table = make_table({make_cluster("r", LbPolicy::random, {1, 2, 3})});
    Balancer r(health());
    r.on_table(random_table);
    CHECK(must_pick(r, 0, rnd, kT0, {}, 1) != 1);
  }
}

TEST_CASE("least request never picks the busiest of three endpoints", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::least_request, {1, 2, 3})});
  Balancer b(health());
  b.on_table(table);
  for (int i = 0; i < 5; ++i) {
    b.on_start(0, 1);
  }
  std::mt19937_64 rng(12345);
  std::array<int, 3> counts{};
  for (int i = 0; i < 3000; ++i) {
    ++counts[must_pick(b, 0, rng())];
  }
  CHECK(counts[1] == 0);
  // The two idle endpoints tie whenever both are drawn, so each gets a fair share.
  CHECK(counts[0] > 1000);
  CHECK(counts[2] > 1000);
}

TEST_CASE("least request picks the idle endpoint of two", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::least_request, {1, 2})});
  Balancer b(health());
  b.on_table(table);
  b.on_start(0, 0);
  std::mt19937_64 rng(99);
  for (int i = 0; i < 200; ++i) {
    CHECK(must_pick(b, 0, rng()) == 1);
  }
  b.on_finish(0, 0, Outcome::success, kT0);
  b.on_start(0, 1);
  b.on_start(0, 1);
  for (int i = 0; i < 200; ++i) {
    CHECK(must_pick(b, 0, rng()) == 0);
  }
}

TEST_CASE("random spreads picks evenly over candidates", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::random, {1, 2, 3, 4})});
  Balancer b(health());
  b.on_table(table);
  std::mt19937_64 rng(2024);
  std::array<int, 4> counts{};
  for (int i = 0; i < 8000; ++i) {
    ++counts[must_pick(b, 0, rng())];
  }
  for (int count : counts) {
    CHECK(count > 1700);
    CHECK(count < 2300);
  }
}

TEST_CASE("an endpoint is ejected after max_failures consecutive failures", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2})});
  Balancer b(health(3));
  b.on_table(table);
  b.on_start(0, 0);
  CHECK_FALSE(b.on_finish(0, 0, Outcome::server_error, kT0));
  b.on_start(0, 0);
  CHECK_FALSE(b.on_finish(0, 0, Outcome::connect_failed, kT0));
  CHECK(b.stats_for_test(0, 0).consecutive_failures == 2);
  b.on_start(0, 0);
  CHECK(b.on_finish(0, 0, Outcome::server_error, kT0));
  CHECK(b.stats_for_test(0, 0).consecutive_failures == 0);
  CHECK(b.stats_for_test(0, 0).ejections == 1);
  for (int i = 0; i < 4; ++i) {
    CHECK(must_pick(b, 0, 0, kT0 + 999ms) == 1);
  }
  CHECK(eject(b, 1, kT0, 3) == 1000ms);
  CHECK_FALSE(b.pick(0, 0, kT0 + 500ms).has_value());  // no panic mode: all ejected -> none
}

TEST_CASE("a success resets the consecutive failure count", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1})});
  Balancer b(health(3));
  b.on_table(table);
  for (int round = 0; round < 5; ++round) {
    CHECK_FALSE(b.on_finish(0, 0, Outcome::server_error, kT0));
    CHECK_FALSE(b.on_finish(0, 0, Outcome::server_error, kT0));
    CHECK_FALSE(b.on_finish(0, 0, Outcome::success, kT0));
  }
  CHECK(b.stats_for_test(0, 0).ejections == 0);
}

TEST_CASE("ejection time doubles per ejection and is capped", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2})});
  Balancer b(health(2, 1000, 5000));
  b.on_table(table);
  auto now = kT0;
  std::vector<Clock::duration> durations;
  for (int i = 0; i < 5; ++i) {
    auto d = eject(b, 0, now, 2);
    durations.push_back(d);
    now += d;  // back in service, fails again at once
  }
  CHECK(durations == std::vector<Clock::duration>{1000ms, 2000ms, 4000ms, 5000ms, 5000ms});
}

TEST_CASE("an ejected endpoint returns after its ejection and a success resets the backoff",
          "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1})});
  Balancer b(health(1, 1000, 30000));
  b.on_table(table);
  CHECK(eject(b, 0, kT0, 1) == 1000ms);
  CHECK_FALSE(b.pick(0, 0, kT0 + 999ms).has_value());
  CHECK(must_pick(b, 0, 0, kT0 + 1000ms) == 0);
  CHECK(eject(b, 0, kT0 + 1000ms, 1) == 2000ms);
  auto back = kT0 + 3000ms;
  CHECK(must_pick(b, 0, 0, back) == 0);
  b.on_start(0, 0);
  CHECK_FALSE(b.on_finish(0, 0, Outcome::success, back));
  CHECK(b.stats_for_test(0, 0).ejections == 0);
  CHECK(eject(b, 0, back, 1) == 1000ms);
}

TEST_CASE("outcomes of requests started before an ejection do not extend it", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1})});
  Balancer b(health(1, 1000, 30000));
  b.on_table(table);
  for (int i = 0; i < 3; ++i) {
    b.on_start(0, 0);
  }
  CHECK(b.on_finish(0, 0, Outcome::server_error, kT0));
  CHECK_FALSE(b.on_finish(0, 0, Outcome::server_error, kT0 + 10ms));
  CHECK_FALSE(b.on_finish(0, 0, Outcome::success, kT0 + 20ms));
  const auto& s = b.stats_for_test(0, 0);
  CHECK(s.ejected_until == kT0 + 1000ms);
  CHECK(s.ejections == 1);
  CHECK(s.in_flight == 0);
}

TEST_CASE("local abort changes no health state", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1})});
  Balancer b(health(2));
  b.on_table(table);
  b.on_finish(0, 0, Outcome::server_error, kT0);
  for (int i = 0; i < 10; ++i) {
    b.on_start(0, 0);
    CHECK_FALSE(b.on_finish(0, 0, Outcome::local_abort, kT0));
  }
  const auto& s = b.stats_for_test(0, 0);
  CHECK(s.consecutive_failures == 1);
  CHECK(s.in_flight == 0);
  CHECK(s.ejections == 0);
  CHECK(must_pick(b, 0, 0, kT0) == 0);
}

TEST_CASE("in_flight counts starts and finishes and never underflows", "[balancer]") {
  auto table = make_table({make_cluster("web", LbPolicy::round_robin, {1})});
  Balancer b(health());
  b.on_table(table);
  b.on_start(0, 0);
  b.on_start(0, 0);
  CHECK(b.stats_for_test(0, 0).in_flight == 2);
  b.on_finish(0, 0, Outcome::success, kT0);
  b.on_finish(0, 0, Outcome::success, kT0);
  b.on_finish(0, 0, Outcome::success, kT0);
  CHECK(b.stats_for_test(0, 0).in_flight == 0);
  // Out-of-range indices are ignored.
  b.on_start(3, 0);
  b.on_start(0, 9);
  CHECK_FALSE(b.on_finish(3, 0, Outcome::server_error, kT0));
  CHECK_FALSE(b.on_finish(0, 9, Outcome::server_error, kT0));
}

TEST_CASE("stats carry over a table swap by endpoint key within the service", "[balancer]") {
  auto first = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2}),
                           make_cluster("api", LbPolicy::round_robin, {1})});
  Balancer b(health(3));
  b.on_table(first);
  b.on_finish(0, 0, Outcome::server_error, kT0);  // web 10.0.0.1: 1 failure
  b.on_finish(0, 0, Outcome::server_error, kT0);  // 2 failures
  b.on_start(0, 1);                               // web 10.0.0.2: 1 in flight
  b.on_finish(1, 0, Outcome::server_error, kT0);  // api 10.0.0.1: 1 failure

  // Reordered clusters and endpoints, one endpoint new.
  auto second = make_table({make_cluster("api", LbPolicy::round_robin, {1}),
                            make_cluster("web", LbPolicy::round_robin, {3, 2, 1})});
  b.on_table(second);
  CHECK(b.stats_for_test(1, 2).consecutive_failures == 2);
  CHECK(b.stats_for_test(1, 1).in_flight == 1);
  CHECK(b.stats_for_test(1, 0).consecutive_failures == 0);
  CHECK(b.stats_for_test(1, 0).in_flight == 0);
  CHECK(b.stats_for_test(0, 0).consecutive_failures == 1);  // not web's stats

  // The carried count still ejects on the next failure.
  CHECK(b.on_finish(1, 2, Outcome::server_error, kT0));
}

TEST_CASE("generation changes on each table and stale finishes are found by key", "[balancer]") {
  auto first = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2})});
  Balancer b(health(1));
  const auto g0 = b.generation();
  b.on_table(first);
  const auto g1 = b.generation();
  CHECK(g1 != g0);

  // Two requests start on the first table.
  b.on_start(0, 0);
  b.on_start(0, 1);

  auto second = make_table({make_cluster("other", LbPolicy::round_robin, {7}),
                            make_cluster("web", LbPolicy::round_robin, {2})});
  b.on_table(second);
  CHECK(b.generation() != g1);
  CHECK(b.stats_for_test(1, 0).in_flight == 1);

  // 10.0.0.2 moved to (1, 0); its stale indices (0, 1) would hit the wrong cluster.
  CHECK(b.on_finish(g1, 0, 1, "web", "10.0.0.2:80", Outcome::server_error, kT0));
  CHECK(b.stats_for_test(1, 0).in_flight == 0);
  CHECK(b.stats_for_test(1, 0).ejections == 1);
  CHECK(b.stats_for_test(0, 0).in_flight == 0);
  CHECK(b.stats_for_test(0, 0).ejections == 0);
  // 10.0.0.1 is gone: ignored.
  CHECK_FALSE(b.on_finish(g1, 0, 0, "web", "10.0.0.1:80", Outcome::server_error, kT0));
  CHECK(b.stats_for_test(0, 0).ejections == 0);
  // A current generation uses the indices directly.
  b.on_start(0, 0);
  CHECK(b.on_finish(b.generation(), 0, 0, "other", "10.0.0.7:80", Outcome::server_error, kT0));
}

TEST_CASE("round robin cursor stays in range after swapping to a smaller table", "[balancer]") {
  auto big = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2, 3, 4})});
  Balancer b(health());
  b.on_table(big);
  for (int i = 0; i < 3; ++i) {
    must_pick(b, 0);
  }
  auto small = make_table({make_cluster("web", LbPolicy::round_robin, {1, 2})});
  b.on_table(small);
  std::array<int, 2> counts{};
  for (int i = 0; i < 10; ++i) {
    auto picked = must_pick(b, 0);
    REQUIRE(picked < 2);
    ++counts[picked];
  }
  CHECK(counts[0] == 5);
  CHECK(counts[1] == 5);
}
