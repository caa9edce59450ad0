#include "base/port_mapping.h"

#include "base/address.h"

namespace routemesh::base {

std::optional<PortMapping> parse_port_mapping(std::string_view text) {
  std::string_view rest = text;
  std::string protocol = "tcp";
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    protocol = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    // TCP is spliced at layer 4 (or routed by Host); UDP is relayed per flow.
    if (protocol != "tcp" && protocol != "udp") {
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
  return PortMapping{*published, *target, protocol};
}

}  // namespace routemesh::base
