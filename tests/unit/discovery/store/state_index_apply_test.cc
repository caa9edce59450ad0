// The store's apply with a StateIndex kept in step (state_machine.h): same answers as with an
// index built from scratch, the index equal to a fresh one after every command, and the VIP
// allocator equal to the plain "lowest free address" rule.
#include "discovery/store/state_machine.h"

#include "discovery/model/state_index.h"
#include "discovery/store/commands.h"
#include "discovery/store/ipam.h"
#include "discovery/store/state_json.h"
#include "discovery/store/store_state_machine.h"

#include <catch2/catch.hpp>

#include <random>
#include <set>
#include <string>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

// allocate_vip as it was written before the index: collect every VIP of the network, then walk
// up from .2. The reference the indexed allocator must agree with.
std::optional<std::string> reference_vip(const ClusterState& state, const std::string& network) {
  auto it = state.networks.find(network);
  if (it == state.networks.end()) {
    return std::nullopt;
  }
  auto cidr = parse_cidr(it->second.subnet);
  if (!cidr || cidr->prefix > 30) {
    return std::nullopt;
  }
  std::set<std::uint64_t> taken;
  for (const auto& [name, service] : state.services) {
    auto vip = service.vips.find(network);
    if (vip != service.vips.end()) {
      if (auto a = parse_ipv4(vip->second)) {
        taken.insert(*a);
      }
    }
  }
  if (auto gw = parse_ipv4(it->second.gateway)) {
    taken.insert(*gw);
  }
  std::uint64_t candidate = std::uint64_t{cidr->base} + 3;  // .2 is the DNS address
  while (taken.count(candidate) != 0) {
    ++candidate;
  }
  if (candidate >= cidr->last()) {
    return std::nullopt;
  }
  return ipv4_to_string(static_cast<std::uint32_t>(candidate));
}

// A random command over a small vocabulary, so that names, hosts, ports, tasks and nodes collide.
std::string random_command(std::mt19937& rng) {
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const std::string svc = "s" + std::to_string(pick(8));
  const std::string task = "t" + std::to_string(pick(20));
  const std::string node_id = "00000000000000a" + std::to_string(pick(4));
  const std::string host = std::string(1, static_cast<char>('a' + pick(5))) + ".test";
  const std::string port = std::to_string(8000 + pick(6));
  const std::string networks = pick(3) == 0   ? R"(["ingress","backend"])"
                               : pick(2) == 0 ? R"(["backend"])"
                                              : R"([])";
  const std::string labels = pick(4) == 0 ? R"({})"
                             : pick(3) == 0
                                 ? R"({"mesh.http":")" + host + R"(","mesh.http.path":"/v1"})"
                                 : R"({"mesh.http":")" + host + R"("})";
  const std::string ports = pick(3) == 0 ? "[]" : R"([{"published":)" + port + R"(,"target":80}])";
  switch (pick(11)) {
    case 0:
    case 1:
      return R"({"op":"service.create","service":{"name":")" + svc + R"(","labels":)" + labels +
             R"(,"networks":)" + networks + R"(,"ports":)" + ports + "}}";
    case 2:
      return R"({"op":"service.update","service":{"name":")" + svc + R"(","labels":)" + labels +
             R"(,"networks":)" + networks + R"(,"ports":)" + ports + "}}";
    case 3:
      return R"({"op":"service.delete","name":")" + svc + R"("})";
    case 4:
    case 5:
      return R"({"op":"task.add","task":{"id":")" + task + R"(","service":")" + svc +
             R"(","node":")" + (pick(3) == 0 ? "" : "n" + std::to_string(pick(4))) +
             R"(","address":"10.0.0.)" + std::to_string(1 + pick(9)) + "\"" +
             (pick(2) == 0 ? "" : R"(,"port":8080)") + "}}";
    case 6:
      return R"({"op":"task.remove","id":")" + task + R"("})";
    case 7:
      return R"({"op":"task.update","id":")" + task + R"(","health":"healthy"})";
    case 8:
      return R"({"op":"node.add","node":{"id":")" + node_id + R"(","name":"n)" +
             std::to_string(pick(4)) + R"(","role":"worker","address":"127.0.0.1:9901"}})";
    case 9:
      return R"({"op":"node.remove","id":")" + node_id + R"("})";
    default:
      return pick(2) == 0
                 ? R"({"op":"network.delete","name":"backend"})"
                 : R"({"op":"network.create","network":{"name":"backend","subnet":"10.20.0.0/29"}})";
  }
}

}  // namespace

