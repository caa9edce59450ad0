// base/metrics.h, tested here rather than in tests/unit/base/: test_base links only the pure
// rm_base_core, and the builders live in the driver rm_base (prometheus-cpp), which the agent
// links.
#include "base/metrics.h"

#include <prometheus/text_serializer.h>
#include <catch2/catch.hpp>

#include <string>

using namespace routemesh;

namespace {

std::string exposition(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace

TEST_CASE("metric builders register name, help and type once per registry") {
  prometheus::Registry registry;
  auto& c = base::counter(registry, "routemesh_test_things_total", "Things counted.");
  auto& again = base::counter(registry, "routemesh_test_things_total", "Things counted.");
  CHECK(&c == &again);  // the registry merges families and label sets
  c.Increment(2);
  base::gauge(registry, "routemesh_test_level", "A level.").Set(7);
  base::histogram(registry, "routemesh_test_duration_seconds", "A duration.", {0.1, 1})
      .Observe(0.5);
  base::counter_family(registry, "routemesh_test_by_kind_total", "By kind.")
      .Add({{"kind", "a"}})
      .Increment();

  const std::string text = exposition(registry);
  CHECK(text.find("# HELP routemesh_test_things_total Things counted.") != std::string::npos);
  CHECK(text.find("# TYPE routemesh_test_things_total counter") != std::string::npos);
  CHECK(text.find("routemesh_test_things_total 2") != std::string::npos);
  CHECK(text.find("# TYPE routemesh_test_level gauge") != std::string::npos);
  CHECK(text.find("routemesh_test_level 7") != std::string::npos);
  CHECK(text.find("routemesh_test_duration_seconds_bucket{le=\"1\"} 1") != std::string::npos);
  CHECK(text.find("routemesh_test_by_kind_total{kind=\"a\"} 1") != std::string::npos);
}
