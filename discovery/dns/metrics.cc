#include "discovery/dns/metrics.h"

#include "base/metrics.h"

namespace routemesh::discovery::dns {

Metrics::Metrics(prometheus::Registry& registry)
    : queries(base::counter_family(registry, "routemesh_dns_queries_total",
                                   "DNS queries answered, by query type and result")),
      upstream(base::counter_family(registry, "routemesh_dns_upstream_queries_total",
                                    "Queries sent to upstream resolvers, by upstream and result")),
      forward_seconds(base::histogram(
          registry, "routemesh_dns_forward_duration_seconds",
          "Time to answer a forwarded query that missed the cache (all upstream attempts)",
          {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      coalesced(base::counter(registry, "routemesh_dns_coalesced_total",
                              "Forwarded queries that waited for the same question already "
                              "asked upstream instead of asking it again")),
      cache_entries(base::gauge(registry, "routemesh_dns_cache_entries",
                                "Forwarded replies held in the cache")),
      addresses(base::gauge(registry, "routemesh_dns_addresses",
                            "Network DNS addresses this node listens on")),
      listen_errors(base::counter(registry, "routemesh_dns_listen_errors_total",
                                  "DNS addresses that could not be listened on (per attempt)")),
      session_errors(base::counter(registry, "routemesh_dns_session_errors_total",
                                   "DNS coroutines that ended with an exception (bugs)")) {}

}  // namespace routemesh::discovery::dns
