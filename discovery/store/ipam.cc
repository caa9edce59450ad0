#include "discovery/store/ipam.h"

#include "base/address.h"

#include <algorithm>
#include <vector>

namespace routemesh::discovery::store {

std::optional<Ipv4Cidr> parse_cidr(std::string_view text) {
  const auto cidr = base::parse_ipv4_cidr(text);
  if (!cidr) {
    return std::nullopt;
  }
  return Ipv4Cidr{cidr->network, cidr->prefix};
}

std::string ipv4_to_string(std::uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

std::string to_string(const Ipv4Cidr& cidr) {
  return ipv4_to_string(cidr.base) + "/" + std::to_string(cidr.prefix);
}

std::optional<std::uint32_t> parse_ipv4(std::string_view text) {
  return base::parse_ipv4(text);
}

bool overlaps(const Ipv4Cidr& a, const Ipv4Cidr& b) {
  return a.base <= b.last() && b.base <= a.last();
}

std::optional<std::string> allocate_subnet(const ClusterState& state, std::string_view pool_text) {
  auto pool = parse_cidr(pool_text);
  if (!pool || pool->prefix > 24) {
    return std::nullopt;
  }
  std::vector<Ipv4Cidr> used;
  for (const auto& [name, network] : state.networks) {
    if (auto cidr = parse_cidr(network.subnet)) {
      used.push_back(*cidr);
    }
  }
  constexpr std::uint64_t kBlock = 256;
  std::uint64_t candidate = pool->base;
  while (candidate + kBlock - 1 <= pool->last()) {
    Ipv4Cidr c{static_cast<std::uint32_t>(candidate), 24};
    std::uint64_t next = candidate + kBlock;
    bool free = true;
    for (const auto& u : used) {
      if (overlaps(c, u)) {
        free = false;
        // Skip past the whole overlapping network at once (a /16 inside a /8 pool).
        const std::uint64_t after = (u.last() + 1 + kBlock - 1) / kBlock * kBlock;
        next = std::max(next, after);
      }
    }
    if (free) {
      return to_string(c);
    }
    candidate = next;
  }
  return std::nullopt;
}

std::optional<std::string> gateway_of(std::string_view subnet) {
  auto cidr = parse_cidr(subnet);
  if (!cidr || cidr->prefix > 30) {
    return std::nullopt;
  }
  return ipv4_to_string(cidr->base + 1);
}

std::optional<std::string> allocate_vip(const ClusterState& state, const StateIndex& index,
                                        const std::string& network) {
  auto it = state.networks.find(network);
  if (it == state.networks.end()) {
    return std::nullopt;
  }
  auto cidr = parse_cidr(it->second.subnet);
  if (!cidr || cidr->prefix > 30) {
    return std::nullopt;
  }
  const auto gateway = parse_ipv4(it->second.gateway);
  // .0 is the network, .1 the gateway, .2 the network's DNS address (dns_address_of; RFC 1122
  // §3.2.1.3 reserves all-zeros and all-ones host parts), the last address is broadcast. The
  // lowest address from .3 that is neither a VIP on this network nor the gateway:
  std::uint64_t candidate = std::uint64_t{cidr->base} + 3;
  while (true) {
    candidate = index.first_free_vip(network, candidate);
    if (!gateway || candidate != *gateway) {
      break;
    }
    ++candidate;
  }
  if (candidate >= cidr->last()) {
    return std::nullopt;
  }
  return ipv4_to_string(static_cast<std::uint32_t>(candidate));
}

std::optional<std::string> allocate_vip(const ClusterState& state, const std::string& network) {
  return allocate_vip(state, StateIndex(state), network);
}

}  // namespace routemesh::discovery::store
