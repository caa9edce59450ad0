#include "discovery/store/state_machine.h"

#include "discovery/model/state.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"

#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

// Applies a command given as JSON text and requires success.
ApplyResult ok(ClusterState& state, const std::string& command) {
  ApplyResult r = apply_json(state, command);
  INFO(command);
  INFO("error: " << r.error.field << ": " << r.error.message);
  REQUIRE(r.ok);
  return r;
}

// Applies a command that must be rejected; checks that nothing changed.
Error rejected(ClusterState& state, const std::string& command) {
  const std::string before = encode_state(state);
  ApplyResult r = apply_json(state, command);
  INFO(command);
  REQUIRE_FALSE(r.ok);
  CHECK(encode_state(state) == before);
  return r.error;
}

std::string web_service(const std::string& extra = "") {
  return R"({"op":"service.create","service":{"name":"web","labels":{"mesh.http":"web.example.com"},)"
         R"("ports":[{"published":8080,"target":80}])" +
         extra + "}}";
}

const char* kNode2 =
    R"({"op":"node.add","node":{"id":"00000000000000b2","name":"n2","role":"worker","address":"127.0.0.12:9901"}})";

}  // namespace

TEST_CASE("the initial state has the ingress network and revision 0") {
  ClusterState state = initial_state();
  CHECK(state.revision == 0);
  REQUIRE(state.networks.count("ingress") == 1);
  const Network& ingress = state.networks.at("ingress");
  CHECK(ingress.subnet == "10.255.0.0/16");
  CHECK(ingress.gateway == "10.255.0.1");
  CHECK(ingress.builtin);
  CHECK(state.subnet_pool == "10.10.0.0/16");
  CHECK(validate_state(state).empty());
}

TEST_CASE("service.create stores the service on ingress with a VIP and bumps the revision") {
  ClusterState state = initial_state();
  ApplyResult r = ok(state, web_service());
  CHECK(r.revision == 1);
  CHECK(state.revision == 1);
  const Service& web = state.services.at("web");
  CHECK(web.version == 1);
  CHECK(web.networks == std::vector<std::string>{"ingress"});
  CHECK(web.vips == std::map<std::string, std::string>{{"ingress", "10.255.0.3"}});
  CHECK(web.endpoint_mode == EndpointMode::vip);
  REQUIRE(web.ports.size() == 1);
  CHECK(web.ports[0].published == 8080);
  CHECK(web.ports[0].target == 80);
  CHECK(web.ports[0].protocol == "tcp");
  CHECK(boost::json::serialize(r.object) == boost::json::serialize(to_json(web)));
}

TEST_CASE("every applied command bumps the revision by one and stamps the object version") {
  ClusterState state = initial_state();
  const std::vector<std::string> commands = {
      R"({"op":"cluster.settings","cluster_id":"c1"})",
      R"({"op":"network.create","network":{"name":"appnet"}})",
      web_service(R"(,"networks":["appnet"])"),
      kNode2,
      R"({"op":"task.add","task":{"id":"t1","service":"web","node":"n2","address":"127.0.0.1","port":9001}})",
      R"({"op":"task.update","id":"t1","health":"healthy"})",
      R"({"op":"node.update","id":"00000000000000b2","status":"down"})",
      R"({"op":"task.remove","id":"t1"})",
      R"({"op":"node.remove","id":"00000000000000b2"})",
      R"({"op":"service.delete","name":"web"})",
      R"({"op":"network.delete","name":"appnet"})",
  };
  std::uint64_t revision = 0;
  for (const auto& c : commands) {
    ApplyResult r = ok(state, c);
    ++revision;
    CHECK(r.revision == revision);
    CHECK(state.revision == revision);
    const auto& object = r.object.as_object();
    if (object.contains("version") && c.find("delete") == std::string::npos &&
        c.find("remove") == std::string::npos) {
      CHECK(object.at("version").to_number<std::uint64_t>() == revision);
    }
    INFO(c);
    CHECK(validate_state(state).empty());
  }
  CHECK(state.services.empty());
  CHECK(state.tasks.empty());
  CHECK(state.nodes.empty());
  CHECK(state.networks.size() == 1);
}

