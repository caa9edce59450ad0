#include "mesh/policy/policy.h"

#include "mesh/route_table.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

using namespace routemesh;
using discovery::PolicyAction;
using mesh::policy::Decision;
using mesh::policy::Destination;
using mesh::policy::Entry;
using mesh::policy::Reason;
using mesh::policy::Rule;

namespace {

// "network:a" / "service:x" / "cidr:10.0.0.0/8" -> service web, any port, priority 0.
Rule rule(std::string id, const std::string& from, PolicyAction action, std::uint32_t priority = 0,
          std::uint16_t port = 0, std::string to = "web") {
  auto peer = discovery::parse_policy_peer(from);
  REQUIRE(peer);
  return Rule{std::move(id), *peer, std::move(to), port, action, priority};
}
Rule allow(std::string id, const std::string& from, std::uint32_t priority = 0,
           std::uint16_t port = 0, std::string to = "web") {
  return rule(std::move(id), from, PolicyAction::allow, priority, port, std::move(to));
}
Rule deny(std::string id, const std::string& from, std::uint32_t priority = 0,
          std::uint16_t port = 0, std::string to = "web") {
  return rule(std::move(id), from, PolicyAction::deny, priority, port, std::move(to));
}

struct Address {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;
};
Address address(const std::string& text) {
  Address a;
  if (::inet_pton(AF_INET, text.c_str(), a.bytes.data()) != 1) {
    REQUIRE(::inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1);
    a.v6 = true;
  }
  return a;
}

std::vector<mesh::policy::NetworkRange> networks() {
  return {{"a", *base::parse_ip_range("10.1.0.0/24")},
          {"b", *base::parse_ip_range("10.2.0.0/24")},
          {"c", *base::parse_ip_range("10.3.0.0/24")}};
}

struct Row {
  const char* what;
  std::string source;                      // address
  std::vector<std::string> task_networks;  // what the state says about the source
  std::vector<std::string> task_services;
  std::vector<Rule> rules;
  Destination destination;
  bool allowed;
  std::string decided_by;  // a rule id, or "" for a default
  Reason reason;
};

const Destination kVipA{"web", 80, Entry::vip, "a"};
const Destination kVipB{"web", 80, Entry::vip, "b"};
const Destination kPublished80{"web", 80, Entry::published, {}};

}  // namespace

