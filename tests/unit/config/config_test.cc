#include "config/config.h"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace routemesh::config;

namespace {

NodeConfig parse_ok(std::string_view yaml) {
  auto result = parse(yaml);
  if (auto* errors = std::get_if<std::vector<FieldError>>(&result)) {
    FAIL("unexpected errors:\n" << format_errors(*errors));
  }
  return std::get<NodeConfig>(result);
}

std::vector<FieldError> parse_errors(std::string_view yaml) {
  auto result = parse(yaml);
  REQUIRE(std::holds_alternative<std::vector<FieldError>>(result));
  return std::get<std::vector<FieldError>>(result);
}

}  // namespace

TEST_CASE("empty document yields every default from the struct initialisers") {
  for (const char* yaml : {"", "# only a comment\n", "node:\ntimeouts:\nservices:\n"}) {
    CAPTURE(yaml);
    NodeConfig cfg = parse_ok(yaml);
    NodeConfig defaults;
    CHECK(cfg.node.name == defaults.node.name);
    CHECK(cfg.node.listen == "127.0.0.1");
    CHECK(cfg.node.http_port == 8080);
    CHECK(cfg.node.admin == "127.0.0.1:9901");
    CHECK(cfg.node.metrics.empty());
    CHECK(cfg.node.threads == 0);
    CHECK_FALSE(cfg.node.via);
    CHECK(cfg.node.access_log.enabled);
    CHECK(cfg.node.access_log.format == AccessLogFormat::json);
    CHECK(cfg.node.access_log.path == "-");
    CHECK(cfg.timeouts.request_head_ms == 10'000);
    CHECK(cfg.timeouts.l4_idle_ms == 300'000);
    CHECK(cfg.limits.max_header_bytes == 16 * 1024);
    CHECK(cfg.limits.max_headers == 100);
    CHECK(cfg.health.max_failures == 3);
    CHECK(cfg.services.empty());
  }
}

TEST_CASE("a full file sets every key") {
  NodeConfig cfg = parse_ok(R"(
node:
  name: edge-1
  listen: "::1"
  http_port: 0
  admin: "[::1]:0"
  threads: 4
  via: true
  access_log: { enabled: false, format: combined, path: /tmp/access.log }
timeouts: { request_head_ms: 1, idle_ms: 2, upstream_connect_ms: 3, upstream_response_ms: 4,
            upstream_idle_ms: 5, l4_idle_ms: 6, drain_ms: 7 }
limits: { max_header_bytes: 11, max_uri_bytes: 12, max_headers: 13,
          max_connections_per_thread: 14, max_idle_upstream_per_endpoint: 15 }
health: { max_failures: 5, base_ejection_ms: 200, max_ejection_ms: 400 }
services:
  - name: web
    labels: { mesh.http: web.localhost, mesh.http.port: 8080, team: blue }
    published: ["9000:80/tcp", "9001:81"]
    tasks: ["127.0.0.1:9001", "10.0.0.2", "[::1]:9003"]
  - name: api_v2.internal-x
)");
  CHECK(cfg.node.name == "edge-1");
  CHECK(cfg.node.listen == "::1");
  CHECK(cfg.node.http_port == 0);
  CHECK(cfg.node.admin == "[::1]:0");
  CHECK(cfg.node.threads == 4);
  CHECK(cfg.node.via);
  CHECK_FALSE(cfg.node.access_log.enabled);
  CHECK(cfg.node.access_log.format == AccessLogFormat::combined);
  CHECK(cfg.node.access_log.path == "/tmp/access.log");
  CHECK(cfg.timeouts.request_head_ms == 1);
  CHECK(cfg.timeouts.idle_ms == 2);
  CHECK(cfg.timeouts.upstream_connect_ms == 3);
  CHECK(cfg.timeouts.upstream_response_ms == 4);
  CHECK(cfg.timeouts.upstream_idle_ms == 5);
  CHECK(cfg.timeouts.l4_idle_ms == 6);
  CHECK(cfg.timeouts.drain_ms == 7);
  CHECK(cfg.limits.max_header_bytes == 11);
  CHECK(cfg.limits.max_uri_bytes == 12);
  CHECK(cfg.limits.max_headers == 13);
  CHECK(cfg.limits.max_connections_per_thread == 14);
  CHECK(cfg.limits.max_idle_upstream_per_endpoint == 15);
  CHECK(cfg.health.max_failures == 5);
  CHECK(cfg.health.base_ejection_ms == 200);
  CHECK(cfg.health.max_ejection_ms == 400);
  REQUIRE(cfg.services.size() == 2);
  const auto& web = cfg.services[0];
  CHECK(web.name == "web");
  CHECK(web.labels == std::map<std::string, std::string>{{"mesh.http", "web.localhost"},
                                                         {"mesh.http.port", "8080"},
                                                         {"team", "blue"}});
  REQUIRE(web.published.size() == 2);
  CHECK(web.published[0].published == 9000);
  CHECK(web.published[0].target == 80);
  CHECK(web.published[1].published == 9001);
  CHECK(web.published[1].target == 81);
  CHECK(web.tasks == std::vector<std::string>{"127.0.0.1:9001", "10.0.0.2", "[::1]:9003"});
  CHECK(cfg.services[1].name == "api_v2.internal-x");
  CHECK(cfg.services[1].labels.empty());
}

TEST_CASE("each invalid value is reported with its key path") {
  struct Case {
    const char* yaml;
    const char* path;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"node: { http_port: 70000 }", "node.http_port", "must be 0..65535"},
      {"node: { http_port: -1 }", "node.http_port", "must be 0..65535"},
      {"node: { http_port: eighty }", "node.http_port", "expected an integer"},
      {"node: { http_port: \"8080\" }", "node.http_port", "expected an integer"},
      {"node: { http_port: 80.5 }", "node.http_port", "expected an integer"},
      {"node: { listen: localhost }", "node.listen", "not an IP address"},
      {"node: { listen: 300.1.1.1 }", "node.listen", "not an IP address"},
      {"node: { admin: 127.0.0.1 }", "node.admin", "expected HOST:PORT"},
      {"node: { admin: \"127.0.0.1:99999\" }", "node.admin", "expected HOST:PORT"},
      {"node: { admin: \"::1:9901\" }", "node.admin", "expected HOST:PORT"},
      {"node: { metrics: 127.0.0.1 }", "node.metrics", "expected HOST:PORT (or \"\" for none)"},
      {"node: { via: maybe }", "node.via", "expected true or false"},
      {"node: { threads: 5000 }", "node.threads", "must be 0..1024 (0 = number of cores)"},
      {"node: { bogus: 1 }", "node.bogus", "unknown key"},
      {"node: { access_log: { format: xml } }", "node.access_log.format",
       "must be json or combined"},
      {"node: { access_log: { color: true } }", "node.access_log.color", "unknown key"},
      {"node: [1, 2]", "node", "expected a map"},
      {"timeouts: { idle_ms: 0 }", "timeouts.idle_ms", "must be > 0 and fit in 32 bits"},
      {"timeouts: { drain_ms: 4294967296 }", "timeouts.drain_ms", "must be > 0 and fit in 32 bits"},
      {"limits: { max_headers: [1] }", "limits.max_headers", "expected an integer"},
      {"limits: { max_headers: lots }", "limits.max_headers", "expected an integer"},
      {"health: { base_ejection_ms: 500, max_ejection_ms: 100 }", "health.max_ejection_ms",
       "must be >= base_ejection_ms"},
      {"bogus: 1", "bogus", "unknown key"},
      {"services: { web: {} }", "services", "expected a list"},
      {"services: [ { labels: {} } ]", "services[0].name", "required"},
      {"services: [ { name: Web } ]", "services[0].name", "must match [a-z0-9][a-z0-9_.-]{0,62}"},
      {"services: [ { name: -web } ]", "services[0].name", "must match [a-z0-9][a-z0-9_.-]{0,62}"},
      {"services: [ { name: web }, { name: web } ]", "services[1].name",
       "duplicate service name \"web\""},
      {"services: [ { name: web, tasks: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"web:80\"] } ]",
       "services[0].tasks[2]", "not an IP:PORT address"},
      {"services: [ { name: web, tasks: [\"127.0.0.1:0\"] } ]", "services[0].tasks[0]",
       "not an IP:PORT address"},
      {"services: [ { name: web, published: [\"9000\"] } ]", "services[0].published[0]",
       "expected [ADDRESS:]PUBLISHED:TARGET[/tcp|/udp] or "
       "published=P,target=T[,protocol=..][,mode=ingress|host][,address=IP] with ports 1..65535"},
      {"services: [ { name: web, labels: { mesh.http: [a, b] } } ]", "services[0].labels.mesh.http",
       "expected a scalar"},
      {"services: [ { name: web, replicas: 3 } ]", "services[0].replicas", "unknown key"},
      {"node: { name: a }\nnode: { name: b }\n", "node", "duplicate key"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    auto errors = parse_errors(c.yaml);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == c.path);
    CHECK(errors[0].message == c.message);
  }
}

TEST_CASE("every error in a file is reported together, in document order") {
  auto errors = parse_errors(R"(
node:
  http_port: 99999
  listen: not-an-ip
  bogus: true
timeouts: { idle_ms: 0 }
services:
  - name: web
    tasks: ["127.0.0.1:9001", "127.0.0.1:9002", "nope"]
  - name: web
)");
  REQUIRE(errors.size() == 6);
  CHECK(format_errors(errors) ==
        "node.http_port: must be 0..65535\n"
        "node.listen: not an IP address\n"
        "node.bogus: unknown key\n"
        "timeouts.idle_ms: must be > 0 and fit in 32 bits\n"
        "services[0].tasks[2]: not an IP:PORT address\n"
        "services[1].name: duplicate service name \"web\"\n");
}

TEST_CASE("a YAML syntax error becomes one error with line and column") {
  auto errors = parse_errors("node:\n  name: [unclosed\n  listen: 127.0.0.1\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path.empty());
  CHECK_THAT(errors[0].message, Catch::StartsWith("YAML syntax error at line "));
  CHECK_THAT(errors[0].message, Catch::Contains("column"));

  auto tab = parse_errors("node: {\n");
  REQUIRE(tab.size() == 1);
  CHECK_THAT(tab[0].message, Catch::StartsWith("YAML syntax error"));
}

TEST_CASE("a top-level scalar is not a configuration") {
  auto errors = parse_errors("just a string");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path.empty());
  CHECK(errors[0].message == "expected a map at the top level");
}

TEST_CASE("label values that are numbers or booleans keep their text") {
  NodeConfig cfg = parse_ok(
      "services:\n  - name: web\n    labels: { mesh.http.port: 8080, flag: true, empty: }\n");
  const auto& labels = cfg.services[0].labels;
  CHECK(labels.at("mesh.http.port") == "8080");
  CHECK(labels.at("flag") == "true");
  CHECK(labels.at("empty").empty());
}

TEST_CASE("load_file reads a file and reports an unreadable one with an empty path") {
  char name[] = "/tmp/rm_config_test_XXXXXX";
  int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(name);
    out << "node: { http_port: 8181 }\n";
  }
  auto ok = load_file(name);
  std::remove(name);
  REQUIRE(std::holds_alternative<NodeConfig>(ok));
  CHECK(std::get<NodeConfig>(ok).node.http_port == 8181);

  auto missing = load_file("/nonexistent/routemesh.yaml");
  REQUIRE(std::holds_alternative<std::vector<FieldError>>(missing));
  const auto& errors = std::get<std::vector<FieldError>>(missing);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path.empty());
  CHECK_THAT(errors[0].message, Catch::Contains("/nonexistent/routemesh.yaml"));
}

