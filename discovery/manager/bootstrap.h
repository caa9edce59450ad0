#pragma once
// The first start of a cluster (driver): `routemesh cluster init` leaves a marker,
// data_dir/bootstrap.json {"cluster_id","subnet_pool","worker_token_hash","manager_token_hash",
// "ca_root","sealed_ca_key","unlock_key_wrapped"?}, next to the node's identity and credentials.
// The node's first start then bootstraps Raft with itself as the single voter and, once it leads,
// runs bootstrap_cluster: it proposes cluster.settings {cluster_id, subnet_pool, the join tokens'
// hashes}, ca.set {the root, its key sealed with the manager key} and node.add for itself, then
// removes the marker.
//
// Threading: the control thread (the Store's executor) only.

#include "discovery/model/types.h"
#include "discovery/store/store.h"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <optional>
#include <string>

namespace routemesh::discovery::manager {

struct BootstrapMarker {
  std::string cluster_id;
  std::string subnet_pool;        // "" = the node's cluster.subnet_pool
  std::string worker_token_hash;  // tls::secret_hash of the first join tokens' secrets
  std::string manager_token_hash;
  std::string ca_root;             // PEM; "" = none (a marker from before the state kept the root)
  std::string sealed_ca_key;       // the root's key sealed with the manager key ("" = external CA)
  std::string unlock_key_wrapped;  // `cluster init --autolock`: sealed with the manager key
};

std::string bootstrap_marker_path(const std::string& data_dir);
// Written atomically (base/file.h); errors are values.
boost::system::result<void> write_bootstrap_marker(const std::string& data_dir,
                                                   const BootstrapMarker& marker);
// nullopt when there is no marker (or it is not a JSON object): the cluster was bootstrapped.
std::optional<BootstrapMarker> read_bootstrap_marker(const std::string& data_dir);

struct BootstrapOptions {
  std::string data_dir;  // where the marker is removed once done
  std::string cluster_id;
  std::string subnet_pool;
  std::string worker_token_hash;  // "" = none
  std::string manager_token_hash;
  std::string ca_root;             // "" = no ca.set
  std::string sealed_ca_key;       // "" = the key stays in files (an external CA)
  std::string unlock_key_wrapped;  // autolock from the start ("" = off)
  Node self;  // this node as the state records it: id, name, role manager, api and peer
};

// Waits until `store` leads, then proposes cluster.settings and node.add{self}, retrying each
// write that Raft did not apply; a rejection is logged, except node.add's conflict (the node
// is already there: an interrupted bootstrap runs again). Removes the marker when both writes
// were decided; ends early (marker kept) when the store stops. `store` must outlive the
// coroutine; start it with co_spawn and base::log_and_count.
boost::asio::awaitable<void> bootstrap_cluster(store::Store& store, BootstrapOptions options);

}  // namespace routemesh::discovery::manager
