#include "discovery/model/labels.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh::discovery;

namespace {

using Labels = std::map<std::string, std::string>;

struct Parsed {
  Exposure exposure;
  std::vector<StateError> errors;
};

Parsed parse(const Labels& labels, const std::string& prefix = "services[0].labels") {
  Parsed p;
  p.exposure = parse_labels(labels, prefix, p.errors);
  return p;
}

std::string describe(const std::vector<StateError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += e.path + ": " + e.message + "\n";
  }
  return out;
}

std::vector<std::string> hosts_of(const HttpExposure& e) {
  std::vector<std::string> out;
  for (const auto& h : e.hosts) {
    out.push_back(to_string(h));
  }
  return out;
}

}  // namespace

TEST_CASE("no mesh labels means no exposure and user labels are ignored") {
  auto p = parse({{"team", "blue"}, {"com.example.owner", "me"}, {"mesh", "x"}});
  CHECK(p.errors.empty());
  CHECK(p.exposure.http.empty());
  CHECK_FALSE(p.exposure.sni);
  CHECK_FALSE(p.exposure.sticky_cookie);
  CHECK(p.exposure.lb == LbPolicy::round_robin);
}

TEST_CASE("mesh.http lists exact and wildcard hosts, lower-cased") {
  auto p = parse({{"mesh.http", "Web.Example.COM, *.Apps.example.com,web.example.com"}});
  INFO(describe(p.errors));
  REQUIRE(p.errors.empty());
  REQUIRE(p.exposure.http.size() == 1);
  const auto& e = p.exposure.http[0];
  REQUIRE(e.hosts.size() == 2);  // the repeated host is kept once
  CHECK(e.hosts[0].host == "web.example.com");
  CHECK_FALSE(e.hosts[0].wildcard);
  CHECK(e.hosts[1].host == ".apps.example.com");
  CHECK(e.hosts[1].wildcard);
  CHECK(e.path_prefix == "/");
  CHECK(e.port == 0);
  CHECK(e.source_label == "mesh.http");
}

TEST_CASE("invalid mesh.http values are errors at the label's path") {
  struct Case {
    const char* value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"", "empty host"},
      {"a.localhost,,b.localhost", "empty host"},
      {"web.localhost:8080", "a port is not allowed in host \"web.localhost:8080\""},
      {"web localhost", "invalid host \"web localhost\""},
      {"web/localhost", "invalid host \"web/localhost\""},
      {"*", "invalid host \"*\""},
      {"a.*.localhost", "invalid host \"a.*.localhost\""},
      {"*.", "invalid host \"*.\""},
      {"web..localhost", "invalid host \"web..localhost\""},
      {".web", "invalid host \".web\""},
      {"w\xc3\xa9"
       "b.localhost",
       "invalid host \"w\xc3\xa9"
       "b.localhost\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    auto p = parse({{"mesh.http", c.value}}, "services[1].labels");
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].path == "services[1].labels.mesh.http");
    CHECK(p.errors[0].message == c.message);
  }
}

TEST_CASE("mesh.http.port and mesh.http.path modify the mesh.http route") {
  auto p = parse(
      {{"mesh.http", "api.localhost"}, {"mesh.http.port", "8080"}, {"mesh.http.path", "/v1/"}});
  INFO(describe(p.errors));
  REQUIRE(p.errors.empty());
  REQUIRE(p.exposure.http.size() == 1);
  CHECK(p.exposure.http[0].port == 8080);
  CHECK(p.exposure.http[0].path_prefix == "/v1");
}