// RM_SOURCE_DIR is set by tests/CMakeLists.txt.
static std::string find_example(const std::string& name) {
  return (std::filesystem::path(RM_SOURCE_DIR) / "examples" / name).string();
}

TEST_CASE("the demo example parses") {
  const std::string path = find_example("demo.yaml");
  REQUIRE_FALSE(path.empty());
  auto result = load_file(path);
  if (auto* errors = std::get_if<std::vector<FieldError>>(&result)) {
    FAIL(format_errors(*errors));
  }
  const auto& cfg = std::get<NodeConfig>(result);
  CHECK(cfg.node.http_port == 8080);
  REQUIRE(cfg.services.size() == 3);
  CHECK(cfg.services[0].name == "web");
  CHECK(cfg.services[1].name == "api");
  CHECK(cfg.services[2].name == "echo-tcp");
}

TEST_CASE("without a cluster section the node is not in cluster mode") {
  NodeConfig cfg = parse_ok("node: { name: n1 }\n");
  CHECK_FALSE(cfg.cluster_mode);
  CHECK(cfg.cluster.data_dir.empty());
}

TEST_CASE("a cluster section switches cluster mode on and sets every key") {
  NodeConfig cfg = parse_ok(R"(
node: { name: n1, listen: 127.0.0.11, http_port: 8080, admin: "127.0.0.11:9901" }
cluster:
  role: manager
  data_dir: /tmp/rm/n1
  peer: "127.0.0.11:7946"
  join: "127.0.0.12:9901"
  tick_ms: 50
  election_ticks: 20
  heartbeat_ticks: 2
  subnet_pool: "10.20.0.0/16"
  snapshot_entries: 500
)");
  CHECK(cfg.cluster_mode);
  CHECK(cfg.cluster.role == ClusterRole::manager);
  CHECK(cfg.cluster.data_dir == "/tmp/rm/n1");
  CHECK(cfg.cluster.peer == "127.0.0.11:7946");
  CHECK(cfg.cluster.join == "127.0.0.12:9901");
  CHECK(cfg.cluster.tick_ms == 50);
  CHECK(cfg.cluster.election_ticks == 20);
  CHECK(cfg.cluster.heartbeat_ticks == 2);
  CHECK(cfg.cluster.subnet_pool == "10.20.0.0/16");
  CHECK(cfg.cluster.snapshot_entries == 500);
}

