#include "mesh/route_table.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace routemesh;
using discovery::ClusterState;
using discovery::TaskHealth;
using mesh::route;

struct ServiceSpec {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<base::PortMapping> ports;
};

void add_service(ClusterState& state, const ServiceSpec& spec) {
  discovery::Service service;
  service.name = spec.name;
  service.labels = spec.labels;
  service.ports = spec.ports;
  state.services[spec.name] = service;
}

void add_task(ClusterState& state, const std::string& id, const std::string& service,
              const std::string& address, std::uint16_t port = 0,
              TaskHealth health = TaskHealth::healthy) {
  discovery::Task task;
  task.id = id;
  task.service = service;
  task.address = address;
  task.port = port;
  task.health = health;
  state.tasks[id] = task;
}

// The service a request is routed to, or "" when nothing matches.
std::string routed(const mesh::RouteTable& table, std::string_view host,
                   std::string_view path = "/") {
  auto match = route(host, path, table);
  return match.cluster == nullptr ? std::string() : match.cluster->service;
}

ClusterState web_and_wildcard() {
  ClusterState state;
  add_service(state, {"api", {{"mesh.http", "api.example.com"}}, {{8081, 80}}});
  add_service(state, {"catchall", {{"mesh.http", "*.example.com"}}, {{8082, 80}}});
  add_task(state, "api.1", "api", "10.0.0.1");
  add_task(state, "catchall.1", "catchall", "10.0.0.2");
  return state;
}

}  // namespace

TEST_CASE("exact host wins over a wildcard that also matches", "[route_table]") {
  auto table = mesh::compile_route_table(web_and_wildcard());
  CHECK(routed(table, "api.example.com") == "api");
  CHECK(routed(table, "www.example.com") == "catchall");
}

TEST_CASE("wildcard matches one or more labels but not the bare suffix", "[route_table]") {
  auto table = mesh::compile_route_table(web_and_wildcard());
  CHECK(routed(table, "a.example.com") == "catchall");
  CHECK(routed(table, "a.b.example.com") == "catchall");
  CHECK(routed(table, "example.com").empty());
  CHECK(routed(table, "badexample.com").empty());
  CHECK(routed(table, "other.org").empty());
}

TEST_CASE("longer wildcard suffix wins over a shorter one", "[route_table]") {
  ClusterState state;
  add_service(state, {"broad", {{"mesh.http", "*.example.com"}}, {{8081, 80}}});
  add_service(state, {"eu", {{"mesh.http", "*.eu.example.com"}}, {{8082, 80}}});
  add_task(state, "broad.1", "broad", "10.0.0.1");
  add_task(state, "eu.1", "eu", "10.0.0.2");
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.wildcard_hosts.size() == 2);
  CHECK(table.wildcard_hosts[0].pattern == ".eu.example.com");
  CHECK(table.wildcard_hosts[1].pattern == ".example.com");
  CHECK(routed(table, "x.eu.example.com") == "eu");
  CHECK(routed(table, "x.us.example.com") == "broad");
  CHECK(routed(table, "eu.example.com") == "broad");
}

TEST_CASE("wildcards of equal length are ordered lexically", "[route_table]") {
  ClusterState state;
  add_service(state, {"b", {{"mesh.http", "*.bbb.com"}}, {{8081, 80}}});
  add_service(state, {"a", {{"mesh.http", "*.aaa.com"}}, {{8082, 80}}});
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.wildcard_hosts.size() == 2);
  CHECK(table.wildcard_hosts[0].pattern == ".aaa.com");
  CHECK(table.wildcard_hosts[1].pattern == ".bbb.com");
}

TEST_CASE("Host is matched case-insensitively, without port or trailing dot", "[route_table]") {
  auto table = mesh::compile_route_table(web_and_wildcard());
  CHECK(routed(table, "API.Example.COM") == "api");
  CHECK(routed(table, "api.example.com:8080") == "api");
  CHECK(routed(table, "Api.Example.Com.:443") == "api");
  CHECK(routed(table, "api.example.com.") == "api");
  CHECK(routed(table, "WWW.EXAMPLE.COM:80") == "catchall");
  CHECK(routed(table, "").empty());
  CHECK(routed(table, ":8080").empty());
}

