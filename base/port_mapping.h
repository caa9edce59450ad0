#pragma once
// A published port: the port nodes listen on and the task port it forwards to. One type for
// the config file's `published:` list (config::ServiceConfig), the cluster state
// (discovery::Service::ports), the store's JSON and the CLI's --publish flag. Pure.
//
// Mode, as in Swarm: `ingress` (the default) listens on every node and balances over every
// task of the service, local or across the overlay; `host` listens only on nodes that run a
// task of the service and forwards to those local tasks only (no overlay hop). `address` binds
// the port to one IP address instead of the node's listen address.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::base {

struct PortMapping {
  std::uint16_t published = 0;   // 1..65535 once validated
  std::uint16_t target = 0;      // 1..65535 once validated
  std::string protocol = "tcp";  // "tcp" (spliced, or routed by Host) or "udp" (relayed per flow)
  std::string mode = "ingress";  // "ingress" or "host"
  std::string address;           // IP literal to bind ("" = the node's listen address)
  bool operator==(const PortMapping&) const = default;
};

// Two spellings, both ports 1..65535 (digits only, as parse_port):
//   short  [ADDRESS:]PUBLISHED:TARGET[/tcp|/udp]   ADDRESS an IPv4 literal or [IPv6]
//   long   published=P,target=T[,protocol=tcp|udp][,mode=ingress|host][,address=IP]
//          (Docker's --publish long syntax, plus address; keys in any order, each once)
// nullopt when malformed, for port 0, any protocol but tcp and udp, any mode but ingress and
// host, and an address that is not an IP literal.
std::optional<PortMapping> parse_port_mapping(std::string_view text);

// The shortest text parse_port_mapping reads back as `m`: the short form for ingress mode,
// the long form for host mode.
std::string format_port_mapping(const PortMapping& m);

}  // namespace routemesh::base