TEST_CASE("a worker needs no peer and cluster defaults come from the struct") {
  NodeConfig cfg = parse_ok("cluster: { role: worker, data_dir: /tmp/w, join: \"[::1]:9901\" }");
  CHECK(cfg.cluster_mode);
  CHECK(cfg.cluster.role == ClusterRole::worker);
  CHECK(cfg.cluster.peer.empty());
  CHECK(cfg.cluster.join == "[::1]:9901");
  ClusterSettings defaults;
  CHECK(cfg.cluster.tick_ms == defaults.tick_ms);
  CHECK(cfg.cluster.election_ticks == 10);
  CHECK(cfg.cluster.heartbeat_ticks == 1);
  CHECK(cfg.cluster.subnet_pool == "10.10.0.0/16");
  CHECK(cfg.cluster.snapshot_entries == 10'000);
}

TEST_CASE("each invalid cluster value is reported with its key path") {
  const std::string ok = "role: manager, data_dir: /d, peer: \"127.0.0.1:7946\"";
  auto with = [&](const std::string& extra) { return "cluster: { " + ok + ", " + extra + " }"; };
  const std::vector<std::pair<std::string, std::pair<const char*, const char*>>> cases = {
      {"cluster: { data_dir: /d, peer: \"127.0.0.1:1\" }",
       {"cluster.role", "required (manager or worker)"}},
      {"cluster: { role: boss, data_dir: /d, peer: \"127.0.0.1:1\" }",
       {"cluster.role", "must be manager or worker"}},
      {"cluster: { role: worker }", {"cluster.data_dir", "required"}},
      {"cluster: { role: worker, data_dir: \"\" }", {"cluster.data_dir", "must not be empty"}},
      {"cluster: { role: manager, data_dir: /d }",
       {"cluster.peer", "required for managers (Raft transport IP:PORT)"}},
      {"cluster: { role: manager, data_dir: /d, peer: \"localhost:7946\" }",
       {"cluster.peer", "expected IP:PORT"}},
      {"cluster: { role: manager, data_dir: /d, peer: \"127.0.0.1\" }",
       {"cluster.peer", "expected IP:PORT"}},
      {"cluster: { role: manager, data_dir: /d, peer: \"127.0.0.1:0\" }",
       {"cluster.peer", "expected IP:PORT"}},
      {with("join: \"127.0.0.1:99999\""), {"cluster.join", "expected IP:PORT"}},
      {with("tick_ms: 0"), {"cluster.tick_ms", "must be > 0 and fit in 32 bits"}},
      {with("election_ticks: 0"), {"cluster.election_ticks", "must be > 0 and fit in 32 bits"}},
      {with("heartbeat_ticks: 0"), {"cluster.heartbeat_ticks", "must be > 0 and fit in 32 bits"}},
      {with("heartbeat_ticks: 10"), {"cluster.heartbeat_ticks", "must be < election_ticks"}},
      {with("election_ticks: 3, heartbeat_ticks: 4"),
       {"cluster.heartbeat_ticks", "must be < election_ticks"}},
      {with("subnet_pool: \"10.10.0.0\""),
       {"cluster.subnet_pool", "expected an IPv4 CIDR such as 10.10.0.0/16 (no host bits set)"}},
      {with("subnet_pool: \"10.10.0.1/16\""),
       {"cluster.subnet_pool", "expected an IPv4 CIDR such as 10.10.0.0/16 (no host bits set)"}},
      {with("subnet_pool: \"10.10.0.0/33\""),
       {"cluster.subnet_pool", "expected an IPv4 CIDR such as 10.10.0.0/16 (no host bits set)"}},
      {with("subnet_pool: \"10.10.0.0/25\""),
       {"cluster.subnet_pool", "prefix must be /24 or shorter (networks get a /24 each)"}},
      {with("snapshot_entries: 0"), {"cluster.snapshot_entries", "must be > 0"}},
      {with("heartbeat_ms: 5"), {"cluster.heartbeat_ms", "must be 10..600000"}},
      {with("node_down_after_ms: 10"), {"cluster.node_down_after_ms", "must be 50..3600000"}},
      {with("cert_lifetime_s: 9"),
       {"cluster.cert_lifetime_s", "must be 10..315360000 (10 s to 10 years)"}},
      {with("user_cert_lifetime_s: 315360001"),
       {"cluster.user_cert_lifetime_s", "must be 10..315360000 (10 s to 10 years)"}},
      {with("overlay_rekey_s: -1"), {"cluster.overlay_rekey_s", "must be 0..31536000 (0 = never)"}},
      {with("overlay_rekey_bytes: 2000000000000000"),
       {"cluster.overlay_rekey_bytes", "must be 0..2^50 (0 = never)"}},
      {with("heartbeat_ms: 1000, node_down_after_ms: 1000"),
       {"cluster.node_down_after_ms", "must be greater than heartbeat_ms"}},
      {with("bogus: 1"), {"cluster.bogus", "unknown key"}},
      {"cluster: [1]", {"cluster", "expected a map"}},
      {"cluster: { " + ok + " }\nservices: [ { name: web } ]",
       {"services", "not allowed in cluster mode; use the API"}},
  };
  for (const auto& [yaml, expected] : cases) {
    CAPTURE(yaml);
    auto errors = parse_errors(yaml);
    INFO(format_errors(errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == expected.first);
    CHECK(errors[0].message == expected.second);
  }
}

TEST_CASE("service VIPs: auto is on in cluster mode on a specific non-loopback address") {
  const std::string cl = "cluster: { role: worker, data_dir: /d }\n";
  CHECK(parse_ok(cl + "node: { listen: 10.77.0.11 }\n").node.vips);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 127.0.0.31 }\n").node.vips);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 0.0.0.0 }\n").node.vips);
  CHECK_FALSE(parse_ok("node: { listen: 10.77.0.11 }\n").node.vips);  // not cluster mode
  CHECK(parse_ok(cl + "node: { listen: 127.0.0.31, vips: \"on\" }\n").node.vips);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 10.77.0.11, vips: \"off\" }\n").node.vips);
  auto errors = parse_errors(cl + "node: { vips: maybe }\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "node.vips");
  CHECK(errors[0].message == "must be auto, on or off");
}