TEST_CASE("a Host longer than the stack buffer still matches", "[route_table]") {
  std::string label(60, 'a');
  std::string host = label + "." + label + "." + label + "." + label + "." + label + ".example.com";
  REQUIRE(host.size() > 255);
  auto table = mesh::compile_route_table(web_and_wildcard());
  std::string upper = host;
  for (auto& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  CHECK(routed(table, upper + ":80") == "catchall");
}

TEST_CASE("IPv6 literal Host keeps brackets and loses its port", "[route_table]") {
  // Built by hand: the route() contract does not depend on what labels accept.
  mesh::RouteTable table;
  mesh::Cluster cluster;
  cluster.service = "v6";
  table.clusters.push_back(cluster);
  mesh::HostRoutes routes;
  routes.pattern = "[::1]";
  routes.paths.push_back({"/", 0});
  table.exact_hosts["[::1]"] = routes;

  CHECK(routed(table, "[::1]:8080") == "v6");
  CHECK(routed(table, "[::1]") == "v6");
  CHECK(routed(table, "[::2]:8080").empty());
  CHECK(routed(table, "[::1").empty());
}

TEST_CASE("path prefix matches only at a segment boundary", "[route_table]") {
  ClusterState state;
  add_service(state,
              {"api", {{"mesh.http", "example.com"}, {"mesh.http.path", "/api"}}, {{8081, 80}}});
  add_task(state, "api.1", "api", "10.0.0.1");
  auto table = mesh::compile_route_table(state);
  CHECK(routed(table, "example.com", "/api") == "api");
  CHECK(routed(table, "example.com", "/api/") == "api");
  CHECK(routed(table, "example.com", "/api/x") == "api");
  CHECK(routed(table, "example.com", "/api?q=1") == "api");
  CHECK(routed(table, "example.com", "/apix").empty());
  CHECK(routed(table, "example.com", "/ap").empty());
  CHECK(routed(table, "example.com", "/").empty());
}

TEST_CASE("longest path prefix wins and root prefix catches the rest", "[route_table]") {
  ClusterState state;
  add_service(state, {"site", {{"mesh.http", "example.com"}}, {{8081, 80}}});
  add_service(state,
              {"api", {{"mesh.http", "example.com"}, {"mesh.http.path", "/api"}}, {{8082, 80}}});
  add_service(
      state, {"api2", {{"mesh.http", "example.com"}, {"mesh.http.path", "/api/v2"}}, {{8083, 80}}});
  auto table = mesh::compile_route_table(state);
  const auto& paths = table.exact_hosts.at("example.com").paths;
  REQUIRE(paths.size() == 3);
  CHECK(paths[0].prefix == "/api/v2");
  CHECK(paths[1].prefix == "/api");
  CHECK(paths[2].prefix == "/");
  CHECK(routed(table, "example.com", "/api/v2/users") == "api2");
  CHECK(routed(table, "example.com", "/api/v2") == "api2");
  CHECK(routed(table, "example.com", "/api/v20") == "api");
  CHECK(routed(table, "example.com", "/api/v1") == "api");
  CHECK(routed(table, "example.com", "/apix") == "site");
  CHECK(routed(table, "example.com", "/") == "site");
  auto match = route("example.com", "/api/v1", table);
  CHECK(match.prefix == "/api");
  REQUIRE(match.host != nullptr);
  CHECK(match.host->pattern == "example.com");
}

TEST_CASE("a matching Host without a matching path does not fall back to a wildcard",
          "[route_table]") {
  ClusterState state;
  add_service(
      state, {"api", {{"mesh.http", "api.example.com"}, {"mesh.http.path", "/api"}}, {{8081, 80}}});
  add_service(state, {"catchall", {{"mesh.http", "*.example.com"}}, {{8082, 80}}});
  auto table = mesh::compile_route_table(state);
  CHECK(routed(table, "api.example.com", "/api/x") == "api");
  CHECK(routed(table, "api.example.com", "/other").empty());
  CHECK(routed(table, "www.example.com", "/other") == "catchall");
}

TEST_CASE("several hosts in one label share one cluster", "[route_table]") {
  ClusterState state;
  add_service(state, {"web", {{"mesh.http", "a.com,b.com,*.c.com"}}, {{8081, 80}}});
  add_task(state, "web.1", "web", "10.0.0.1");
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.clusters.size() == 1);
  auto a = route("a.com", "/", table);
  auto b = route("b.com", "/x", table);
  auto c = route("x.c.com", "/", table);
  REQUIRE(a.cluster != nullptr);
  CHECK(a.cluster == b.cluster);
  CHECK(a.cluster == c.cluster);
  CHECK(a.cluster->endpoints.size() == 1);
}