TEST_CASE("the decision table: isolation by default, most specific rule, priority, deny on ties") {
  const auto nets = networks();
  const std::vector<Row> rows = {
      // Isolation by default.
      {"an address in the VIP's subnet",
       "10.1.0.5",
       {},
       {},
       {},
       kVipA,
       true,
       "",
       Reason::same_network},
      {"an address of another network's subnet",
       "10.2.0.5",
       {},
       {},
       {},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"a task of a service on the VIP's network",
       "127.0.0.9",
       {"a"},
       {"client"},
       {},
       kVipA,
       true,
       "",
       Reason::same_network},
      {"a task of a service on another network",
       "127.0.0.9",
       {"b"},
       {"client"},
       {},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"an address nobody knows",
       "192.168.7.7",
       {},
       {},
       {},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"the VIP's network decides, not the service's",
       "10.2.0.5",
       {},
       {},
       {},
       kVipB,
       true,
       "",
       Reason::same_network},
      {"a published port is open without rules",
       "192.168.7.7",
       {},
       {},
       {},
       kPublished80,
       true,
       "",
       Reason::published},
      // Rules that apply or not.
      {"a rule lets another network in",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "network:b")},
       kVipA,
       true,
       "r1",
       Reason::rule},
      {"a rule for another service does not apply",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "network:b", 0, 0, "api")},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"a rule naming a network that does not exist matches nothing",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "network:zzz")},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"a deny rule closes the VIP's own network",
       "10.1.0.5",
       {},
       {},
       {deny("r1", "cidr:10.1.0.0/24")},
       kVipA,
       false,
       "r1",
       Reason::rule},
      {"a rule for another port does not apply",
       "10.1.0.5",
       {},
       {},
       {deny("r1", "network:a", 0, 443)},
       kVipA,
       true,
       "",
       Reason::same_network},
      {"a rule for this port applies",
       "10.1.0.5",
       {},
       {},
       {deny("r1", "network:a", 0, 80)},
       kVipA,
       false,
       "r1",
       Reason::rule},
      {"service rules match the source's services",
       "127.0.0.9",
       {"b"},
       {"client"},
       {allow("r1", "service:client")},
       kVipA,
       true,
       "r1",
       Reason::rule},
      {"service rules do not match other services",
       "127.0.0.9",
       {"b"},
       {"other"},
       {allow("r1", "service:client")},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"network rules match a task by its service's network",
       "127.0.0.9",
       {"c"},
       {"client"},
       {allow("r1", "network:c")},
       kVipA,
       true,
       "r1",
       Reason::rule},
      // Specificity: service > network > cidr, longer prefix, port.
      {"service beats network whatever the priority",
       "10.1.0.5",
       {"a"},
       {"client"},
       {deny("r1", "network:a", 100), allow("r2", "service:client", 0)},
       kVipA,
       true,
       "r2",
       Reason::rule},
      {"network beats cidr whatever the priority",
       "10.1.0.5",
       {},
       {},
       {allow("r1", "cidr:10.1.0.0/16", 1000), deny("r2", "network:a", 0)},
       kVipA,
       false,
       "r2",
       Reason::rule},
      {"service beats cidr",
       "10.2.0.5",
       {},
       {"client"},
       {deny("r1", "cidr:10.2.0.5/32", 9), allow("r2", "service:client")},
       kVipA,
       true,
       "r2",
       Reason::rule},
      {"a longer prefix beats a shorter one (allow)",
       "10.2.0.5",
       {},
       {},
       {deny("r1", "cidr:10.0.0.0/8", 50), allow("r2", "cidr:10.2.0.0/24")},
       kVipA,
       true,
       "r2",
       Reason::rule},
      {"a longer prefix beats a shorter one (deny)",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "cidr:10.0.0.0/8", 50), deny("r2", "cidr:10.2.0.5/32")},
       kVipA,
       false,
       "r2",
       Reason::rule},
      {"a rule naming the port beats one for every port",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "network:b", 10), deny("r2", "network:b", 0, 80)},
       kVipA,
       false,
       "r2",
       Reason::rule},
      {"the every-port rule still covers other ports",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "network:b", 10), deny("r2", "network:b", 0, 80)},
       Destination{"web", 81, Entry::vip, "a"},
       true,
       "r1",
       Reason::rule},
      // Priority, then deny.
      {"a higher priority wins among equals",
       "10.2.0.5",
       {"c"},
       {},
       {allow("r1", "network:b", 5), deny("r2", "network:c", 1)},
       kVipA,
       true,
       "r1",
       Reason::rule},
      {"a higher priority deny wins among equals",
       "10.2.0.5",
       {"c"},
       {},
       {allow("r1", "network:b", 1), deny("r2", "network:c", 5)},
       kVipA,
       false,
       "r2",
       Reason::rule},
      {"equal specificity and priority: deny wins (deny listed last)",
       "10.2.0.5",
       {"c"},
       {},
       {allow("r1", "network:b"), deny("r2", "network:c")},
       kVipA,
       false,
       "r2",
       Reason::rule},
      {"equal specificity and priority: deny wins (deny listed first)",
       "10.2.0.5",
       {"c"},
       {},
       {deny("r1", "network:c"), allow("r2", "network:b")},
       kVipA,
       false,
       "r1",
       Reason::rule},
      {"equal cidr prefixes: deny wins",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "cidr:10.2.0.0/24"), deny("r2", "cidr:10.2.0.0/24")},
       kVipA,
       false,
       "r2",
       Reason::rule},
      // Published ports: only rules naming the port.
      {"a published port ignores rules for every port",
       "192.168.7.7",
       {},
       {},
       {deny("r1", "cidr:0.0.0.0/0")},
       kPublished80,
       true,
       "",
       Reason::published},
      {"a published port obeys a rule naming it",
       "192.168.7.7",
       {},
       {},
       {deny("r1", "cidr:0.0.0.0/0", 0, 80)},
       kPublished80,
       false,
       "r1",
       Reason::rule},
      {"a published port: the longer prefix lets a range in",
       "10.2.0.5",
       {},
       {},
       {deny("r1", "cidr:0.0.0.0/0", 0, 80), allow("r2", "cidr:10.2.0.0/24", 0, 80)},
       kPublished80,
       true,
       "r2",
       Reason::rule},
      {"a published port: others stay out",
       "192.168.7.7",
       {},
       {},
       {deny("r1", "cidr:0.0.0.0/0", 0, 80), allow("r2", "cidr:10.2.0.0/24", 0, 80)},
       kPublished80,
       false,
       "r1",
       Reason::rule},
      {"a published port: a rule for another port",
       "192.168.7.7",
       {},
       {},
       {deny("r1", "cidr:0.0.0.0/0", 0, 8080)},
       kPublished80,
       true,
       "",
       Reason::published},
      // IPv6.
      {"an IPv6 range matches an IPv6 source",
       "fd00::1",
       {},
       {},
       {allow("r1", "cidr:fd00::/8")},
       kVipA,
       true,
       "r1",
       Reason::rule},
      {"an IPv6 range does not match an IPv4 source",
       "10.2.0.5",
       {},
       {},
       {allow("r1", "cidr:fd00::/8")},
       kVipA,
       false,
       "",
       Reason::other_network},
      {"an IPv4 range does not match an IPv6 source",
       "fd00::1",
       {},
       {},
       {allow("r1", "cidr:0.0.0.0/0")},
       kVipA,
       false,
       "",
       Reason::other_network},
  };
  for (const Row& row : rows) {
    INFO(row.what);
    const Address a = address(row.source);
    mesh::policy::Source source{a.bytes.data(), a.v6, row.task_networks, row.task_services};
    const Decision d = mesh::policy::decide(source, row.destination, row.rules, nets);
    CHECK(d.allowed == row.allowed);
    CHECK(d.reason == row.reason);
    CHECK((d.rule == nullptr ? std::string() : d.rule->id) == row.decided_by);
  }
}

