#include "base/address.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh::base;

namespace {

// The rules each caller passes, named after the caller.
constexpr HostPortRules kStrict{};  // node address/peer, join, `task add --addr`, HTTP client
constexpr HostPortRules kTask{.port_optional = true};  // task addresses (config, API)
constexpr HostPortRules kConfigAdmin{.host_names = true, .port_zero = true};  // node.admin
constexpr HostPortRules kCliApi{.host_names = true};                          // --api
constexpr HostPortRules kListen{.empty_host = true, .port_zero = true};       // admin, whoami
constexpr HostPortRules kRaftPeer{.host_names = true, .port_zero = true};     // raft transport

// "host port" for an accepted text, "-" for a rejected one.
std::string show(const std::optional<HostPort>& hp) {
  return hp ? hp->host + " " + std::to_string(hp->port) : "-";
}

}  // namespace

TEST_CASE("host:port: one grammar, each caller's rules") {
  struct Row {
    const char* text;
    const char* strict;
    const char* task;
    const char* config_admin;
    const char* cli_api;
    const char* listen;
    const char* raft_peer;
  };
  // clang-format off
  const std::vector<Row> rows = {
      // text                    strict             task                config_admin       cli_api            listen             raft_peer
      {"",                       "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:80",           "127.0.0.1 80",    "127.0.0.1 80",     "127.0.0.1 80",    "127.0.0.1 80",    "127.0.0.1 80",    "127.0.0.1 80"},
      {"127.0.0.1:1",            "127.0.0.1 1",     "127.0.0.1 1",      "127.0.0.1 1",     "127.0.0.1 1",     "127.0.0.1 1",     "127.0.0.1 1"},
      {"127.0.0.1:65535",        "127.0.0.1 65535", "127.0.0.1 65535",  "127.0.0.1 65535", "127.0.0.1 65535", "127.0.0.1 65535", "127.0.0.1 65535"},
      // missing port, empty port, port 0, out of range
      {"127.0.0.1",              "-",               "127.0.0.1 0",      "-",               "-",               "-",               "-"},
      {"127.0.0.1:",             "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:0",            "-",               "-",                "127.0.0.1 0",     "-",               "127.0.0.1 0",     "127.0.0.1 0"},
      {"127.0.0.1:65536",        "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:99999999999999999999", "-",       "-",                "-",               "-",               "-",               "-"},
      // leading zeros in the port are read as decimal; signs, letters and spaces are not ports
      {"127.0.0.1:0080",         "127.0.0.1 80",    "127.0.0.1 80",     "127.0.0.1 80",    "127.0.0.1 80",    "127.0.0.1 80",    "127.0.0.1 80"},
      {"127.0.0.1:+80",          "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:-1",           "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:8a",           "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:80:90",        "-",               "-",                "-",               "-",               "-",               "-"},
      {" 127.0.0.1:80",          "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1:80 ",          "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1 :80",          "-",               "-",                "-",               "-",               "-",               "-"},
      {"127.0.0.1: 80",          "-",               "-",                "-",               "-",               "-",               "-"},
      // leading zeros in an octet: not an IPv4 literal, but a host name where those are allowed
      {"010.0.0.1:80",           "-",               "-",                "010.0.0.1 80",    "010.0.0.1 80",    "-",               "010.0.0.1 80"},
      {"1.2.3:80",               "-",               "-",                "1.2.3 80",        "1.2.3 80",        "-",               "1.2.3 80"},
      // IPv6: brackets when a port follows; a bare literal is an address without a port
      {"[::1]:80",               "::1 80",          "::1 80",           "::1 80",          "::1 80",          "::1 80",          "::1 80"},
      {"[::1]:0",                "-",               "-",                "::1 0",           "-",               "::1 0",           "::1 0"},
      {"[::1]",                  "-",               "::1 0",            "-",               "-",               "-",               "-"},
      {"[::1]:",                 "-",               "-",                "-",               "-",               "-",               "-"},
      {"[::1]80",                "-",               "-",                "-",               "-",               "-",               "-"},
      {"[::1:80",                "-",               "-",                "-",               "-",               "-",               "-"},
      {"::1",                    "-",               "::1 0",            "-",               "-",               "-",               "-"},
      {"::1:80",                 "-",               "::1:80 0",         "-",               "-",               "-",               "-"},
      {"fe80::1",                "-",               "fe80::1 0",        "-",               "-",               "-",               "-"},
      {"::ffff:1.2.3.4",         "-",               "::ffff:1.2.3.4 0", "-",               "-",               "-",               "-"},
      {"[fe80::1%eth0]:80",      "-",               "-",                "-",               "-",               "-",               "-"},
      {"[127.0.0.1]:80",         "-",               "-",                "-",               "-",               "-",               "-"},
      {"[nothost]:80",           "-",               "-",                "-",               "-",               "-",               "-"},
      {"[]:80",                  "-",               "-",                "-",               "-",               "-",               "-"},
      {"[ ::1]:80",              "-",               "-",                "-",               "-",               "-",               "-"},
      // host names only where the caller resolves them (or passes them on)
      {"localhost:80",           "-",               "-",                "localhost 80",    "localhost 80",    "-",               "localhost 80"},
      {"localhost",              "-",               "-",                "-",               "-",               "-",               "-"},
      {"web_1.internal:80",      "-",               "-",                "web_1.internal 80", "web_1.internal 80", "-",           "web_1.internal 80"},
      {"a..b:80",                "-",               "-",                "-",               "-",               "-",               "-"},
      {"example.com.:80",        "-",               "-",                "-",               "-",               "-",               "-"},
      {"a b:80",                 "-",               "-",                "-",               "-",               "-",               "-"},
      {"host:port",              "-",               "-",                "-",               "-",               "-",               "-"},
      // ":PORT" means all interfaces, for listeners only
      {":80",                    "-",               "-",                "-",               "-",               " 80",             "-"},
      {":0",                     "-",               "-",                "-",               "-",               " 0",              "-"},
      {":",                      "-",               "-",                "-",               "-",               "-",               "-"},
      {"80",                     "-",               "-",                "-",               "-",               "-",               "-"},
  };
  // clang-format on
  for (const auto& row : rows) {
    CAPTURE(row.text);
    CHECK(show(parse_host_port(row.text, kStrict)) == row.strict);
    CHECK(show(parse_host_port(row.text, kTask)) == row.task);
    CHECK(show(parse_host_port(row.text, kConfigAdmin)) == row.config_admin);
    CHECK(show(parse_host_port(row.text, kCliApi)) == row.cli_api);
    CHECK(show(parse_host_port(row.text, kListen)) == row.listen);
    CHECK(show(parse_host_port(row.text, kRaftPeer)) == row.raft_peer);
  }
}