TEST_CASE("UCP label routes its host to its internal port", "[route_table]") {
  ClusterState state;
  add_service(state, {"legacy",
                      {{"com.docker.ucp.mesh.http.80",
                        "external_route=http://legacy.example.com,internal_port=9000"}},
                      {{8081, 80}}});
  add_task(state, "legacy.1", "legacy", "10.0.0.5");
  auto table = mesh::compile_route_table(state);
  auto match = route("legacy.example.com", "/anything", table);
  REQUIRE(match.cluster != nullptr);
  CHECK(match.cluster->service == "legacy");
  REQUIRE(match.cluster->endpoints.size() == 1);
  CHECK(match.cluster->endpoints[0].port == 9000);
  CHECK(match.cluster->endpoints[0].key == "10.0.0.5:9000");
}

TEST_CASE("two exposures of one service on the same port reuse the cluster", "[route_table]") {
  ClusterState state;
  add_service(
      state,
      {"web",
       {{"mesh.http", "new.example.com"},
        {"com.docker.ucp.mesh.http.80", "external_route=http://old.example.com,internal_port=80"}},
       {{8081, 80}}});
  add_task(state, "web.1", "web", "10.0.0.1");
  auto table = mesh::compile_route_table(state);
  CHECK(table.clusters.size() == 1);
  auto a = route("new.example.com", "/", table);
  auto b = route("old.example.com", "/", table);
  REQUIRE(a.cluster != nullptr);
  CHECK(a.cluster == b.cluster);
}

TEST_CASE("published ports become L4 routes or HTTP ports", "[route_table]") {
  ClusterState state;
  add_service(state, {"web", {{"mesh.http", "web.example.com"}}, {{8081, 80}, {8443, 443}}});
  add_service(state, {"db", {}, {{6432, 5432}}});
  add_service(state, {"cache", {}, {{6379, 6379}, {16379, 6379}}});
  add_service(state, {"web2", {{"mesh.http", "web2.example.com"}}, {{8081, 80}}});
  add_task(state, "db.1", "db", "10.0.1.1");
  add_task(state, "db.2", "db", "10.0.1.2", 7000);
  add_task(state, "cache.1", "cache", "10.0.2.1");
  auto table = mesh::compile_route_table(state);

  CHECK(table.http_ports == std::vector<std::uint16_t>{8081, 8443});
  REQUIRE(table.l4.size() == 3);
  CHECK(table.l4[0].published == 6379);
  CHECK(table.l4[1].published == 6432);
  CHECK(table.l4[2].published == 16379);
  CHECK(table.clusters[table.l4[0].cluster].service == "cache");
  CHECK(table.l4[0].cluster == table.l4[2].cluster);  // same target port, same cluster
  const auto& db = table.clusters[table.l4[1].cluster];
  CHECK(db.service == "db");
  REQUIRE(db.endpoints.size() == 2);
  CHECK(db.endpoints[0].port == 5432);
  CHECK(db.endpoints[1].port == 7000);
}

TEST_CASE("endpoint port: task port, else mesh.http.port, else first target port",
          "[route_table]") {
  ClusterState state;
  add_service(state, {"default", {{"mesh.http", "d.example.com"}}, {{8081, 80}, {8082, 81}}});
  add_service(
      state,
      {"labelled", {{"mesh.http", "l.example.com"}, {"mesh.http.port", "3000"}}, {{8083, 80}}});
  add_task(state, "default.1", "default", "10.0.0.1");
  add_task(state, "default.2", "default", "10.0.0.2", 9999);
  add_task(state, "labelled.1", "labelled", "10.0.0.3");
  add_task(state, "labelled.2", "labelled", "10.0.0.4", 4000);
  auto table = mesh::compile_route_table(state);

  auto d = route("d.example.com", "/", table);
  REQUIRE(d.cluster != nullptr);
  REQUIRE(d.cluster->endpoints.size() == 2);
  CHECK(d.cluster->endpoints[0].port == 80);
  CHECK(d.cluster->endpoints[1].port == 9999);
  auto l = route("l.example.com", "/", table);
  REQUIRE(l.cluster != nullptr);
  REQUIRE(l.cluster->endpoints.size() == 2);
  CHECK(l.cluster->endpoints[0].port == 3000);
  CHECK(l.cluster->endpoints[1].port == 4000);
}

