#include "discovery/model/policy.h"

namespace routemesh::discovery {

std::optional<PolicyPeer> parse_policy_peer(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view kind = text.substr(0, colon);
  const std::string_view value = text.substr(colon + 1);
  PolicyPeer peer;
  if (kind == "service" || kind == "network") {
    if (!base::is_object_name(value)) {
      return std::nullopt;
    }
    peer.kind = kind == "service" ? PolicyPeerKind::service : PolicyPeerKind::network;
    peer.name = std::string(value);
    return peer;
  }
  if (kind == "cidr") {
    auto range = base::parse_ip_range(value);
    if (!range) {
      return std::nullopt;
    }
    peer.kind = PolicyPeerKind::cidr;
    peer.name = std::string(value);
    peer.range = *range;
    return peer;
  }
  return std::nullopt;
}

std::string_view to_string(PolicyAction action) {
  return action == PolicyAction::deny ? "deny" : "allow";
}

std::optional<PolicyAction> parse_policy_action(std::string_view text) {
  if (text == "allow") {
    return PolicyAction::allow;
  }
  if (text == "deny") {
    return PolicyAction::deny;
  }
  return std::nullopt;
}

std::vector<StateError> validate_policy(const ClusterState& state, const Policy& policy,
                                        const std::string& path) {
  std::vector<StateError> errors;
  if (!parse_policy_peer(policy.from)) {
    errors.push_back(StateError{path + ".from",
                                "expected network:NAME, service:NAME or cidr:CIDR (e.g. "
                                "cidr:10.0.0.0/8)"});
  }
  const auto to = parse_policy_peer(policy.to);
  if (!to || to->kind != PolicyPeerKind::service) {
    errors.push_back(StateError{path + ".to", "expected service:NAME"});
  }
  if (policy.priority > kMaxPolicyPriority) {
    errors.push_back(
        StateError{path + ".priority", "must be at most " + std::to_string(kMaxPolicyPriority)});
  }
  if (!errors.empty()) {
    return errors;
  }
  for (const auto& [id, other] : state.policies) {
    if (id != policy.id && other.from == policy.from && other.to == policy.to &&
        other.port == policy.port) {
      errors.push_back(StateError{
          path + ".from",
          "policy " + id + " already covers " + policy.from + " -> " + policy.to +
              (policy.port == 0 ? std::string() : " port " + std::to_string(policy.port)),
          true});
      break;
    }
  }
  return errors;
}

}  // namespace routemesh::discovery
