#include "discovery/manager/request.h"

#include <catch2/catch.hpp>

#include <string>

using namespace routemesh::discovery;
using namespace routemesh::discovery::manager;

namespace {

template <class T>
const ApiError& error_of(const Parsed<T>& parsed) {
  REQUIRE(std::holds_alternative<ApiError>(parsed));
  return std::get<ApiError>(parsed);
}

}  // namespace

TEST_CASE("store error codes map to HTTP statuses") {
  CHECK(http_status(store::errc::invalid) == 400);
  CHECK(http_status(store::errc::not_found) == 404);
  CHECK(http_status(store::errc::conflict) == 409);
  CHECK(http_status(store::errc::version_mismatch) == 409);
  auto e = from_store_error(store::Error{store::errc::version_mismatch, "stale", "version"});
  CHECK(e == ApiError{409, "version_mismatch", "stale", "version"});
}

TEST_CASE("error body is the documented JSON shape") {
  CHECK(
      error_body(ApiError{400, "invalid", "bad \"x\"", "service.name"}) ==
      "{\"error\":{\"code\":\"invalid\",\"message\":\"bad \\\"x\\\"\",\"field\":\"service.name\"}}"
      "\n");
}

TEST_CASE("service spec: POST takes the spec, field paths start at service") {
  auto ok = parse_service_spec(
      R"({"name":"web","labels":{"mesh.http":"w.example.com"},"networks":["appnet"],)"
      R"("ports":[{"published":8080,"target":80}],"endpoint_mode":"dnsrr"})",
      std::nullopt);
  REQUIRE(std::holds_alternative<ServiceSpec>(ok));
  const auto& spec = std::get<ServiceSpec>(ok);
  CHECK(spec.service.name == "web");
  CHECK(spec.service.labels.at("mesh.http") == "w.example.com");
  CHECK(spec.service.networks == std::vector<std::string>{"appnet"});
  REQUIRE(spec.service.ports.size() == 1);
  CHECK(spec.service.ports[0].published == 8080);
  CHECK(spec.service.endpoint_mode == EndpointMode::dnsrr);
  CHECK_FALSE(spec.version);

  CHECK(error_of(parse_service_spec(R"({"labels":{}})", std::nullopt)).field == "service.name");
  CHECK(error_of(parse_service_spec(R"({"name":"w","replicas":2})", std::nullopt)).field ==
        "service.replicas");
  CHECK(error_of(parse_service_spec(R"({"name":"w","vips":{}})", std::nullopt)).field ==
        "service.vips");
  CHECK(error_of(parse_service_spec(R"({"name":"w","version":3})", std::nullopt)).field ==
        "service.version");
  CHECK(error_of(parse_service_spec("[1]", std::nullopt)).status == 400);
  CHECK(error_of(parse_service_spec("{", std::nullopt)).message.find("not valid JSON") !=
        std::string::npos);
}

TEST_CASE("service spec: PUT takes the name from the path and an optional version") {
  auto ok = parse_service_spec(R"({"labels":{"a":"b"},"version":7})", std::string("web"));
  REQUIRE(std::holds_alternative<ServiceSpec>(ok));
  CHECK(std::get<ServiceSpec>(ok).service.name == "web");
  CHECK(std::get<ServiceSpec>(ok).version == std::optional<std::uint64_t>(7));
  CHECK(std::get<ServiceSpec>(ok).service.version == 0);

  auto no_version = parse_service_spec(R"({"name":"web"})", std::string("web"));
  REQUIRE(std::holds_alternative<ServiceSpec>(no_version));
  CHECK_FALSE(std::get<ServiceSpec>(no_version).version);

  auto mismatch = parse_service_spec(R"({"name":"api"})", std::string("web"));
  CHECK(error_of(mismatch).field == "service.name");
}

TEST_CASE("network spec accepts name and subnet only") {
  auto ok = parse_network_spec(R"({"name":"appnet","subnet":"10.1.2.0/24"})");
  REQUIRE(std::holds_alternative<Network>(ok));
  CHECK(std::get<Network>(ok).subnet == "10.1.2.0/24");
  CHECK(error_of(parse_network_spec(R"({"name":"a","gateway":"10.0.0.1"})")).field ==
        "network.gateway");
  CHECK(error_of(parse_network_spec(R"({"subnet":"10.0.0.0/24"})")).field == "network.name");
}