TEST_CASE("network.create allocates /24s from the pool with .1 as gateway") {
  ClusterState state = initial_state();
  ok(state, R"({"op":"network.create","network":{"name":"a"}})");
  ok(state, R"({"op":"network.create","network":{"name":"b","subnet":"10.10.1.0/24"}})");
  ok(state, R"({"op":"network.create","network":{"name":"c"}})");
  CHECK(state.networks.at("a").subnet == "10.10.0.0/24");
  CHECK(state.networks.at("a").gateway == "10.10.0.1");
  CHECK(state.networks.at("b").subnet == "10.10.1.0/24");
  CHECK(state.networks.at("c").subnet == "10.10.2.0/24");
  CHECK_FALSE(state.networks.at("c").builtin);
  // Deleting releases the subnet: the next network gets the lowest free one again.
  ok(state, R"({"op":"network.delete","name":"a"})");
  ok(state, R"({"op":"network.create","network":{"name":"d"}})");
  CHECK(state.networks.at("d").subnet == "10.10.0.0/24");
}

TEST_CASE("network validation errors name their field") {
  struct Case {
    std::string command;
    errc code;
    std::string field;
    std::string message_start;
  };
  ClusterState state = initial_state();
  ok(state, R"({"op":"network.create","network":{"name":"appnet","subnet":"10.1.0.0/24"}})");
  ok(state, web_service(R"(,"networks":["appnet"])"));
  const std::vector<Case> cases = {
      {R"({"op":"network.create","network":{"name":"appnet"}})", errc::conflict, "network.name",
       "network \"appnet\" already exists"},
      {R"({"op":"network.create","network":{"name":"Bad"}})", errc::invalid, "network.name",
       "must match"},
      {R"({"op":"network.create","network":{"name":"x","subnet":"10.1.0.5/24"}})", errc::invalid,
       "network.subnet", "expected an IPv4 CIDR"},
      {R"({"op":"network.create","network":{"name":"x","subnet":"10.1.0.0/31"}})", errc::invalid,
       "network.subnet", "expected an IPv4 CIDR"},
      {R"({"op":"network.create","network":{"name":"x","subnet":"10.1.0.128/25"}})", errc::conflict,
       "network.subnet", "subnet 10.1.0.128/25 overlaps network \"appnet\" (10.1.0.0/24)"},
      {R"({"op":"network.create","network":{"name":"x","subnet":"10.0.0.0/8"}})", errc::conflict,
       "network.subnet", "subnet 10.0.0.0/8 overlaps network"},
      {R"({"op":"network.create","network":{"name":"x","mtu":1400}})", errc::invalid, "network.mtu",
       "unknown field"},
      {R"({"op":"network.create","network":{"subnet":"10.9.0.0/24"}})", errc::invalid,
       "network.name", "required"},
      {R"({"op":"network.delete","name":"nope"})", errc::not_found, "name", "no network \"nope\""},
      {R"({"op":"network.delete","name":"ingress"})", errc::conflict, "name",
       "network \"ingress\" is built in"},
      {R"({"op":"network.delete","name":"appnet"})", errc::conflict, "name",
       "network \"appnet\" is in use by service \"web\""},
      {R"({"op":"network.delete","name":"appnet","version":99})", errc::version_mismatch, "version",
       "version 99 does not match current version 1"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.command);
    Error e = rejected(state, c.command);
    CHECK(e.code == c.code);
    CHECK(e.field == c.field);
    CHECK_THAT(e.message, Catch::StartsWith(c.message_start));
  }
}

