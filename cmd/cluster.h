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
  std::string cert_dir;  // where the CLI's admin credentials go ("" = none)
  // The operator's own root CA instead of a new one (both or neither): PEM files.
  std::string ca_cert;
  std::string ca_key;
  // Keep that root's key in files (data_dir/tls/ca-key.pem of the managers the operator puts
  // it on), never in the replicated state. Needs ca_cert and ca_key.
  bool external_ca = false;
  // Autolock from the start (`cluster autolock enable` later does the same): the first
  // manager's keys are written encrypted with a new unlock key, which init prints.
  bool autolock = false;
};

// `routemesh cluster init --config FILE`: creates cluster.data_dir with a new cluster id, the
// cluster's PKI in data_dir/tls (cmd/cluster_tls.h: the root CA, this node's certificate, the
// admin client certificate, also written to `cert_dir`), this node's identity (identity.json)
// and a bootstrap marker (bootstrap.json), so that the first `routemesh node` start bootstraps
// Raft with this node as its single voter and proposes cluster.settings {cluster_id,
// subnet_pool, the join tokens' hashes} and node.add for itself. Prints how to start the node,
// the two join tokens and where the CLI's certificate is. Exit 0; 2 for a bad config (not
// cluster mode, not a manager); 1 when data_dir already holds a cluster or cannot be written.
int run_cluster_init(const ClusterInitOptions& options);

// run_node's cluster-mode branch (cfg.cluster_mode). A node without an identity joins with
// NodeOptions::join "TOKEN@ADDR" (discovery/agent/join_client.h, secure_join). Same exit codes
// as run_node; 2 also when the node has no identity and no join token, the join was refused,
// or its credentials in data_dir/tls are missing or unusable.
int run_cluster_node(const NodeOptions& options, const config::NodeConfig& cfg);

}  // namespace routemesh::cmd
