#include "mesh/policy/nftables.h"

#include "mesh/route_table.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <array>
#include <sstream>
#include <string>
#include <vector>

using namespace routemesh;
using discovery::PolicyAction;
using mesh::policy::KernelPort;
using mesh::policy::KernelTargets;
using mesh::policy::KernelVip;

namespace {

// neta 10.60.1.0/24 and netb 10.60.2.0/24; web on neta (one task), client-a on neta and
// client-b on netb (two tasks each), an IPv6 client on netb.
discovery::ClusterState base_state() {
  discovery::ClusterState s;
  s.networks["neta"] = {"neta", "10.60.1.0/24", "10.60.1.1", false, 1};
  s.networks["netb"] = {"netb", "10.60.2.0/24", "10.60.2.1", false, 2};
  auto service = [&](const std::string& name, const std::string& net) {
    discovery::Service svc;
    svc.name = name;
    svc.networks = {net};
    s.services[name] = svc;
  };
  service("web", "neta");
  service("client-a", "neta");
  service("client-b", "netb");
  service("client-6", "netb");
  auto task = [&](const std::string& id, const std::string& svc, const std::string& addr) {
    s.tasks[id] = {id, svc, "", addr, 80, discovery::TaskHealth::healthy, 3};
  };
  task("w1", "web", "172.31.2.1");
  task("a1", "client-a", "172.31.1.10");
  task("a2", "client-a", "172.31.2.10");
  task("b1", "client-b", "172.31.1.20");
  task("b2", "client-b", "172.31.2.20");
  task("c6", "client-6", "fd00::20");
  return s;
}

discovery::Policy policy(std::string id, std::string from, PolicyAction action,
                         std::uint16_t port = 0, std::uint32_t priority = 0,
                         std::string to = "service:web") {
  return {std::move(id), std::move(from), std::move(to), port, action, priority, 1};
}

const std::string kHead =
    "# routemesh: network policy of this node's VIPs and layer-4 published ports.\n"
    "# Generated from the cluster state; replaced as a whole on every change.\n"
    "table inet routemesh\n"
    "delete table inet routemesh\n"
    "table inet routemesh {\n"
    "\tchain input {\n"
    "\t\ttype filter hook input priority filter; policy accept;\n"
    "\t\tct state established,related accept comment \"connections are judged when they "
    "open\"\n";

std::string ruleset(const std::string& dispatch, const std::string& chains) {
  return kHead + dispatch + "\t}\n" + chains + "}\n";
}

const KernelTargets kWebVip{{{"10.60.1.2", 8000, "web", "neta"}}, {}};
const std::string kWebDispatch = "\t\tip daddr 10.60.1.2 tcp dport 8000 jump vip_10_60_1_2_8000\n";
const std::string kWebChainHead =
    "\n\tchain vip_10_60_1_2_8000 {\n"
    "\t\tcomment \"service web on network neta\"\n";
const std::string kWebDefault =
    "\t\tip saddr 10.60.1.0/24 accept comment \"same network\"\n"
    "\t\tip saddr { 172.31.1.10, 172.31.2.1, 172.31.2.10 } accept comment \"same network\"\n"
    "\t\tcounter drop comment \"isolation: not on network neta\"\n"
    "\t}\n";

struct Row {
  const char* what;
  std::vector<discovery::Policy> policies;
  KernelTargets targets;
  std::vector<std::string> user_space_only;
  std::string expected;
};

}  // namespace