TEST_CASE("host:port: the default rules are IP:PORT with port 1..65535") {
  CHECK(parse_host_port("127.0.0.1:1"));
  CHECK(parse_host_port("[::1]:65535"));
  CHECK_FALSE(parse_host_port("::1:80"));
  CHECK_FALSE(parse_host_port("host:80"));
  CHECK_FALSE(parse_host_port("127.0.0.1:65536"));
  CHECK_FALSE(parse_host_port("127.0.0.1:"));
  CHECK(parse_host_port("10.0.0.1:9001") == HostPort{"10.0.0.1", 9001});
}

TEST_CASE("task addresses accept IPv4 and bracketed IPv6 with or without a port") {
  struct Case {
    const char* text;
    bool ok;
    const char* address;
    std::uint16_t port;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1:9001", true, "127.0.0.1", 9001},
      {"10.1.2.3", true, "10.1.2.3", 0},
      {"[::1]:9001", true, "::1", 9001},
      {"[::1]", true, "::1", 0},
      {"fe80::1", true, "fe80::1", 0},
      {"127.0.0.1:0", false, "", 0},
      {"127.0.0.1:65536", false, "", 0},
      {"localhost:80", false, "", 0},
      {"[::1]9001", false, "", 0},
      {"[127.0.0.1]:80", false, "", 0},
      {"127.0.0.1:", false, "", 0},
      {"", false, "", 0},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const auto hp = parse_host_port(c.text, kTask);
    REQUIRE(hp.has_value() == c.ok);
    if (c.ok) {
      CHECK(hp->host == c.address);
      CHECK(hp->port == c.port);
    }
  }
}

