#pragma once
// The service VIPs a node owns on its loopback interface, added and removed through rtnetlink
// (no `ip` subprocess). One thread uses an instance (the control thread for the DNS
// addresses, a cluster node's route compile thread for the VIPs). An address that is already there
// when asked for is adopted (a previous run that was killed left it); every owned address is
// removed by clear() and the destructor, so a node leaves its host as it found it.

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <set>
#include <string>

namespace routemesh::proxy {

class LoopbackAddresses {
 public:
  explicit LoopbackAddresses(prometheus::Registry& registry);
  ~LoopbackAddresses();
  LoopbackAddresses(const LoopbackAddresses&) = delete;
  LoopbackAddresses& operator=(const LoopbackAddresses&) = delete;

  // Adds the addresses of `want` it does not own yet, removes owned ones not in `want`. IPv4
  // (as /32) and IPv6 (as /128) literals. Failures (no CAP_NET_ADMIN, say) are logged once per
  // address and counted; the listener on that VIP then sees no traffic.
  void reconcile(const std::set<std::string>& want);
  void clear();
  const std::set<std::string>& owned() const { return owned_; }

 private:
  // 0 or an errno value.
  int change(bool add, const std::string& ip);

  std::set<std::string> owned_;
  std::set<std::string> failed_;  // logged already
  prometheus::Family<prometheus::Counter>& changes_;
};

}  // namespace routemesh::proxy
