#include "cli/cli_format.h"

#include "discovery/store/state_json.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

using namespace routemesh::cli;
namespace json = boost::json;
namespace store = routemesh::discovery::store;
using routemesh::discovery::StateError;

namespace {

json::value parse(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  REQUIRE_FALSE(ec);
  return v;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

// Splits a table line on runs of 2+ spaces (cells themselves never hold double spaces here).
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::size_t spaces = 0;
  for (char c : line) {
    if (c == ' ') {
      ++spaces;
      continue;
    }
    if (spaces >= 2 && !cell.empty()) {
      out.push_back(cell);
      cell.clear();
    } else if (spaces == 1) {
      cell += ' ';
    }
    spaces = 0;
    cell += c;
  }
  if (!cell.empty()) {
    out.push_back(cell);
  }
  return out;
}

routemesh::discovery::Service web_service() {
  routemesh::discovery::Service s;
  s.name = "web";
  s.labels = {{"mesh.http", "web.example.com"}, {"mesh.http.path", "/api"}};
  s.networks = {"appnet"};
  s.ports = {{8080, 80, "tcp"}};
  s.vips = {{"appnet", "10.10.0.2"}};
  s.version = 7;
  return s;
}

}  // namespace

using Addresses = std::vector<std::string>;

TEST_CASE("api addresses: flag wins over the environment, which wins over the default") {
  CHECK(api_addresses(std::string("10.0.0.1:1234"), "127.0.0.2:9").value() ==
        Addresses{"10.0.0.1:1234"});
  CHECK(api_addresses(std::nullopt, "127.0.0.2:9").value() == Addresses{"127.0.0.2:9"});
  CHECK(api_addresses(std::nullopt, "").value() == Addresses{"127.0.0.1:9901"});
  CHECK(api_addresses(std::nullopt, nullptr).value() == Addresses{"127.0.0.1:9901"});
  CHECK(api_addresses(std::string("http://localhost:80/"), nullptr).value() ==
        Addresses{"localhost:80"});
  CHECK(api_addresses(std::string("[::1]:9901"), nullptr).value() == Addresses{"[::1]:9901"});
}

TEST_CASE("api addresses: a comma-separated list keeps its order, blanks and repeats dropped") {
  CHECK(api_addresses(std::string("127.0.0.11:9901,127.0.0.12:9901,127.0.0.13:9901"), nullptr)
            .value() == Addresses{"127.0.0.11:9901", "127.0.0.12:9901", "127.0.0.13:9901"});
  CHECK(api_addresses(std::nullopt, " b:1 , http://a:2/,b:1").value() == Addresses{"b:1", "a:2"});
  CHECK(api_addresses(std::string("[::1]:1,127.0.0.1:2"), nullptr).value() ==
        Addresses{"[::1]:1", "127.0.0.1:2"});
}

TEST_CASE("api addresses: malformed values name the flag or the variable") {
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "host:port", ":80", "[::1]9901",
        "[nothost]:80", "a b:80", "a:1,", ",a:1", "a:1,,b:2", "a:1;b:2", ""}) {
    auto r = api_addresses(std::string(bad), nullptr);
    INFO(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "--api: expected HOST:PORT[,HOST:PORT...]");
  }
  auto r = api_addresses(std::nullopt, "127.0.0.1:9901,nope");
  REQUIRE_FALSE(r);
  CHECK(r.error() == "ROUTEMESH_API: expected HOST:PORT[,HOST:PORT...]");
}

TEST_CASE("idempotency keys are 32 hex digits of the given bits") {
  CHECK(idempotency_key(0, 0) == std::string(32, '0'));
  CHECK(idempotency_key(0x0123456789abcdefULL, 0xfedcba9876543210ULL) ==
        "0123456789abcdeffedcba9876543210");
}

TEST_CASE("only a 503 is retried on the next manager") {
  CHECK(retry_status(503));
  for (unsigned status : {200u, 201u, 400u, 404u, 409u, 422u, 500u, 502u}) {
    INFO(status);
    CHECK_FALSE(retry_status(status));
  }
}

TEST_CASE("--stale adds stale=true to a read's query") {
  CHECK(read_target("/v1/services", false) == "/v1/services");
  CHECK(read_target("/v1/services", true) == "/v1/services?stale=true");
  CHECK(read_target("/v1/tasks?service=web", true) == "/v1/tasks?service=web&stale=true");
}