TEST_CASE("unhealthy and draining tasks are marked not healthy", "[route_table]") {
  ClusterState state;
  add_service(state, {"web", {{"mesh.http", "web.example.com"}}, {{8081, 80}}});
  add_task(state, "web.1", "web", "10.0.0.1", 0, TaskHealth::healthy);
  add_task(state, "web.2", "web", "10.0.0.2", 0, TaskHealth::unknown);
  add_task(state, "web.3", "web", "10.0.0.3", 0, TaskHealth::unhealthy);
  add_task(state, "web.4", "web", "10.0.0.4", 0, TaskHealth::draining);
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.clusters.size() == 1);
  const auto& eps = table.clusters[0].endpoints;
  REQUIRE(eps.size() == 4);
  CHECK(eps[0].healthy);
  CHECK(eps[1].healthy);
  CHECK_FALSE(eps[2].healthy);
  CHECK_FALSE(eps[3].healthy);
}

TEST_CASE("endpoints are the service's own tasks in id order with parsed addresses",
          "[route_table]") {
  ClusterState state;
  add_service(state, {"web", {{"mesh.http", "web.example.com"}}, {{8081, 80}}});
  add_service(state, {"other", {{"mesh.http", "other.example.com"}}, {{8082, 80}}});
  add_task(state, "web.b", "web", "fd00::2");
  add_task(state, "web.a", "web", "10.1.2.3");
  add_task(state, "other.1", "other", "10.9.9.9");
  state.tasks["web.b"].node = "node2";
  auto table = mesh::compile_route_table(state);
  auto match = route("web.example.com", "/", table);
  REQUIRE(match.cluster != nullptr);
  const auto& eps = match.cluster->endpoints;
  REQUIRE(eps.size() == 2);
  CHECK(eps[0].task_id == "web.a");
  CHECK_FALSE(eps[0].ip.v6);
  CHECK(eps[0].ip.bytes[0] == 10);
  CHECK(eps[0].ip.bytes[3] == 3);
  CHECK(eps[0].key == "10.1.2.3:80");
  CHECK(eps[0].node.empty());
  CHECK(eps[1].task_id == "web.b");
  CHECK(eps[1].ip.v6);
  CHECK(eps[1].ip.bytes[0] == 0xfd);
  CHECK(eps[1].ip.bytes[15] == 2);
  // A task that names its node carries it in its key: two nodes may run tasks at one address.
  CHECK(eps[1].key == "[fd00::2]:80@node2");
  CHECK(eps[1].node == "node2");
}

TEST_CASE("tasks whose ids interleave across services land in their own service's cluster",
          "[route_table]") {
  // The compile groups tasks by service in one pass over the id-ordered tasks; ids need not
  // start with the service's name, and a service's tasks need not be adjacent.
  ClusterState state;
  add_service(state, {"api", {{"mesh.http", "api.test"}}, {{8081, 80}}});
  add_service(state, {"web", {{"mesh.http", "web.test"}}, {{8082, 80}}});
  add_task(state, "t1", "web", "10.0.0.1");
  add_task(state, "t2", "api", "10.0.0.2");
  add_task(state, "t3", "web", "10.0.0.3");
  add_task(state, "t4", "gone", "10.0.0.4");       // a service the state does not have
  add_task(state, "t5", "web", "not-an-address");  // validate_state refuses it; left out here
  add_task(state, "t6", "api", "10.0.0.6");
  auto table = mesh::compile_route_table(state);
  auto web = route("web.test", "/", table);
  auto api = route("api.test", "/", table);
  REQUIRE(web.cluster != nullptr);
  REQUIRE(api.cluster != nullptr);
  REQUIRE(web.cluster->endpoints.size() == 2);
  CHECK(web.cluster->endpoints[0].task_id == "t1");
  CHECK(web.cluster->endpoints[1].task_id == "t3");
  REQUIRE(api.cluster->endpoints.size() == 2);
  CHECK(api.cluster->endpoints[0].task_id == "t2");
  CHECK(api.cluster->endpoints[1].task_id == "t6");
  CHECK(api.cluster->endpoints[1].key == "10.0.0.6:80");
  // The policy facts see the same tasks.
  const std::array<std::uint8_t, 4> t4{10, 0, 0, 4};
  const std::array<std::uint8_t, 4> t6{10, 0, 0, 6};
  CHECK(table.policy.source(t4.data(), false) == nullptr);
  REQUIRE(table.policy.source(t6.data(), false) != nullptr);
  CHECK(table.policy.source(t6.data(), false)->services == std::vector<std::string>{"api"});
}

