#include "base/port_mapping.h"

#include <catch2/catch.hpp>

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
