#pragma once
// The one grammar for addresses and names: host:port, IP literals, IPv4 CIDRs, object names and
// host names. Every component that reads such a string (config file, admin API bodies, CLI
// flags, listen and dial addresses) parses it here, so they all accept the same strings.
// Pure: no Asio, no sockets; failures are nullopt or false, never exceptions.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::base {

// A parsed host:port. `host` is an IP literal (IPv6 without its brackets), a host name when
// the caller allowed them, or "" for ":PORT" when allowed. `port` is 0 when the caller allowed
// port 0 ("any free port") or no port at all (HostPortRules::port_optional).
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const HostPort&) const = default;
};

// What a caller accepts beyond the strict form "IPv4:PORT" / "[IPv6]:PORT" with port 1..65535.
// Written with designated initialisers at the call site, e.g. {.host_names = true}.
struct HostPortRules {
  bool host_names = false;     // RFC 1123 host names (is_host_name) besides IPv4 literals
  bool empty_host = false;     // ":PORT" (listeners: all interfaces); host "" in the result
  bool port_zero = false;      // port 0 (listeners: any free port)
  bool port_optional = false;  // "IPv4", "[IPv6]" or a bare IPv6 literal; port 0 in the result
};

// Parses "HOST:PORT" under `rules`. Brackets hold an IPv6 literal and nothing else; an IPv6
// literal without brackets never carries a port ("::1:80" is an address, so it is rejected
// unless port_optional, which reads it as the address ::1:80). The port is decimal digits
// only (leading zeros allowed, no sign, no spaces), at most 65535. nullopt when malformed.
std::optional<HostPort> parse_host_port(std::string_view text, HostPortRules rules = {});

// Decimal port text, digits only, 0..65535 ("080" is 80). nullopt when malformed or too big.
std::optional<std::uint16_t> parse_port(std::string_view text);

// Dotted-quad IPv4 literal as inet_pton(AF_INET) reads it: four decimal octets 0..255, no
// leading zeros, nothing else.
bool is_ipv4_literal(std::string_view text);
// IPv6 literal as inet_pton(AF_INET6) reads it (no brackets, no zone id, no port).
bool is_ipv6_literal(std::string_view text);
// Either of the above, e.g. "127.0.0.1" or "::1".
bool is_ip_literal(std::string_view text);

// "0.0.0.0", "::" and the other spellings of the unspecified address (any interface).
bool is_unspecified_ip(std::string_view text);

// "IP:PORT", with brackets around an IPv6 literal ("[::1]:80").
std::string join_host_port(std::string_view ip, std::uint16_t port);

// An IPv4 literal as a number in host byte order ("10.0.0.1" -> 0x0A000001).
std::optional<std::uint32_t> parse_ipv4(std::string_view text);

// "a.b.c.d/len", len 0..32 written with one or two digits, no host bits set.
struct Ipv4Cidr {
  std::uint32_t network = 0;  // host byte order
  unsigned prefix = 0;
  bool operator==(const Ipv4Cidr&) const = default;
};
std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text);

// An IPv4 or IPv6 range for address lists (trusted proxies, PROXY protocol peers): "CIDR" with
// no host bits set ("10.0.0.0/8", "2001:db8::/32") or one address (a /32 or /128).
struct IpRange {
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4
  bool v6 = false;
  unsigned prefix = 0;
  bool operator==(const IpRange&) const = default;
};
std::optional<IpRange> parse_ip_range(std::string_view text);
// Whether the address (4 or 16 bytes, network order) is in `range`. An IPv4 address is not in
// an IPv6 range and the other way round; callers map IPv4-mapped IPv6 peers to IPv4 first.
bool in_range(const IpRange& range, const std::uint8_t* addr, bool v6);

// Object names (services, networks): [a-z0-9][a-z0-9_.-]{0,62}. The config file, the admin API
// and the store accept exactly these.
bool is_object_name(std::string_view name);

// RFC 1123 §2.1 host names: labels of 1..63 letters, digits or '-', joined by '.', at most 253
// octets in all, plus '_', which internal names use in practice. Case is not checked; an IPv4
// literal is also a host name by this rule; no trailing dot.
bool is_host_name(std::string_view host);

// The host an HTTPS certificate is stored for: a lower-case host name, "*.suffix" (a wildcard)
// or "*" (the default certificate). The store and the config file accept exactly these.
bool is_certificate_host(std::string_view host);

}  // namespace routemesh::base