TEST_CASE("a service whose labels do not parse is skipped", "[route_table]") {
  ClusterState state = web_and_wildcard();
  add_service(state,
              {"broken", {{"mesh.http", "ok.other.org"}, {"mesh.bogus", "1"}}, {{9000, 90}}});
  auto table = mesh::compile_route_table(state);
  CHECK(routed(table, "ok.other.org").empty());
  for (const auto& cluster : table.clusters) {
    CHECK(cluster.service != "broken");
  }
  CHECK(std::find(table.http_ports.begin(), table.http_ports.end(), 9000) ==
        table.http_ports.end());
}

TEST_CASE("lb policy, sticky cookie and revision come from labels and state", "[route_table]") {
  ClusterState state;
  state.revision = 42;
  add_service(state, {"web",
                      {{"mesh.http", "web.example.com"},
                       {"mesh.lb", "least_request"},
                       {"mesh.http.sticky", "SESSION"}},
                      {{8081, 80}}});
  auto table = mesh::compile_route_table(state);
  CHECK(table.revision == 42);
  REQUIRE(table.clusters.size() == 1);
  CHECK(table.clusters[0].lb == mesh::LbPolicy::least_request);
  CHECK(table.clusters[0].sticky_cookie == std::optional<std::string>("SESSION"));
  CHECK(table.clusters[0].index == 0);
}

TEST_CASE("compiling is deterministic regardless of insertion order", "[route_table]") {
  auto build = [](bool reversed) {
    ClusterState state;
    std::vector<ServiceSpec> specs = {
        {"a", {{"mesh.http", "a.example.com,z.example.com"}}, {{8081, 80}}},
        {"b", {{"mesh.http", "*.example.com"}, {"mesh.http.path", "/b"}}, {{8082, 80}}},
        {"c", {}, {{7000, 7000}}},
        {"d", {{"mesh.http", "d.example.com"}, {"mesh.lb", "random"}}, {{8083, 80}}},
    };
    if (reversed) {
      std::reverse(specs.begin(), specs.end());
    }
    for (const auto& spec : specs) {
      add_service(state, spec);
      add_task(state, spec.name + ".1", spec.name, "10.0.0.1");
      add_task(state, spec.name + ".2", spec.name, "10.0.0.2");
    }
    return mesh::compile_route_table(state);
  };
  auto first = mesh::to_json(build(false));
  CHECK(first == mesh::to_json(build(false)));
  CHECK(first == mesh::to_json(build(true)));
}

TEST_CASE("to_json describes clusters, hosts, l4 routes and http ports", "[route_table]") {
  ClusterState state;
  state.revision = 7;
  add_service(state, {"db", {}, {{6432, 5432}}});
  add_service(state,
              {"web",
               {{"mesh.http", "web.example.com,*.web.example.com"}, {"mesh.http.sticky", "SID"}},
               {{8081, 80}}});
  add_task(state, "db.1", "db", "10.0.0.9");
  add_task(state, "web.1", "web", "fd00::1", 0, TaskHealth::unhealthy);
  state.tasks["web.1"].node = "n2";
  auto doc = boost::json::parse(mesh::to_json(mesh::compile_route_table(state))).as_object();

  CHECK(doc.at("revision").to_number<std::uint64_t>() == 7);
  const auto& clusters = doc.at("clusters").as_array();
  REQUIRE(clusters.size() == 2);
  const auto& web = clusters[1].as_object();
  CHECK(web.at("service").as_string() == "web");
  CHECK(web.at("lb").as_string() == "round_robin");
  CHECK(web.at("sticky").as_string() == "SID");
  CHECK(clusters[0].as_object().at("sticky").is_null());
  const auto& endpoint = web.at("endpoints").as_array().at(0).as_object();
  CHECK(endpoint.at("task").as_string() == "web.1");
  CHECK(endpoint.at("node").as_string() == "n2");
  CHECK(endpoint.at("address").as_string() == "[fd00::1]:80");
  CHECK(endpoint.at("healthy").as_bool() == false);

  const auto& hosts = doc.at("hosts").as_array();
  REQUIRE(hosts.size() == 2);
  CHECK(hosts[0].as_object().at("pattern").as_string() == "web.example.com");
  CHECK(hosts[0].as_object().at("wildcard").as_bool() == false);
  CHECK(hosts[1].as_object().at("pattern").as_string() == ".web.example.com");
  CHECK(hosts[1].as_object().at("wildcard").as_bool() == true);
  const auto& path = hosts[0].as_object().at("paths").as_array().at(0).as_object();
  CHECK(path.at("prefix").as_string() == "/");
  CHECK(path.at("service").as_string() == "web");

  const auto& l4 = doc.at("l4").as_array();
  REQUIRE(l4.size() == 1);
  CHECK(l4[0].as_object().at("port").to_number<int>() == 6432);
  CHECK(l4[0].as_object().at("service").as_string() == "db");
  const auto& http_ports = doc.at("http_ports").as_array();
  REQUIRE(http_ports.size() == 1);
  CHECK(http_ports[0].to_number<int>() == 8081);
}

