#pragma once
// IPAM for the store (pure): network subnets from the cluster's pool and service VIPs. There is
// no allocation table: what is in use is read from the ClusterState itself (network subnets,
// service VIPs; the VIPs through the state's StateIndex), so an address is free exactly when no
// object holds it and deleting the object releases it. Same state in, same address out on
// every replica.

#include "discovery/model/state_index.h"
#include "discovery/model/types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::discovery::store {

// The built-in network every state starts with (state_machine.h initial_state()).
inline constexpr const char* kIngressNetwork = "ingress";
inline constexpr const char* kIngressSubnet = "10.255.0.0/16";

struct Ipv4Cidr {
  std::uint32_t base = 0;  // host byte order, no host bits set
  unsigned prefix = 0;
  std::uint64_t size() const { return std::uint64_t{1} << (32 - prefix); }
  std::uint64_t last() const { return base + size() - 1; }
  bool operator==(const Ipv4Cidr&) const = default;
};

std::optional<Ipv4Cidr> parse_cidr(std::string_view text);
std::string to_string(const Ipv4Cidr& cidr);
std::optional<std::uint32_t> parse_ipv4(std::string_view text);
std::string ipv4_to_string(std::uint32_t address);
bool overlaps(const Ipv4Cidr& a, const Ipv4Cidr& b);

// The lowest /24 inside `pool` that overlaps no network of `state` (explicit subnets and the
// ingress network included). nullopt when the pool is exhausted or not a valid CIDR.
std::optional<std::string> allocate_subnet(const ClusterState& state, std::string_view pool);

// The gateway of a subnet: its first host address (.1 of a /24). nullopt for a bad CIDR.
std::optional<std::string> gateway_of(std::string_view subnet);

// The lowest host address of network `network` that is not the network address, the
// gateway, the broadcast address or any service's VIP on that network. nullopt when the
// network is unknown or full.
// O(log n) with `index` (which must describe `state`), O(n log n) without.
std::optional<std::string> allocate_vip(const ClusterState& state, const StateIndex& index,
                                        const std::string& network);
std::optional<std::string> allocate_vip(const ClusterState& state, const std::string& network);

}  // namespace routemesh::discovery::store