TEST_CASE("embedded DNS: auto is on in cluster mode on a specific non-loopback address") {
  const std::string cl = "cluster: { role: worker, data_dir: /d }\n";
  CHECK(parse_ok(cl + "node: { listen: 10.77.0.11 }\n").node.dns);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 127.0.0.31 }\n").node.dns);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 0.0.0.0 }\n").node.dns);
  CHECK_FALSE(parse_ok("node: { listen: 10.77.0.11 }\n").node.dns);  // not cluster mode
  CHECK(parse_ok(cl + "node: { listen: 127.0.0.31, dns: \"on\" }\n").node.dns);
  CHECK_FALSE(parse_ok(cl + "node: { listen: 10.77.0.11, dns: \"off\" }\n").node.dns);
  CHECK_FALSE(parse_ok("node: { dns: \"off\" }\n").node.dns);
}

TEST_CASE("embedded DNS: defaults of the dns section") {
  const NodeConfig cfg = parse_ok("");
  CHECK(cfg.dns.port == 53);
  CHECK(cfg.dns.ttl_s == 5);
  CHECK(cfg.dns.upstreams.empty());  // the nameservers of /etc/resolv.conf
  CHECK(cfg.dns.upstream_timeout_ms == 2000);
  CHECK(cfg.dns.cache_entries == 4096);
}

