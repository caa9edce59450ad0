#include "discovery/store/state_json.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_machine.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;
namespace json = boost::json;

namespace {

ClusterState sample_state() {
  ClusterState state = initial_state();
  state.revision = 42;
  state.cluster_id = "cafe";
  state.subnet_pool = "10.50.0.0/16";
  Node n;
  n.id = "00000000000000a1";
  n.name = "n1";
  n.role = NodeRole::worker;
  n.address = "127.0.0.11:9901";
  n.peer = "127.0.0.11:7946";
  n.status = NodeStatus::down;
  n.version = 3;
  state.nodes[n.id] = n;
  Network net;
  net.name = "appnet";
  net.subnet = "10.50.0.0/24";
  net.gateway = "10.50.0.1";
  net.version = 4;
  state.networks[net.name] = net;
  Service s;
  s.name = "web";
  s.labels = {{"mesh.http", "web.example.com"}, {"team", "blue \"quoted\" \u00e9"}};
  s.networks = {"appnet", "ingress"};
  s.ports = {routemesh::base::PortMapping{8080, 80, "tcp"},
             routemesh::base::PortMapping{8443, 443, "tcp"}};
  s.endpoint_mode = EndpointMode::dnsrr;
  s.vips = {{"appnet", "10.50.0.2"}, {"ingress", "10.255.0.2"}};
  s.version = 5;
  state.services[s.name] = s;
  Task t;
  t.id = "web.1";
  t.service = "web";
  t.node = "n1";
  t.address = "::1";
  t.port = 9001;
  t.health = TaskHealth::draining;
  t.version = 6;
  state.tasks[t.id] = t;
  return state;
}

}  // namespace

TEST_CASE("ClusterState survives a JSON round trip field for field") {
  const ClusterState state = sample_state();
  const std::string text = encode_state(state);
  auto back = decode_state(text);
  REQUIRE(back);
  CHECK(encode_state(*back) == text);
  CHECK(back->revision == 42);
  CHECK(back->cluster_id == "cafe");
  CHECK(back->subnet_pool == "10.50.0.0/16");
  const Node& n = back->nodes.at("00000000000000a1");
  CHECK(n.name == "n1");
  CHECK(n.role == NodeRole::worker);
  CHECK(n.address == "127.0.0.11:9901");
  CHECK(n.peer == "127.0.0.11:7946");
  CHECK(n.status == NodeStatus::down);
  CHECK(n.version == 3);
  const Network& net = back->networks.at("appnet");
  CHECK(net.gateway == "10.50.0.1");
  CHECK_FALSE(net.builtin);
  CHECK(back->networks.at("ingress").builtin);
  const Service& s = back->services.at("web");
  CHECK(s.labels == state.services.at("web").labels);
  CHECK(s.networks == std::vector<std::string>{"appnet", "ingress"});
  REQUIRE(s.ports.size() == 2);
  CHECK(s.ports[1].published == 8443);
  CHECK(s.ports[1].target == 443);
  CHECK(s.endpoint_mode == EndpointMode::dnsrr);
  CHECK(s.vips == state.services.at("web").vips);
  CHECK(s.version == 5);
  const Task& t = back->tasks.at("web.1");
  CHECK(t.address == "::1");
  CHECK(t.port == 9001);
  CHECK(t.health == TaskHealth::draining);
  CHECK(t.node == "n1");
  CHECK(t.version == 6);
}

TEST_CASE("the join tokens' hashes survive a JSON round trip and are absent when unset") {
  ClusterState state = sample_state();
  CHECK(encode_state(state).find("token_hash") == std::string::npos);
  state.worker_token_hash = std::string(64, 'a');
  state.manager_token_hash = std::string(64, 'b');
  auto back = decode_state(encode_state(state));
  REQUIRE(back);
  CHECK(back->worker_token_hash == state.worker_token_hash);
  CHECK(back->manager_token_hash == state.manager_token_hash);
}

TEST_CASE("state JSON has the documented shape") {
  json::object o = to_json(sample_state());
  CHECK(o.at("revision").as_uint64() == 42);
  REQUIRE(o.at("services").is_array());
  const json::object& web = o.at("services").as_array()[0].as_object();
  CHECK(web.at("endpoint_mode").as_string() == "dnsrr");
  CHECK(web.at("ports").as_array()[0].as_object().at("published").as_uint64() == 8080);
  CHECK(web.at("vips").as_object().at("appnet").as_string() == "10.50.0.2");
  const json::object& task = o.at("tasks").as_array()[0].as_object();
  CHECK(task.at("health").as_string() == "draining");
}

