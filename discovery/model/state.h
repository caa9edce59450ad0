#pragma once
// Validating ClusterState values: the one validator shared by the config file path (cmd/ builds
// a state from the file with cmd::state_from_config, cmd/static_state.h) and the store's
// apply(). Addresses, CIDRs and names use the grammar of base/address.h. Pure.

#include "discovery/model/state_index.h"
#include "discovery/model/types.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::discovery {

// Per-object validators: the ONE validator shared by validate_state (config file path) and the
// store's apply() (discovery/store/state_machine.h). Each checks one object as if it were
// added to, or replaced in, `state`: its own fields first, then conflicts with the OTHER
// objects of `state` (an existing object with the same name/id is the one being replaced and
// is ignored). Errors carry paths below `path`; conflict errors have StateError::conflict.
// Pure, never throw.
//
// Cost: the overloads taking a StateIndex (state_index.h: it must describe `state`) cost what
// the object touches, O(k log n) for an object with k labels/ports/networks; the store keeps an
// index in step with its state and uses those. The overloads without one build the index first,
// O(n log n) per call, for callers that check one object once.

// Name (base::is_object_name: [a-z0-9][a-z0-9_.-]{0,62}), labels (parse_labels), networks (must
// exist in state.networks, no duplicates), ports (1..65535, tcp; reported at
// "<path>.<ports_key>[i]"), host+path claims and published ports taken by another service
// (conflict), and a task port for HTTP routes (label, target port, or every task of the
// service in `state` having one). VIPs are the store's business and are not checked.
// `task_ports_later` (the store, whose services come before their tasks): a service without
// any task is accepted without a port source; validate_task(field_paths) then requires a
// port of each task. The config file keeps the strict rule.
std::vector<StateError> validate_service(const ClusterState& state, const StateIndex& index,
                                         const Service& service, const std::string& path,
                                         std::string_view ports_key = "published",
                                         bool task_ports_later = false);
std::vector<StateError> validate_service(const ClusterState& state, const Service& service,
                                         const std::string& path,
                                         std::string_view ports_key = "published",
                                         bool task_ports_later = false);

// Id non-empty, known service, IP-literal address (base::is_ip_literal), and (when `state` has
// nodes and the task names one) a node of that name. The config file writes a task as one string,
// so by default service and address errors point at `path`; with `field_paths` they point at
// "<path>.service" / "<path>.address" (the store's JSON objects), and a task without a port
// of a service whose HTTP route has no other port source is an error at "<path>.port".
std::vector<StateError> validate_task(const ClusterState& state, const StateIndex& index,
                                      const Task& task, const std::string& path,
                                      bool field_paths = false);
std::vector<StateError> validate_task(const ClusterState& state, const Task& task,
                                      const std::string& path, bool field_paths = false);

// Name as for services; subnet an IPv4 CIDR (base::parse_ipv4_cidr) with prefix 8..30 and no host
// bits; no overlap with another network's subnet (conflict). An empty subnet is accepted (the
// store's IPAM fills it before validating). O(networks): networks are few (each takes a subnet).
std::vector<StateError> validate_network(const ClusterState& state, const Network& network,
                                         const std::string& path);

// A network's DNS address: the second host address of its subnet (10.10.0.2 for 10.10.0.0/24;
// the first is the gateway). The store's IPAM never gives it to a service; every node serves
// the network's names there (discovery/dns). nullopt unless `subnet` is an IPv4 CIDR with room
// for it (prefix <= 30).
std::optional<std::string> dns_address_of(std::string_view subnet);

// Id non-empty, name non-empty from [A-Za-z0-9._-] and unique (conflict), address and peer
// "IP:PORT" (base::parse_host_port with the strict rules: IP literal, port 1..65535) when given.
std::vector<StateError> validate_node(const ClusterState& state, const StateIndex& index,
                                      const Node& node, const std::string& path);
std::vector<StateError> validate_node(const ClusterState& state, const Node& node,
                                      const std::string& path);

// Every semantic problem of a state (networks, nodes, then services, then tasks): bad labels, two
// services claiming the same host+path (naming both), published-port conflicts, tasks of unknown
// services, bad addresses. Paths use the config file's shape ("services[1].labels.mesh.http") where
// `service_paths` maps a service name to its path prefix (cmd::service_paths_from_config);
// otherwise "services.<name>". O(n log n) in services, tasks and nodes (networks pairwise).
std::vector<StateError> validate_state(
    const ClusterState& state, const std::map<std::string, std::string>& service_paths = {});

}  // namespace routemesh::discovery