TEST_CASE("task spec splits IP:PORT and takes the generated id unless one is given") {
  auto ok = parse_task_spec(R"({"service":"web","node":"n2","address":"127.0.0.1:9001"})", "abc");
  REQUIRE(std::holds_alternative<Task>(ok));
  const auto& t = std::get<Task>(ok);
  CHECK(t.id == "abc");
  CHECK(t.address == "127.0.0.1");
  CHECK(t.port == 9001);
  CHECK(t.node == "n2");
  CHECK(t.health == TaskHealth::unknown);

  auto named = parse_task_spec(
      R"({"id":"t1","service":"web","address":"127.0.0.1","port":81,"health":"healthy"})", "abc");
  REQUIRE(std::holds_alternative<Task>(named));
  CHECK(std::get<Task>(named).id == "t1");
  CHECK(std::get<Task>(named).port == 81);
  CHECK(std::get<Task>(named).health == TaskHealth::healthy);

  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"address":"127.0.0.1:1"})", "task.service"},
           Case{R"({"service":"web"})", "task.address"},
           Case{R"({"service":"web","address":"web.local:80"})", "task.address"},
           Case{R"({"service":"web","address":"127.0.0.1:80","port":81})", "task.port"},
           Case{R"({"service":"web","address":"127.0.0.1","health":"sick"})", "task.health"},
           Case{R"({"service":"web","address":"127.0.0.1","weight":2})", "task.weight"},
       }) {
    CAPTURE(c.body);
    CHECK(error_of(parse_task_spec(c.body, "x")).field == c.field);
  }
}

TEST_CASE("task update needs a known health value") {
  auto ok = parse_task_update(R"({"health":"draining","version":4})", "t1");
  REQUIRE(std::holds_alternative<store::TaskUpdate>(ok));
  CHECK(std::get<store::TaskUpdate>(ok).id == "t1");
  CHECK(std::get<store::TaskUpdate>(ok).health == TaskHealth::draining);
  CHECK(std::get<store::TaskUpdate>(ok).version == std::optional<std::uint64_t>(4));
  CHECK(error_of(parse_task_update(R"({})", "t1")).field == "health");
  CHECK(error_of(parse_task_update(R"({"health":"meh"})", "t1")).field == "health");
}

TEST_CASE("query parameters: version and consistent") {
  auto none = version_param({});
  REQUIRE(std::holds_alternative<std::optional<std::uint64_t>>(none));
  CHECK_FALSE(std::get<std::optional<std::uint64_t>>(none));
  auto seven = version_param({{"version", "7"}});
  CHECK(std::get<std::optional<std::uint64_t>>(seven) == std::optional<std::uint64_t>(7));
  CHECK(error_of(version_param({{"version", "7x"}})).field == "version");
  CHECK(error_of(version_param({{"version", ""}})).field == "version");

  CHECK(consistent_param({{"consistent", "1"}}));
  CHECK(consistent_param({{"consistent", "true"}}));
  CHECK_FALSE(consistent_param({{"consistent", "0"}}));
  CHECK_FALSE(consistent_param({}));
}

TEST_CASE("reads are linearizable unless ?stale=true; stale with consistent is an error") {
  using routemesh::discovery::manager::ReadMode;
  auto mode = [](std::map<std::string, std::string> q) {
    auto m = read_mode(q);
    REQUIRE(std::holds_alternative<ReadMode>(m));
    return std::get<ReadMode>(m);
  };
  CHECK(mode({}) == ReadMode::linearizable);
  CHECK(mode({{"consistent", "1"}}) == ReadMode::linearizable);
  CHECK(mode({{"consistent", "0"}}) == ReadMode::linearizable);
  for (const char* v : {"true", "1", "yes", ""}) {
    INFO(v);
    CHECK(mode({{"stale", v}}) == ReadMode::stale);
    CHECK(mode({{"stale", v}, {"consistent", "0"}}) == ReadMode::stale);
  }
  for (const char* v : {"false", "0", "no"}) {
    INFO(v);
    CHECK(mode({{"stale", v}}) == ReadMode::linearizable);
    CHECK(mode({{"stale", v}, {"consistent", "1"}}) == ReadMode::linearizable);
  }
  CHECK(error_of(read_mode({{"stale", "maybe"}})).field == "stale");
  auto both = error_of(read_mode({{"stale", "true"}, {"consistent", "1"}}));
  CHECK(both.status == 400);
  CHECK(both.field == "stale");
  CHECK(both.message.find("consistent") != std::string::npos);
}

