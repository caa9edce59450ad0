#include "discovery/model/state.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh;
using namespace routemesh::discovery;

namespace {

std::string describe(const std::vector<StateError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += e.path + ": " + e.message + "\n";
  }
  return out;
}

Service http_service(const std::string& name, const std::string& host, std::uint16_t target = 80) {
  Service s;
  s.name = name;
  s.labels = {{"mesh.http", host}};
  if (target != 0) {
    s.ports.push_back(base::PortMapping{static_cast<std::uint16_t>(10000 + target), target, "tcp"});
  }
  return s;
}

}  // namespace

TEST_CASE("the same host with different paths, or exact vs wildcard, does not conflict") {
  ClusterState state;
  state.services["a"] = http_service("a", "web.localhost");
  state.services["b"] = http_service("b", "web.localhost", 81);
  state.services["b"].labels["mesh.http.path"] = "/b";
  state.services["c"] = http_service("c", "*.web.localhost", 82);
  state.services["d"] = http_service("d", "x.web.localhost", 83);
  auto errors = validate_state(state);
  INFO(describe(errors));
  CHECK(errors.empty());
}

TEST_CASE("a UCP route conflicting with mesh.http is reported at the UCP label") {
  ClusterState state;
  state.services["a"] = http_service("a", "web.localhost");
  Service b;
  b.name = "b";
  b.labels = {
      {"com.docker.ucp.mesh.http.80", "external_route=http://web.localhost,internal_port=80"}};
  state.services["b"] = b;
  auto errors = validate_state(state);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "services.b.labels.com.docker.ucp.mesh.http.80");
  CHECK_THAT(errors[0].message, Catch::Contains("already claimed by service \"a\""));
  CHECK_THAT(errors[0].message, Catch::Contains("\"b\""));
}

TEST_CASE("tasks of unknown services and non-IP task addresses are errors") {
  ClusterState state;
  state.services["web"] = http_service("web", "web.localhost");
  Task orphan;
  orphan.id = "ghost.1";
  orphan.service = "ghost";
  orphan.address = "127.0.0.1";
  state.tasks[orphan.id] = orphan;
  Task named;
  named.id = "web.1";
  named.service = "web";
  named.address = "backend.local";
  state.tasks[named.id] = named;

  auto errors = validate_state(state, {{"web", "services[0]"}});
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "services[0].tasks[0]");
  CHECK(errors[0].message == "address \"backend.local\" is not an IP literal");
  CHECK(errors[1].path == "tasks.ghost.1");
  CHECK(errors[1].message == "unknown service \"ghost\"");
}

TEST_CASE("without config paths, services are named in the paths") {
  ClusterState state;
  state.services["web"] = http_service("web", "");
  auto errors = validate_state(state);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "services.web.labels.mesh.http");
  CHECK(errors[0].message == "empty host");
}

TEST_CASE("a network's DNS address is its subnet's second address") {
  CHECK(dns_address_of("10.10.0.0/24") == "10.10.0.2");
  CHECK(dns_address_of("10.255.0.0/16") == "10.255.0.2");
  CHECK(dns_address_of("192.168.4.0/30") == "192.168.4.2");
  CHECK_FALSE(dns_address_of("192.168.4.0/31"));  // no room: .0 network, .1 broadcast
  CHECK_FALSE(dns_address_of("10.10.0.1/24"));    // host bits set
  CHECK_FALSE(dns_address_of(""));
  CHECK_FALSE(dns_address_of("fd00::/64"));
}
