#pragma once
// The store's state machine (pure, deterministic): apply(state, command). Validation uses the
// one shared validator (discovery/model/state.h validate_service/validate_task/validate_network/
// validate_node, i.e. the config file's rules) plus store-only rules (CAS on version, ids,
// existence). A rejected command changes nothing and does not bump the revision; an applied
// one bumps state.revision by exactly 1 and sets the changed object's version to it.
// Called by StoreStateMachine on the control thread (managers) and by the watch client
// (workers) with the same commands, so both end in the same state.

#include "discovery/model/state_index.h"
#include "discovery/store/error.h"
#include "discovery/store/types.h"

#include <optional>
#include <string>
#include <string_view>

namespace routemesh::discovery::store {

// Revision 0; the built-in `ingress` network (10.255.0.0/16, gateway 10.255.0.1, version 0);
// subnet pool "10.10.0.0/16" until a cluster.settings command changes it.
ClusterState initial_state();

// Applies one command. Errors (field = key path in the command JSON):
//   invalid           malformed or invalid values (labels, names, ports, addresses, ids)
//   conflict          name/id/host+path/published port/subnet already taken, network in use,
//                     node still running tasks, subnet pool or network addresses exhausted
//   not_found         the object to update/delete does not exist
//   version_mismatch  "version" given and not the object's current version (field "version")
// Call it qualified, `store::apply(state, index, command)`: Command is a std::variant, so an
// unqualified call also finds std::apply by ADL and fails to compile.
//
// `index` (discovery/model/state_index.h) must describe `state`; apply() keeps it in step with
// every change it makes, so a command costs what it touches (O(k log n)), not a pass over the
// state. StoreStateMachine and WatchReplica keep one beside their state.
ApplyResult apply(ClusterState& state, StateIndex& index, const Command& command);
// The same for a caller without an index: builds one from `state` first (O(n log n)).
ApplyResult apply(ClusterState& state, const Command& command);

// decode_command + apply; a malformed command is rejected as invalid.
ApplyResult apply_json(ClusterState& state, std::string_view command_json);

// {"ok":true,"revision":R,"object":{...}} or
// {"ok":false,"error":{"code":"invalid|conflict|not_found|version_mismatch|key_reused",
//                     "message","field"}}
std::string encode_result(const ApplyResult& result);
std::optional<ApplyResult> decode_result(std::string_view text);

}  // namespace routemesh::discovery::store