TEST_CASE("split_host_port removes IPv6 brackets") {
  CHECK(split_host_port("127.0.0.1:9901") ==
        std::pair<std::string, std::string>{"127.0.0.1", "9901"});
  CHECK(split_host_port("[::1]:80") == std::pair<std::string, std::string>{"::1", "80"});
}

TEST_CASE("path segments are percent-encoded outside RFC 3986 unreserved characters") {
  CHECK(encode_path_segment("web-1.a_b~") == "web-1.a_b~");
  CHECK(encode_path_segment("a/b c?%") == "a%2Fb%20c%3F%25");
}

TEST_CASE("--publish accepts PUBLISHED:TARGET with an optional /tcp") {
  auto p = parse_publish("--publish", "8080:80");
  REQUIRE(p);
  CHECK(json::serialize(p.value()) == R"({"published":8080,"target":80,"protocol":"tcp"})");
  auto q = parse_publish("--publish", "443:8443/tcp");
  REQUIRE(q);
  CHECK(q.value().at("published").to_number<int>() == 443);
  CHECK(q.value().at("target").to_number<int>() == 8443);
}

TEST_CASE("--publish rejects malformed mappings naming the flag") {
  for (const char* bad :
       {"8080", "8080:", ":80", "0:80", "8080:70000", "8080:80/sctp", "a:b", ""}) {
    auto p = parse_publish("--publish", bad);
    INFO(bad);
    REQUIRE_FALSE(p);
    CHECK(p.error().starts_with("--publish: expected [ADDRESS:]PUBLISHED:TARGET"));
  }
}

TEST_CASE("--label needs KEY=VALUE with a non-empty key; the value may be empty or hold '='") {
  auto kv = parse_label("--label", "mesh.http=a=b");
  REQUIRE(kv);
  CHECK(kv.value().first == "mesh.http");
  CHECK(kv.value().second == "a=b");
  CHECK(parse_label("--label", "k=").value().second.empty());
  for (const char* bad : {"novalue", "=v", ""}) {
    auto r = parse_label("--label", bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().starts_with("--label: expected KEY=VALUE"));
  }
}

TEST_CASE("durations: seconds bare or with s, m, h or d; bounded; anything else names the flag") {
  CHECK(parse_duration_s("--grace", "0", 100).value() == 0);
  CHECK(parse_duration_s("--grace", "90", 1000).value() == 90);
  CHECK(parse_duration_s("--grace", "90s", 1000).value() == 90);
  CHECK(parse_duration_s("--grace", "30m", 10000).value() == 1800);
  CHECK(parse_duration_s("--grace", "24h", 100000).value() == 86400);
  CHECK(parse_duration_s("--grace", "7d", 1000000).value() == 604800);
  CHECK(parse_duration_s("--grace", "3650d", 315360000).value() == 315360000);
  for (const char* bad : {"", "h", "-1", "1.5h", "1w", "1 h", "3651d", "999999999999999"}) {
    auto r = parse_duration_s("--grace", bad, 315360000);
    REQUIRE_FALSE(r);
    CHECK(r.error().starts_with("--grace: expected a duration"));
  }
}

TEST_CASE("service create builds a spec the store's decoder accepts") {
  ServiceCreateArgs args;
  args.name = "web";
  args.labels = {"mesh.http=web.example.com", "team=a"};
  args.publish = {"8080:80", "9000:9/tcp"};
  args.networks = {"appnet", "backnet"};
  args.mode = "dnsrr";
  auto req = service_create_request(args);
  REQUIRE(req);
  CHECK(req.value().method == "POST");
  CHECK(req.value().target == "/v1/services");
  StateError error;
  auto service = store::service_from_json(parse(req.value().body), "service", error);
  INFO(error.path << ": " << error.message);
  REQUIRE(service);
  CHECK(service->name == "web");
  CHECK(service->labels.at("mesh.http") == "web.example.com");
  CHECK(service->labels.at("team") == "a");
  CHECK(service->networks == std::vector<std::string>{"appnet", "backnet"});
  REQUIRE(service->ports.size() == 2);
  CHECK(service->ports[1].published == 9000);
  CHECK(service->ports[1].target == 9);
  CHECK(service->endpoint_mode == routemesh::discovery::EndpointMode::dnsrr);
}