TEST_CASE("service validation errors name their field (the config file's rules)") {
  struct Case {
    std::string command;
    errc code;
    std::string field;
    std::string message_start;
  };
  ClusterState state = initial_state();
  ok(state, web_service());
  auto svc = [](const std::string& body) {
    return R"({"op":"service.create","service":{"name":"api",)" + body + "}}";
  };
  const std::vector<Case> cases = {
      {web_service(), errc::conflict, "service.name", "service \"web\" already exists"},
      {R"({"op":"service.create","service":{"name":"API"}})", errc::invalid, "service.name",
       "must match [a-z0-9][a-z0-9_.-]{0,62}"},
      {svc(R"("labels":{"mesh.http":""},"ports":[{"published":9000,"target":80}])"), errc::invalid,
       "service.labels.mesh.http", "empty host"},
      {svc(R"("labels":{"mesh.bogus":"x"})"), errc::invalid, "service.labels.mesh.bogus", ""},
      {svc(R"("labels":{"mesh.http":"web.example.com"},"ports":[{"published":9000,"target":80}])"),
       errc::conflict, "service.labels.mesh.http",
       "host web.example.com path / already claimed by service \"web\""},
      {svc(R"("ports":[{"published":8080,"target":81}])"), errc::conflict, "service.ports[0]",
       "published port 8080/tcp already used by service \"web\""},
      {svc(R"("ports":[{"published":9000,"target":80},{"published":9000,"target":81}])"),
       errc::conflict, "service.ports[1]", "published port 9000/tcp already used"},
      {svc(R"("ports":[{"published":0,"target":80}])"), errc::invalid, "service.ports[0]",
       "ports must be 1..65535"},
      {svc(R"("ports":[{"published":9000,"target":80,"protocol":"sctp"}])"), errc::invalid,
       "service.ports[0]", "protocol must be tcp or udp"},
      {svc(R"("ports":[{"published":70000,"target":80}])"), errc::invalid,
       "service.ports[0].published", "must be at most 65535"},
      {svc(R"("networks":["nope"])"), errc::invalid, "service.networks[0]",
       "unknown network \"nope\""},
      {svc(R"("networks":["ingress","ingress"])"), errc::invalid, "service.networks[1]",
       "network \"ingress\" listed twice"},
      {svc(R"("endpoint_mode":"round")"), errc::invalid, "service.endpoint_mode",
       "must be vip or dnsrr"},
      {svc(R"("labels":{"team":1})"), errc::invalid, "service.labels.team", "expected a string"},
      {svc(R"("replicas":3)"), errc::invalid, "service.replicas", "unknown field"},
      {R"({"op":"service.update","service":{"name":"nope"}})", errc::not_found, "service.name",
       "no service \"nope\""},
      {R"({"op":"service.delete","name":"nope"})", errc::not_found, "name", "no service \"nope\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.command);
    Error e = rejected(state, c.command);
    CHECK(e.code == c.code);
    CHECK(e.field == c.field);
    CHECK_THAT(e.message, Catch::StartsWith(c.message_start));
  }
}

TEST_CASE("malformed commands are invalid and name the offending key") {
  struct Case {
    std::string command;
    std::string field;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      {"not json", "", "command is not valid JSON"},
      {"[1]", "", "expected an object"},
      {R"({"service":{}})", "op", "required"},
      {R"({"op":"service.explode"})", "op", "unknown op \"service.explode\""},
      {R"({"op":"service.create"})", "service", "required"},
      {R"({"op":"service.create","service":[]})", "service", "expected an object"},
      {R"({"op":"service.create","service":{"name":"a"},"extra":1})", "extra", "unknown field"},
      {R"({"op":"service.delete","name":"a","version":-1})", "version",
       "expected a non-negative integer"},
      {R"({"op":"task.update","id":"t1"})", "health", "required"},
      {R"({"op":"task.update","id":"t1","health":"sick"})", "health",
       "must be unknown, healthy, unhealthy or draining"},
      {R"({"op":"node.update","id":"x","role":"boss"})", "role", "must be manager or worker"},
      {R"({"op":"task.remove"})", "id", "required"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.command);
    ClusterState state = initial_state();
    Error e = rejected(state, c.command);
    CHECK(e.code == errc::invalid);
    CHECK(e.field == c.field);
    CHECK_THAT(e.message, Catch::StartsWith(c.message_start));
    CHECK(state.revision == 0);
  }
}

TEST_CASE("service.update replaces the spec, keeps VIPs of kept networks and releases others") {
  ClusterState state = initial_state();
  ok(state, R"({"op":"network.create","network":{"name":"a"}})");
  ok(state, R"({"op":"network.create","network":{"name":"b"}})");
  ok(state, web_service(R"(,"networks":["a","ingress"])"));
  const auto vips_before = state.services.at("web").vips;
  CHECK(vips_before.at("a") == "10.10.0.3");
  CHECK(vips_before.at("ingress") == "10.255.0.3");

  ok(state,
     R"({"op":"service.update","service":{"name":"web","labels":{"mesh.http":"new.example.com"},)"
     R"("ports":[{"published":8081,"target":80}],"networks":["a","b"]}})");
  const Service& web = state.services.at("web");
  CHECK(web.labels.at("mesh.http") == "new.example.com");
  CHECK(web.ports[0].published == 8081);
  CHECK(web.vips == std::map<std::string, std::string>{{"a", "10.10.0.3"}, {"b", "10.10.1.3"}});
  CHECK(web.version == state.revision);

  // The ingress VIP was released: the next service gets it.
  ok(state, R"({"op":"service.create","service":{"name":"other"}})");
  CHECK(state.services.at("other").vips.at("ingress") == "10.255.0.3");
}

TEST_CASE("compare-and-swap: a stale version is rejected, the current one accepted") {
  ClusterState state = initial_state();
  ok(state, web_service());                                    // revision 1
  ok(state, R"({"op":"cluster.settings","cluster_id":"c"})");  // revision 2
  const std::uint64_t v = state.services.at("web").version;
  REQUIRE(v == 1);
  const std::string update_body =
      R"("service":{"name":"web","labels":{"mesh.http":"web.example.com"},"ports":[{"published":8080,"target":80}],"endpoint_mode":"dnsrr"})";
  Error e = rejected(state, R"({"op":"service.update",)" + update_body + R"(,"version":2})");
  CHECK(e.code == errc::version_mismatch);
  CHECK(e.field == "version");
  ApplyResult r = ok(state, R"({"op":"service.update",)" + update_body + R"(,"version":1})");
  CHECK(r.revision == 3);
  CHECK(state.services.at("web").endpoint_mode == EndpointMode::dnsrr);
  // The same CAS is now stale.
  CHECK(rejected(state, R"({"op":"service.update",)" + update_body + R"(,"version":1})").code ==
        errc::version_mismatch);
  CHECK(rejected(state, R"({"op":"service.delete","name":"web","version":1})").code ==
        errc::version_mismatch);
  ok(state, R"({"op":"service.delete","name":"web","version":3})");
  CHECK(state.services.empty());
}

TEST_CASE("tasks: add, update, remove and their errors") {
  ClusterState state = initial_state();
  ok(state, web_service());
  ApplyResult added = ok(
      state,
      R"({"op":"task.add","task":{"id":"t1","service":"web","address":"127.0.0.1","port":9001}})");
  const Task& t1 = state.tasks.at("t1");
  CHECK(t1.service == "web");
  CHECK(t1.node.empty());
  CHECK(t1.port == 9001);
  CHECK(t1.health == TaskHealth::unknown);
  CHECK(t1.version == added.revision);

  ok(state, R"({"op":"task.update","id":"t1","health":"unhealthy","version":2})");
  CHECK(state.tasks.at("t1").health == TaskHealth::unhealthy);

  struct Case {
    std::string command;
    errc code;
    std::string field;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      {R"({"op":"task.add","task":{"id":"t1","service":"web","address":"127.0.0.2"}})",
       errc::conflict, "task.id", "task \"t1\" already exists"},
      {R"({"op":"task.add","task":{"id":"bad id","service":"web","address":"127.0.0.2"}})",
       errc::invalid, "task.id", "must be 1..64 characters"},
      {R"({"op":"task.add","task":{"id":"t2","service":"ghost","address":"127.0.0.2"}})",
       errc::invalid, "task.service", "unknown service \"ghost\""},
      {R"({"op":"task.add","task":{"id":"t2","service":"web","address":"backend.local"}})",
       errc::invalid, "task.address", "address \"backend.local\" is not an IP literal"},
      {R"({"op":"task.add","task":{"id":"t2","service":"web","address":"127.0.0.2","port":"80"}})",
       errc::invalid, "task.port", "expected a non-negative integer"},
      {R"({"op":"task.update","id":"t9","health":"healthy"})", errc::not_found, "id",
       "no task \"t9\""},
      {R"({"op":"task.update","id":"t1","health":"healthy","version":1})", errc::version_mismatch,
       "version", "version 1 does not match current version 3"},
      {R"({"op":"task.remove","id":"t9"})", errc::not_found, "id", "no task \"t9\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.command);
    Error e = rejected(state, c.command);
    CHECK(e.code == c.code);
    CHECK(e.field == c.field);
    CHECK_THAT(e.message, Catch::StartsWith(c.message_start));
  }

  // Once nodes exist, a task's node must be one of them (by name).
  ok(state, kNode2);
  Error e = rejected(
      state,
      R"({"op":"task.add","task":{"id":"t2","service":"web","node":"n9","address":"127.0.0.2"}})");
  CHECK(e.field == "task.node");
  CHECK(e.message == "unknown node \"n9\"");
  ok(state,
     R"({"op":"task.add","task":{"id":"t2","service":"web","node":"n2","address":"127.0.0.2"}})");

  ok(state, R"({"op":"task.remove","id":"t1"})");
  CHECK(state.tasks.count("t1") == 0);
}

TEST_CASE("deleting a service removes its tasks and releases its VIPs") {
  ClusterState state = initial_state();
  ok(state, web_service());
  ok(state, R"({"op":"service.create","service":{"name":"api"}})");
  ok(state, R"({"op":"task.add","task":{"id":"w1","service":"web","address":"127.0.0.1"}})");
  ok(state, R"({"op":"task.add","task":{"id":"a1","service":"api","address":"127.0.0.1"}})");
  CHECK(state.services.at("api").vips.at("ingress") == "10.255.0.4");
  ApplyResult r = ok(state, R"({"op":"service.delete","name":"web"})");
  CHECK(r.object.as_object().at("name").as_string() == "web");
  CHECK(state.tasks.count("w1") == 0);
  CHECK(state.tasks.count("a1") == 1);
  ok(state, R"({"op":"service.create","service":{"name":"web2"}})");
  CHECK(state.services.at("web2").vips.at("ingress") == "10.255.0.3");
  CHECK(validate_state(state).empty());
}

TEST_CASE("nodes: add, update, remove and their errors") {
  ClusterState state = initial_state();
  ok(state,
     R"({"op":"node.add","node":{"id":"00000000000000a1","name":"n1","role":"manager","address":"127.0.0.11:9901","peer":"127.0.0.11:7946"}})");
  ok(state, kNode2);
  const Node& n1 = state.nodes.at("00000000000000a1");
  CHECK(n1.peer == "127.0.0.11:7946");
  CHECK(n1.status == NodeStatus::ready);
  CHECK(state.nodes.at("00000000000000b2").role == NodeRole::worker);

  struct Case {
    std::string command;
    errc code;
    std::string field;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      {R"({"op":"node.add","node":{"id":"00000000000000a1","name":"n3","role":"worker","address":"127.0.0.13:9901"}})",
       errc::conflict, "node.id", "node \"00000000000000a1\" already exists"},
      {R"({"op":"node.add","node":{"id":"A1","name":"n3","role":"worker","address":"127.0.0.13:9901"}})",
       errc::invalid, "node.id", "must be 16 lower-case hex digits"},
      {R"({"op":"node.add","node":{"id":"00000000000000c3","name":"n1","role":"worker","address":"127.0.0.13:9901"}})",
       errc::conflict, "node.name", "node name \"n1\" already used"},
      {R"({"op":"node.add","node":{"id":"00000000000000c3","name":"n3","role":"worker"}})",
       errc::invalid, "node.address", "required"},
      {R"({"op":"node.add","node":{"id":"00000000000000c3","name":"n3","role":"worker","address":"n3:80"}})",
       errc::invalid, "node.address", "expected IP:PORT"},
      {R"({"op":"node.add","node":{"id":"00000000000000c3","name":"n3","role":"manager","address":"127.0.0.13:9901"}})",
       errc::invalid, "node.peer", "required for managers"},
      {R"({"op":"node.add","node":{"id":"00000000000000c3","name":"n 3","address":"127.0.0.13:9901","peer":"127.0.0.13:7946"}})",
       errc::invalid, "node.name", "must be 1..253 characters"},
      {R"({"op":"node.update","id":"00000000000000ff","status":"down"})", errc::not_found, "id",
       "no node"},
      {R"({"op":"node.update","id":"00000000000000b2"})", errc::invalid, "", "nothing to update"},
      {R"({"op":"node.update","id":"00000000000000b2","role":"manager"})", errc::invalid, "role",
       "node \"n2\" has no peer address"},
      {R"({"op":"node.remove","id":"00000000000000ff"})", errc::not_found, "id", "no node"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.command);
    Error e = rejected(state, c.command);
    CHECK(e.code == c.code);
    CHECK(e.field == c.field);
    CHECK_THAT(e.message, Catch::StartsWith(c.message_start));
  }

  ok(state, R"({"op":"node.update","id":"00000000000000a1","role":"worker","status":"down"})");
  CHECK(state.nodes.at("00000000000000a1").role == NodeRole::worker);
  CHECK(state.nodes.at("00000000000000a1").status == NodeStatus::down);

  // A node that still runs tasks cannot be removed.
  ok(state, web_service());
  ok(state,
     R"({"op":"task.add","task":{"id":"t1","service":"web","node":"n2","address":"127.0.0.1"}})");
  Error e = rejected(state, R"({"op":"node.remove","id":"00000000000000b2"})");
  CHECK(e.code == errc::conflict);
  CHECK(e.message == "node \"n2\" still runs 1 task(s); remove them first");
  ok(state, R"({"op":"task.remove","id":"t1"})");
  ok(state, R"({"op":"node.remove","id":"00000000000000b2"})");
  CHECK(state.nodes.count("00000000000000b2") == 0);
}

TEST_CASE("cluster.settings sets the id once and changes the pool for new networks") {
  ClusterState state = initial_state();
  ok(state, R"({"op":"cluster.settings","cluster_id":"abc","subnet_pool":"10.20.0.0/16"})");
  CHECK(state.cluster_id == "abc");
  ok(state, R"({"op":"network.create","network":{"name":"a"}})");
  CHECK(state.networks.at("a").subnet == "10.20.0.0/24");
  ok(state, R"({"op":"cluster.settings","cluster_id":"abc"})");  // same id: allowed

  Error e = rejected(state, R"({"op":"cluster.settings","cluster_id":"other"})");
  CHECK(e.code == errc::conflict);
  CHECK(e.field == "cluster_id");
  e = rejected(state, R"({"op":"cluster.settings","subnet_pool":"10.20.0.0/25"})");
  CHECK(e.code == errc::invalid);
  CHECK(e.field == "subnet_pool");
  e = rejected(state, R"({"op":"cluster.settings"})");
  CHECK(e.code == errc::invalid);
}

TEST_CASE("cluster.settings replaces one join token's hash at a time") {
  ClusterState state = initial_state();
  ok(state,
     R"({"op":"cluster.settings","worker_token_hash":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","manager_token_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})");
  CHECK(state.worker_token_hash ==
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  CHECK(state.manager_token_hash ==
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  ok(state,
     R"({"op":"cluster.settings","worker_token_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})");
  CHECK(state.worker_token_hash ==
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  CHECK(state.manager_token_hash ==
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  const auto revision = state.revision;
  for (const char* bad :
       {"", "abc", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"}) {
    CAPTURE(bad);
    Error e = rejected(
        state, std::string(R"({"op":"cluster.settings","manager_token_hash":")") + bad + "\"}");
    CHECK(e.code == errc::invalid);
    CHECK(e.field == "manager_token_hash");
  }
  CHECK(state.revision == revision);
  CHECK(state.manager_token_hash ==
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

TEST_CASE("cluster.settings raises the overlay key epoch, never lowers it") {
  ClusterState state = initial_state();
  ok(state, R"({"op":"cluster.settings","overlay_key_epoch":1,"overlay_key_epoch_at":1700000000})");
  CHECK(state.overlay_key_epoch == 1);
  CHECK(state.overlay_key_epoch_at == 1700000000);
  const auto revision = state.revision;
  Error e = rejected(
      state,
      R"({"op":"cluster.settings","overlay_key_epoch":1,"overlay_key_epoch_at":1700000009})");
  CHECK(e.code == errc::conflict);  // two managers raising it at once: one wins
  CHECK(e.field == "overlay_key_epoch");
  e = rejected(state, R"({"op":"cluster.settings","overlay_key_epoch":2})");
  CHECK(e.code == errc::invalid);
  CHECK(e.field == "overlay_key_epoch_at");
  CHECK(state.revision == revision);
  ok(state, R"({"op":"cluster.settings","overlay_key_epoch":5,"overlay_key_epoch_at":1700000100})");
  CHECK(state.overlay_key_epoch == 5);
  // It survives a snapshot.
  auto back = decode_state(encode_state(state));
  REQUIRE(back.has_value());
  CHECK(back->overlay_key_epoch == 5);
  CHECK(back->overlay_key_epoch_at == 1700000100);
}

TEST_CASE("IPAM exhaustion: a full pool and a full network are conflicts") {
  ClusterState state = initial_state();
  ok(state, R"({"op":"cluster.settings","subnet_pool":"10.30.0.0/23"})");
  ok(state, R"({"op":"network.create","network":{"name":"a"}})");
  ok(state, R"({"op":"network.create","network":{"name":"b"}})");
  Error e = rejected(state, R"({"op":"network.create","network":{"name":"c"}})");
  CHECK(e.code == errc::conflict);
  CHECK(e.field == "network.subnet");
  CHECK(e.message == "subnet pool 10.30.0.0/23 is exhausted");

  // A /30 has no room for a VIP (.0 network, .1 gateway, .2 DNS address, .3 broadcast).
  ok(state, R"({"op":"network.create","network":{"name":"tiny","subnet":"192.168.7.0/30"}})");
  e = rejected(state, R"({"op":"service.create","service":{"name":"s0","networks":["tiny"]}})");
  CHECK(e.code == errc::conflict);
  CHECK(e.field == "service.networks");
  CHECK(e.message == "no free address left on network \"tiny\"");
  // A /29 has room for four (.3 to .6).
  ok(state, R"({"op":"network.create","network":{"name":"small","subnet":"192.168.8.0/29"}})");
  for (const char* name : {"s1", "s2", "s3", "s4"}) {
    ok(state, std::string(R"({"op":"service.create","service":{"name":")") + name +
                  R"(","networks":["small"]}})");
  }
  CHECK(state.services.at("s1").vips.at("small") == "192.168.8.3");
  CHECK(state.services.at("s4").vips.at("small") == "192.168.8.6");
  e = rejected(state, R"({"op":"service.create","service":{"name":"s5","networks":["small"]}})");
  CHECK(e.code == errc::conflict);
  CHECK(e.field == "service.networks");
  CHECK(e.message == "no free address left on network \"small\"");
  ok(state, R"({"op":"service.delete","name":"s1"})");
  ok(state, R"({"op":"service.create","service":{"name":"s5","networks":["small"]}})");
  CHECK(state.services.at("s5").vips.at("small") == "192.168.8.3");
}

TEST_CASE("the same commands applied to two states give identical state JSON") {
  // A mixed list including rejected commands; replaying it must be bit-for-bit deterministic.
  std::vector<std::string> commands = {
      R"({"op":"cluster.settings","cluster_id":"c","subnet_pool":"10.40.0.0/16"})",
      R"({"op":"network.create","network":{"name":"n1"}})",
      R"({"op":"network.create","network":{"name":"n2"}})",
      R"({"op":"network.create","network":{"name":"n1"}})",  // rejected
      kNode2,
  };
  for (int i = 0; i < 30; ++i) {
    const std::string name = "s" + std::to_string(i);
    commands.push_back(R"({"op":"service.create","service":{"name":")" + name +
                       R"(","labels":{"mesh.http":")" + name +
                       R"(.example.com"},"ports":[{"published":)" + std::to_string(9000 + i % 20) +
                       R"(,"target":80}],"networks":[")" + (i % 2 == 0 ? "n1" : "n2") + R"("]}})");
    commands.push_back(R"({"op":"task.add","task":{"id":")" + name + R"(.1","service":")" + name +
                       R"(","node":"n2","address":"127.0.0.)" + std::to_string(i + 1) + R"("}})");
    if (i % 3 == 0) {
      commands.push_back(R"({"op":"service.delete","name":"s)" + std::to_string(i / 2) + R"("})");
    }
  }
  ClusterState a = initial_state();
  ClusterState b = initial_state();
  std::vector<std::string> results_a;
  std::vector<std::string> results_b;
  for (const auto& c : commands) {
    results_a.push_back(encode_result(apply_json(a, c)));
  }
  for (const auto& c : commands) {
    results_b.push_back(encode_result(apply_json(b, c)));
  }
  CHECK(results_a == results_b);
  CHECK(encode_state(a) == encode_state(b));
  CHECK(a.revision > 30);
  CHECK(validate_state(a).empty());
}

TEST_CASE("apply results encode and decode") {
  ClusterState state = initial_state();
  ApplyResult good = apply_json(state, web_service());
  const std::string text = encode_result(good);
  CHECK_THAT(text, Catch::StartsWith(R"({"ok":true,"revision":1,"object":{"name":"web")"));
  auto back = decode_result(text);
  REQUIRE(back);
  CHECK(back->ok);
  CHECK(back->revision == 1);
  CHECK(back->object == good.object);

  ApplyResult bad = apply_json(state, web_service());
  const std::string bad_text = encode_result(bad);
  CHECK(
      bad_text ==
      R"({"ok":false,"error":{"code":"conflict","message":"service \"web\" already exists","field":"service.name"}})");
  auto bad_back = decode_result(bad_text);
  REQUIRE(bad_back);
  CHECK_FALSE(bad_back->ok);
  CHECK(bad_back->error == bad.error);

  CHECK_FALSE(decode_result("{}"));
  CHECK_FALSE(decode_result(R"({"ok":false,"error":{"code":"weird","message":"","field":""}})"));
  CHECK_FALSE(decode_result("garbage"));
}
