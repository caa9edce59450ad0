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

namespace {

// The target for one task of a service with an active check, or nullopt when no port is
// known: the check's own port, else the task's, else the service's HTTP port, else its first
// published target port.
std::optional<Target> make_target(const std::string& id, const discovery::Task& task,
                                  const discovery::Service& service,
                                  const discovery::HealthCheck& check, std::uint16_t http_port) {
  std::uint16_t port = check.port;
  if (port == 0) {
    port = task.port;
  }
  if (port == 0) {
    port = http_port;
  }
  if (port == 0 && !service.ports.empty()) {
    port = service.ports.front().target;
  }
  if (port == 0) {
    return std::nullopt;
  }
  return Target{id, task.service, task.address, port, check, task.health, task.version};
}

}  // namespace

std::vector<Target> targets(const discovery::ClusterState& state, const std::string& local_node) {
  TargetCache cache;
  return cache.targets(state, local_node);
}

const TargetCache::Entry& TargetCache::entry(const std::string& name,
                                             const discovery::Service& service) {
  auto it = services_.find(name);
  if (it != services_.end() && it->second.labels == service.labels) {
    return it->second;
  }
  ++parses_;
  std::vector<discovery::StateError> errors;
  auto exposure = discovery::parse_labels(service.labels, "", errors);
  Entry e;
  e.labels = service.labels;
  e.health = exposure.health;
  e.http_port = exposure.http.empty() ? 0 : exposure.http.front().port;
  if (it == services_.end()) {
    it = services_.emplace(name, std::move(e)).first;
  } else {
    it->second = std::move(e);
  }
  return it->second;
}

std::vector<Target> TargetCache::targets(const discovery::ClusterState& state,
                                         const std::string& local_node) {
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
    const Entry& e = entry(s->first, s->second);
    if (!e.health) {
      continue;
    }
    if (auto t = make_target(id, task, s->second, *e.health, e.http_port)) {
      out.push_back(std::move(*t));
    }
  }
  // Forget services that are gone (one pass, only when some are).
  if (services_.size() > state.services.size()) {
    for (auto it = services_.begin(); it != services_.end();) {
      it = state.services.count(it->first) == 0 ? services_.erase(it) : std::next(it);
    }
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