TEST_CASE("service create omits the mode when not given and rejects bad flags") {
  ServiceCreateArgs args;
  args.name = "web";
  auto req = service_create_request(args);
  REQUIRE(req);
  CHECK_FALSE(parse(req.value().body).as_object().contains("endpoint_mode"));

  ServiceCreateArgs no_name;
  CHECK(service_create_request(no_name).error() == "--name: required");
  ServiceCreateArgs bad_mode = args;
  bad_mode.mode = "rr";
  CHECK(service_create_request(bad_mode).error() == "--mode: expected vip or dnsrr");
  ServiceCreateArgs bad_label = args;
  bad_label.labels = {"ok=1", "broken"};
  CHECK(service_create_request(bad_label).error().starts_with("--label: expected KEY=VALUE"));
  ServiceCreateArgs bad_port = args;
  bad_port.publish = {"80"};
  CHECK(service_create_request(bad_port).error().starts_with("--publish: expected"));
}

TEST_CASE("service update applies removals then additions and keeps the version for CAS") {
  const json::value current =
      json::object{{"revision", 9}, {"service", store::to_json(web_service())}};
  ServiceUpdateArgs args;
  args.label_rm = {"mesh.http.path", "absent"};
  args.label_add = {"mesh.http=new.example.com", "team=b"};
  args.publish_rm = {"8080"};
  args.publish_add = {"9090:90"};
  args.network_add = {"other", "appnet"};
  args.network_rm = {"appnet"};
  args.mode = "dnsrr";
  auto req = service_update_request("web", current, args);
  REQUIRE(req);
  CHECK(req.value().method == "PUT");
  CHECK(req.value().target == "/v1/services/web");
  const json::object body = parse(req.value().body).as_object();
  CHECK(body.at("version").to_number<int>() == 7);
  CHECK_FALSE(body.contains("vips"));
  StateError error;
  auto service = store::service_from_json(body, "service", error);
  REQUIRE(service);
  CHECK(service->labels ==
        std::map<std::string, std::string>{{"mesh.http", "new.example.com"}, {"team", "b"}});
  REQUIRE(service->ports.size() == 1);
  CHECK(service->ports[0].published == 9090);
  // appnet removed first, then re-added after "other".
  CHECK(service->networks == std::vector<std::string>{"other", "appnet"});
  CHECK(service->endpoint_mode == routemesh::discovery::EndpointMode::dnsrr);
}

TEST_CASE("service update: --publish-add replaces the mapping of the same published port") {
  const json::value current = store::to_json(web_service());  // unwrapped answer
  ServiceUpdateArgs args;
  args.publish_add = {"8080:81"};
  auto req = service_update_request("web", current, args);
  REQUIRE(req);
  const json::value body = parse(req.value().body);
  const json::array& ports = body.at("ports").as_array();
  REQUIRE(ports.size() == 1);
  CHECK(ports[0].at("target").to_number<int>() == 81);
  // Untouched fields survive.
  CHECK(body.at("labels").as_object().size() == 2);
}

TEST_CASE("service update flag errors are found before any request") {
  CHECK(check_update_flags({}).value().starts_with("nothing to update"));
  ServiceUpdateArgs a;
  a.label_add = {"x"};
  CHECK(check_update_flags(a).value().starts_with("--label-add: expected KEY=VALUE"));
  ServiceUpdateArgs b;
  b.label_rm = {"k=v"};
  CHECK(check_update_flags(b).value().starts_with("--label-rm: expected KEY"));
  ServiceUpdateArgs c;
  c.publish_add = {"1:2:3"};
  CHECK(check_update_flags(c).value().starts_with(
      "--publish-add: expected [ADDRESS:]PUBLISHED:TARGET"));
  ServiceUpdateArgs d;
  d.publish_rm = {"http"};
  CHECK(check_update_flags(d).value().starts_with("--publish-rm: expected PUBLISHED"));
  ServiceUpdateArgs e;
  e.mode = "x";
  CHECK(check_update_flags(e).value() == "--mode: expected vip or dnsrr");
  ServiceUpdateArgs ok;
  ok.publish_rm = {"8080/tcp", "8081:80"};
  CHECK_FALSE(check_update_flags(ok));
  // A malformed answer is not a flag error.
  CHECK(service_update_request("web", json::value(json::array{}), ok)
            .error()
            .starts_with("unexpected answer"));
}