TEST_CASE("local targets: a node's own tasks by id and port, others go by the overlay",
          "[route_table]") {
  ClusterState state;
  add_service(
      state,
      {"web", {{"mesh.http", "web.test"}, {"mesh.lb.locality", "prefer-local"}}, {{9000, 80}}});
  add_service(state, {"db", {{"mesh.proxy_protocol", "v2"}}, {{5432, 5432}}});
  add_task(state, "web.1", "web", "172.31.1.1");
  add_task(state, "web.2", "web", "172.31.2.1");
  add_task(state, "db.1", "db", "172.31.1.1");
  state.tasks["web.1"].node = "n1";
  state.tasks["web.2"].node = "n2";
  state.tasks["db.1"].node = "n1";
  discovery::Node n2;
  n2.id = "2";
  n2.name = "n2";
  n2.overlay = "10.77.0.12:4789";
  state.nodes[n2.id] = n2;

  auto table = mesh::compile_route_table(state, "n1");
  const auto* t = mesh::find_local_target(table, "web.1", 80);
  REQUIRE(t != nullptr);
  CHECK(t->service == "web");
  CHECK(t->ip.text == "172.31.1.1");
  CHECK(mesh::find_local_target(table, "web.1", 81) == nullptr);  // not an exposed port
  CHECK(mesh::find_local_target(table, "web.2", 80) == nullptr);  // n2's task
  CHECK(mesh::find_local_target(table, "nope", 80) == nullptr);
  const auto* db = mesh::find_local_target(table, "db.1", 5432);
  REQUIRE(db != nullptr);
  CHECK(db->proxy_protocol == discovery::ProxyProtocol::v2);

  const mesh::Cluster* web = nullptr;
  for (const auto& c : table.clusters) {
    if (c.service == "web") {
      web = &c;
    }
  }
  REQUIRE(web != nullptr);
  CHECK(web->prefer_local);
  REQUIRE(web->endpoints.size() == 2);
  CHECK(web->endpoints[0].local);
  CHECK_FALSE(web->endpoints[0].via);
  CHECK_FALSE(web->endpoints[1].local);
  REQUIRE(web->endpoints[1].via);
  CHECK(web->endpoints[1].key == "172.31.2.1:80@n2");

  // the overlay accepts streams from the state's nodes only, by id
  CHECK(table.nodes == std::set<std::string, std::less<>>{"2"});
  // and a sending node checks who answers at an overlay address against the node put there
  REQUIRE(table.node_hops.size() == 1);
  CHECK(table.node_hops.at("2").ip.text == "10.77.0.12");
  CHECK(table.node_hops.at("2").port == 4789);

  // a node marked down takes its tasks out everywhere
  state.nodes["2"].status = discovery::NodeStatus::down;
  auto down = mesh::compile_route_table(state, "n1");
  for (const auto& c : down.clusters) {
    for (const auto& e : c.endpoints) {
      CHECK(e.healthy == (e.node != "n2"));
    }
  }
}

TEST_CASE("each VIP of a service listens on every target port and the HTTP port", "[route_table]") {
  ClusterState state;
  add_service(state, {"db", {}, {{5432, 5432}, {15432, 6432}}});
  add_service(state, {"web", {{"mesh.http", "web.test"}, {"mesh.http.port", "8080"}}, {}});
  state.services["db"].vips = {{"ingress", "10.255.0.2"}, {"backend", "10.10.0.3"}};
  state.services["web"].vips = {{"ingress", "10.255.0.4"}};
  add_task(state, "db.1", "db", "10.0.0.1");
  add_task(state, "web.1", "web", "10.0.0.2");
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.vips.size() == 5);
  auto* r = mesh::find_vip_route(table, "10.255.0.2", 6432);
  REQUIRE(r != nullptr);
  CHECK(table.clusters[r->cluster].service == "db");
  CHECK(r->network == "ingress");
  CHECK(mesh::find_vip_route(table, "10.10.0.3", 5432) != nullptr);
  CHECK(mesh::find_vip_route(table, "10.255.0.2", 15432) == nullptr);  // published, not a target
  auto* w = mesh::find_vip_route(table, "10.255.0.4", 8080);
  REQUIRE(w != nullptr);
  CHECK(table.clusters[w->cluster].service == "web");
  CHECK(mesh::find_vip_route(table, "10.255.0.9", 8080) == nullptr);
}

