#pragma once
// The names a network's DNS address answers (pure): the core of the embedded DNS server.
//
// Within the asking network N (the network whose DNS address the query arrived on):
//   SERVICE, SERVICE.N         A: the VIP (endpoint mode vip) or the healthy task addresses
//                              (dnsrr, shuffled); AAAA: the healthy IPv6 task addresses (dnsrr)
//   tasks.SERVICE[.N]          A/AAAA: the healthy task addresses, shuffled
//   TASKID.tasks.SERVICE[.N]   A/AAAA: that task's address (the targets of SRV and PTR records)
//   _PORT._tcp.SERVICE[.N]     SRV, for each target port of the service: vip mode one record
//                              (0 0 PORT SERVICE.N.) with the VIP as additional data; dnsrr one
//                              per healthy task (0 0 PORT TASKID.tasks.SERVICE.N.), its own
//                              port when it has one
//   reverse names              PTR for the network's VIPs (SERVICE.N.) and its services' task
//                              addresses (TASKID.tasks.SERVICE.N.)
// A name that exists with no record of the asked type is NODATA (NOERROR, empty). A name of
// the cluster that N does not have (a service or network name of another network, anything
// under a network's name, a reverse name of a cluster address or subnet) is NXDOMAIN: it is
// never forwarded, so other networks' names neither resolve nor leak. Zone transfers are
// REFUSED. Everything else is forwarded to the upstream resolvers.

#include "discovery/dns/types.h"

#include <cstdint>

namespace routemesh::discovery::dns {

struct AnswerOptions {
  std::uint32_t ttl_s = 5;  // of every local record
};

// `network` is the view's entry for the address the query arrived on. `rnd` seeds the
// shuffle of task addresses. Never throws.
Answer answer(const Query& query, const View& view, const NetworkView& network,
              const AnswerOptions& options, std::uint64_t rnd);

// How an answer counts: local, nodata, nxdomain, refused; forwarded for Action::forward.
Outcome outcome_of(const Answer& answer);

}  // namespace routemesh::discovery::dns