TEST_CASE("nftables: rules are rendered in decide()'s order, then the VIP's isolation") {
  const std::vector<Row> rows{
      {"no policy: the VIP's own network (subnet and tasks) is accepted, the rest dropped",
       {},
       kWebVip,
       {},
       ruleset(kWebDispatch, kWebChainHead + kWebDefault)},
      {"service > network > cidr, whatever the priority; each from as its addresses",
       {policy("p1", "cidr:172.31.0.0/16", PolicyAction::deny, 0, 100),
        policy("p2", "network:netb", PolicyAction::allow),
        policy("p3", "service:client-a", PolicyAction::deny)},
       kWebVip,
       {},
       ruleset(kWebDispatch,
               kWebChainHead +
                   "\t\tip saddr { 172.31.1.10, 172.31.2.10 } counter drop comment \"policy p3\"\n"
                   "\t\tip saddr 10.60.2.0/24 accept comment \"policy p2\"\n"
                   "\t\tip saddr { 172.31.1.20, 172.31.2.20 } accept comment \"policy p2\"\n"
                   "\t\tip saddr 172.31.0.0/16 counter drop comment \"policy p1\"\n" +
                   kWebDefault)},
      {"a longer prefix first; then a rule naming the port; then priority; deny on a tie",
       {policy("p1", "cidr:10.0.0.0/8", PolicyAction::deny),
        policy("p2", "cidr:10.9.0.0/16", PolicyAction::allow),
        policy("p3", "cidr:192.0.2.0/24", PolicyAction::allow),
        policy("p4", "cidr:192.0.2.0/24", PolicyAction::deny, 8000),
        policy("p5", "cidr:198.51.100.0/24", PolicyAction::allow, 0, 2),
        policy("p6", "cidr:198.51.100.0/24", PolicyAction::deny, 0, 1),
        policy("p7", "cidr:203.0.113.0/24", PolicyAction::allow),
        policy("p8", "cidr:203.0.113.0/24", PolicyAction::deny)},
       kWebVip,
       {},
       ruleset(kWebDispatch, kWebChainHead +
                                 "\t\tip saddr 192.0.2.0/24 counter drop comment \"policy p4\"\n"
                                 "\t\tip saddr 198.51.100.0/24 accept comment \"policy p5\"\n"
                                 "\t\tip saddr 198.51.100.0/24 counter drop comment \"policy p6\"\n"
                                 "\t\tip saddr 203.0.113.0/24 counter drop comment \"policy p8\"\n"
                                 "\t\tip saddr 192.0.2.0/24 accept comment \"policy p3\"\n"
                                 "\t\tip saddr 203.0.113.0/24 accept comment \"policy p7\"\n"
                                 "\t\tip saddr 10.9.0.0/16 accept comment \"policy p2\"\n"
                                 "\t\tip saddr 10.0.0.0/8 counter drop comment \"policy p1\"\n" +
                                 kWebDefault)},
      {"rules for another port or another service, IPv6 sources and empty services are left out",
       {policy("p1", "cidr:192.0.2.0/24", PolicyAction::allow, 9000),
        policy("p2", "cidr:192.0.2.0/24", PolicyAction::allow, 0, 0, "service:client-a"),
        policy("p3", "cidr:2001:db8::/32", PolicyAction::allow),
        policy("p4", "service:client-6", PolicyAction::allow),
        policy("p5", "service:nobody", PolicyAction::allow)},
       kWebVip,
       {},
       ruleset(kWebDispatch, kWebChainHead + kWebDefault)},
      {"an IPv6 VIP: ip6 matches only; an IPv4 subnet does not apply",
       {policy("p3", "cidr:2001:db8::/32", PolicyAction::allow),
        policy("p4", "network:netb", PolicyAction::allow)},
       {{{"fd00:60::2", 8000, "web", "neta"}}, {}},
       {},
       ruleset("\t\tip6 daddr fd00:60::2 tcp dport 8000 jump vip_fd00_60__2_8000\n",
               "\n\tchain vip_fd00_60__2_8000 {\n"
               "\t\tcomment \"service web on network neta\"\n"
               "\t\tip6 saddr fd00::20 accept comment \"policy p4\"\n"
               "\t\tip6 saddr 2001:db8::/32 accept comment \"policy p3\"\n"
               "\t\tcounter drop comment \"isolation: not on network neta\"\n"
               "\t}\n")},
      {"PROXY protocol peers are accepted first and judged in user space",
       {},
       kWebVip,
       {"10.99.0.0/16", "10.98.0.7", "2001:db8::1"},
       ruleset(kWebDispatch,
               kWebChainHead +
                   "\t\tip saddr 10.99.0.0/16 accept comment \"PROXY protocol peer: judged in "
                   "user space\"\n"
                   "\t\tip saddr 10.98.0.7 accept comment \"PROXY protocol peer: judged in user "
                   "space\"\n" +
                   kWebDefault)},
      {"a published port: only rules naming it, both families, open by default",
       {policy("p1", "cidr:192.0.2.0/24", PolicyAction::deny),
        policy("p2", "cidr:192.0.2.0/24", PolicyAction::deny, 9000),
        policy("p3", "cidr:2001:db8::/32", PolicyAction::deny, 9000),
        policy("p4", "service:client-a", PolicyAction::allow, 9000)},
       {{}, {{9000, "web"}, {9001, "web"}}},
       {},
       ruleset("\t\ttcp dport 9000 jump published_9000\n",
               "\n\tchain published_9000 {\n"
               "\t\tcomment \"service web, published port\"\n"
               "\t\tip saddr { 172.31.1.10, 172.31.2.10 } accept comment \"policy p4\"\n"
               "\t\tip6 saddr 2001:db8::/32 counter drop comment \"policy p3\"\n"
               "\t\tip saddr 192.0.2.0/24 counter drop comment \"policy p2\"\n"
               "\t\taccept comment \"published port\"\n"
               "\t}\n")},
      {"nothing to judge: the table with its input chain only",
       {policy("p1", "cidr:192.0.2.0/24", PolicyAction::deny)},
       {},
       {},
       ruleset("", "")},
  };
  for (const auto& row : rows) {
    INFO(row.what);
    auto state = base_state();
    for (const auto& p : row.policies) {
      state.policies[p.id] = p;
    }
    std::vector<base::IpRange> user_space_only;
    for (const auto& r : row.user_space_only) {
      user_space_only.push_back(*base::parse_ip_range(r));
    }
    const auto text =
        mesh::policy::render_nftables(mesh::policy::compile(state), row.targets, user_space_only);
    CHECK(text == row.expected);
  }
}

