#pragma once
// The embedded DNS server (driver, Asio): UDP and TCP on port dns.port of every network's DNS
// address (discovery::dns_address_of: the subnet's second address). The network a query is
// answered for is the one whose address it arrived on. Names of the cluster are answered
// from the view of the latest state (answer.h, no store round trip); every other name is
// forwarded to the upstream resolvers: a fresh random id and source port per query, a
// timeout per attempt, the next upstream after a timeout or an error (one that timed out is
// set aside for a while, upstreams.h), a truncated reply asked again over TCP, SERVFAIL only
// when every upstream failed; replies are cached for their TTL (cache.h).
//
// Sockets are bound with IP_FREEBIND, so a listener opens before its address is on the
// loopback interface (the caller's `own_addresses` puts it there).
//
// Threading: everything runs on the executor it is given (the node's control thread); not
// thread-safe. Errors: an address that cannot be listened on is logged once, counted
// (routemesh_dns_listen_errors_total) and tried again at the next state; malformed queries
// get FORMERR or are dropped; nothing here throws past a session.

#include "config/types.h"
#include "discovery/dns/types.h"
#include "discovery/model/types.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace routemesh::discovery::dns {

class Server {
 public:
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  virtual ~Server() = default;

  // Called by cmd/ with each new cluster state (coalesced: the latest one per turn of the
  // control thread). Rebuilds the view, hands the set of DNS addresses to `own_addresses`
  // and opens listeners for new addresses, closes those of networks that are gone.
  virtual void update(const ClusterState& state) = 0;
  // The same with the view already built (compile_view, view.h), so a caller can build it on
  // another thread and hand this one only the swap and the listener changes. Control thread;
  // a null view is ignored.
  virtual void update(std::shared_ptr<const View> view) = 0;
  // Closes every listener; queries being forwarded finish or time out. Idempotent; also done
  // by the destructor.
  virtual void stop() = 0;
  // The DNS addresses listened on now.
  virtual std::vector<std::string> addresses() const = 0;

 protected:
  Server() = default;
};

// `settings.upstreams` empty: the nameservers of `resolv_conf` (read once, now). The registry
// must outlive the server; `own_addresses` is called from update() only.
std::unique_ptr<Server> make_server(boost::asio::any_io_executor executor,
                                    const config::DnsSettings& settings,
                                    prometheus::Registry& registry,
                                    std::function<void(const std::set<std::string>&)> own_addresses,
                                    const std::string& resolv_conf = "/etc/resolv.conf");

}  // namespace routemesh::discovery::dns