TEST_CASE("network create validates the subnet as an IPv4 CIDR") {
  auto req = network_create_request({"appnet", "10.20.0.0/24"});
  REQUIRE(req);
  CHECK(req.value().target == "/v1/networks");
  CHECK(parse(req.value().body) == parse(R"({"name":"appnet","subnet":"10.20.0.0/24"})"));
  CHECK(parse(network_create_request({"appnet", ""}).value().body) ==
        parse(R"({"name":"appnet"})"));
  CHECK(
      network_create_request({"appnet", "10.20.0.1/24"}).error().starts_with("--subnet: expected"));
  CHECK(network_create_request({"appnet", "10.20.0.0"}).error().starts_with("--subnet: expected"));
  CHECK_FALSE(network_create_request({"", ""}));
}

TEST_CASE("task add requires --service and an IP:PORT --addr") {
  auto req = task_add_request({"web", "n2", "127.0.0.1:9001"});
  REQUIRE(req);
  CHECK(req.value().target == "/v1/tasks");
  CHECK(parse(req.value().body) ==
        parse(R"({"service":"web","node":"n2","address":"127.0.0.1:9001"})"));
  CHECK_FALSE(
      parse(task_add_request({"web", "", "[::1]:80"}).value().body).as_object().contains("node"));
  CHECK(task_add_request({"web", "n2", "127.0.0.1"}).error() ==
        "--addr: expected IP:PORT, got '127.0.0.1'");
  CHECK(task_add_request({"web", "n2", "host:80"}).error().starts_with("--addr: expected IP:PORT"));
  CHECK(task_add_request({"", "n2", "127.0.0.1:1"}).error() == "--service: required");
  CHECK(task_add_request({"web", "n2", ""}).error().starts_with("--addr: required"));
}

TEST_CASE("deletes and node actions encode their path segment") {
  auto d = delete_request("services", "we b");
  CHECK(d.method == "DELETE");
  CHECK(d.target == "/v1/services/we%20b");
  auto p = node_action_request("00000000000000ab", "promote");
  CHECK(p.method == "POST");
  CHECK(p.target == "/v1/nodes/00000000000000ab/promote");
}

TEST_CASE("node arguments: ids pass through, names are resolved from the node list") {
  CHECK(looks_like_node_id("0123456789abcdef"));
  CHECK_FALSE(looks_like_node_id("0123456789ABCDEF"));
  CHECK_FALSE(looks_like_node_id("n1"));
  routemesh::discovery::Node n1;
  n1.id = "00000000000000a1";
  n1.name = "n1";
  routemesh::discovery::Node n2;
  n2.id = "00000000000000b2";
  n2.name = "n2";
  const json::value answer =
      json::object{{"nodes", json::array{store::to_json(n1), store::to_json(n2)}}};
  CHECK(resolve_node_id(answer, "n2").value() == "00000000000000b2");
  CHECK(resolve_node_id(answer, "00000000000000a1").value() == "00000000000000a1");
  CHECK(resolve_node_id(answer, "n3").error() == "no such node: n3");
  CHECK_FALSE(resolve_node_id(json::value(json::object{}), "n1"));
}

TEST_CASE("tables pad every column to its widest cell with three spaces between columns") {
  const std::string t = render_table({"A", "LONGER", "C"}, {{"xx", "y", "z"}, {"", "", ""}});
  CHECK(t ==
        "A    LONGER   C\n"
        "xx   y        z\n"
        "\n");
}