TEST_CASE("nftables: the removal declares the table first so it never fails") {
  CHECK(mesh::policy::nftables_removal() == "table inet routemesh\ndelete table inet routemesh\n");
}

TEST_CASE("nftables: kernel targets are the VIPs and the layer-4 published ports") {
  auto state = base_state();
  auto& web = state.services["web"];
  web.vips = {{"neta", "10.60.1.2"}};
  web.ports = {{9000, 80, "tcp"}, {9053, 53, "udp"}};
  discovery::Service site;
  site.name = "site";
  site.labels = {{"mesh.http", "site.test"}};
  site.ports = {{8081, 80, "tcp"}};
  state.services["site"] = site;
  const auto table = mesh::compile_route_table(state);
  const auto t = mesh::policy::kernel_targets(table);
  REQUIRE(t.vips.size() == 1);  // port 80 (tcp target); 53/udp is not a VIP port
  CHECK(t.vips[0].address == "10.60.1.2");
  CHECK(t.vips[0].port == 80);
  CHECK(t.vips[0].service == "web");
  CHECK(t.vips[0].network == "neta");
  REQUIRE(t.published.size() == 1);  // 8081 is an HTTP port (routed by Host), 9053 is UDP
  CHECK(t.published[0].port == 9000);
  CHECK(t.published[0].service == "web");
}

