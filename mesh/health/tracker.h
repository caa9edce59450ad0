#pragma once
// Active health decisions, pure (no I/O, no clock reads): which of this node's tasks to check
// and how, and the verdict a run of check results gives. The driver (discovery/agent's
// HealthChecker) runs the checks and writes each verdict change to the store, so every node's
// balancer agrees.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "discovery/model/labels.h"
#include "discovery/model/types.h"

namespace routemesh::mesh::health {

using Clock = std::chrono::steady_clock;

enum class Verdict { unknown, healthy, unhealthy };

const char* to_string(Verdict v);

// Consecutive results to verdicts, like Docker's HEALTHCHECK: `healthy_threshold` passes in a
// row make a task healthy, `unhealthy_threshold` failures in a row unhealthy. Failures inside
// the start period (counted from construction) do not count until the first pass.
class Tracker {
 public:
  Tracker(const discovery::HealthCheck& check, Clock::time_point started);

  // Records one result; returns the new verdict when this result changed it.
  std::optional<Verdict> record(bool passed, Clock::time_point now);

  Verdict verdict() const { return verdict_; }
  std::uint32_t passes() const { return passes_; }
  std::uint32_t failures() const { return failures_; }

 private:
  discovery::HealthCheck check_;
  Clock::time_point start_period_ends_;
  bool passed_once_ = false;
  std::uint32_t passes_ = 0;    // consecutive
  std::uint32_t failures_ = 0;  // consecutive
  Verdict verdict_ = Verdict::unknown;
};

// One task this node checks.
struct Target {
  std::string task_id;
  std::string service;
  std::string ip;
  std::uint16_t port = 0;
  discovery::HealthCheck check;
  discovery::TaskHealth stored = discovery::TaskHealth::unknown;  // what the store says now
  std::uint64_t version = 0;                                      // the task's, for the write
  bool operator==(const Target&) const = default;
};

// The tasks of `local_node` (by name; never tasks without a node) whose service has a
// mesh.health.check label, ordered by task id. The port: the check's own port, else the
// task's port, else the service's HTTP port, else its first published target port; a task
// with none of these is skipped.
std::vector<Target> targets(const discovery::ClusterState& state, const std::string& local_node);

// targets() for a node that asks again for every new state: it keeps, per service, what
// targets() reads from the labels (the health check and the HTTP port), and parses a service's
// labels again only when they differ from the ones it parsed last time, so a new state costs
// one pass over the tasks instead of a label parse per local task. Services gone from the
// state are forgotten. Not thread-safe: one owner calls it (the node's route compile thread).
class TargetCache {
 public:
  // Same result as targets(state, local_node).
  std::vector<Target> targets(const discovery::ClusterState& state, const std::string& local_node);

  // Label parses done so far (for tests: a state whose labels did not change parses nothing).
  std::uint64_t parses_for_test() const { return parses_; }

 private:
  struct Entry {
    std::map<std::string, std::string> labels;  // as parsed
    std::optional<discovery::HealthCheck> health;
    std::uint16_t http_port = 0;  // the first mesh.http route's port, 0 = none
  };
  const Entry& entry(const std::string& name, const discovery::Service& service);

  std::map<std::string, Entry, std::less<>> services_;
  std::uint64_t parses_ = 0;
};

// The store value for a verdict (unknown stays unknown: nothing to write).
std::optional<discovery::TaskHealth> stored_value(Verdict v);

}  // namespace routemesh::mesh::health
