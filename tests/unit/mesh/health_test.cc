#include "mesh/health/tracker.h"
#include "mesh/route_table.h"

#include <catch2/catch.hpp>

#include <chrono>

namespace {

using namespace routemesh;
using namespace std::chrono_literals;
using mesh::health::Clock;
using mesh::health::Tracker;
using mesh::health::Verdict;

discovery::HealthCheck check(std::uint32_t healthy, std::uint32_t unhealthy,
                             std::uint32_t start_period_ms = 0) {
  discovery::HealthCheck c;
  c.healthy_threshold = healthy;
  c.unhealthy_threshold = unhealthy;
  c.start_period_ms = start_period_ms;
  return c;
}

TEST_CASE("thresholds count consecutive results only", "[health]") {
  const auto t0 = Clock::now();
  Tracker t(check(2, 3), t0);
  CHECK(t.verdict() == Verdict::unknown);
  CHECK_FALSE(t.record(true, t0));
  CHECK(t.record(true, t0) == Verdict::healthy);
  CHECK_FALSE(t.record(true, t0));  // no change, no report
  CHECK_FALSE(t.record(false, t0));
  CHECK_FALSE(t.record(false, t0));
  CHECK_FALSE(t.record(true, t0));  // a pass resets the failure run
  CHECK_FALSE(t.record(false, t0));
  CHECK_FALSE(t.record(false, t0));
  CHECK(t.record(false, t0) == Verdict::unhealthy);
  CHECK_FALSE(t.record(true, t0));
  CHECK(t.record(true, t0) == Verdict::healthy);
}

TEST_CASE("failures in the start period do not count until the first pass", "[health]") {
  const auto t0 = Clock::now();
  Tracker t(check(1, 2, 10'000), t0);
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(t.record(false, t0 + 5s));
  }
  CHECK(t.verdict() == Verdict::unknown);
  CHECK_FALSE(t.record(false, t0 + 11s));
  CHECK(t.record(false, t0 + 12s) == Verdict::unhealthy);

  Tracker u(check(1, 2, 10'000), t0);
  CHECK(u.record(true, t0 + 1s) == Verdict::healthy);
  CHECK_FALSE(u.record(false, t0 + 2s));  // started: failures count from now on
  CHECK(u.record(false, t0 + 3s) == Verdict::unhealthy);
}

discovery::ClusterState checked_state() {
  discovery::ClusterState s;
  discovery::Service web;
  web.name = "web";
  web.labels = {{"mesh.http", "web.test"},
                {"mesh.http.port", "8080"},
                {"mesh.health.check", "http"},
                {"mesh.health.path", "/healthz"}};
  s.services["web"] = web;
  discovery::Service plain;
  plain.name = "plain";
  plain.labels = {{"mesh.http", "plain.test"}, {"mesh.http.port", "80"}};
  s.services["plain"] = plain;
  auto task = [&](std::string id, std::string service, std::string node, std::uint16_t port,
                  discovery::TaskHealth h) {
    discovery::Task t;
    t.id = id;
    t.service = std::move(service);
    t.node = std::move(node);
    t.address = "172.31.1.1";
    t.port = port;
    t.health = h;
    t.version = 7;
    s.tasks[id] = t;
  };
  task("web.1", "web", "n1", 0, discovery::TaskHealth::unknown);
  task("web.2", "web", "n2", 0, discovery::TaskHealth::healthy);
  task("web.3", "web", "n1", 9000, discovery::TaskHealth::healthy);
  task("web.4", "web", "", 0, discovery::TaskHealth::unknown);
  task("plain.1", "plain", "n1", 0, discovery::TaskHealth::unknown);
  return s;
}

TEST_CASE("a node checks its own tasks of checked services", "[health]") {
  auto targets = mesh::health::targets(checked_state(), "n1");
  REQUIRE(targets.size() == 2);
  CHECK(targets[0].task_id == "web.1");
  CHECK(targets[0].port == 8080);  // the HTTP port
  CHECK(targets[0].check.kind == discovery::HealthCheck::Kind::http);
  CHECK(targets[0].check.path == "/healthz");
  CHECK(targets[0].version == 7);
  CHECK(targets[1].task_id == "web.3");
  CHECK(targets[1].port == 9000);  // the task's own port
  CHECK(mesh::health::targets(checked_state(), "").empty());
  CHECK(mesh::health::targets(checked_state(), "n2").size() == 1);
}

TEST_CASE("the target cache parses a service's labels again only when they change", "[health]") {
  mesh::health::TargetCache cache;
  auto state = checked_state();
  CHECK(cache.targets(state, "n1") == mesh::health::targets(state, "n1"));
  const auto first = cache.parses_for_test();
  CHECK(first == 2);  // web and plain, each once however many of their tasks are local

  // A new state with the same labels (a task's health changed): no parse, the new health.
  state.tasks["web.1"].health = discovery::TaskHealth::healthy;
  auto again = cache.targets(state, "n1");
  CHECK(cache.parses_for_test() == first);
  CHECK(again == mesh::health::targets(state, "n1"));
  REQUIRE(again.size() == 2);
  CHECK(again[0].stored == discovery::TaskHealth::healthy);

  // plain gains a check: parsed again, and its task is checked from now on.
  state.services["plain"].labels["mesh.health.check"] = "tcp";
  auto more = cache.targets(state, "n1");
  CHECK(cache.parses_for_test() == first + 1);
  CHECK(more == mesh::health::targets(state, "n1"));
  CHECK(more.size() == 3);

  // web loses its check: its tasks are no longer targets.
  state.services["web"].labels.erase("mesh.health.check");
  auto fewer = cache.targets(state, "n1");
  CHECK(fewer == mesh::health::targets(state, "n1"));
  REQUIRE(fewer.size() == 1);
  CHECK(fewer[0].task_id == "plain.1");

  // A removed service is forgotten: recreated with other labels, it is parsed again.
  state.services.erase("plain");
  CHECK(cache.targets(state, "n1").empty());
  const auto before = cache.parses_for_test();
  discovery::Service plain;
  plain.name = "plain";
  plain.labels = {{"mesh.http", "plain.test"}, {"mesh.health.check", "tcp"}};
  plain.ports.push_back(base::PortMapping{8081, 81, "tcp"});
  state.services["plain"] = plain;
  auto back = cache.targets(state, "n1");
  CHECK(cache.parses_for_test() == before + 1);
  CHECK(back == mesh::health::targets(state, "n1"));
  REQUIRE(back.size() == 1);
  CHECK(back[0].port == 81);  // no task port, no HTTP port: the first published target
}

TEST_CASE("a checked task with a node takes traffic only once it passed", "[health]") {
  auto table = mesh::compile_route_table(checked_state(), "n1");
  auto healthy = [&](const std::string& id) {
    for (const auto& c : table.clusters) {
      for (const auto& e : c.endpoints) {
        if (e.task_id == id) {
          return e.healthy;
        }
      }
    }
    FAIL("no endpoint " << id);
    return false;
  };
  CHECK_FALSE(healthy("web.1"));  // unknown, checked by n1: starting
  CHECK(healthy("web.2"));
  CHECK(healthy("web.4"));    // no node checks it: unknown stays routable
  CHECK(healthy("plain.1"));  // no check: unknown is routable
}

}  // namespace
