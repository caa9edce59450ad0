#include "discovery/store/ipam.h"

#include "discovery/model/state.h"

#include <catch2/catch.hpp>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

ClusterState with_networks(std::initializer_list<std::pair<const char*, const char*>> nets) {
  ClusterState state;
  for (const auto& [name, subnet] : nets) {
    Network n;
    n.name = name;
    n.subnet = subnet;
    n.gateway = gateway_of(subnet).value_or("");
    state.networks[n.name] = n;
  }
  return state;
}

}  // namespace

TEST_CASE("CIDR parsing, printing and overlap") {
  auto a = parse_cidr("10.1.0.0/16");
  REQUIRE(a);
  CHECK(to_string(*a) == "10.1.0.0/16");
  CHECK(a->size() == 65536);
  CHECK(ipv4_to_string(static_cast<std::uint32_t>(a->last())) == "10.1.255.255");
  CHECK_FALSE(parse_cidr("10.1.0.1/16"));
  CHECK_FALSE(parse_cidr("10.1.0.0"));
  CHECK(overlaps(*parse_cidr("10.1.2.0/24"), *a));
  CHECK(overlaps(*a, *parse_cidr("10.0.0.0/8")));
  CHECK_FALSE(overlaps(*a, *parse_cidr("10.2.0.0/24")));
  CHECK(parse_ipv4("10.1.2.3") == 0x0A010203u);
  CHECK_FALSE(parse_ipv4("10.1.2"));
  CHECK(gateway_of("10.1.2.0/24") == "10.1.2.1");
  CHECK_FALSE(gateway_of("10.1.2.0/31"));
}

TEST_CASE("subnets: the lowest free /24 of the pool, skipping overlapping networks") {
  ClusterState state = with_networks({{"x", "10.10.0.0/24"}, {"y", "10.10.2.0/23"}});
  CHECK(allocate_subnet(state, "10.10.0.0/16") == "10.10.1.0/24");
  state = with_networks({{"x", "10.10.0.0/24"}, {"y", "10.10.1.0/24"}, {"big", "10.10.2.0/23"}});
  CHECK(allocate_subnet(state, "10.10.0.0/16") == "10.10.4.0/24");
  // A pool that contains the ingress /16 jumps over it in one step.
  state = with_networks({{"ingress", "10.255.0.0/16"}});
  CHECK_FALSE(allocate_subnet(state, "10.255.0.0/15"));  // host bits set: not a pool
  CHECK(allocate_subnet(state, "10.254.0.0/15") == "10.254.0.0/24");
  state = with_networks({{"ingress", "10.254.0.0/16"}});
  CHECK(allocate_subnet(state, "10.254.0.0/15") == "10.255.0.0/24");
  state = with_networks({{"half", "10.0.0.0/9"}});
  CHECK(allocate_subnet(state, "10.0.0.0/8") == "10.128.0.0/24");
}

TEST_CASE("subnets: exhaustion and bad pools give nothing") {
  ClusterState state = with_networks({{"a", "10.10.0.0/24"}});
  CHECK_FALSE(allocate_subnet(state, "10.10.0.0/24"));
  CHECK(allocate_subnet(ClusterState{}, "10.10.0.0/24") == "10.10.0.0/24");
  CHECK_FALSE(allocate_subnet(state, "10.10.0.0/25"));
  CHECK_FALSE(allocate_subnet(state, "bogus"));
}

TEST_CASE("VIPs: lowest free host, skipping gateway, DNS address and addresses in use") {
  ClusterState state = with_networks({{"net", "10.0.0.0/29"}});
  // .1 is the gateway, .2 the network's DNS address.
  CHECK(allocate_vip(state, "net") == "10.0.0.3");
  // .3 and .5 taken: the hole at .4 is filled first.
  Service a;
  a.name = "a";
  a.vips["net"] = "10.0.0.3";
  Service c;
  c.name = "c";
  c.vips["net"] = "10.0.0.5";
  c.vips["other"] = "10.0.0.4";  // another network's VIP does not count here
  state.services["a"] = a;
  state.services["c"] = c;
  CHECK(allocate_vip(state, "net") == "10.0.0.4");
  // Fill .4 and .6; .7 is broadcast.
  for (const char* ip : {"10.0.0.4", "10.0.0.6"}) {
    Service s;
    s.name = ip;
    s.vips["net"] = ip;
    state.services[s.name] = s;
  }
  CHECK_FALSE(allocate_vip(state, "net"));
  state.services.erase("10.0.0.6");
  CHECK(allocate_vip(state, "net") == "10.0.0.6");
  CHECK_FALSE(allocate_vip(state, "unknown"));
}

TEST_CASE("VIPs: the DNS address is never handed out, even when it is the only one left") {
  ClusterState state = with_networks({{"net", "10.0.0.0/30"}});
  CHECK(dns_address_of("10.0.0.0/30") == "10.0.0.2");
  CHECK_FALSE(allocate_vip(state, "net"));
}
