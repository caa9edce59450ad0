#pragma once
// The config file's `services:` list as a ClusterState, for a node outside cluster mode (no
// Raft store). Used by cmd/node.cc at startup and on SIGHUP; then validated with
// discovery::validate_state like any other state. Pure.

#include "config/types.h"
#include "discovery/model/types.h"

#include <map>
#include <string>

namespace routemesh::cmd {

// Task ids are "<service>.<n>" (1-based); node is "" (local). Assumes config::parse accepted
// `cfg`: task addresses are read with the grammar config::parse checked them with
// (base::parse_host_port with port_optional). A task address that does not parse (a NodeConfig
// built without config::parse) becomes an empty address, which validate_state reports.
discovery::ClusterState state_from_config(const config::NodeConfig& cfg);

// service name -> "services[i]" in the config file's order, so that validate_state's messages
// name the list entry the user wrote.
std::map<std::string, std::string> service_paths_from_config(const config::NodeConfig& cfg);

}  // namespace routemesh::cmd
