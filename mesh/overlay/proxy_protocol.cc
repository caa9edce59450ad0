#include "mesh/overlay/proxy_protocol.h"

#include "base/address.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>

namespace routemesh::mesh::overlay {

namespace {

constexpr std::array<unsigned char, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum class Family { none, v4, v6 };

Family family_of(const std::string& ip, unsigned char (&out)[16]) {
  if (ip.size() < 64 && ::inet_pton(AF_INET, ip.c_str(), out) == 1) {
    return Family::v4;
  }
  if (ip.size() < 64 && ::inet_pton(AF_INET6, ip.c_str(), out) == 1) {
    return Family::v6;
  }
  return Family::none;
}

void put16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

std::string to_text(int af, const unsigned char* bytes) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(af, bytes, buf, sizeof buf);
  return buf;
}

Decoded decode_v1(std::string_view bytes) {
  Decoded d;
  const auto end = bytes.find("\r\n");
  if (end == std::string_view::npos) {
    d.status = bytes.size() >= 107 ? Decoded::Status::invalid : Decoded::Status::incomplete;
    return d;
  }
  if (end + 2 > 107) {
    d.status = Decoded::Status::invalid;
    return d;
  }
  const std::string_view line = bytes.substr(0, end);
  d.consumed = end + 2;
  if (line == "PROXY UNKNOWN" || line.starts_with("PROXY UNKNOWN ")) {
    d.status = Decoded::Status::ok;
    return d;
  }
  // PROXY TCP4|TCP6 src dst sport dport
  std::array<std::string_view, 6> parts;
  std::size_t n = 0;
  std::size_t i = 0;
  while (n < parts.size()) {
    const auto sp = line.find(' ', i);
    parts[n++] = line.substr(i, sp == std::string_view::npos ? line.size() - i : sp - i);
    if (sp == std::string_view::npos) {
      break;
    }
    i = sp + 1;
    if (n == parts.size()) {
      d.status = Decoded::Status::invalid;  // more fields than the format has
      return d;
    }
  }
  if (n != 6 || parts[0] != "PROXY" || (parts[1] != "TCP4" && parts[1] != "TCP6")) {
    d.status = Decoded::Status::invalid;
    return d;
  }
  const bool v4 = parts[1] == "TCP4";
  auto ip_ok = [&](std::string_view s) {
    return v4 ? base::is_ipv4_literal(s) : base::is_ipv6_literal(s);
  };
  auto sport = base::parse_port(parts[4]);
  auto dport = base::parse_port(parts[5]);
  if (!ip_ok(parts[2]) || !ip_ok(parts[3]) || !sport || !dport) {
    d.status = Decoded::Status::invalid;
    return d;
  }
  d.addresses = ProxiedAddresses{std::string(parts[2]), *sport, std::string(parts[3]), *dport};
  d.status = Decoded::Status::ok;
  return d;
}

Decoded decode_v2(std::string_view bytes) {
  Decoded d;
  if (bytes.size() < 16) {
    return d;  // incomplete
  }
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned version = b[12] >> 4;
  const unsigned command = b[12] & 0x0F;
  const unsigned family = b[13];
  const std::size_t len = (static_cast<std::size_t>(b[14]) << 8) | b[15];
  if (version != 2 || command > 1 || 16 + len > kMaxHeaderBytes) {
    d.status = Decoded::Status::invalid;
    return d;
  }
  if (bytes.size() < 16 + len) {
    return d;  // incomplete
  }
  d.consumed = 16 + len;
  d.status = Decoded::Status::ok;
  if (command == 0) {
    return d;  // LOCAL: the connection is the proxy's own (health checks)
  }
  const unsigned char* a = b + 16;
  if (family == 0x11) {  // TCP over IPv4
    if (len < 12) {
      d.status = Decoded::Status::invalid;
      return d;
    }
    d.addresses =
        ProxiedAddresses{to_text(AF_INET, a), static_cast<std::uint16_t>((a[8] << 8) | a[9]),
                         to_text(AF_INET, a + 4), static_cast<std::uint16_t>((a[10] << 8) | a[11])};
  } else if (family == 0x21) {  // TCP over IPv6
    if (len < 36) {
      d.status = Decoded::Status::invalid;
      return d;
    }
    d.addresses = ProxiedAddresses{
        to_text(AF_INET6, a), static_cast<std::uint16_t>((a[32] << 8) | a[33]),
        to_text(AF_INET6, a + 16), static_cast<std::uint16_t>((a[34] << 8) | a[35])};
  }
  // Any other family (UNSPEC, UDP, UNIX): accepted, addresses unknown.
  return d;
}

}  // namespace

std::string encode_v1(const ProxiedAddresses& a) {
  unsigned char s[16];
  unsigned char t[16];
  const Family fs = family_of(a.src_ip, s);
  const Family fd = family_of(a.dst_ip, t);
  if (fs == Family::none || fs != fd) {
    return "PROXY UNKNOWN\r\n";
  }
  std::string out = fs == Family::v4 ? "PROXY TCP4 " : "PROXY TCP6 ";
  out += a.src_ip + ' ' + a.dst_ip + ' ' + std::to_string(a.src_port) + ' ' +
         std::to_string(a.dst_port) + "\r\n";
  return out;
}

std::string encode_v2(const ProxiedAddresses& a) {
  unsigned char s[16];
  unsigned char t[16];
  const Family fs = family_of(a.src_ip, s);
  const Family fd = family_of(a.dst_ip, t);
  std::string out(reinterpret_cast<const char*>(kV2Signature.data()), kV2Signature.size());
  if (fs == Family::none || fs != fd) {
    out.push_back(static_cast<char>(0x20));  // version 2, LOCAL
    out.push_back(0);                        // UNSPEC
    put16(out, 0);
    return out;
  }
  out.push_back(static_cast<char>(0x21));  // version 2, PROXY
  const std::size_t n = fs == Family::v4 ? 4 : 16;
  out.push_back(static_cast<char>(fs == Family::v4 ? 0x11 : 0x21));
  put16(out, static_cast<std::uint16_t>(2 * n + 4));
  out.append(reinterpret_cast<const char*>(s), n);
  out.append(reinterpret_cast<const char*>(t), n);
  put16(out, a.src_port);
  put16(out, a.dst_port);
  return out;
}

Decoded decode(std::string_view bytes) {
  Decoded d;
  if (bytes.empty()) {
    return d;
  }
  // Either signature, compared over what has arrived so far.
  const std::string_view v1 = "PROXY ";
  const std::string_view v2(reinterpret_cast<const char*>(kV2Signature.data()),
                            kV2Signature.size());
  const auto prefix_of = [&](std::string_view sig) {
    const auto n = std::min(bytes.size(), sig.size());
    return bytes.substr(0, n) == sig.substr(0, n);
  };
  if (prefix_of(v1)) {
    return bytes.size() < v1.size() ? d : decode_v1(bytes);
  }
  if (prefix_of(v2)) {
    return bytes.size() < v2.size() ? d : decode_v2(bytes);
  }
  d.status = Decoded::Status::none;
  return d;
}

}  // namespace routemesh::mesh::overlay
