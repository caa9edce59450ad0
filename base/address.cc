#include "base/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>

namespace routemesh::base {

namespace {

// inet_pton wants a NUL-terminated string. The longest IPv6 literal inet_pton accepts is 45
// characters ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), so anything that does not fit
// the buffer is not a literal; an embedded NUL would make inet_pton read only a prefix.
bool pton(int family, std::string_view text, unsigned char (&out)[16]) {
  char buf[64];
  if (text.size() >= sizeof buf || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return inet_pton(family, buf, out) == 1;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::uint32_t value = 0;
  for (char c : text) {
    if (!is_digit(c)) {
      return std::nullopt;
    }
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
    if (value > 65535) {
      return std::nullopt;
    }
  }
  return static_cast<std::uint16_t>(value);
}

std::optional<HostPort> parse_host_port(std::string_view text, HostPortRules rules) {
  if (text.empty()) {
    return std::nullopt;
  }
  // A bare IPv6 literal has several colons and so cannot be followed by a port: the whole text
  // is the address.
  if (rules.port_optional && is_ip_literal(text)) {
    return HostPort{std::string(text), 0};
  }
  std::string_view host;
  std::string_view port_text;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    if (!is_ipv6_literal(host)) {
      return std::nullopt;
    }
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() && rules.port_optional) {
      return HostPort{std::string(host), 0};
    }
    if (rest.empty() || rest.front() != ':') {
      return std::nullopt;
    }
    port_text = rest.substr(1);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      if (rules.port_optional && rules.host_names && is_host_name(text)) {
        return HostPort{std::string(text), 0};
      }
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.empty()) {
      if (!rules.empty_host) {
        return std::nullopt;
      }
    } else if (!is_ipv4_literal(host) && !(rules.host_names && is_host_name(host))) {
      return std::nullopt;
    }
  }
  const auto port = parse_port(port_text);
  if (!port || (*port == 0 && !rules.port_zero)) {
    return std::nullopt;
  }
  return HostPort{std::string(host), *port};
}

bool is_ipv4_literal(std::string_view text) {
  unsigned char out[16];
  return pton(AF_INET, text, out);
}

bool is_ipv6_literal(std::string_view text) {
  unsigned char out[16];
  return pton(AF_INET6, text, out);
}

bool is_ip_literal(std::string_view text) {
  return is_ipv4_literal(text) || is_ipv6_literal(text);
}

bool is_unspecified_ip(std::string_view text) {
  unsigned char bytes[16] = {};
  if (pton(AF_INET, text, bytes)) {
    return bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0 && bytes[3] == 0;
  }
  if (pton(AF_INET6, text, bytes)) {
    return std::all_of(std::begin(bytes), std::end(bytes), [](unsigned char b) { return b == 0; });
  }
  return false;
}

std::string join_host_port(std::string_view ip, std::uint16_t port) {
  std::string out;
  const bool v6 = ip.find(':') != std::string_view::npos;
  if (v6) {
    out += '[';
  }
  out += ip;
  if (v6) {
    out += ']';
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

std::optional<std::uint32_t> parse_ipv4(std::string_view text) {
  unsigned char bytes[16];
  if (!pton(AF_INET, text, bytes)) {
    return std::nullopt;
  }
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  // One or two digits: "/024" and "/+8" are not prefix lengths anyone means.
  const std::string_view len_text = text.substr(slash + 1);
  if (len_text.empty() || len_text.size() > 2 || !is_digit(len_text[0]) ||
      (len_text.size() == 2 && !is_digit(len_text[1]))) {
    return std::nullopt;
  }
  const unsigned len = len_text.size() == 1
                           ? static_cast<unsigned>(len_text[0] - '0')
                           : static_cast<unsigned>((len_text[0] - '0') * 10 + (len_text[1] - '0'));
  if (len > 32) {
    return std::nullopt;
  }
  const auto addr = parse_ipv4(text.substr(0, slash));
  if (!addr) {
    return std::nullopt;
  }
  const std::uint32_t mask = len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
  if ((*addr & ~mask) != 0) {
    return std::nullopt;
  }
  return Ipv4Cidr{*addr, len};
}

std::optional<IpRange> parse_ip_range(std::string_view text) {
  const auto slash = text.find('/');
  const std::string ip(text.substr(0, slash));
  IpRange r;
  if (::inet_pton(AF_INET, ip.c_str(), r.bytes.data()) == 1 && is_ipv4_literal(ip)) {
    r.v6 = false;
  } else if (::inet_pton(AF_INET6, ip.c_str(), r.bytes.data()) == 1) {
    r.v6 = true;
  } else {
    return std::nullopt;
  }
  const unsigned bits = r.v6 ? 128 : 32;
  r.prefix = bits;
  if (slash != std::string_view::npos) {
    const std::string_view len_text = text.substr(slash + 1);
    if (len_text.empty() || len_text.size() > 3 || (len_text.size() > 1 && len_text[0] == '0')) {
      return std::nullopt;
    }
    unsigned len = 0;
    for (char ch : len_text) {
      if (!is_digit(ch)) {
        return std::nullopt;
      }
      len = len * 10 + static_cast<unsigned>(ch - '0');
    }
    if (len > bits) {
      return std::nullopt;
    }
    r.prefix = len;
  }
  // No host bits set.
  for (unsigned bit = r.prefix; bit < bits; ++bit) {
    if ((r.bytes[bit / 8] >> (7 - bit % 8)) & 1U) {
      return std::nullopt;
    }
  }
  return r;
}

bool in_range(const IpRange& range, const std::uint8_t* addr, bool v6) {
  if (range.v6 != v6) {
    return false;
  }
  const unsigned full = range.prefix / 8;
  if (std::memcmp(range.bytes.data(), addr, full) != 0) {
    return false;
  }
  const unsigned rest = range.prefix % 8;
  if (rest == 0) {
    return true;
  }
  const std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (range.bytes[full] & mask) == (addr[full] & mask);
}

bool is_object_name(std::string_view name) {
  if (name.empty() || name.size() > 63) {
    return false;
  }
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c); };
  if (!lower_alnum(name[0])) {
    return false;
  }
  for (char c : name) {
    if (!lower_alnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  std::size_t label_len = 0;
  for (char c : host) {
    if (c == '.') {
      if (label_len == 0) {
        return false;
      }
      label_len = 0;
      continue;
    }
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_';
    if (!ok || ++label_len > 63) {
      return false;
    }
  }
  return label_len != 0;
}

bool is_certificate_host(std::string_view host) {
  if (host == "*") {
    return true;
  }
  if (host.starts_with("*.")) {
    host.remove_prefix(2);
  }
  return is_host_name(host) &&
         std::none_of(host.begin(), host.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace routemesh::base
