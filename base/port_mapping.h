#pragma once
// A published port: the port every node listens on and the task port it forwards to. One type
// for the config file's `published:` list (config::ServiceConfig), the cluster state
// (discovery::Service::ports), the store's JSON and the CLI's --publish flag. Pure.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::base {

struct PortMapping {
  std::uint16_t published = 0;   // 1..65535 once validated
  std::uint16_t target = 0;      // 1..65535 once validated
  std::string protocol = "tcp";  // "tcp" (spliced, or routed by Host) or "udp" (relayed per flow)
  bool operator==(const PortMapping&) const = default;
};

// "PUBLISHED:TARGET" or "PUBLISHED:TARGET/tcp", both ports 1..65535 (digits only, as
// parse_port). nullopt when malformed, for port 0 and for any protocol but tcp and udp.
std::optional<PortMapping> parse_port_mapping(std::string_view text);

}  // namespace routemesh::base