TEST_CASE("mesh.http.path is normalised and validated") {
  struct Case {
    const char* value;
    const char* normalised;  // nullptr: error
    const char* message;
  };
  const std::vector<Case> cases = {
      {"/", "/", ""},
      {"/v1", "/v1", ""},
      {"/v1/", "/v1", ""},
      {"/a/b//", "/a/b", ""},
      {"//", "/", ""},
      {"", nullptr, "must start with '/'"},
      {"v1", nullptr, "must start with '/'"},
      {"/v 1", nullptr, "must not contain spaces or control characters"},
      {"/v1\t", nullptr, "must not contain spaces or control characters"},
      {"/v1?x=1", nullptr, "must not contain a query or fragment"},
      {"/v1#top", nullptr, "must not contain a query or fragment"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    auto p = parse({{"mesh.http", "a.localhost"}, {"mesh.http.path", c.value}});
    if (c.normalised != nullptr) {
      INFO(describe(p.errors));
      REQUIRE(p.errors.empty());
      CHECK(p.exposure.http.at(0).path_prefix == c.normalised);
    } else {
      REQUIRE(p.errors.size() == 1);
      CHECK(p.errors[0].path == "services[0].labels.mesh.http.path");
      CHECK(p.errors[0].message == c.message);
    }
  }
}

TEST_CASE("mesh.http.port must be 1..65535") {
  for (const char* value : {"0", "65536", "-1", "80a", "", "http", "99999999999"}) {
    CAPTURE(value);
    auto p = parse({{"mesh.http", "a.localhost"}, {"mesh.http.port", value}});
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].path == "services[0].labels.mesh.http.port");
    CHECK(p.errors[0].message == "must be 1..65535");
  }
  for (const char* value : {"1", "65535"}) {
    CAPTURE(value);
    auto p = parse({{"mesh.http", "a.localhost"}, {"mesh.http.port", value}});
    CHECK(p.errors.empty());
  }
}

TEST_CASE("mesh.http.port and mesh.http.path without mesh.http are errors") {
  auto p = parse({{"mesh.http.port", "80"}, {"mesh.http.path", "/x"}});
  REQUIRE(p.errors.size() == 2);
  CHECK(p.errors[0].path == "services[0].labels.mesh.http.path");
  CHECK(p.errors[0].message == "requires mesh.http");
  CHECK(p.errors[1].path == "services[0].labels.mesh.http.port");
  CHECK(p.errors[1].message == "requires mesh.http");
  CHECK(p.exposure.http.empty());
}

TEST_CASE("mesh.lb selects the balancing policy") {
  struct Case {
    const char* value;
    LbPolicy policy;
  };
  for (const auto& c : std::vector<Case>{{"round_robin", LbPolicy::round_robin},
                                         {"least_request", LbPolicy::least_request},
                                         {"random", LbPolicy::random}}) {
    CAPTURE(c.value);
    auto p = parse({{"mesh.lb", c.value}});
    CHECK(p.errors.empty());
    CHECK(p.exposure.lb == c.policy);
  }
  auto bad = parse({{"mesh.lb", "LEAST_REQUEST"}});
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].path == "services[0].labels.mesh.lb");
  CHECK(bad.errors[0].message == "must be round_robin, least_request or random");
}

TEST_CASE("mesh.http.sticky takes an RFC 6265 section 4.1.1 cookie-name token") {
  for (const char* name : {"SESSION", "route_id", "a-b.c!#$%&'*+^`|~"}) {
    CAPTURE(name);
    auto p = parse({{"mesh.http", "a.localhost"}, {"mesh.http.sticky", name}});
    INFO(describe(p.errors));
    CHECK(p.errors.empty());
    REQUIRE(p.exposure.sticky_cookie);
    CHECK(*p.exposure.sticky_cookie == name);
  }
  for (const char* name :
       {"", "a b", "a=b", "a;b", "a,b", "\"a\"", "a/b", "a\x01", "a\x7f", "caf\xc3\xa9"}) {
    CAPTURE(name);
    auto p = parse({{"mesh.http", "a.localhost"}, {"mesh.http.sticky", name}});
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].path == "services[0].labels.mesh.http.sticky");
    CHECK(p.errors[0].message == "not a valid cookie name (RFC 6265 section 4.1.1)");
  }
}

TEST_CASE("mesh.http.sticky without any HTTP route is an error") {
  auto p = parse({{"mesh.http.sticky", "SID"}});
  REQUIRE(p.errors.size() == 1);
  CHECK(p.errors[0].path == "services[0].labels.mesh.http.sticky");
}

TEST_CASE("mesh.sni takes one host, lower-cased") {
  auto p = parse({{"mesh.sni", "Secure.Example.com"}});
  CHECK(p.errors.empty());
  REQUIRE(p.exposure.sni);
  CHECK(to_string(*p.exposure.sni) == "secure.example.com");
  CHECK(p.exposure.sni_port == 0);

  auto bad = parse({{"mesh.sni", "secure.example.com:443"}});
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].path == "services[0].labels.mesh.sni");
}

