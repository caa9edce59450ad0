#include "cmd/static_state.h"

#include "base/address.h"

#include <utility>

namespace routemesh::cmd {

using discovery::ClusterState;

ClusterState state_from_config(const config::NodeConfig& cfg) {
  ClusterState state;
  state.revision = 1;
  discovery::Node self;
  self.id = cfg.node.name;
  self.name = cfg.node.name;
  self.role = discovery::NodeRole::manager;
  self.status = discovery::NodeStatus::ready;
  self.version = 1;
  state.nodes.emplace(self.id, self);

  for (const auto& sc : cfg.services) {
    discovery::Service svc;
    svc.name = sc.name;
    svc.labels = sc.labels;
    svc.ports = sc.published;
    svc.version = 1;
    std::size_t n = 0;
    for (const auto& text : sc.tasks) {
      ++n;
      discovery::Task task;
      task.id = sc.name + "." + std::to_string(n);
      task.service = sc.name;
      task.node = "";
      // config::parse accepted the string with the same rules; a failure here would mean the
      // caller skipped parse, and validate_state then reports the empty address.
      if (auto address = base::parse_host_port(text, {.port_optional = true})) {
        task.address = std::move(address->host);
        task.port = address->port;
      }
      task.version = 1;
      state.tasks.emplace(task.id, std::move(task));
    }
    state.services.emplace(svc.name, std::move(svc));
  }
  return state;
}

std::map<std::string, std::string> service_paths_from_config(const config::NodeConfig& cfg) {
  std::map<std::string, std::string> paths;
  for (std::size_t i = 0; i < cfg.services.size(); ++i) {
    paths.emplace(cfg.services[i].name, "services[" + std::to_string(i) + "]");
  }
  return paths;
}

}  // namespace routemesh::cmd