TEST_CASE("VIP routes are found whatever their textual order", "[route_table]") {
  // Sorted by address bytes, not text: "10.0.0.10" < "10.0.0.9" as text, not as addresses.
  ClusterState state;
  for (int i = 1; i <= 12; ++i) {
    const std::string name = "s" + std::to_string(i);
    add_service(state, {name, {}, {{static_cast<std::uint16_t>(9000 + i), 7000}}});
    state.services[name].vips = {{"ingress", "10.0.0." + std::to_string(i)}};
    add_task(state, name + ".1", name, "10.1.0." + std::to_string(i));
  }
  add_service(state, {"v6", {}, {{9100, 7000}}});
  state.services["v6"].vips = {{"ingress", "fd00::a"}};
  add_task(state, "v6.1", "v6", "fd00::1:1");
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.vips.size() == 13);
  for (int i = 1; i <= 12; ++i) {
    auto* r = mesh::find_vip_route(table, "10.0.0." + std::to_string(i), 7000);
    REQUIRE(r != nullptr);
    CHECK(table.clusters[r->cluster].service == "s" + std::to_string(i));
  }
  auto* v6 = mesh::find_vip_route(table, "fd00::a", 7000);
  REQUIRE(v6 != nullptr);
  CHECK(table.clusters[v6->cluster].service == "v6");
  CHECK(mesh::find_vip_route(table, "fd00:0::a", 7000) == v6);  // same address, other spelling
  CHECK(mesh::find_vip_route(table, "10.0.0.13", 7000) == nullptr);
  CHECK(mesh::find_vip_route(table, "not-an-address", 7000) == nullptr);
  CHECK(mesh::find_vip_route(table, std::string(200, '1'), 7000) == nullptr);
}

TEST_CASE("a VIP relays each UDP target port, apart from its TCP ports", "[route_table]") {
  ClusterState state;
  base::PortMapping dns_udp{53, 5353};
  dns_udp.protocol = "udp";
  add_service(state, {"dns", {}, {dns_udp, {8053, 8053}}});
  state.services["dns"].vips = {{"ingress", "10.255.0.5"}, {"backend", "10.10.0.5"}};
  add_task(state, "dns.1", "dns", "10.0.0.1");
  auto table = mesh::compile_route_table(state);
  REQUIRE(table.udp_vips.size() == 2);
  auto* u = mesh::find_vip_route(table, "10.10.0.5", 5353, true);
  REQUIRE(u != nullptr);
  CHECK(u->network == "backend");
  CHECK(table.clusters[u->cluster].service == "dns");
  CHECK(table.clusters[u->cluster].endpoints[0].port == 5353);
  CHECK(mesh::find_vip_route(table, "10.10.0.5", 8053, true) == nullptr);  // TCP only
  CHECK(mesh::find_vip_route(table, "10.10.0.5", 8053) != nullptr);
  CHECK(mesh::find_vip_route(table, "10.10.0.5", 5353) == nullptr);  // UDP only
}

