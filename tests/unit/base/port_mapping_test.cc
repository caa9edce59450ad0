#include "base/port_mapping.h"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

using namespace routemesh::base;

TEST_CASE("port mappings parse as PUBLISHED:TARGET with optional /tcp or /udp") {
  struct Case {
    const char* text;
    bool ok;
    std::uint16_t published;
    std::uint16_t target;
  };
  const std::vector<Case> cases = {
      {"9000:80/tcp", true, 9000, 80}, {"9000:80", true, 9000, 80},
      {"1:65535", true, 1, 65535},     {"65535:1/tcp", true, 65535, 1},
      {"09000:080", true, 9000, 80},   {"0:80", false, 0, 0},
      {"9000:0", false, 0, 0},         {"65536:80", false, 0, 0},
      {"9000:80/sctp", false, 0, 0},   {"9000:53/udp", true, 9000, 53},
      {"9000:80/TCP", false, 0, 0},    {"9000:80/", false, 0, 0},
      {"9000", false, 0, 0},           {":80", false, 0, 0},
      {"9000:", false, 0, 0},          {"a:80", false, 0, 0},
      {"-1:80", false, 0, 0},          {"+1:80", false, 0, 0},
      {" 9000:80", false, 0, 0},       {"9000:80 ", false, 0, 0},
      {"9000:80:70", false, 0, 0},     {"", false, 0, 0},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const auto m = parse_port_mapping(c.text);
    REQUIRE(m.has_value() == c.ok);
    if (c.ok) {
      CHECK(m->published == c.published);
      CHECK(m->target == c.target);
      CHECK(m->protocol == (std::string_view(c.text).ends_with("/udp") ? "udp" : "tcp"));
    }
  }
}

TEST_CASE("port mappings take a bind address and the long form with a mode") {
  struct Case {
    const char* text;
    std::optional<PortMapping> want;
  };
  const std::vector<Case> cases = {
      {"127.0.0.5:9000:80", PortMapping{9000, 80, "tcp", "ingress", "127.0.0.5"}},
      {"[::1]:9000:53/udp", PortMapping{9000, 53, "udp", "ingress", "::1"}},
      {"[127.0.0.1]:9000:80", std::nullopt},  // brackets only for IPv6
      {"::1:9000:80", std::nullopt},
      {"host.example:9000:80", std::nullopt},
      {"1.2.3:9000:80", std::nullopt},
      {"published=8080,target=80", PortMapping{8080, 80, "tcp", "ingress", ""}},
      {"target=80,published=8080,mode=host", PortMapping{8080, 80, "tcp", "host", ""}},
      {"published=53,target=5353,protocol=udp,mode=host,address=10.0.0.7",
       PortMapping{53, 5353, "udp", "host", "10.0.0.7"}},
      {"published=8080,target=80,mode=global", std::nullopt},
      {"published=8080,target=80,mode=host,mode=host", std::nullopt},
      {"published=8080", std::nullopt},
      {"published=8080,target=0", std::nullopt},
      {"published=8080,target=80,address=nope", std::nullopt},
      {"published=8080,target=80,color=red", std::nullopt},
      {"published=8080,target=80,", std::nullopt},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const auto m = parse_port_mapping(c.text);
    REQUIRE(m.has_value() == c.want.has_value());
    if (m) {
      CHECK(*m == *c.want);
      CHECK(parse_port_mapping(format_port_mapping(*m)) == m);  // round trip
    }
  }
  CHECK(format_port_mapping(PortMapping{9000, 80, "tcp", "ingress", ""}) == "9000:80/tcp");
  CHECK(format_port_mapping(PortMapping{9000, 80, "tcp", "ingress", "::1"}) == "[::1]:9000:80/tcp");
  CHECK(format_port_mapping(PortMapping{9000, 80, "udp", "host", ""}) ==
        "published=9000,target=80,protocol=udp,mode=host");
}
