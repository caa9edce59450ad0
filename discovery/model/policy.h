#pragma once
// The grammar of a policy's endpoints and the validator of a Policy (discovery/model/types.h).
// Shared by the store's apply(), the admin API, the CLI and the route table compiler, so all
// of them read "network:a", "service:x" and "cidr:10.0.0.0/8" the same way. Pure.

#include "base/address.h"
#include "discovery/model/types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::discovery {

enum class PolicyPeerKind { service, network, cidr };

// One side of a rule. `name` is the service or network name; `range` the CIDR (an IPv4 or IPv6
// range with no host bits set, or one address).
struct PolicyPeer {
  PolicyPeerKind kind = PolicyPeerKind::service;
  std::string name;
  base::IpRange range;
};

// "service:NAME" and "network:NAME" (NAME as base::is_object_name), "cidr:CIDR"
// (base::parse_ip_range). nullopt when malformed.
std::optional<PolicyPeer> parse_policy_peer(std::string_view text);

std::string_view to_string(PolicyAction action);
std::optional<PolicyAction> parse_policy_action(std::string_view text);

// Largest priority accepted.
inline constexpr std::uint32_t kMaxPolicyPriority = 1'000'000;

// `from` a peer of any kind, `to` a service peer, priority <= kMaxPolicyPriority; another
// policy (another id) with the same from, to and port is a conflict. The services and
// networks named need not exist (a rule may be written before what it names; it applies
// once it does). Errors carry paths below `path` ("policy.from"). Pure, O(policies).
std::vector<StateError> validate_policy(const ClusterState& state, const Policy& policy,
                                        const std::string& path);

}  // namespace routemesh::discovery