TEST_CASE("embedded DNS: every key of the dns section is read and checked") {
  const NodeConfig cfg = parse_ok(
      "dns:\n  port: 5353\n  ttl_s: 0\n  upstream_timeout_ms: 500\n  cache_entries: 0\n"
      "  upstreams: [\"10.0.0.53\", \"10.0.0.54:5300\", \"[fd00::53]:53\", \"fd00::54\"]\n");
  CHECK(cfg.dns.port == 5353);
  CHECK(cfg.dns.ttl_s == 0);
  CHECK(cfg.dns.upstream_timeout_ms == 500);
  CHECK(cfg.dns.cache_entries == 0);
  CHECK(cfg.dns.upstreams ==
        std::vector<std::string>{"10.0.0.53", "10.0.0.54:5300", "[fd00::53]:53", "fd00::54"});

  const std::string cl = "cluster: { role: worker, data_dir: /d }\n";
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> cases = {
      {"node: { dns: maybe }\n", {"node.dns", "must be auto, on or off"}},
      {"node: { dns: \"on\" }\n",
       {"node.dns", "on needs cluster mode (a cluster section): names come from the cluster"}},
      {cl + "dns: { port: 0 }\n", {"dns.port", "must be 1..65535"}},
      {cl + "dns: { port: 70000 }\n", {"dns.port", "must be 1..65535"}},
      {cl + "dns: { port: \"53\" }\n", {"dns.port", "expected an integer"}},
      {cl + "dns: { ttl_s: 3601 }\n", {"dns.ttl_s", "must be 0..3600"}},
      {cl + "dns: { upstream_timeout_ms: 5 }\n", {"dns.upstream_timeout_ms", "must be 10..60000"}},
      {cl + "dns: { cache_entries: -1 }\n",
       {"dns.cache_entries", "must be 0..1000000 (0 = no cache)"}},
      {cl + "dns: { upstreams: [resolver.example] }\n",
       {"dns.upstreams[0]", "expected IP or IP:PORT of a resolver ([IPv6]:PORT)"}},
      {cl + "dns: { upstreams: [\"10.0.0.1\", \"0.0.0.0:53\"] }\n",
       {"dns.upstreams[1]", "expected IP or IP:PORT of a resolver ([IPv6]:PORT)"}},
      {cl + "dns: { upstreams: \"10.0.0.1\" }\n", {"dns.upstreams", "expected a list"}},
      {cl + "dns: { bogus: 1 }\n", {"dns.bogus", "unknown key"}},
      {cl + "dns: [1]\n", {"dns", "expected a map"}},
  };
  for (const auto& [yaml, expected] : cases) {
    CAPTURE(yaml);
    auto errors = parse_errors(yaml);
    INFO(format_errors(errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == expected.first);
    CHECK(errors[0].message == expected.second);
  }
}

TEST_CASE("an empty services list is allowed in cluster mode") {
  NodeConfig cfg = parse_ok("cluster: { role: worker, data_dir: /d }\nservices: []\n");
  CHECK(cfg.cluster_mode);
  CHECK(cfg.services.empty());
}

TEST_CASE("trusted_proxies and proxy_protocol_from take IP ranges and name a bad entry") {
  NodeConfig cfg = parse_ok(
      "node:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"2001:db8::/32\", \"::1\"]\n"
      "  proxy_protocol_from: [10.1.0.0/16]\n");
  REQUIRE(cfg.node.trusted_proxies.size() == 4);
  CHECK(cfg.node.trusted_proxies[0] == *routemesh::base::parse_ip_range("10.0.0.0/8"));
  CHECK(cfg.node.trusted_proxies[1].prefix == 32);
  CHECK(cfg.node.trusted_proxies[2].v6);
  CHECK(cfg.node.trusted_proxies[2].prefix == 32);
  CHECK(cfg.node.trusted_proxies[3].prefix == 128);
  REQUIRE(cfg.node.proxy_protocol_from.size() == 1);
  CHECK(parse_ok("").node.trusted_proxies.empty());
  auto errors = parse_errors("node:\n  trusted_proxies: [10.0.0.0/8, 10.0.0.1/8, nope]\n");
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "node.trusted_proxies[1]");
  CHECK(errors[1].path == "node.trusted_proxies[2]");
  CHECK(parse_errors("node:\n  trusted_proxies: 10.0.0.0/8\n").size() == 1);
  auto pp = parse_errors("node:\n  proxy_protocol_from: [lb.example]\n");
  REQUIRE(pp.size() == 1);
  CHECK(pp[0].path == "node.proxy_protocol_from[0]");
  CHECK(pp[0].message ==
        "expected an IP range with no host bits set (10.0.0.0/8, 2001:db8::/32) or an IP address");
}

