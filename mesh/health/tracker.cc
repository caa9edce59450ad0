#include "mesh/health/tracker.h"

#include <algorithm>

namespace routemesh::mesh::health {

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::unknown:
      return "unknown";
    case Verdict::healthy:
      return "healthy";
    case Verdict::unhealthy:
      return "unhealthy";
  }
  return "unknown";
}

Tracker::Tracker(const discovery::HealthCheck& check, Clock::time_point started)
    : check_(check),
      start_period_ends_(started + std::chrono::milliseconds(check.start_period_ms)) {}

std::optional<Verdict> Tracker::record(bool passed, Clock::time_point now) {
  const Verdict before = verdict_;
  if (passed) {
    passed_once_ = true;
    failures_ = 0;
    ++passes_;
    if (verdict_ != Verdict::healthy &&
        passes_ >= std::max<std::uint32_t>(1, check_.healthy_threshold)) {
      verdict_ = Verdict::healthy;
    }
  } else {
    passes_ = 0;
    if (!passed_once_ && now < start_period_ends_) {
      return std::nullopt;  // still starting: this failure does not count
    }
    ++failures_;
    if (verdict_ != Verdict::unhealthy &&
        failures_ >= std::max<std::uint32_t>(1, check_.unhealthy_threshold)) {
      verdict_ = Verdict::unhealthy;
    }
  }
  if (verdict_ != before) {
    return verdict_;
  }
  return std::nullopt;
}

std::vector<Target> targets(const discovery::ClusterState& state, const std::string& local_node) {
  std::vector<Target> out;
  if (local_node.empty()) {
    return out;
  }
  for (const auto& [id, task] : state.tasks) {
    if (task.node != local_node) {
      continue;
    }
    auto s = state.services.find(task.service);
    if (s == state.services.end()) {
      continue;
    }
    std::vector<discovery::StateError> errors;
    auto exposure = discovery::parse_labels(s->second.labels, "", errors);
    if (!exposure.health) {
      continue;
    }
    std::uint16_t port = exposure.health->port;
    if (port == 0) {
      port = task.port;
    }
    if (port == 0 && !exposure.http.empty()) {
      port = exposure.http.front().port;
    }
    if (port == 0 && !s->second.ports.empty()) {
      port = s->second.ports.front().target;
    }
    if (port == 0) {
      continue;
    }
    out.push_back(
        Target{id, task.service, task.address, port, *exposure.health, task.health, task.version});
  }
  return out;
}

std::optional<discovery::TaskHealth> stored_value(Verdict v) {
  switch (v) {
    case Verdict::healthy:
      return discovery::TaskHealth::healthy;
    case Verdict::unhealthy:
      return discovery::TaskHealth::unhealthy;
    case Verdict::unknown:
      break;
  }
  return std::nullopt;
}

}  // namespace routemesh::mesh::health