TEST_CASE("service ls renders the store's service JSON") {
  auto other = web_service();
  other.name = "api";
  other.labels.clear();
  other.networks.clear();
  other.ports.clear();
  other.endpoint_mode = routemesh::discovery::EndpointMode::dnsrr;
  other.version = 3;
  const json::value answer =
      json::object{{"revision", 9},
                   {"services", json::array{store::to_json(web_service()), store::to_json(other)}}};
  auto text = render_services(answer);
  REQUIRE(text);
  auto ls = lines(text.value());
  REQUIRE(ls.size() == 3);
  CHECK(cells(ls[0]) ==
        std::vector<std::string>{"NAME", "MODE", "NETWORKS", "PUBLISHED", "LABELS", "VERSION"});
  // Sorted by name.
  CHECK(cells(ls[1]) == std::vector<std::string>{"api", "dnsrr", "-", "-", "-", "3"});
  CHECK(cells(ls[2]) == std::vector<std::string>{"web", "vip", "appnet", "8080:80/tcp",
                                                 "mesh.http=web.example.com,mesh.http.path=/api",
                                                 "7"});
  CHECK_FALSE(render_services(json::value(json::object{{"revision", 1}})));
}

TEST_CASE("service inspect lists networks with their VIPs, ports and labels") {
  auto s = web_service();
  s.vips["ingress"] = "10.255.0.5";
  auto text = render_service(json::object{{"service", store::to_json(s)}});
  REQUIRE(text);
  const std::string& t = text.value();
  CHECK(t.find("Name:      web\n") != std::string::npos);
  CHECK(t.find("Version:   7\n") != std::string::npos);
  CHECK(t.find("  appnet  VIP 10.10.0.2\n") != std::string::npos);
  CHECK(t.find("  ingress  VIP 10.255.0.5\n") != std::string::npos);
  CHECK(t.find("  8080:80/tcp\n") != std::string::npos);
  CHECK(t.find("  mesh.http.path=/api\n") != std::string::npos);
}

TEST_CASE("task ls joins address and port, bracketing IPv6 and omitting port 0") {
  routemesh::discovery::Task a;
  a.id = "t1";
  a.service = "web";
  a.node = "n2";
  a.address = "127.0.0.1";
  a.port = 9001;
  a.health = routemesh::discovery::TaskHealth::healthy;
  routemesh::discovery::Task b = a;
  b.id = "t2";
  b.address = "::1";
  routemesh::discovery::Task c = a;
  c.id = "t0";
  c.service = "zzz";
  c.port = 0;
  c.node = "";
  const json::value answer =
      json::object{{"tasks", json::array{store::to_json(c), store::to_json(b), store::to_json(a)}}};
  auto ls = lines(render_tasks(answer).value());
  REQUIRE(ls.size() == 4);
  CHECK(cells(ls[0]) == std::vector<std::string>{"ID", "SERVICE", "NODE", "ADDRESS", "HEALTH"});
  CHECK(cells(ls[1]) == std::vector<std::string>{"t1", "web", "n2", "127.0.0.1:9001", "healthy"});
  CHECK(cells(ls[2]) == std::vector<std::string>{"t2", "web", "n2", "[::1]:9001", "healthy"});
  CHECK(cells(ls[3]) == std::vector<std::string>{"t0", "zzz", "-", "127.0.0.1", "healthy"});
}

TEST_CASE("node ls takes VOTER and LEADER from the cluster status when nodes lack them") {
  routemesh::discovery::Node n1;
  n1.id = "00000000000000a1";
  n1.name = "n1";
  n1.address = "127.0.0.11:9901";
  n1.peer = "127.0.0.11:7946";
  routemesh::discovery::Node w1;
  w1.id = "00000000000000c3";
  w1.name = "w1";
  w1.role = routemesh::discovery::NodeRole::worker;
  w1.address = "127.0.0.14:9901";
  w1.status = routemesh::discovery::NodeStatus::down;
  const json::value nodes =
      json::object{{"nodes", json::array{store::to_json(w1), store::to_json(n1)}}};
  const json::value cluster = parse(R"({"id":"c","leader":{"id":"00000000000000a1","name":"n1"},
      "members":[{"id":"00000000000000a1","name":"n1","voter":true}]})");
  auto ls = lines(render_nodes(nodes, &cluster).value());
  REQUIRE(ls.size() == 3);
  CHECK(cells(ls[0]) ==
        std::vector<std::string>{"ID", "NAME", "ROLE", "STATUS", "VOTER", "LEADER", "API", "PEER"});
  CHECK(cells(ls[1]) == std::vector<std::string>{"00000000000000a1", "n1", "manager", "ready",
                                                 "yes", "yes", "127.0.0.11:9901",
                                                 "127.0.0.11:7946"});
  CHECK(cells(ls[2]) == std::vector<std::string>{"00000000000000c3", "w1", "worker", "down", "no",
                                                 "no", "127.0.0.14:9901", "-"});
  // Without the cluster status the two columns are unknown, not guessed.
  auto bare = lines(render_nodes(nodes, nullptr).value());
  CHECK(cells(bare[1])[4] == "-");
  CHECK(cells(bare[1])[5] == "-");
}