TEST_CASE("compile groups rules by destination and knows task addresses") {
  discovery::ClusterState state;
  state.networks["ingress"] = {"ingress", "10.255.0.0/16", "10.255.0.1", true, 1};
  state.networks["back"] = {"back", "10.20.0.0/24", "10.20.0.1", false, 2};
  discovery::Service web;
  web.name = "web";
  web.networks = {"back"};
  web.vips = {{"back", "10.20.0.3"}};
  web.ports = {{8080, 80, "tcp"}};
  state.services["web"] = web;
  discovery::Service client;
  client.name = "client";  // no networks: ingress
  state.services["client"] = client;
  state.tasks["t1"] = {"t1", "web", "", "127.0.0.21", 80, discovery::TaskHealth::healthy, 3};
  state.tasks["t2"] = {"t2", "client", "", "127.0.0.22", 80, discovery::TaskHealth::healthy, 4};
  state.tasks["t3"] = {"t3", "web", "", "127.0.0.22", 81, discovery::TaskHealth::healthy, 5};
  state.policies["p1"] = {"p1", "service:client", "service:web", 0, PolicyAction::allow, 0, 6};
  state.policies["p2"] = {"p2", "cidr:0.0.0.0/0", "service:web", 8080, PolicyAction::deny, 0, 7};

  const auto c = mesh::policy::compile(state);
  REQUIRE(c.rules.count("web") == 1);
  CHECK(c.rules.at("web").size() == 2);
  CHECK(c.networks.size() == 2);
  const Address t2 = address("127.0.0.22");
  const auto* info = c.source(t2.bytes.data(), false);
  REQUIRE(info != nullptr);
  CHECK(info->services == std::vector<std::string>{"client", "web"});
  CHECK(info->networks == std::vector<std::string>{"back", "ingress"});
  // t1 alone on its address shares its service's facts; an address of no task has none.
  const auto* web_facts = c.source(address("127.0.0.21").bytes.data(), false);
  REQUIRE(web_facts != nullptr);
  CHECK(web_facts->services == std::vector<std::string>{"web"});
  CHECK(c.source(address("10.9.9.9").bytes.data(), false) == nullptr);

  // check() looks the address up: t2 is a task of client, p1 lets it in.
  auto d = mesh::policy::check(c, t2.bytes.data(), false, {"web", 80, Entry::vip, "back"});
  CHECK(d.allowed);
  REQUIRE(d.rule != nullptr);
  CHECK(d.rule->id == "p1");
  // t1 is web's own task on back: the same network.
  const Address t1 = address("127.0.0.21");
  d = mesh::policy::check(c, t1.bytes.data(), false, {"web", 80, Entry::vip, "back"});
  CHECK(d.allowed);
  CHECK(d.reason == Reason::same_network);
  // An address of ingress only is kept out of back.
  const Address outsider = address("10.255.0.77");
  d = mesh::policy::check(c, outsider.bytes.data(), false, {"web", 80, Entry::vip, "back"});
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == Reason::other_network);
  // The published port 8080 is closed to everyone by p2.
  d = mesh::policy::check(c, outsider.bytes.data(), false, {"web", 8080, Entry::published, {}});
  CHECK_FALSE(d.allowed);
  CHECK(mesh::policy::describe(d) == "policy p2");

  // The route table carries the compiled policy.
  const auto table = mesh::compile_route_table(state);
  CHECK(table.policy.rules.count("web") == 1);
  CHECK(table.policy.sources.size() == 2);
}

