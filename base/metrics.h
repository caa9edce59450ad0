#pragma once
// The one set of metric builders: every capability's metrics.h struct is built with these
// from the process registry. prometheus::Registry merges families of the same name, so building
// a metric twice from one registry yields the same family (and, with the same labels, the same
// metric). Names follow routemesh_<capability>_<name>_<unit>; each capability's README lists
// its own.
//
// Called at startup on the thread that builds the metrics struct; the returned references live
// as long as the registry. A name or help text that prometheus-cpp rejects (bad characters, a
// name registered with another type) throws std::invalid_argument: a bug, found at startup.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace routemesh::base {

// Families, for metrics with labels: call .Add({{"label", "value"}}) on them.
prometheus::Family<prometheus::Counter>& counter_family(prometheus::Registry& registry,
                                                        const std::string& name,
                                                        const std::string& help);
prometheus::Family<prometheus::Gauge>& gauge_family(prometheus::Registry& registry,
                                                    const std::string& name,
                                                    const std::string& help);
prometheus::Family<prometheus::Histogram>& histogram_family(prometheus::Registry& registry,
                                                            const std::string& name,
                                                            const std::string& help);

// One metric without labels.
prometheus::Counter& counter(prometheus::Registry& registry, const std::string& name,
                             const std::string& help);
prometheus::Gauge& gauge(prometheus::Registry& registry, const std::string& name,
                         const std::string& help);
prometheus::Histogram& histogram(prometheus::Registry& registry, const std::string& name,
                                 const std::string& help,
                                 const prometheus::Histogram::BucketBoundaries& buckets);

}  // namespace routemesh::base
