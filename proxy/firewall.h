#pragma once
// The nftables backend of network policy (`firewall.backend: nftables`): keeps the table
// `inet routemesh` of this node's network namespace equal to what
// mesh::policy::render_nftables makes of the current route table, by running `nft -f -` with
// the whole transaction on stdin. Control thread only; update() and remove() block while nft
// runs (milliseconds; at most kNftTimeout, then nft is killed).
//
// A failure (nft missing, nft refusing the ruleset, no CAP_NET_ADMIN) is logged with nft's
// own message and counted; the proxy's checks keep enforcing the policy, so a node without a
// working nft degrades to user-space enforcement and never stops.

#include "base/address.h"
#include "config/types.h"
#include "mesh/route_table.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <chrono>
#include <string>
#include <vector>

namespace routemesh::proxy {

class Firewall {
 public:
  static constexpr std::chrono::seconds kNftTimeout{10};

  // `user_space_only`: the node's proxy_protocol_from peers (their client is named in a PROXY
  // header the kernel cannot read).
  Firewall(const config::FirewallSettings& settings, std::vector<base::IpRange> user_space_only,
           prometheus::Registry& registry);
  // Removes the table if this object applied one.
  ~Firewall();
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  // Renders the table's policy and applies it when the text differs from the last attempt
  // (a failed one is retried with the next change).
  void update(const mesh::RouteTable& table);
  // Deletes the table (shutdown). Idempotent.
  void remove();

 private:
  // Runs nft with `script` on stdin; true on exit status 0. `output` gets its stdout+stderr,
  // or why it could not run.
  enum class Result { ok, failed, missing };
  Result run(const std::string& script, std::string& output) const;

  config::FirewallSettings settings_;
  std::vector<base::IpRange> user_space_only_;
  std::string attempted_;  // the last ruleset given to nft
  bool installed_ = false;
  prometheus::Counter& ok_;
  prometheus::Counter& failed_;
  prometheus::Counter& missing_;
};

}  // namespace routemesh::proxy
