#pragma once
// PROXY protocol headers (HAProxy's specification, versions 1 and 2): what a layer-4 service
// labelled mesh.proxy_protocol=v1|v2 receives first on each connection, so it learns the real
// client address across the mesh. Encoding for the TCP stream command; decoding of what a
// load balancer in front sends. Pure (no I/O).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::mesh::overlay {

struct ProxiedAddresses {
  std::string src_ip;  // IPv4 or IPv6 literal
  std::uint16_t src_port = 0;
  std::string dst_ip;
  std::uint16_t dst_port = 0;
  bool operator==(const ProxiedAddresses&) const = default;
};

// "PROXY TCP4 src dst sport dport\r\n" (TCP6 for IPv6). Mixed families or an address that is
// not a literal give "PROXY UNKNOWN\r\n".
std::string encode_v1(const ProxiedAddresses& a);
// The 12-byte signature, version 2 / PROXY command, TCP over IPv4 or IPv6, the addresses.
// Mixed families or a bad literal give the LOCAL command with no addresses.
std::string encode_v2(const ProxiedAddresses& a);

// Decoding the start of a connection that may carry a PROXY header (v1 or v2).
struct Decoded {
  enum class Status {
    incomplete,  // need more bytes (never more than kMaxHeaderBytes in all)
    none,        // the bytes do not start a PROXY header
    invalid,     // a PROXY header that is malformed
    ok,          // `consumed` bytes are the header; `addresses` unset for LOCAL / UNKNOWN
  } status = Status::incomplete;
  std::size_t consumed = 0;
  std::optional<ProxiedAddresses> addresses;
};
inline constexpr std::size_t kMaxHeaderBytes = 232;  // v2 with the longest address block we take
Decoded decode(std::string_view bytes);

}  // namespace routemesh::mesh::overlay
