#include "discovery/dns/upstreams.h"

#include <catch2/catch.hpp>

using namespace routemesh::discovery::dns;

TEST_CASE("upstreams: IP, IP:PORT and [IPv6]:PORT; port 53 by default") {
  CHECK(parse_upstream("10.0.0.53") == Upstream{"10.0.0.53", 53});
  CHECK(parse_upstream("10.0.0.53:5353") == Upstream{"10.0.0.53", 5353});
  CHECK(parse_upstream("[fd00::53]:5300") == Upstream{"fd00::53", 5300});
  CHECK(parse_upstream("fd00::53") == Upstream{"fd00::53", 53});
  CHECK_FALSE(parse_upstream("resolver.example:53"));
  CHECK_FALSE(parse_upstream("0.0.0.0"));
  CHECK_FALSE(parse_upstream("::"));
  CHECK_FALSE(parse_upstream(""));
  CHECK(to_string(Upstream{"fd00::53", 53}) == "[fd00::53]:53");
  CHECK(to_string(Upstream{"10.0.0.1", 5300}) == "10.0.0.1:5300");
}

TEST_CASE("resolv.conf: nameserver lines in order, at most three, comments and zones ignored") {
  const char* text =
      "# generated\n"
      "search example.com\n"
      "nameserver 10.0.0.1   # first\n"
      "; nameserver 10.0.0.99\n"
      "nameserver fe80::1%eth0\n"
      "options ndots:2\n"
      "nameserver   fd00::53\n"
      "nameserver bogus\n"
      "nameserver 10.0.0.2\n"
      "nameserver 10.0.0.3\n";
  CHECK(parse_resolv_conf(text) ==
        std::vector<Upstream>{{"10.0.0.1", 53}, {"fd00::53", 53}, {"10.0.0.2", 53}});
  CHECK(parse_resolv_conf("").empty());
  CHECK(parse_resolv_conf("nameserver\n").empty());
}

TEST_CASE("upstream order: configured order, a failed one set aside until its hold-down ends") {
  UpstreamSet set({{"10.0.0.1", 53}, {"10.0.0.2", 53}, {"10.0.0.3", 53}}, 1000);
  CHECK(set.order(0) == std::vector<std::size_t>{0, 1, 2});
  set.failed(0, 100);
  CHECK(set.order(200) == std::vector<std::size_t>{1, 2, 0});
  set.failed(1, 300);
  // Both set aside: still asked, the one back sooner first.
  CHECK(set.order(400) == std::vector<std::size_t>{2, 0, 1});
  CHECK(set.order(1100) == std::vector<std::size_t>{0, 2, 1});  // 0's hold-down is over
  set.answered(1);
  CHECK(set.order(1100) == std::vector<std::size_t>{0, 1, 2});
  set.failed(7, 0);  // out of range: ignored
  CHECK(UpstreamSet({}).order(0).empty());
}
