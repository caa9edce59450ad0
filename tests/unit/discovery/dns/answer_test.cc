#include "discovery/dns/answer.h"

#include "discovery/dns/view.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

using namespace routemesh;
using namespace routemesh::discovery;
using namespace routemesh::discovery::dns;

namespace {

// Two networks (neta 10.10.0.0/24, netb 10.10.1.0/24) plus ingress; n2 is down.
//   web     vip on neta (10.10.0.3), target port 80 (published 8080), tasks w1, w2 (port 8081)
//   api     dnsrr on neta, target 9000: a1 healthy, a2 unknown, a3 unhealthy, a4 draining,
//           a5 on the down node, a6 IPv6
//   checked dnsrr on neta with an active health check: c1 unknown on n1, c2 healthy on n1
//   secret  vip on netb only (10.10.1.3)
//   shared  vip on both (10.10.0.4, 10.10.1.4)
ClusterState state() {
  ClusterState s;
  s.revision = 7;
  for (auto [name, subnet] :
       {std::pair{"ingress", "10.255.0.0/16"}, std::pair{"neta", "10.10.0.0/24"},
        std::pair{"netb", "10.10.1.0/24"}}) {
    Network n;
    n.name = name;
    n.subnet = subnet;
    s.networks[name] = n;
  }
  Node n1;
  n1.id = "1";
  n1.name = "n1";
  Node n2 = n1;
  n2.id = "2";
  n2.name = "n2";
  n2.status = NodeStatus::down;
  s.nodes = {{"1", n1}, {"2", n2}};

  auto service = [&](const std::string& name, EndpointMode mode,
                     std::map<std::string, std::string> vips, std::uint16_t target) {
    Service svc;
    svc.name = name;
    svc.endpoint_mode = mode;
    for (const auto& [net, vip] : vips) {
      svc.networks.push_back(net);
    }
    svc.vips = std::move(vips);
    if (target != 0) {
      svc.ports.push_back(
          base::PortMapping{static_cast<std::uint16_t>(target == 80 ? 8080 : 0), target});
    }
    s.services[name] = svc;
  };
  service("web", EndpointMode::vip, {{"neta", "10.10.0.3"}}, 80);
  service("api", EndpointMode::dnsrr, {{"neta", ""}}, 9000);
  service("checked", EndpointMode::dnsrr, {{"neta", ""}}, 9100);
  s.services["checked"].labels["mesh.health.check"] = "tcp";
  service("secret", EndpointMode::vip, {{"netb", "10.10.1.3"}}, 80);
  service("shared", EndpointMode::vip, {{"neta", "10.10.0.4"}, {"netb", "10.10.1.4"}}, 80);

  auto task = [&](const std::string& id, const std::string& svc, const std::string& address,
                  TaskHealth health, const std::string& node = "n1", std::uint16_t port = 0) {
    Task t;
    t.id = id;
    t.service = svc;
    t.address = address;
    t.health = health;
    t.node = node;
    t.port = port;
    s.tasks[id] = t;
  };
  task("w1", "web", "172.31.1.1", TaskHealth::healthy);
  task("w2", "web", "172.31.1.2", TaskHealth::healthy, "n1", 8081);
  task("a1", "api", "172.31.2.1", TaskHealth::healthy);
  task("a2", "api", "172.31.2.2", TaskHealth::unknown);
  task("a3", "api", "172.31.2.3", TaskHealth::unhealthy);
  task("a4", "api", "172.31.2.4", TaskHealth::draining);
  task("a5", "api", "172.31.2.5", TaskHealth::healthy, "n2");
  task("a6", "api", "fd00::6", TaskHealth::healthy);
  task("c1", "checked", "172.31.3.1", TaskHealth::unknown);
  task("c2", "checked", "172.31.3.2", TaskHealth::healthy);
  task("s1", "secret", "172.31.4.1", TaskHealth::healthy);
  return s;
}

Labels labels(const std::string& name) {
  Labels out;
  std::size_t start = 0;
  while (true) {
    auto dot = name.find('.', start);
    out.push_back(name.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) {
      return out;
    }
    start = dot + 1;
  }
}

std::string text(const Labels& l) {
  std::string out;
  for (const auto& x : l) {
    out += x + ".";
  }
  return out;
}

Query query(const std::string& name, std::uint16_t type = kTypeA, std::uint16_t klass = kClassIn) {
  Query q;
  q.id = 42;
  q.rd = true;
  q.question = Question{labels(name), type, klass};
  return q;
}

struct Fixture {
  View view = compile_view(state());
  Answer ask(const std::string& network, const std::string& name, std::uint16_t type = kTypeA,
             std::uint64_t rnd = 1, std::uint16_t klass = kClassIn) const {
    const std::string address = network == "neta" ? "10.10.0.2" : "10.10.1.2";
    return answer(query(name, type, klass), view, view.by_address.at(address), AnswerOptions{5},
                  rnd);
  }
};

std::multiset<std::string> addresses(const Answer& a) {
  std::multiset<std::string> out;
  for (const auto& r : a.answers) {
    if (const auto* addr = std::get_if<Address>(&r.data)) {
      out.insert(to_string(*addr));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("view: one entry per network DNS address, services on their networks") {
  const View v = compile_view(state());
  CHECK(v.revision == 7);
  REQUIRE(v.by_address.size() == 3);
  CHECK(v.by_address.at("10.10.0.2").name == "neta");
  CHECK(v.by_address.at("10.10.1.2").name == "netb");
  CHECK(v.by_address.at("10.255.0.2").name == "ingress");
  const auto& neta = v.by_address.at("10.10.0.2").services;
  CHECK(neta.count("web") == 1);
  CHECK(neta.count("secret") == 0);
  CHECK(neta.at("web").target_ports == std::vector<std::uint16_t>{80});
  CHECK(v.service_names.count("secret") == 1);
  CHECK(v.network_names == std::set<std::string>{"ingress", "neta", "netb"});
}

TEST_CASE("SERVICE and SERVICE.NETWORK give the VIP, authoritative, with the configured TTL") {
  Fixture f;
  for (const char* name : {"web", "web.neta", "WEB.NetA"}) {
    CAPTURE(name);
    Answer a = f.ask("neta", name);
    CHECK(a.action == Answer::Action::reply);
    CHECK(a.rcode == Rcode::noerror);
    REQUIRE(a.answers.size() == 1);
    CHECK(a.answers[0].name == labels(name));  // the owner is the name as asked
    CHECK(a.answers[0].type == kTypeA);
    CHECK(a.answers[0].ttl == 5);
    CHECK(addresses(a) == std::multiset<std::string>{"10.10.0.3"});
    CHECK(outcome_of(a) == Outcome::local);
  }
}

TEST_CASE("a cluster name without records of the asked type is NODATA") {
  Fixture f;
  for (std::uint16_t type : {kTypeAaaa, kTypeMx, kTypeTxt, kTypeSrv, kTypePtr}) {
    Answer a = f.ask("neta", "web", type);
    CHECK(a.action == Answer::Action::reply);
    CHECK(a.rcode == Rcode::noerror);
    CHECK(a.answers.empty());
    CHECK(outcome_of(a) == Outcome::nodata);
  }
}

TEST_CASE("tasks.SERVICE gives the healthy task addresses") {
  Fixture f;
  CHECK(addresses(f.ask("neta", "tasks.web")) ==
        std::multiset<std::string>{"172.31.1.1", "172.31.1.2"});
  CHECK(addresses(f.ask("neta", "tasks.web.neta")) ==
        std::multiset<std::string>{"172.31.1.1", "172.31.1.2"});
  // Unhealthy, draining and down-node tasks are left out; unknown health counts as healthy
  // unless the service has an active check (route table rules).
  CHECK(addresses(f.ask("neta", "tasks.api")) ==
        std::multiset<std::string>{"172.31.2.1", "172.31.2.2"});
  CHECK(addresses(f.ask("neta", "tasks.api", kTypeAaaa)) == std::multiset<std::string>{"fd00::6"});
  CHECK(addresses(f.ask("neta", "tasks.api", kTypeAny)) ==
        std::multiset<std::string>{"172.31.2.1", "172.31.2.2", "fd00::6"});
  CHECK(addresses(f.ask("neta", "tasks.checked")) == std::multiset<std::string>{"172.31.3.2"});
}

TEST_CASE("endpoint mode dnsrr: SERVICE gives the healthy task addresses, shuffled by the seed") {
  Fixture f;
  CHECK(addresses(f.ask("neta", "api")) == std::multiset<std::string>{"172.31.2.1", "172.31.2.2"});
  std::set<std::string> firsts;
  for (std::uint64_t rnd = 0; rnd < 64; ++rnd) {
    Answer a = f.ask("neta", "api", kTypeA, rnd);
    REQUIRE(a.answers.size() == 2);
    firsts.insert(to_string(std::get<Address>(a.answers[0].data)));
    // Same seed, same order: the core is deterministic.
    CHECK(f.ask("neta", "api", kTypeA, rnd).answers == a.answers);
  }
  CHECK(firsts.size() == 2);
}

TEST_CASE(
    "SRV _PORT._tcp.SERVICE: vip mode names the service, dnsrr each healthy task (RFC 2782)") {
  Fixture f;
  Answer a = f.ask("neta", "_80._tcp.web", kTypeSrv);
  REQUIRE(a.answers.size() == 1);
  CHECK(a.answers[0].type == kTypeSrv);
  CHECK(std::get<SrvData>(a.answers[0].data) == SrvData{0, 0, 80, labels("web.neta")});
  REQUIRE(a.additional.size() == 1);
  CHECK(a.additional[0].name == labels("web.neta"));
  CHECK(to_string(std::get<Address>(a.additional[0].data)) == "10.10.0.3");

  Answer rr = f.ask("neta", "_9000._tcp.api.neta", kTypeSrv);
  std::set<std::string> targets;
  for (const auto& r : rr.answers) {
    const auto& srv = std::get<SrvData>(r.data);
    CHECK(srv.port == 9000);
    targets.insert(text(srv.target));
  }
  CHECK(targets ==
        std::set<std::string>{"a1.tasks.api.neta.", "a2.tasks.api.neta.", "a6.tasks.api.neta."});
  CHECK(rr.additional.size() == 3);

  // A task with its own port is announced with it.
  Fixture g;
  g.view.by_address.at("10.10.0.2").services.at("web").mode = EndpointMode::dnsrr;
  std::set<std::uint16_t> ports;
  for (const auto& r : g.ask("neta", "_80._tcp.web", kTypeSrv).answers) {
    ports.insert(std::get<SrvData>(r.data).port);
  }
  CHECK(ports == std::set<std::uint16_t>{80, 8081});

  // Only target ports (not published ones) and only tcp; other types on the name are NODATA.
  CHECK(f.ask("neta", "_8080._tcp.web", kTypeSrv).rcode == Rcode::nxdomain);
  CHECK(f.ask("neta", "_80._udp.web", kTypeSrv).rcode == Rcode::nxdomain);
  Answer nodata = f.ask("neta", "_80._tcp.web", kTypeA);
  CHECK(nodata.rcode == Rcode::noerror);
  CHECK(nodata.answers.empty());
}

TEST_CASE("TASKID.tasks.SERVICE names one task (any health): the target of SRV and PTR") {
  Fixture f;
  CHECK(addresses(f.ask("neta", "w1.tasks.web")) == std::multiset<std::string>{"172.31.1.1"});
  CHECK(addresses(f.ask("neta", "A3.tasks.api.neta")) == std::multiset<std::string>{"172.31.2.3"});
  CHECK(f.ask("neta", "zz.tasks.web").rcode == Rcode::nxdomain);
}

TEST_CASE("PTR for the network's VIPs and task addresses (RFC 1035 §3.5, RFC 3596 §2.5)") {
  Fixture f;
  auto ptr = [&](const std::string& net, const std::string& name) {
    std::set<std::string> out;
    for (const auto& r : f.ask(net, name, kTypePtr).answers) {
      CHECK(r.type == kTypePtr);
      out.insert(text(std::get<Labels>(r.data)));
    }
    return out;
  };
  CHECK(ptr("neta", "3.0.10.10.in-addr.arpa") == std::set<std::string>{"web.neta."});
  CHECK(ptr("neta", "4.0.10.10.IN-ADDR.ARPA") == std::set<std::string>{"shared.neta."});
  CHECK(ptr("netb", "4.1.10.10.in-addr.arpa") == std::set<std::string>{"shared.netb."});
  CHECK(ptr("neta", "1.1.31.172.in-addr.arpa") == std::set<std::string>{"w1.tasks.web.neta."});
  std::string v6 = "6";  // fd00::6, nibbles reversed: 6, 29 zeros, d, f
  for (int i = 0; i < 29; ++i) {
    v6 += ".0";
  }
  v6 += ".d.f.ip6.arpa";
  CHECK(ptr("neta", v6) == std::set<std::string>{"a6.tasks.api.neta."});
  // A PTR name asked for A is NODATA.
  CHECK(f.ask("neta", "3.0.10.10.in-addr.arpa", kTypeA).answers.empty());
}

TEST_CASE("scoping: another network's names and addresses are NXDOMAIN, never forwarded") {
  Fixture f;
  for (const char* name :
       {"secret", "secret.netb", "tasks.secret", "_80._tcp.secret", "s1.tasks.secret", "web.netb",
        "anything.neta", "anything.netb", "netb", "tasks.web.netb"}) {
    CAPTURE(name);
    Answer a = f.ask("neta", name);
    CHECK(a.action == Answer::Action::reply);
    CHECK(a.rcode == Rcode::nxdomain);
    CHECK(a.answers.empty());
    CHECK(outcome_of(a) == Outcome::nxdomain);
  }
  // netb sees its own names and not neta's.
  CHECK(addresses(f.ask("netb", "secret")) == std::multiset<std::string>{"10.10.1.3"});
  CHECK(f.ask("netb", "web").rcode == Rcode::nxdomain);
  CHECK(addresses(f.ask("netb", "shared")) == std::multiset<std::string>{"10.10.1.4"});
  CHECK(addresses(f.ask("neta", "shared")) == std::multiset<std::string>{"10.10.0.4"});
  // Reverse names of another network's VIP, of a task of a service not on this network, or
  // of an unused address of a cluster subnet.
  CHECK(f.ask("neta", "3.1.10.10.in-addr.arpa", kTypePtr).rcode == Rcode::nxdomain);
  CHECK(f.ask("neta", "1.4.31.172.in-addr.arpa", kTypePtr).rcode == Rcode::nxdomain);
  CHECK(f.ask("neta", "200.0.10.10.in-addr.arpa", kTypePtr).rcode == Rcode::nxdomain);
}

TEST_CASE("everything else is forwarded") {
  Fixture f;
  for (const char* name : {"example.com", "localhost", "web.example.com", "8.8.8.8.in-addr.arpa",
                           "10.in-addr.arpa", "_80._tcp.example.com"}) {
    CAPTURE(name);
    Answer a = f.ask("neta", name);
    CHECK(a.action == Answer::Action::forward);
    CHECK(outcome_of(a) == Outcome::forwarded);
  }
  Query root = query("x");
  root.question.name.clear();
  CHECK(answer(root, f.view, f.view.by_address.at("10.10.0.2"), {}, 0).action ==
        Answer::Action::forward);
  // Another class (CHAOS version.bind, say) is not the cluster's either.
  CHECK(f.ask("neta", "web", kTypeA, 1, 3).action == Answer::Action::forward);
  // A label with a dot in it cannot be a cluster name.
  Query dotted = query("x");
  dotted.question.name = {"web.neta"};
  CHECK(answer(dotted, f.view, f.view.by_address.at("10.10.0.2"), {}, 0).action ==
        Answer::Action::forward);
}

TEST_CASE("zone transfers are refused") {
  Fixture f;
  CHECK(f.ask("neta", "web", kTypeAxfr).rcode == Rcode::refused);
  CHECK(f.ask("neta", "example.com", kTypeIxfr).rcode == Rcode::refused);
  CHECK(outcome_of(f.ask("neta", "web", kTypeAxfr)) == Outcome::refused);
}

TEST_CASE("a removed task is gone from the next view's answers") {
  ClusterState s = state();
  s.tasks.erase("w2");
  const View v = compile_view(s);
  Answer a = answer(query("tasks.web"), v, v.by_address.at("10.10.0.2"), {}, 0);
  CHECK(addresses(a) == std::multiset<std::string>{"172.31.1.1"});
  Answer p =
      answer(query("2.1.31.172.in-addr.arpa", kTypePtr), v, v.by_address.at("10.10.0.2"), {}, 0);
  CHECK(p.answers.empty());
}

TEST_CASE("isolation: a network's DNS address answers its own subnet and tasks only") {
  const View v = compile_view(state());
  const NetworkView& neta = v.by_address.at("10.10.0.2");
  const NetworkView& netb = v.by_address.at("10.10.1.2");
  auto a = [](const std::string& text) { return *parse_address(text); };
  CHECK(may_query(neta, a("10.10.0.77")));        // in the subnet
  CHECK(may_query(neta, a("172.31.1.1")));        // a task of web (neta)
  CHECK(may_query(neta, a("172.31.2.3")));        // an unhealthy task of api (neta) still is one
  CHECK(may_query(neta, a("fd00::6")));           // an IPv6 task of api
  CHECK_FALSE(may_query(neta, a("10.10.1.9")));   // netb's subnet
  CHECK_FALSE(may_query(neta, a("172.31.4.1")));  // a task of secret (netb only)
  CHECK_FALSE(may_query(neta, a("192.0.2.1")));
  CHECK_FALSE(may_query(neta, a("fd00::7")));
  CHECK(may_query(netb, a("172.31.4.1")));
  CHECK_FALSE(may_query(netb, a("172.31.1.1")));
}