TEST_CASE("mesh.sni takes a wildcard and a task port") {
  auto p = parse({{"mesh.sni", "*.Secure.test"}, {"mesh.sni.port", "8443"}});
  CHECK(p.errors.empty());
  REQUIRE(p.exposure.sni);
  CHECK(p.exposure.sni->wildcard);
  CHECK(to_string(*p.exposure.sni) == "*.secure.test");
  CHECK(p.exposure.sni_port == 8443);

  auto alone = parse({{"mesh.sni.port", "8443"}});
  REQUIRE(alone.errors.size() == 1);
  CHECK(alone.errors[0].path == "services[0].labels.mesh.sni.port");
  CHECK(alone.errors[0].message == "requires mesh.sni");

  auto zero = parse({{"mesh.sni", "a.test"}, {"mesh.sni.port", "0"}});
  REQUIRE(zero.errors.size() == 1);
  CHECK(zero.errors[0].path == "services[0].labels.mesh.sni.port");
}

TEST_CASE("unknown mesh labels are errors") {
  for (const char* key : {"mesh.https", "mesh.http.timeout", "mesh.", "mesh.LB"}) {
    CAPTURE(key);
    auto p = parse({{key, "x"}});
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].path == std::string("services[0].labels.") + key);
    CHECK(p.errors[0].message == "unknown mesh label");
  }
}

TEST_CASE("each Docker UCP label adds one HTTP route") {
  auto p = parse({
      {"mesh.http", "main.localhost"},
      {"com.docker.ucp.mesh.http.8080", "external_route=http://App.Example.com,internal_port=80"},
      {"com.docker.ucp.mesh.http.admin",
       " internal_port = 9000 , external_route = http://admin.example.com:8080/ "},
  });
  INFO(describe(p.errors));
  REQUIRE(p.errors.empty());
  REQUIRE(p.exposure.http.size() == 3);
  CHECK(hosts_of(p.exposure.http[0]) == std::vector<std::string>{"main.localhost"});
  CHECK(p.exposure.http[0].source_label == "mesh.http");
  CHECK(hosts_of(p.exposure.http[1]) == std::vector<std::string>{"app.example.com"});
  CHECK(p.exposure.http[1].port == 80);
  CHECK(p.exposure.http[1].path_prefix == "/");
  CHECK(p.exposure.http[1].source_label == "com.docker.ucp.mesh.http.8080");
  CHECK(hosts_of(p.exposure.http[2]) == std::vector<std::string>{"admin.example.com"});
  CHECK(p.exposure.http[2].port == 9000);
}

TEST_CASE("a UCP label alone is enough for sticky sessions") {
  auto p = parse({{"com.docker.ucp.mesh.http.1", "external_route=http://a.b,internal_port=1"},
                  {"mesh.http.sticky", "SID"}});
  INFO(describe(p.errors));
  CHECK(p.errors.empty());
}

TEST_CASE("malformed UCP labels are errors at the label's path") {
  struct Case {
    const char* value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"external_route=https://a.example.com,internal_port=80",
       "only http external_route supported for now"},
      {"external_route=sni://a.example.com,internal_port=443",
       "only http external_route supported for now"},
      {"external_route=ftp://a.example.com,internal_port=80",
       "invalid external_route scheme \"ftp\""},
      {"external_route=a.example.com,internal_port=80",
       "invalid external_route \"a.example.com\": expected http://HOST[:PORT]"},
      {"external_route=http://a.example.com", "internal_port required"},
      {"internal_port=80", "external_route required"},
      {"external_route=http://a.example.com,internal_port=0", "internal_port must be 1..65535"},
      {"external_route=http://a.example.com:0,internal_port=80",
       "external_route port must be 1..65535"},
      {"external_route=http://a.example.com/app,internal_port=80",
       "a path in external_route is not supported (use mesh.http.path)"},
      {"external_route=http://,internal_port=80", "empty host"},
      {"external_route=http://a.example.com,internal_port=80,sticky_sessions=x",
       "unsupported key \"sticky_sessions\""},
      {"external_route=http://a.example.com,internal_port=80,internal_port=81",
       "duplicate key \"internal_port\""},
      {"external_route=http://a.example.com,internal_port",
       "expected KEY=VALUE, got \"internal_port\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    auto p = parse({{"com.docker.ucp.mesh.http.8080", c.value}}, "services[2].labels");
    REQUIRE(p.errors.size() >= 1);
    CHECK(p.errors[0].path == "services[2].labels.com.docker.ucp.mesh.http.8080");
    CHECK(p.errors[0].message == c.message);
    CHECK(p.exposure.http.empty());
  }
}