TEST_CASE("Idempotency-Key: 1-128 printable ASCII characters, fingerprinted with the request") {
  using Key = std::optional<store::RequestKey>;
  auto key = [](std::map<std::string, std::string> headers, std::string method = "POST",
                std::string target = "/v1/tasks", std::string body = "{}") {
    auto k = request_key(headers, method, target, body);
    REQUIRE(std::holds_alternative<Key>(k));
    return std::get<Key>(k);
  };
  CHECK_FALSE(key({}));
  CHECK_FALSE(key({{"x-other", "1"}}));
  auto k = key({{"idempotency-key", "abc-123"}});
  REQUIRE(k);
  CHECK(k->key == "abc-123");
  CHECK(k->fingerprint.size() == 16);
  CHECK(key({{"idempotency-key", std::string(128, '~')}}));
  CHECK(key({{"idempotency-key", "a b"}}));
  // The same request gives the same fingerprint; another method, target or body another one.
  CHECK(key({{"idempotency-key", "k"}})->fingerprint == k->fingerprint);
  CHECK(key({{"idempotency-key", "k"}}, "PUT")->fingerprint != k->fingerprint);
  CHECK(key({{"idempotency-key", "k"}}, "POST", "/v1/services")->fingerprint != k->fingerprint);
  CHECK(key({{"idempotency-key", "k"}}, "POST", "/v1/tasks", "{ }")->fingerprint != k->fingerprint);

  for (const std::string& bad : {std::string(), std::string(129, 'a'), std::string("caf\xc3\xa9"),
                                 std::string("a\tb"), std::string("a\x7f")}) {
    INFO(bad);
    auto e = error_of(request_key({{"idempotency-key", bad}}, "POST", "/v1/tasks", ""));
    CHECK(e.status == 400);
    CHECK(e.code == "invalid");
    CHECK(e.field == "Idempotency-Key");
  }
}

TEST_CASE("key_reused is a 422") {
  CHECK(http_status(store::errc::key_reused) == 422);
  auto e = from_store_error(store::Error{store::errc::key_reused, "m", "Idempotency-Key"});
  CHECK(e == ApiError{422, "key_reused", "m", "Idempotency-Key"});
}

TEST_CASE("path segments below a prefix") {
  CHECK(path_segments("/v1/services/web", "/v1/services/") == std::vector<std::string>{"web"});
  CHECK(path_segments("/v1/nodes/abc/promote", "/v1/nodes/") ==
        std::vector<std::string>{"abc", "promote"});
  CHECK(path_segments("/v1/nodes//abc/", "/v1/nodes/") == std::vector<std::string>{"abc"});
  CHECK(path_segments("/v2/x", "/v1/").empty());
}

TEST_CASE("hex ids are 16 lower-case digits") {
  CHECK(hex_id(0x1) == "0000000000000001");
  CHECK(hex_id(0xDEADBEEF00112233ull) == "deadbeef00112233");
}

TEST_CASE("policy spec: POST takes from, to, port, action, priority; errors name the field") {
  auto ok = parse_policy_spec(
      R"({"from":"network:front","to":"service:web","port":80,"action":"deny","priority":5})",
      "00000000000000a1");
  REQUIRE(std::holds_alternative<Policy>(ok));
  const Policy& p = std::get<Policy>(ok);
  CHECK(p.id == "00000000000000a1");
  CHECK(p.from == "network:front");
  CHECK(p.to == "service:web");
  CHECK(p.port == 80);
  CHECK(p.action == PolicyAction::deny);
  CHECK(p.priority == 5);

  CHECK(error_of(parse_policy_spec(R"({"from":"nope","to":"service:web","action":"deny"})", "x"))
            .field == "policy.from");
  CHECK(error_of(parse_policy_spec(R"({"from":"cidr:1.2.3.0/24","to":"web","action":"deny"})", "x"))
            .field == "policy.to");
  CHECK(
      error_of(parse_policy_spec(R"({"from":"cidr:1.2.3.0/24","to":"service:web"})", "x")).field ==
      "policy.action");
  CHECK(error_of(
            parse_policy_spec(
                R"({"from":"cidr:1.2.3.0/24","to":"service:web","action":"allow","id":"a"})", "x"))
            .field == "policy.id");
  const auto wrong_type =
      parse_policy_spec(R"({"from":1,"to":"service:web","action":"allow"})", "x");
  const auto& e = error_of(wrong_type);
  CHECK(e.status == 400);
  CHECK(e.field == "policy.from");
  CHECK(error_of(parse_policy_spec("[]", "x")).status == 400);
}
