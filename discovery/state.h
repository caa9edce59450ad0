#pragma once
// Building and validating ClusterState values. Pure.

#include "config/types.h"
#include "discovery/types.h"

#include <vector>

namespace routemesh::discovery {

// The config file's `services:` list as a ClusterState (until the store exists).
// Task ids are "<service>.<n>" (1-based); node is "" (local). Assumes config::parse passed.
ClusterState state_from_config(const config::NodeConfig& cfg);

// Every semantic problem of a state: bad labels, two services claiming the same host+path
// (naming both), published-port conflicts, tasks of unknown services, bad addresses.
// Paths use the config file's shape ("services[1].labels.mesh.http") where `service_paths`
// maps a service name to its path prefix; otherwise "services.<name>".
std::vector<StateError> validate_state(
    const ClusterState& state, const std::map<std::string, std::string>& service_paths = {});

// service name -> "services[i]" for the config file's order, for validate_state's messages.
std::map<std::string, std::string> service_paths_from_config(const config::NodeConfig& cfg);

}  // namespace routemesh::discovery
