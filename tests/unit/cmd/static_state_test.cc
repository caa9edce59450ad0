#include "cmd/static_state.h"

#include "config/config.h"
#include "discovery/model/state.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

using namespace routemesh;
using namespace routemesh::discovery;
using routemesh::cmd::service_paths_from_config;
using routemesh::cmd::state_from_config;

namespace {

config::NodeConfig parse_config(std::string_view yaml) {
  auto result = config::parse(yaml);
  if (auto* errors = std::get_if<std::vector<config::FieldError>>(&result)) {
    FAIL("config errors:\n" << config::format_errors(*errors));
  }
  return std::get<config::NodeConfig>(result);
}

// Config text -> state -> validate_state with the config's paths, as cmd/node.cc does.
std::vector<StateError> validate_config(std::string_view yaml) {
  auto cfg = parse_config(yaml);
  return validate_state(state_from_config(cfg), service_paths_from_config(cfg));
}

std::string describe(const std::vector<StateError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += e.path + ": " + e.message + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("state_from_config turns services and tasks into a ClusterState") {
  auto cfg = parse_config(R"(
node: { name: edge }
services:
  - name: web
    labels: { mesh.http: web.localhost }
    published: ["9000:80/tcp"]
    tasks: ["127.0.0.1:9001", "10.0.0.2", "[::1]:9003"]
  - name: api
)");
  ClusterState state = state_from_config(cfg);
  REQUIRE(state.services.size() == 2);
  const Service& web = state.services.at("web");
  CHECK(web.labels.at("mesh.http") == "web.localhost");
  REQUIRE(web.ports.size() == 1);
  CHECK(web.ports[0].published == 9000);
  CHECK(web.ports[0].target == 80);
  CHECK(web.ports[0].protocol == "tcp");
  CHECK(web.endpoint_mode == EndpointMode::vip);
  CHECK(state.services.at("api").ports.empty());

  REQUIRE(state.tasks.size() == 3);
  const Task& t1 = state.tasks.at("web.1");
  CHECK(t1.service == "web");
  CHECK(t1.node.empty());
  CHECK(t1.address == "127.0.0.1");
  CHECK(t1.port == 9001);
  CHECK(t1.health == TaskHealth::unknown);
  CHECK(state.tasks.at("web.2").address == "10.0.0.2");
  CHECK(state.tasks.at("web.2").port == 0);
  CHECK(state.tasks.at("web.3").address == "::1");
  CHECK(state.tasks.at("web.3").port == 9003);

  REQUIRE(state.nodes.count("edge") == 1);
  CHECK(state.nodes.at("edge").name == "edge");
  CHECK(state.revision > 0);
}

TEST_CASE("service_paths_from_config maps names to their list position") {
  auto cfg = parse_config("services: [ { name: b }, { name: a }, { name: c } ]");
  auto paths = service_paths_from_config(cfg);
  CHECK(paths == std::map<std::string, std::string>{
                     {"b", "services[0]"}, {"a", "services[1]"}, {"c", "services[2]"}});
}

TEST_CASE("a valid config has no state errors") {
  auto errors = validate_config(R"(
services:
  - name: web
    labels: { mesh.http: "web.localhost,*.web.localhost" }
    tasks: ["127.0.0.1:9101", "127.0.0.1:9102"]
  - name: api
    labels: { mesh.http: web.localhost, mesh.http.path: /v1, mesh.lb: least_request }
    tasks: ["127.0.0.1:9201"]
  - name: tcp
    published: ["9300:9301"]
    tasks: ["127.0.0.1"]
)");
  INFO(describe(errors));
  CHECK(errors.empty());
}

TEST_CASE("label errors carry the service's config path") {
  auto errors = validate_config(R"(
services:
  - name: a
    labels: { mesh.http: a.localhost }
    tasks: ["127.0.0.1:1"]
  - name: b
    labels: { mesh.http: "", mesh.colour: red }
    tasks: ["127.0.0.1:2"]
)");
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "services[1].labels.mesh.colour");
  CHECK(errors[0].message == "unknown mesh label");
  CHECK(errors[1].path == "services[1].labels.mesh.http");
  CHECK(errors[1].message == "empty host");
}

TEST_CASE("two services claiming the same host and path: the second is the error, naming both") {
  auto errors = validate_config(R"(
services:
  - name: zeta
    labels: { mesh.http: Web.Localhost }
    tasks: ["127.0.0.1:1"]
  - name: alpha
    labels: { mesh.http: "other.localhost,web.localhost" }
    tasks: ["127.0.0.1:2"]
)");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "services[1].labels.mesh.http");
  CHECK(errors[0].message ==
        "host web.localhost path / already claimed by service \"zeta\" (second claim by "
        "service \"alpha\")");
}

TEST_CASE("two services publishing the same port: the second is the error, naming both") {
  auto errors = validate_config(R"(
services:
  - name: one
    published: ["9000:80", "9001:81"]
  - name: two
    published: ["9002:80", "9001:82/tcp"]
)");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "services[1].published[1]");
  CHECK(errors[0].message ==
        "published port 9001/tcp already used by service \"one\" (second use by service \"two\")");
}

TEST_CASE("an HTTP service needs a task port from somewhere") {
  struct Case {
    const char* yaml;
    bool error;
  };
  const std::vector<Case> cases = {
      // no mesh.http.port, no published target, tasks without port
      {"services: [ { name: w, labels: { mesh.http: w.localhost }, tasks: [\"127.0.0.1\"] } ]",
       true},
      // no tasks at all and nothing else
      {"services: [ { name: w, labels: { mesh.http: w.localhost } } ]", true},
      // one task without a port among tasks with ports
      {"services: [ { name: w, labels: { mesh.http: w.localhost }, "
       "tasks: [\"127.0.0.1:1\", \"127.0.0.2\"] } ]",
       true},
      {"services: [ { name: w, labels: { mesh.http: w.localhost, mesh.http.port: 80 }, "
       "tasks: [\"127.0.0.1\"] } ]",
       false},
      {"services: [ { name: w, labels: { mesh.http: w.localhost }, published: [\"9000:80\"], "
       "tasks: [\"127.0.0.1\"] } ]",
       false},
      {"services: [ { name: w, labels: { mesh.http: w.localhost }, tasks: [\"127.0.0.1:80\"] } ]",
       false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    auto errors = validate_config(c.yaml);
    INFO(describe(errors));
    if (c.error) {
      REQUIRE(errors.size() == 1);
      CHECK(errors[0].path == "services[0].labels.mesh.http");
      CHECK_THAT(errors[0].message, Catch::StartsWith("no task port for HTTP"));
    } else {
      CHECK(errors.empty());
    }
  }
}

TEST_CASE("errors come out in config order even past ten services") {
  std::string yaml = "services:\n";
  for (int i = 0; i < 12; ++i) {
    yaml += "  - name: s" + std::to_string(i) + "\n    labels: { mesh.lb: bad }\n";
  }
  auto errors = validate_config(yaml);
  REQUIRE(errors.size() == 12);
  for (int i = 0; i < 12; ++i) {
    CHECK(errors[i].path == "services[" + std::to_string(i) + "].labels.mesh.lb");
  }
  // Same input, same output.
  CHECK(describe(validate_config(yaml)) == describe(errors));
}

TEST_CASE("the demo example is a valid state") {
  // RM_SOURCE_DIR is set by tests/CMakeLists.txt.
  const std::string path =
      (std::filesystem::path(RM_SOURCE_DIR) / "examples" / "demo.yaml").string();
  REQUIRE_FALSE(path.empty());
  auto result = config::load_file(path);
  REQUIRE(std::holds_alternative<config::NodeConfig>(result));
  const auto& cfg = std::get<config::NodeConfig>(result);
  ClusterState state = state_from_config(cfg);
  auto errors = validate_state(state, service_paths_from_config(cfg));
  INFO(describe(errors));
  CHECK(errors.empty());
  CHECK(state.tasks.size() == 4);
  CHECK(state.services.at("api").labels.at("mesh.http.path") == "/v1");
}