TEST_CASE("apply with a kept index answers as with a fresh one and keeps the index exact") {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    ClusterState kept = initial_state();
    StateIndex index(kept);
    ClusterState fresh = initial_state();
    for (int step = 0; step < 400; ++step) {
      const std::string text = random_command(rng);
      auto command = decode_command(text);
      REQUIRE(command.has_value());
      ApplyResult a = store::apply(kept, index, *command);
      ApplyResult b = store::apply(fresh, *command);  // builds its index from `fresh`
      INFO("seed " << seed << " step " << step << ": " << text);
      REQUIRE(encode_result(a) == encode_result(b));
      REQUIRE(index == StateIndex(kept));
    }
    CHECK(encode_state(kept) == encode_state(fresh));
    CHECK(kept.revision > 50);  // the vocabulary lets a good share of commands through
  }
}

TEST_CASE("the state machine's index survives restore and matches its state") {
  StoreStateMachine machine;
  std::mt19937 rng(5);
  std::uint64_t index = 0;
  for (int i = 0; i < 300; ++i) {
    machine.apply(++index, random_command(rng));
  }
  CHECK(machine.index() == StateIndex(machine.state()));
  StoreStateMachine other;
  other.restore(machine.snapshot());
  CHECK(other.index() == StateIndex(other.state()));
  // Both go on identically from there.
  for (int i = 0; i < 100; ++i) {
    const std::string text = random_command(rng);
    ++index;
    REQUIRE(machine.apply(index, text) == other.apply(index, text));
  }
  CHECK(encode_state(machine.state()) == encode_state(other.state()));
}

TEST_CASE("indexed VIP allocation is the lowest free address, as without the index") {
  std::mt19937 rng(9);
  for (int round = 0; round < 300; ++round) {
    ClusterState state;
    Network net;
    net.name = "net";
    net.subnet = "10.0.0.0/27";
    // Usually the first host; sometimes a gateway elsewhere or none at all.
    net.gateway = rng() % 4 == 0   ? "10.0.0." + std::to_string(rng() % 32)
                  : rng() % 4 == 0 ? ""
                                   : "10.0.0.1";
    state.networks["net"] = net;
    const int services = static_cast<int>(rng() % 40);
    for (int i = 0; i < services; ++i) {
      Service s;
      s.name = "s" + std::to_string(i);
      s.vips["net"] = "10.0.0." + std::to_string(rng() % 34);  // .32, .33: outside the subnet
      if (rng() % 5 == 0) {
        s.vips["other"] = "10.0.0.2";
      }
      state.services[s.name] = s;
    }
    const StateIndex index(state);
    INFO("round " << round);
    REQUIRE(allocate_vip(state, index, "net") == reference_vip(state, "net"));
    REQUIRE(allocate_vip(state, "net") == reference_vip(state, "net"));
    REQUIRE_FALSE(allocate_vip(state, index, "other"));
  }
}

TEST_CASE("in-use and still-running checks name the same objects as before") {
  ClusterState state = initial_state();
  StateIndex index(state);
  auto run = [&](const std::string& text) {
    auto command = decode_command(text);
    REQUIRE(command.has_value());
    return store::apply(state, index, *command);
  };
  REQUIRE(run(R"({"op":"network.create","network":{"name":"backend"}})").ok);
  for (const char* name : {"zz", "mm", "bb"}) {
    REQUIRE(run(std::string(R"({"op":"service.create","service":{"name":")") + name +
                R"(","networks":["backend"]}})")
                .ok);
  }
  auto r = run(R"({"op":"network.delete","name":"backend"})");
  REQUIRE_FALSE(r.ok);
  CHECK(r.error.code == errc::conflict);
  CHECK(r.error.message == "network \"backend\" is in use by service \"bb\"");

  REQUIRE(
      run(R"({"op":"node.add","node":{"id":"00000000000000a1","name":"w1","role":"worker","address":"127.0.0.1:9901"}})")
          .ok);
  for (const char* id : {"t1", "t2"}) {
    REQUIRE(run(std::string(R"({"op":"task.add","task":{"id":")") + id +
                R"(","service":"mm","node":"w1","address":"10.0.0.1"}})")
                .ok);
  }
  r = run(R"({"op":"node.remove","id":"00000000000000a1"})");
  REQUIRE_FALSE(r.ok);
  CHECK(r.error.message == "node \"w1\" still runs 2 task(s); remove them first");
  // Deleting the service takes its tasks with it; then the node may go.
  REQUIRE(run(R"({"op":"service.delete","name":"mm"})").ok);
  CHECK(state.tasks.empty());
  CHECK(run(R"({"op":"node.remove","id":"00000000000000a1"})").ok);
  CHECK(index == StateIndex(state));
}