TEST_CASE("autolock answers: the key with how to use it, or that autolock is off") {
  const std::string key(64, 'e');
  auto on = render_autolock(parse(R"({"enabled":true,"unlock_key":")" + key + R"(","revision":9})"),
                            true);
  REQUIRE(on.ok());
  CHECK(on.value().find("\n    " + key + "\n") != std::string::npos);
  CHECK(on.value().find("--unlock-key-file") != std::string::npos);
  auto off = render_autolock(parse(R"({"enabled":false,"revision":9})"), false);
  REQUIRE(off.ok());
  CHECK(off.value().starts_with("autolock is off"));
  auto none = render_autolock(parse(R"({"enabled":false,"revision":9})"), true);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().find("no unlock key") != std::string::npos);
  CHECK_FALSE(render_autolock(parse(R"({"enabled":true})"), true).ok());
  CHECK_FALSE(render_autolock(parse(R"([])"), false).ok());
}

TEST_CASE("cluster status prints the leader, indexes and a members table") {
  const json::value answer = parse(R"({"id":"c0ffee","leader":{"id":"00000000000000a1","name":"n1"},
      "term":4,"commit":120,"applied":119,"revision":57,
      "members":[{"id":"00000000000000b2","name":"n2","role":"manager","voter":false,
                  "api":"127.0.0.12:9901","peer":"127.0.0.12:7946","status":"ready"},
                 {"id":"00000000000000a1","name":"n1","role":"manager","voter":true,
                  "api":"127.0.0.11:9901","peer":"127.0.0.11:7946","status":"ready"}]})");
  auto ls = lines(render_cluster(answer).value());
  REQUIRE(ls.size() == 11);
  CHECK(ls[0] == "Cluster:   c0ffee");
  CHECK(ls[1] == "Leader:    n1 (00000000000000a1)");
  CHECK(ls[2] == "Term:      4");
  CHECK(ls[3] == "Commit:    120");
  CHECK(ls[4] == "Applied:   119");
  CHECK(ls[5] == "Revision:  57");
  CHECK(ls[6] == "Members:   2");
  CHECK(cells(ls[8]) ==
        std::vector<std::string>{"ID", "NAME", "ROLE", "VOTER", "STATUS", "API", "PEER"});
  CHECK(cells(ls[9])[1] == "n1");
  CHECK(cells(ls[9])[3] == "yes");
  CHECK(cells(ls[10])[3] == "no");
  // No leader (no quorum) is said plainly.
  auto none = lines(render_cluster(parse(R"({"id":"c","leader":null,"members":[]})")).value());
  CHECK(none[1] == "Leader:    none");
}

TEST_CASE("API errors print the message and the field") {
  CHECK(format_api_error(400, R"({"error":{"code":"invalid","message":"unknown network appnet",
      "field":"service.networks[0]"}})") == "unknown network appnet (field: service.networks[0])");
  CHECK(format_api_error(404, R"({"error":{"code":"not_found","message":"no service web"}})") ==
        "no service web");
  CHECK(format_api_error(409, R"({"error":{"code":"conflict","message":"taken","field":""}})") ==
        "taken");
  CHECK(format_api_error(502, "Bad gateway\nmore") == "HTTP 502: Bad gateway");
  CHECK(format_api_error(503, "") == "HTTP 503");
  CHECK(api_error_code(R"({"error":{"code":"version_mismatch","message":"m"}})") ==
        "version_mismatch");
  CHECK(api_error_code("not json").empty());
}