TEST_CASE("errors use the path prefix as given, or the bare key without one") {
  auto p = parse({{"mesh.lb", "fastest"}}, "");
  REQUIRE(p.errors.size() == 1);
  CHECK(p.errors[0].path == "mesh.lb");
}

TEST_CASE("mesh.health.* labels make an active health check") {
  auto p = parse({{"mesh.health.check", "http"},
                  {"mesh.health.path", "/healthz"},
                  {"mesh.health.status", "200-299"},
                  {"mesh.health.interval_ms", "500"},
                  {"mesh.health.timeout_ms", "200"},
                  {"mesh.health.healthy", "1"},
                  {"mesh.health.unhealthy", "2"},
                  {"mesh.health.start_period_ms", "3000"},
                  {"mesh.health.port", "8081"}});
  INFO(describe(p.errors));
  REQUIRE(p.errors.empty());
  REQUIRE(p.exposure.health);
  const auto& h = *p.exposure.health;
  CHECK(h.kind == HealthCheck::Kind::http);
  CHECK(h.path == "/healthz");
  CHECK(h.status_min == 200);
  CHECK(h.status_max == 299);
  CHECK(h.interval_ms == 500);
  CHECK(h.timeout_ms == 200);
  CHECK(h.healthy_threshold == 1);
  CHECK(h.unhealthy_threshold == 2);
  CHECK(h.start_period_ms == 3000);
  CHECK(h.port == 8081);

  auto tcp = parse({{"mesh.health.check", "tcp"}});
  REQUIRE(tcp.exposure.health);
  CHECK(tcp.exposure.health->kind == HealthCheck::Kind::tcp);
  CHECK_FALSE(parse({}).exposure.health);
}

TEST_CASE("bad mesh.health, locality, proxy_protocol and drain labels name the label") {
  const std::vector<std::pair<Labels, std::string>> cases = {
      {{{"mesh.health.check", "icmp"}}, "services[0].labels.mesh.health.check"},
      {{{"mesh.health.path", "/x"}}, "services[0].labels.mesh.health.check"},  // check missing
      {{{"mesh.health.check", "http"}, {"mesh.health.path", "healthz"}},
       "services[0].labels.mesh.health.path"},
      {{{"mesh.health.check", "http"}, {"mesh.health.status", "299-200"}},
       "services[0].labels.mesh.health.status"},
      {{{"mesh.health.check", "tcp"}, {"mesh.health.interval_ms", "5"}},
       "services[0].labels.mesh.health.interval_ms"},
      {{{"mesh.health.check", "tcp"}, {"mesh.health.unhealthy", "0"}},
       "services[0].labels.mesh.health.unhealthy"},
      {{{"mesh.health.check", "tcp"}, {"mesh.health.retries", "3"}},
       "services[0].labels.mesh.health.retries"},
      {{{"mesh.lb.locality", "nearby"}}, "services[0].labels.mesh.lb.locality"},
      {{{"mesh.proxy_protocol", "v3"}}, "services[0].labels.mesh.proxy_protocol"},
      {{{"mesh.drain.grace_ms", "-1"}}, "services[0].labels.mesh.drain.grace_ms"},
  };
  for (const auto& [labels, path] : cases) {
    auto p = parse(labels);
    INFO(path << "\n" << describe(p.errors));
    REQUIRE(p.errors.size() == 1);
    CHECK(p.errors[0].path == path);
  }
  auto ok = parse({{"mesh.lb.locality", "prefer-local"},
                   {"mesh.proxy_protocol", "v1"},
                   {"mesh.drain.grace_ms", "1500"}});
  REQUIRE(ok.errors.empty());
  CHECK(ok.exposure.prefer_local);
  CHECK(ok.exposure.proxy_protocol == ProxyProtocol::v1);
  CHECK(ok.exposure.drain_grace_ms == 1500);
}
