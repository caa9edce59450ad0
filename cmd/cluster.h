#pragma once
// Cluster mode: `routemesh cluster init` and `routemesh node` with a `cluster:`
// section — a manager runs the Raft store and the REST API, a worker follows a manager's
// watch stream; both compile every new state into the RouteTable their proxy uses.

#include "cmd/node.h"
#include "config/types.h"

#include <string>

namespace routemesh::cmd {

struct ClusterInitOptions {
  std::string config_path;
};

// `routemesh cluster init --config FILE`: creates cluster.data_dir with a new cluster id and
// this node's identity (identity.json) plus a bootstrap marker (bootstrap.json), so that the
// first `routemesh node` start bootstraps Raft with this node as its single voter and proposes
// cluster.settings {cluster_id, subnet_pool} and node.add for itself. Prints how to start the
// node and how others join. Exit 0; 2 for a bad config (not cluster mode, not a manager);
// 1 when data_dir already holds a cluster or cannot be written.
int run_cluster_init(const ClusterInitOptions& options);

// run_node's cluster-mode branch (cfg.cluster_mode). Same exit codes as run_node; 2 also when
// the node has no identity and no join address, or the join was refused.
int run_cluster_node(const NodeOptions& options, const config::NodeConfig& cfg);

}  // namespace routemesh::cmd