TEST_CASE("writes print the created object's id or name") {
  CHECK(written_object_id(parse(R"({"revision":3,"task":{"id":"t9","service":"web"}})"), "task",
                          "") == "t9");
  CHECK(written_object_id(parse(R"({"revision":3,"service":{"name":"web"}})"), "service", "x") ==
        "web");
  CHECK(written_object_id(json::value(nullptr), "service", "fallback") == "fallback");
}

TEST_CASE("network ls shows each network's DNS address, the subnet's second address") {
  auto out = render_networks(parse(
      R"({"networks":[{"name":"ingress","subnet":"10.255.0.0/16","gateway":"10.255.0.1",)"
      R"("builtin":true,"version":0},{"name":"appnet","subnet":"10.10.0.0/24",)"
      R"("gateway":"10.10.0.1","builtin":false,"version":3},{"name":"odd","subnet":"bogus"}]})"));
  REQUIRE(out.ok());
  const auto l = lines(out.value());
  REQUIRE(l.size() == 4);
  CHECK(l[0].find("DNS") != std::string::npos);
  CHECK(l[1].find("10.10.0.2") != std::string::npos);
  CHECK(l[2].find("10.255.0.2") != std::string::npos);
  CHECK(l[3].rfind("odd", 0) == 0);  // rows sorted by name; no DNS address for a bad subnet
}

TEST_CASE("policy add: flags become the POST body; a bad flag is named") {
  PolicyAddArgs a;
  a.from = "cidr:10.0.0.0/8";
  a.to = "service:web";
  a.port = "80";
  a.deny = true;
  a.priority = "7";
  auto r = policy_add_request(a);
  REQUIRE(r);
  CHECK(r.value().method == "POST");
  CHECK(r.value().target == "/v1/policies");
  CHECK(
      parse(r.value().body) ==
      parse(
          R"({"from":"cidr:10.0.0.0/8","to":"service:web","port":80,"action":"deny","priority":7})"));

  auto fails = [](PolicyAddArgs args, const std::string& flag) {
    auto r = policy_add_request(args);
    REQUIRE_FALSE(r);
    CHECK(r.error().rfind(flag, 0) == 0);
  };
  PolicyAddArgs b = a;
  b.from = "";
  fails(b, "--from");
  b = a;
  b.from = "cidr:10.0.0.1/8";
  fails(b, "--from");
  b = a;
  b.to = "network:x";
  fails(b, "--to");
  b = a;
  b.port = "0";
  fails(b, "--port");
  b = a;
  b.allow = true;
  fails(b, "--allow/--deny");
  b = a;
  b.deny = false;
  fails(b, "--allow/--deny");
  b = a;
  b.priority = "-1";
  fails(b, "--priority");
  b = a;
  b.priority = "99999999";
  fails(b, "--priority");
}

TEST_CASE("policy ls renders a table sorted by destination then source") {
  auto text = render_policies(parse(
      R"({"revision":3,"policies":[)"
      R"({"id":"b1","from":"network:z","to":"service:web","port":0,"action":"allow","priority":0,"version":2},)"
      R"({"id":"a1","from":"cidr:10.0.0.0/8","to":"service:web","port":80,"action":"deny","priority":5,"version":3},)"
      R"({"id":"c1","from":"service:x","to":"service:api","port":0,"action":"allow","priority":0,"version":1}]})"));
  REQUIRE(text);
  CHECK(text.value() ==
        "ID   FROM              TO            PORT   ACTION   PRIORITY   VERSION\n"
        "c1   service:x         service:api   *      allow    0          1\n"
        "a1   cidr:10.0.0.0/8   service:web   80     deny     5          3\n"
        "b1   network:z         service:web   *      allow    0          2\n");
  CHECK_FALSE(render_policies(parse(R"({"revision":3})")));
}

TEST_CASE("cert crl prints the CRL's PEM as the API gave it, and refuses anything else") {
  const std::string pem = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n";
  auto text = render_crl(json::object{{"revision", 7}, {"crl", pem}, {"next_update", 1}});
  REQUIRE(text);
  CHECK(text.value() + "\n" == pem);
  CHECK_FALSE(render_crl(json::object{{"revision", 7}}));
  CHECK_FALSE(render_crl(json::object{{"crl", "not a crl"}}));
  CHECK_FALSE(render_crl(json::object{{"crl", 5}}));
  CHECK_FALSE(render_crl(json::value(json::array{})));
}