TEST_CASE("restart_required names exactly the node keys a reload cannot apply") {
  NodeConfig a = parse_ok("");
  NodeConfig b = a;
  b.timeouts.upstream_response_ms = 1;
  b.limits.max_headers = 7;
  b.health.max_failures = 9;
  b.node.via = true;
  b.node.access_log.enabled = false;
  CHECK(restart_required(a, b).empty());
  b.node.threads = 3;
  b.node.http_port = 1;
  CHECK(restart_required(a, b) == std::vector<std::string>{"node.http_port", "node.threads"});
  b = a;
  b.node.listen = "127.0.0.2";
  b.node.admin = "127.0.0.1:1";
  b.node.name = "other";
  CHECK(restart_required(a, b) ==
        std::vector<std::string>{"node.name", "node.listen", "node.admin"});
}

TEST_CASE("limits.max_request_body_bytes is a byte count, 0 meaning no limit") {
  CHECK(parse_ok("").limits.max_request_body_bytes == 0);
  CHECK(parse_ok("limits:\n  max_request_body_bytes: 1048576\n").limits.max_request_body_bytes ==
        1048576);
  auto errors = parse_errors("limits:\n  max_request_body_bytes: -1\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "limits.max_request_body_bytes");
}

TEST_CASE("request body deadlines are off by default and accept 0") {
  const auto d = parse_ok("");
  CHECK(d.timeouts.request_body_ms == 0);
  CHECK(d.timeouts.body_min_rate_bps == 0);
  CHECK(d.timeouts.body_min_rate_grace_ms == 5000);
  const auto c = parse_ok(
      "timeouts:\n  request_body_ms: 30000\n  body_min_rate_bps: 1024\n"
      "  body_min_rate_grace_ms: 0\n");
  CHECK(c.timeouts.request_body_ms == 30000);
  CHECK(c.timeouts.body_min_rate_bps == 1024);
  CHECK(c.timeouts.body_min_rate_grace_ms == 0);
  auto errors = parse_errors("timeouts:\n  body_min_rate_bps: -5\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "timeouts.body_min_rate_bps");
}

TEST_CASE("firewall: backend none by default, nftables in cluster mode, errors name the key") {
  const auto plain = parse_ok("");
  CHECK(plain.firewall.backend == FirewallBackend::none);
  CHECK(plain.firewall.nft == "nft");
  const std::string cl = "cluster: { role: worker, data_dir: /d }\n";
  const auto cfg = parse_ok(cl + "firewall: { backend: nftables, nft: /usr/sbin/nft }\n");
  CHECK(cfg.firewall.backend == FirewallBackend::nftables);
  CHECK(cfg.firewall.nft == "/usr/sbin/nft");
  CHECK(parse_ok(cl + "firewall:\n").firewall.backend == FirewallBackend::none);
  CHECK(parse_ok("firewall: { backend: none }\n").firewall.backend == FirewallBackend::none);

  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> cases = {
      {cl + "firewall: { backend: iptables }\n", {"firewall.backend", "must be none or nftables"}},
      {cl + "firewall: { backend: [nftables] }\n", {"firewall.backend", "expected a string"}},
      {"firewall: { backend: nftables }\n",
       {"firewall.backend",
        "nftables needs cluster mode (a cluster section): policies come from the cluster"}},
      {cl + "firewall: { nft: \"\" }\n",
       {"firewall.nft", "must not be empty (the nft command or its path)"}},
      {cl + "firewall: { table: x }\n", {"firewall.table", "unknown key"}},
      {cl + "firewall: nftables\n", {"firewall", "expected a map"}},
  };
  for (const auto& [yaml, expected] : cases) {
    CAPTURE(yaml);
    auto errors = parse_errors(yaml);
    INFO(format_errors(errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == expected.first);
    CHECK(errors[0].message == expected.second);
  }
}

TEST_CASE("certificates: host, cert and key files, each host once, not in cluster mode") {
  auto cfg = parse_ok(
      "node: { https_port: 8443 }\n"
      "certificates:\n"
      "  - { host: a.test, cert: /etc/a.pem, key: /etc/a-key.pem }\n"
      "  - { host: '*.b.test', cert: /etc/b.pem, key: /etc/b-key.pem }\n"
      "  - { host: '*', cert: /etc/d.pem, key: /etc/d-key.pem }\n");
  CHECK(cfg.node.https_port == 8443);
  REQUIRE(cfg.certificates.size() == 3);
  CHECK(cfg.certificates[1].host == "*.b.test");
  CHECK(cfg.certificates[2].key == "/etc/d-key.pem");

  struct Case {
    std::string yaml, path, message;
  };
  const Case cases[] = {
      {"certificates: [ { host: a.test, cert: /a.pem } ]", "certificates[0].key", "required"},
      {"certificates: [ { host: A.test, cert: /a.pem, key: /k.pem } ]", "certificates[0].host",
       "expected a lower-case host name, *.suffix or * (the default)"},
      {"certificates: [ { host: a.test, cert: /a, key: /k }, { host: a.test, cert: /b, key: /c } ]",
       "certificates[1].host", "a second certificate for a.test"},
      {"certificates: [ { host: a.test, cert: /a, key: /k, chain: /c } ]", "certificates[0].chain",
       "unknown key"},
      {"certificates: { host: a.test }", "certificates", "expected a list"},
      {"cluster: { role: manager, data_dir: /d, peer: '127.0.0.1:7946' }\n"
       "certificates: [ { host: a.test, cert: /a, key: /k } ]",
       "certificates", "not allowed in cluster mode; use `routemesh cert add`"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    auto errors = parse_errors(c.yaml);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == c.path);
    CHECK(errors[0].message == c.message);
  }
}