TEST_CASE("malformed state images are rejected") {
  const std::string good = encode_state(sample_state());
  CHECK(decode_state(good));
  CHECK_FALSE(decode_state(""));
  CHECK_FALSE(decode_state("[]"));
  CHECK_FALSE(decode_state(R"({"nodes":[]})"));  // no revision
  CHECK_FALSE(decode_state(R"({"revision":1,"surprise":true})"));
  CHECK_FALSE(decode_state(R"({"revision":1,"tasks":[{"id":"a"},{"id":"a"}]})"));
  CHECK_FALSE(
      decode_state(R"({"revision":1,"services":[{"name":"a","ports":[{"published":-1}]}]})"));
  CHECK_FALSE(decode_state(R"({"revision":1,"nodes":[{"id":"a","role":"king"}]})"));
  CHECK_FALSE(decode_state(good.substr(0, good.size() - 1)));
}

TEST_CASE("object decoders report the first problem with its path") {
  StateError error;
  auto v = json::parse(R"({"name":"web","ports":[{"published":80,"target":80},{"target":"x"}]})");
  CHECK_FALSE(service_from_json(v, "service", error));
  CHECK(error.path == "service.ports[1].target");
  CHECK(error.message == "expected a non-negative integer");

  v = json::parse(R"({"id":"t","health":"meh"})");
  CHECK_FALSE(task_from_json(v, "task", error));
  CHECK(error.path == "task.health");

  v = json::parse(R"({"name":"x","networks":["a",1]})");
  CHECK_FALSE(service_from_json(v, "service", error));
  CHECK(error.path == "service.networks[1]");

  v = json::parse(R"({"name":"x","builtin":"yes"})");
  CHECK_FALSE(network_from_json(v, "network", error));
  CHECK(error.path == "network.builtin");

  v = json::parse(R"({"name":"n"})");
  CHECK_FALSE(node_from_json(v, "node", error));
  CHECK(error.path == "node.id");
  CHECK(error.message == "required");
}

TEST_CASE("every command survives encode/decode and keeps its op name") {
  Service s;
  s.name = "web";
  s.labels = {{"mesh.http", "w"}};
  s.networks = {"a"};
  s.ports = {routemesh::base::PortMapping{1, 2, "tcp"}};
  s.vips = {{"a", "10.0.0.2"}};  // store-assigned: not part of the command
  Task t;
  t.id = "t1";
  t.service = "web";
  t.address = "127.0.0.1";
  t.port = 3;
  Node n;
  n.id = "00000000000000a1";
  n.name = "n1";
  n.address = "127.0.0.1:1";
  n.peer = "127.0.0.1:2";
  Network net;
  net.name = "a";
  net.subnet = "10.0.0.0/24";
  const std::vector<Command> commands = {
      NetworkCreate{net},
      NetworkDelete{"a", 7},
      ServiceCreate{s},
      ServiceUpdate{s, 9},
      ServiceUpdate{s, std::nullopt},
      ServiceDelete{"web", std::nullopt},
      TaskAdd{t},
      TaskUpdate{"t1", TaskHealth::healthy, 4},
      TaskRemove{"t1", std::nullopt},
      NodeAdd{n},
      NodeUpdate{"00000000000000a1", NodeStatus::down, std::nullopt, std::nullopt},
      NodeUpdate{"00000000000000a1", std::nullopt, NodeRole::worker, 2},
      NodeRemove{"00000000000000a1", std::nullopt},
      ClusterSettingsUpdate{"c", "10.1.0.0/16"},
      ClusterSettingsUpdate{std::nullopt, "10.1.0.0/16"},
      ClusterSettingsUpdate{std::nullopt, std::nullopt, std::string(64, 'a'), std::nullopt},
      ClusterSettingsUpdate{std::nullopt, std::nullopt, std::nullopt, std::string(64, 'b')},
      ClusterSettingsUpdate{std::nullopt, std::nullopt, std::nullopt, std::nullopt, 3, 1700000000},
  };
  for (const auto& c : commands) {
    const std::string text = encode_command(c);
    CAPTURE(text);
    CHECK(text.find(std::string("\"op\":\"") + std::string(op_name(c)) + "\"") !=
          std::string::npos);
    CHECK(text.find("vips") == std::string::npos);
    auto back = decode_command(text);
    REQUIRE(back.has_value());
    CHECK(back->index() == c.index());
    CHECK(encode_command(*back) == text);
  }
}