namespace {

// A reader of the rendered chains, enough to run them: for one chain, the first line whose
// `ip saddr` / `ip6 saddr` (an address, a prefix or a set of them) matches `source` (or that
// has no match) gives the verdict.
bool in_prefix(const std::string& item, const std::array<std::uint8_t, 16>& src, bool v6) {
  auto range = base::parse_ip_range(item);
  REQUIRE(range);
  return base::in_range(*range, src.data(), v6);
}

bool run_chain(const std::string& text, const std::string& chain, const std::string& source) {
  std::array<std::uint8_t, 16> src{};
  const bool v6 = ::inet_pton(AF_INET, source.c_str(), src.data()) != 1;
  if (v6) {
    REQUIRE(::inet_pton(AF_INET6, source.c_str(), src.data()) == 1);
  }
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "\tchain " + chain + " {") {
      inside = true;
      continue;
    }
    if (!inside || line.find("\t\tcomment ") == 0) {
      continue;
    }
    REQUIRE(line != "\t}");  // every chain ends with a verdict of its own
    std::istringstream words(line);
    std::string first;
    words >> first;
    bool match = true;
    if (first == "ip" || first == "ip6") {
      std::string saddr, item;
      words >> saddr >> item;
      match = (first == "ip6") == v6;
      if (match && item == "{") {
        match = false;
        while (words >> item && item != "}") {
          if (!item.empty() && item.back() == ',') {
            item.pop_back();
          }
          match = match || in_prefix(item, src, v6);
        }
      } else if (match) {
        match = in_prefix(item, src, v6);
      }
    }
    if (match) {
      // The verdict is the word before `comment`: accept or drop.
      return line.substr(0, line.find(" comment ")).ends_with("accept");
    }
  }
  FAIL("chain " << chain << " not found");
  return false;
}

}  // namespace

TEST_CASE("nftables: the rendered chains decide as decide() does, source by source") {
  auto state = base_state();
  for (const auto& p : {policy("p1", "cidr:172.31.0.0/16", PolicyAction::deny, 0, 7),
                        policy("p2", "network:netb", PolicyAction::allow, 8000),
                        policy("p3", "service:client-a", PolicyAction::deny, 0, 1),
                        policy("p4", "service:client-a", PolicyAction::allow, 0, 2),
                        policy("p5", "cidr:172.31.2.0/24", PolicyAction::allow, 0, 0),
                        policy("p6", "cidr:10.60.1.128/25", PolicyAction::deny, 0, 0),
                        policy("p7", "service:client-b", PolicyAction::deny, 9000),
                        policy("p8", "cidr:0.0.0.0/0", PolicyAction::allow, 9000),
                        policy("p9", "network:neta", PolicyAction::deny, 9000)}) {
    state.policies[p.id] = p;
  }
  const auto c = mesh::policy::compile(state);
  const KernelTargets targets{
      {{"10.60.1.2", 8000, "web", "neta"}, {"10.60.1.2", 8001, "web", "neta"}}, {{9000, "web"}}};
  const auto text = mesh::policy::render_nftables(c, targets, {});
  const std::vector<std::string> sources{
      "172.31.1.10", "172.31.2.10", "172.31.1.20", "172.31.2.20", "172.31.2.1", "172.31.3.3",
      "10.60.1.5",   "10.60.1.200", "10.60.2.9",   "192.0.2.1",   "fd00::20",   "2001:db8::1"};
  struct Target {
    std::string chain;
    mesh::policy::Destination destination;
  };
  const std::vector<Target> checks{
      {"vip_10_60_1_2_8000", {"web", 8000, mesh::policy::Entry::vip, "neta"}},
      {"vip_10_60_1_2_8001", {"web", 8001, mesh::policy::Entry::vip, "neta"}},
      {"published_9000", {"web", 9000, mesh::policy::Entry::published, {}}},
  };
  for (const auto& t : checks) {
    for (const auto& s : sources) {
      const bool v4_vip = t.destination.entry == mesh::policy::Entry::vip;
      if (v4_vip && s.find(':') != std::string::npos) {
        continue;  // an IPv4 VIP never sees an IPv6 source
      }
      INFO(t.chain << " from " << s);
      std::array<std::uint8_t, 16> b{};
      const bool v6 = ::inet_pton(AF_INET, s.c_str(), b.data()) != 1;
      if (v6) {
        REQUIRE(::inet_pton(AF_INET6, s.c_str(), b.data()) == 1);
      }
      const auto d = mesh::policy::check(c, b.data(), v6, t.destination);
      CHECK(run_chain(text, t.chain, s) == d.allowed);
    }
  }
}
