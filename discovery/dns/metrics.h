#pragma once
// The DNS server's metrics, built once from the node's registry (base/metrics.h) and passed
// to the server by reference. Names and meanings are listed in discovery/dns/README.md.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace routemesh::discovery::dns {

struct Metrics {
  explicit Metrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Counter>& queries;   // {type, result}
  prometheus::Family<prometheus::Counter>& upstream;  // {upstream, result}
  prometheus::Histogram& forward_seconds;
  prometheus::Counter& coalesced;
  prometheus::Gauge& cache_entries;
  prometheus::Gauge& addresses;
  prometheus::Counter& listen_errors;
  prometheus::Counter& session_errors;
};

}  // namespace routemesh::discovery::dns