TEST_CASE("an address shared by tasks of several services has the union, and theirs stay apart") {
  discovery::ClusterState state;
  for (const char* name : {"a", "b", "c"}) {
    discovery::Service s;
    s.name = name;
    s.networks = {std::string("net-") + name};
    state.services[name] = s;
  }
  state.tasks["t1"] = {"t1", "a", "", "10.0.0.1", 80, discovery::TaskHealth::healthy, 1};
  state.tasks["t2"] = {"t2", "b", "", "10.0.0.1", 81, discovery::TaskHealth::healthy, 2};
  state.tasks["t3"] = {"t3", "c", "", "10.0.0.1", 82, discovery::TaskHealth::healthy, 3};
  state.tasks["t4"] = {"t4", "a", "", "10.0.0.2", 80, discovery::TaskHealth::healthy, 4};
  state.tasks["t5"] = {"t5", "a", "", "10.0.0.2", 81, discovery::TaskHealth::healthy, 5};
  state.tasks["t6"] = {"t6", "b", "", "fd00::6", 80, discovery::TaskHealth::healthy, 6};
  state.tasks["t7"] = {"t7", "c", "", "not an address", 80, discovery::TaskHealth::healthy, 7};
  state.tasks["t8"] = {"t8", "gone", "", "10.0.0.8", 80, discovery::TaskHealth::healthy, 8};

  const auto c = mesh::policy::compile(state);
  CHECK(c.sources.size() == 3);
  const auto* shared = c.source(address("10.0.0.1").bytes.data(), false);
  REQUIRE(shared != nullptr);
  CHECK(shared->services == std::vector<std::string>{"a", "b", "c"});
  CHECK(shared->networks == std::vector<std::string>{"net-a", "net-b", "net-c"});
  const auto* only_a = c.source(address("10.0.0.2").bytes.data(), false);
  REQUIRE(only_a != nullptr);
  CHECK(only_a->services == std::vector<std::string>{"a"});
  CHECK(only_a->networks == std::vector<std::string>{"net-a"});
  const auto* v6 = c.source(address("fd00::6").bytes.data(), true);
  REQUIRE(v6 != nullptr);
  CHECK(v6->services == std::vector<std::string>{"b"});
  CHECK(c.source(address("10.0.0.8").bytes.data(), false) == nullptr);
}

TEST_CASE("the address index grows, finds every address it took and no other") {
  mesh::policy::AddressIndex index;
  CHECK(index.find(mesh::policy::AddressKey{}) == nullptr);
  auto v4 = [](std::uint32_t i) {
    mesh::policy::AddressKey k;
    k.size = 4;
    std::memcpy(k.bytes.data(), &i, 4);
    return k;
  };
  for (std::uint32_t i = 0; i < 5000; ++i) {  // no reserve: it grows on the way
    auto [value, inserted] = index.try_emplace(v4(i), i * 3);
    CHECK(inserted);
    CHECK(*value == i * 3);
  }
  CHECK(index.size() == 5000);
  auto [again, inserted] = index.try_emplace(v4(7), 1);
  CHECK_FALSE(inserted);
  CHECK(*again == 21);
  bool all = true;
  for (std::uint32_t i = 0; i < 5000; ++i) {
    const std::uint32_t* v = index.find(v4(i));
    all = all && v != nullptr && *v == i * 3;
  }
  CHECK(all);
  CHECK(index.find(v4(5000)) == nullptr);
  // The same leading bytes as an IPv6 address are another key.
  mesh::policy::AddressKey v6 = v4(9);
  v6.size = 16;
  CHECK(index.find(v6) == nullptr);
  // IPv6 addresses, in a table of their own, grow it too.
  for (std::uint32_t i = 0; i < 300; ++i) {
    mesh::policy::AddressKey k = v4(i);
    k.size = 16;
    k.bytes[15] = 0x66;
    CHECK(index.try_emplace(k, 100000 + i).second);
  }
  CHECK(index.size() == 5300);
  REQUIRE(index.find(v6) == nullptr);
  v6.bytes[15] = 0x66;
  REQUIRE(index.find(v6) != nullptr);
  CHECK(*index.find(v6) == 100009);
  // for_each gives back each key as it was given, with its value.
  std::size_t seen = 0;
  bool same = true;
  index.for_each([&](const mesh::policy::AddressKey& key, std::uint32_t value) {
    ++seen;
    std::uint32_t i = 0;
    std::memcpy(&i, key.bytes.data(), 4);
    same = same && (key.size == 4 ? value == i * 3 : value == 100000 + i && key.bytes[15] == 0x66);
  });
  CHECK(seen == 5300);
  CHECK(same);
}
