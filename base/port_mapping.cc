#include "base/port_mapping.h"

#include "base/address.h"

#include <vector>

namespace routemesh::base {
namespace {

bool valid_protocol(std::string_view p) {
  // TCP is spliced at layer 4 (or routed by Host); UDP is relayed per flow.
  return p == "tcp" || p == "udp";
}

std::optional<PortMapping> parse_long(std::string_view text) {
  PortMapping m;
  bool published = false;
  bool target = false;
  std::vector<std::string_view> seen;
  if (text.empty() || text.back() == ',') {
    return std::nullopt;
  }
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      return std::nullopt;
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    for (auto s : seen) {
      if (s == key) {
        return std::nullopt;  // each key once
      }
    }
    seen.push_back(key);
    if (key == "published" || key == "target") {
      const auto port = parse_port(value);
      if (!port || *port == 0) {
        return std::nullopt;
      }
      (key == "published" ? m.published : m.target) = *port;
      (key == "published" ? published : target) = true;
    } else if (key == "protocol" && valid_protocol(value)) {
      m.protocol = std::string(value);
    } else if (key == "mode" && (value == "ingress" || value == "host")) {
      m.mode = std::string(value);
    } else if (key == "address" && is_ip_literal(value)) {
      m.address = std::string(value);
    } else {
      return std::nullopt;
    }
  }
  if (!published || !target) {
    return std::nullopt;
  }
  return m;
}

}  // namespace

std::optional<PortMapping> parse_port_mapping(std::string_view text) {
  if (text.find('=') != std::string_view::npos) {
    return parse_long(text);
  }
  std::string_view rest = text;
  PortMapping m;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    m.protocol = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    if (!valid_protocol(m.protocol)) {
      return std::nullopt;
    }
  }
  // An address first: "[v6]:" or "a.b.c.d:" before PUBLISHED:TARGET.
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find("]:");
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    m.address = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 2);
    if (m.address.find(':') == std::string::npos || !is_ip_literal(m.address)) {
      return std::nullopt;
    }
  } else if (const auto first = rest.find(':');
             first != std::string_view::npos &&
             rest.find(':', first + 1) != std::string_view::npos) {
    m.address = std::string(rest.substr(0, first));
    rest = rest.substr(first + 1);
    if (!is_ip_literal(m.address)) {
      return std::nullopt;
    }
  }
  const auto colon = rest.find(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  const auto published = parse_port(rest.substr(0, colon));
  const auto target = parse_port(rest.substr(colon + 1));
  if (!published || !target || *published == 0 || *target == 0) {
    return std::nullopt;
  }
  m.published = *published;
  m.target = *target;
  return m;
}

std::string format_port_mapping(const PortMapping& m) {
  if (m.mode == "host") {
    std::string out = "published=" + std::to_string(m.published) +
                      ",target=" + std::to_string(m.target) + ",protocol=" + m.protocol +
                      ",mode=host";
    if (!m.address.empty()) {
      out += ",address=" + m.address;
    }
    return out;
  }
  std::string out;
  if (!m.address.empty()) {
    out = m.address.find(':') != std::string::npos ? "[" + m.address + "]:" : m.address + ":";
  }
  return out + std::to_string(m.published) + ":" + std::to_string(m.target) + "/" + m.protocol;
}

}  // namespace routemesh::base
