#pragma once
// `routemesh node`: one node of the mesh. Services come from the config file (`services:`), or
// from the Raft store when the config has a `cluster:` section (cmd/cluster.h).

#include <string>

namespace prometheus {
class Gauge;
class Registry;
}  // namespace prometheus

namespace routemesh::cmd {

struct NodeOptions {
  std::string config_path;
  std::string join;  // cluster mode: admin address of a manager to join ("" = cluster.join)
  // Cluster mode with autolock: a file holding the unlock key ("" = $ROUTEMESH_UNLOCK_KEY, if
  // set), which opens this manager's keys in data_dir/tls.
  std::string unlock_key_file;
};

// Runs until SIGTERM/SIGINT (graceful drain). SIGHUP reloads the config file.
// Returns the process exit code: 0 after a clean shutdown, 2 for an invalid config,
// 1 for a startup failure (a port that cannot be bound).
int run_node(const NodeOptions& options);

// routemesh_config_route_table_revision: the revision of the RouteTable the proxy threads use,
// set by whoever publishes one (run_node, or the cluster's publisher).
prometheus::Gauge& route_table_revision(prometheus::Registry& registry);

// `routemesh check --config FILE`: validates and prints every error. Exit code 0 or 2.
int check_config(const std::string& path);

}  // namespace routemesh::cmd