TEST_CASE("host-mode ports open only where the service has a task, to that node's tasks",
          "[route_table]") {
  ClusterState state;
  base::PortMapping host_tcp{6379, 6379};
  host_tcp.mode = "host";
  base::PortMapping host_udp{5353, 53, "udp"};
  host_udp.mode = "host";
  base::PortMapping bound{7070, 70};
  bound.address = "127.0.0.5";
  add_service(state, {"cache", {}, {host_tcp}});
  add_service(state, {"dns", {}, {host_udp}});
  add_service(state, {"gopher", {}, {bound}});
  add_task(state, "cache.1", "cache", "172.31.1.1");
  add_task(state, "cache.2", "cache", "172.31.2.1");
  add_task(state, "dns.2", "dns", "172.31.2.1");
  add_task(state, "gopher.2", "gopher", "172.31.2.1");
  state.tasks["cache.1"].node = "n1";
  state.tasks["cache.2"].node = "n2";
  state.tasks["dns.2"].node = "n2";
  state.tasks["gopher.2"].node = "n2";
  for (const auto* name : {"n1", "n2"}) {
    discovery::Node node;
    node.id = name;
    node.name = name;
    node.overlay = std::string(name) == "n1" ? "10.77.0.11:4789" : "10.77.0.12:4789";
    state.nodes[node.id] = node;
  }

  const auto on_n1 = mesh::compile_route_table(state, "n1");
  // cache: only cache.1, the task on n1; dns has no task on n1, so its port stays closed.
  std::vector<std::uint16_t> l4_ports;
  for (const auto& r : on_n1.l4) {
    l4_ports.push_back(r.published);
    if (r.published == 6379) {
      const auto& eps = on_n1.clusters[r.cluster].endpoints;
      REQUIRE(eps.size() == 1);
      CHECK(eps[0].ip.text == "172.31.1.1");
    }
  }
  CHECK(l4_ports == std::vector<std::uint16_t>{6379, 7070});
  CHECK(on_n1.udp.empty());
  // An ingress port with an address binds it on every node; the others are not in the map.
  CHECK(on_n1.bind_addresses.size() == 1);
  CHECK(on_n1.bind_addresses.at({false, 7070}) == "127.0.0.5");

  const auto on_n2 = mesh::compile_route_table(state, "n2");
  REQUIRE(on_n2.udp.size() == 1);
  CHECK(on_n2.udp[0].published == 5353);
  const auto& dns = on_n2.clusters[on_n2.udp[0].cluster].endpoints;
  REQUIRE(dns.size() == 1);
  CHECK(dns[0].port == 53);
  // gopher is ingress: reachable from n1 over the overlay, its task on n2.
  for (const auto& r : on_n1.l4) {
    if (r.published == 7070) {
      REQUIRE(on_n1.clusters[r.cluster].endpoints.size() == 1);
      CHECK_FALSE(on_n1.clusters[r.cluster].endpoints[0].local);
    }
  }
}

TEST_CASE("mesh.sni routes: exact before wildcard, longest wildcard first, on the SNI port",
          "[route_table]") {
  ClusterState state;
  add_service(state, {"db", {{"mesh.sni", "db.example.com"}, {"mesh.sni.port", "5433"}}, {}});
  add_service(state, {"tls-all", {{"mesh.sni", "*.example.com"}}, {{8443, 443}}});
  add_service(state, {"tls-deep", {{"mesh.sni", "*.deep.example.com"}}, {{8444, 443}}});
  add_service(state, {"z-dup", {{"mesh.sni", "db.example.com"}}, {{8445, 443}}});
  add_task(state, "db.1", "db", "10.0.0.1");
  add_task(state, "all.1", "tls-all", "10.0.0.2");
  add_task(state, "deep.1", "tls-deep", "10.0.0.3");
  const auto table = mesh::compile_route_table(state);
  auto service_of = [&](std::string_view name) {
    const mesh::SniRoute* r = mesh::find_sni_route(table, name);
    return r == nullptr ? std::string() : table.clusters[r->cluster].service;
  };
  CHECK(service_of("db.example.com") == "db");  // the first service in name order keeps it
  CHECK(service_of("x.example.com") == "tls-all");
  CHECK(service_of("a.deep.example.com") == "tls-deep");
  CHECK(service_of("example.com").empty());
  CHECK(service_of("other.test").empty());
  const mesh::SniRoute* db = mesh::find_sni_route(table, "db.example.com");
  REQUIRE(db != nullptr);
  REQUIRE(table.clusters[db->cluster].endpoints.size() == 1);
  CHECK(table.clusters[db->cluster].endpoints[0].port == 5433);
  const mesh::SniRoute* all = mesh::find_sni_route(table, "x.example.com");
  CHECK(table.clusters[all->cluster].endpoints[0].port == 443);
}

TEST_CASE("ingress certificates reach the table; the JSON shows hosts, never keys",
          "[route_table]") {
  ClusterState state;
  discovery::IngressCert c;
  c.host = "a.test";
  c.cert = "CERT";
  c.key = "SECRET-KEY";
  c.digest = std::string(64, 'b');
  c.version = 7;
  state.ingress_certs[c.host] = c;
  const auto table = mesh::compile_route_table(state);
  REQUIRE(table.certificates.size() == 1);
  CHECK(table.certificates[0].key == "SECRET-KEY");
  CHECK(table.certificates[0].version == 7);
  const std::string json = mesh::to_json(table);
  CHECK(json.find("a.test") != std::string::npos);
  CHECK(json.find("SECRET-KEY") == std::string::npos);
}
