#pragma once
// The DNS view of a cluster state (pure): for each network with a DNS address, the services
// attached to it with their VIP, target ports and tasks, and the reverse names of its
// addresses. Rebuilt by the server on every new state; answer() (answer.h) reads it.

#include "discovery/dns/types.h"
#include "discovery/model/types.h"

#include <optional>
#include <string>

namespace routemesh::discovery::dns {

// An IP literal ("10.0.0.1", "fd00::1") as an Address; nullopt when it is neither.
std::optional<Address> parse_address(const std::string& text);
// The dotted or colon form of an address.
std::string to_string(const Address& address);

// Networks whose subnet has no DNS address (dns_address_of) are left out. A service belongs
// to the networks it lists (the store puts a service without networks on `ingress`). A task
// is healthy as the route table counts it (mesh/route_table.cc, make_endpoint): not unhealthy
// or draining, not `unknown` while its service has an active health check and the task names
// a node, and not on a node that is down. Tasks with an address that is not an IP literal are
// skipped. Never throws.
View compile_view(const ClusterState& state);

// Network isolation of the DNS address: whether `source` may ask `network`'s DNS address. Yes
// for an address in its subnet and for its VIPs and the task addresses of its services (the
// keys of `network.ptr`); no for anything else. IPv4-mapped IPv6 sources must be given as IPv4.
// O(log addresses).
bool may_query(const NetworkView& network, const Address& source);

}  // namespace routemesh::discovery::dns
