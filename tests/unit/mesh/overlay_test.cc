#include "mesh/overlay/preamble.h"
#include "mesh/overlay/proxy_protocol.h"

#include <catch2/catch.hpp>

#include <string>

namespace {

using namespace routemesh::mesh::overlay;

Preamble sample() {
  Preamble p;
  p.protocol = StreamProtocol::http;
  p.task_id = "web.1";
  p.task_port = 8080;
  p.client_ip = "192.0.2.7";
  p.client_port = 51000;
  p.dst_ip = "10.77.0.11";
  p.dst_port = 80;
  return p;
}

TEST_CASE("a preamble round-trips through its line", "[overlay]") {
  const Preamble p = sample();
  const std::string line = encode(p);
  REQUIRE(line == "RMOV1 http web.1 8080 192.0.2.7 51000 10.77.0.11 80\n");
  std::string why;
  auto back = decode(std::string_view(line).substr(0, line.size() - 1), why);
  REQUIRE(back);
  CHECK(*back == p);

  Preamble v6 = p;
  v6.protocol = StreamProtocol::tcp;
  v6.client_ip = "2001:db8::1";
  const std::string l6 = encode(v6);
  auto b6 = decode(std::string_view(l6).substr(0, l6.size() - 1), why);
  REQUIRE(b6);
  CHECK(*b6 == v6);
}

TEST_CASE("malformed preambles are refused with a reason", "[overlay]") {
  for (const char* bad : {
           "",
           "RMOV2 http web.1 8080 192.0.2.7 51000 10.77.0.11 80",     // wrong magic
           "RMOV1 sctp web.1 8080 192.0.2.7 51000 10.77.0.11 80",     // unknown protocol
           "RMOV1 http web/1 8080 192.0.2.7 51000 10.77.0.11 80",     // bad task id
           "RMOV1 http web.1 0 192.0.2.7 51000 10.77.0.11 80",        // port 0
           "RMOV1 http web.1 65536 192.0.2.7 51000 10.77.0.11 80",    // port out of range
           "RMOV1 http web.1 8080 evil.example 51000 10.77.0.11 80",  // not a literal
           "RMOV1 http web.1 8080 192.0.2.7 51000 10.77.0.11",        // a field missing
           "RMOV1 http web.1 8080 192.0.2.7 51000 10.77.0.11 80 x",   // one too many
           "RMOV1  http web.1 8080 192.0.2.7 51000 10.77.0.11 80",    // empty field
       }) {
    std::string why;
    INFO(bad);
    CHECK_FALSE(decode(bad, why));
    CHECK_FALSE(why.empty());
  }
  std::string why;
  CHECK_FALSE(decode(std::string(kMaxPreambleBytes + 1, 'a'), why));
}

TEST_CASE("PROXY v1 headers name both ends", "[proxy_protocol]") {
  ProxiedAddresses a{"192.0.2.7", 51000, "10.77.0.11", 9000};
  CHECK(encode_v1(a) == "PROXY TCP4 192.0.2.7 10.77.0.11 51000 9000\r\n");
  ProxiedAddresses b{"2001:db8::1", 1, "2001:db8::2", 2};
  CHECK(encode_v1(b) == "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
  ProxiedAddresses mixed{"192.0.2.7", 1, "2001:db8::2", 2};
  CHECK(encode_v1(mixed) == "PROXY UNKNOWN\r\n");
}

TEST_CASE("PROXY v2 header layout for TCP over IPv4", "[proxy_protocol]") {
  ProxiedAddresses a{"192.0.2.7", 51000, "10.77.0.11", 9000};
  const std::string h = encode_v2(a);
  REQUIRE(h.size() == 16 + 12);
  CHECK(h.substr(0, 12) == std::string("\r\n\r\n\0\r\nQUIT\n", 12));
  CHECK(static_cast<unsigned char>(h[12]) == 0x21);  // version 2, PROXY
  CHECK(static_cast<unsigned char>(h[13]) == 0x11);  // TCP over IPv4
  CHECK(static_cast<unsigned char>(h[14]) == 0);
  CHECK(static_cast<unsigned char>(h[15]) == 12);
  CHECK(static_cast<unsigned char>(h[16]) == 192);
  CHECK(static_cast<unsigned char>(h[19]) == 7);
  CHECK(static_cast<unsigned char>(h[24]) == (51000 >> 8));
  CHECK(static_cast<unsigned char>(h[25]) == (51000 & 0xff));
}

TEST_CASE("PROXY headers decode what they encode, for both versions", "[proxy_protocol]") {
  for (const ProxiedAddresses& a : {ProxiedAddresses{"192.0.2.7", 51000, "10.77.0.11", 9000},
                                    ProxiedAddresses{"2001:db8::1", 443, "2001:db8::2", 8443}}) {
    for (const std::string& h : {encode_v1(a), encode_v2(a)}) {
      const std::string bytes = h + "payload";
      auto d = decode(bytes);
      REQUIRE(d.status == Decoded::Status::ok);
      CHECK(d.consumed == h.size());
      REQUIRE(d.addresses);
      CHECK(*d.addresses == a);
      // every strict prefix is incomplete, never invalid or none
      for (std::size_t n = 1; n < h.size(); ++n) {
        INFO(n);
        CHECK(decode(std::string_view(h).substr(0, n)).status == Decoded::Status::incomplete);
      }
    }
  }
}

TEST_CASE("PROXY decode: plain traffic, LOCAL/UNKNOWN and malformed headers", "[proxy_protocol]") {
  CHECK(decode("GET / HTTP/1.1\r\n").status == Decoded::Status::none);
  CHECK(decode("PROXY UNKNOWN\r\n").status == Decoded::Status::ok);
  CHECK_FALSE(decode("PROXY UNKNOWN\r\n").addresses);
  ProxiedAddresses mixed{"192.0.2.7", 1, "2001:db8::2", 2};
  auto local = decode(encode_v2(mixed));
  CHECK(local.status == Decoded::Status::ok);
  CHECK_FALSE(local.addresses);
  CHECK(decode("PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n").status == Decoded::Status::invalid);
  CHECK(decode("PROXY TCP4 1.2.3 5.6.7.8 1 80\r\n").status == Decoded::Status::invalid);
  CHECK(decode("PROXY TCP4 1.2.3.4 5.6.7.8 1 80\n").status != Decoded::Status::ok);
  CHECK(decode("PROXY " + std::string(200, 'x')).status == Decoded::Status::invalid);
  std::string v2 = encode_v2(ProxiedAddresses{"192.0.2.7", 1, "10.0.0.1", 2});
  v2[12] = 0x31;  // version 3
  CHECK(decode(v2).status == Decoded::Status::invalid);
}

}  // namespace