TEST_CASE("ports are decimal digits 0..65535") {
  struct Case {
    const char* text;
    std::optional<std::uint16_t> port;
  };
  const std::vector<Case> cases = {
      {"0", 0},      {"1", 1},           {"80", 80},  {"0080", 80}, {"65535", 65535},
      {"65536", {}}, {"4294967377", {}}, {"", {}},    {"+80", {}},  {"-0", {}},
      {" 80", {}},   {"80 ", {}},        {"8 0", {}}, {"0x50", {}}, {"80.0", {}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(parse_port(c.text) == c.port);
  }
}

TEST_CASE("IP literals are what inet_pton accepts, without brackets, zones or ports") {
  struct Case {
    const char* text;
    bool v4;
    bool v6;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1", true, false},
      {"0.0.0.0", true, false},
      {"255.255.255.255", true, false},
      {"255.255.255.256", false, false},
      {"010.0.0.1", false, false},
      {"1.2.3", false, false},
      {"1.2.3.4.5", false, false},
      {" 1.2.3.4", false, false},
      {"1.2.3.4 ", false, false},
      {"::1", false, true},
      {"::", false, true},
      {"fe80::1", false, true},
      {"::ffff:1.2.3.4", false, true},
      {"[::1]", false, false},
      {"fe80::1%eth0", false, false},
      {"127.0.0.1:80", false, false},
      {"localhost", false, false},
      {"", false, false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(is_ipv4_literal(c.text) == c.v4);
    CHECK(is_ipv6_literal(c.text) == c.v6);
    CHECK(is_ip_literal(c.text) == (c.v4 || c.v6));
  }
  // An embedded NUL must not let a prefix pass for the whole string.
  CHECK_FALSE(is_ip_literal(std::string_view("1.2.3.4\0x", 9)));
  CHECK_FALSE(is_ip_literal(std::string(100, '1')));
}

TEST_CASE("parse_ipv4 gives the address in host byte order") {
  CHECK(parse_ipv4("10.0.0.1") == 0x0A000001u);
  CHECK(parse_ipv4("255.255.255.255") == 0xFFFFFFFFu);
  CHECK_FALSE(parse_ipv4("::1"));
  CHECK_FALSE(parse_ipv4("10.0.0.1/32"));
  CHECK_FALSE(parse_ipv4(""));
}

TEST_CASE("IPv4 CIDRs: a literal, a one- or two-digit prefix 0..32, no host bits") {
  struct Case {
    const char* text;
    std::optional<Ipv4Cidr> cidr;
  };
  const std::vector<Case> cases = {
      {"10.1.2.0/24", Ipv4Cidr{0x0A010200u, 24}},
      {"0.0.0.0/0", Ipv4Cidr{0, 0}},
      {"10.1.2.3/32", Ipv4Cidr{0x0A010203u, 32}},
      {"10.0.0.0/08", Ipv4Cidr{0x0A000000u, 8}},
      {"10.1.2.0/", {}},
      {"10.1.2.0/024", {}},
      {"10.1.2.0/-1", {}},
      {"10.1.2.0/+8", {}},
      {"10.1.2.0/33", {}},
      {"10.1.2.0/ 24", {}},
      {"10.1.2.0 /24", {}},
      {"::1/64", {}},
      {"10.1.2.3/24", {}},
      {"10.1.2.0", {}},
      {"/24", {}},
      {"", {}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(parse_ipv4_cidr(c.text) == c.cidr);
  }
}

TEST_CASE("object names are [a-z0-9][a-z0-9_.-]{0,62}") {
  struct Case {
    std::string name;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"web", true},
      {"api_v2.internal-x", true},
      {"0", true},
      {std::string(63, 'a'), true},
      {std::string(64, 'a'), false},
      {"", false},
      {"Web", false},
      {"-web", false},
      {"_web", false},
      {".web", false},
      {"web app", false},
      {"web/app", false},
      {"wéb", false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(is_object_name(c.name) == c.ok);
  }
}

TEST_CASE("host names follow RFC 1123 section 2.1, plus '_'") {
  struct Case {
    std::string host;
    bool ok;
  };
  const std::string label63(63, 'a');
  const std::vector<Case> cases = {
      {"localhost", true},
      {"Web-1.Example.COM", true},
      {"node_1.internal", true},
      {"127.0.0.1", true},
      {label63, true},
      {label63 + "a", false},
      {label63 + "." + label63 + "." + label63 + "." + std::string(61, 'a'), true},   // 253
      {label63 + "." + label63 + "." + label63 + "." + std::string(62, 'a'), false},  // 254
      {"", false},
      {".", false},
      {"a..b", false},
      {".a", false},
      {"a.", false},
      {"a b", false},
      {"a:b", false},
      {"[::1]", false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.host);
    CHECK(is_host_name(c.host) == c.ok);
  }
}

TEST_CASE("IP ranges: IPv4 and IPv6, CIDR or one address, no host bits") {
  using routemesh::base::in_range;
  using routemesh::base::parse_ip_range;
  auto r4 = parse_ip_range("10.1.0.0/16");
  REQUIRE(r4);
  const std::uint8_t in4[4] = {10, 1, 200, 3};
  const std::uint8_t out4[4] = {10, 2, 0, 1};
  CHECK(in_range(*r4, in4, false));
  CHECK_FALSE(in_range(*r4, out4, false));
  auto one = parse_ip_range("192.168.1.7");
  REQUIRE(one);
  CHECK(one->prefix == 32);
  auto r6 = parse_ip_range("2001:db8::/33");
  REQUIRE(r6);
  CHECK(r6->v6);
  std::uint8_t a6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x7f};
  CHECK(in_range(*r6, a6, true));
  a6[4] = 0x80;  // bit 33 set: outside /33
  CHECK_FALSE(in_range(*r6, a6, true));
  CHECK_FALSE(in_range(*r6, in4, false));  // families never mix
  CHECK(parse_ip_range("::/0"));
  CHECK(parse_ip_range("0.0.0.0/0"));
  for (const char* bad : {"10.0.0.1/8", "2001:db8::1/32", "10.0.0.0/33", "::/129", "10.0.0.0/",
                          "10.0.0.0/08", "10.0.0.0/a", "lb.example", "010.0.0.0/8", "", "/8"}) {
    INFO(bad);
    CHECK_FALSE(parse_ip_range(bad));
  }
}
