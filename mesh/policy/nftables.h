#pragma once
// Network isolation and policies rendered as an nftables ruleset, for the optional kernel
// backend (`firewall.backend: nftables`). Pure: values in, the text of one `nft -f -`
// transaction out; running nft is proxy/firewall.h's job.
//
// The ruleset judges what decide() judges, for what the kernel can see: the first packet of a
// TCP connection to a VIP (Entry::vip) or to a published port forwarded at layer 4 to one
// service (Entry::published). Per target, the rules that may apply are written in decide()'s
// order (outranks()), each as the set of source addresses its `from` stands for, so the first
// rule that matches a packet is the rule decide() would pick; then the default (a VIP: its own
// network accepted, every other source dropped; a published port: accepted). What the kernel
// cannot judge (HTTP ports, routed by Host; UDP; the client named by a PROXY header) is left to
// user space, which keeps enforcing everything. README.md in this folder says more.

#include "base/address.h"
#include "mesh/policy/policy.h"
#include "mesh/route_table.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::mesh::policy {

// The table every node owns in its network namespace: `inet routemesh`.
inline constexpr std::string_view kNftTable = "inet routemesh";

// A VIP entry: TCP connections to address:port, judged as Entry::vip on `network`.
struct KernelVip {
  std::string address;  // IPv4 or IPv6 literal
  std::uint16_t port = 0;
  std::string service;
  std::string network;
};

// A published TCP port forwarded at layer 4 to `service`, judged as Entry::published.
struct KernelPort {
  std::uint16_t port = 0;
  std::string service;
};

struct KernelTargets {
  std::vector<KernelVip> vips;
  std::vector<KernelPort> published;
};

// What of `table` the kernel can judge: every VIP route and every layer-4 published TCP port.
// HTTP ports (routed by Host, possibly to several services) and UDP ports are left out.
KernelTargets kernel_targets(const RouteTable& table);

// The transaction that replaces the table with the rules for `targets`: it declares the table
// (so the delete never fails), deletes it and creates it again, so nft applies all or nothing.
// Connections from `user_space_only` (the node's proxy_protocol_from peers, whose client is in
// the PROXY header) are accepted and left to the proxy. Deterministic: equal inputs give equal
// text, so the caller can skip applying an unchanged ruleset.
std::string render_nftables(const Compiled& policy, const KernelTargets& targets,
                            std::span<const base::IpRange> user_space_only);

// The transaction that removes the table; it succeeds when the table is absent.
std::string nftables_removal();

}  // namespace routemesh::mesh::policy
