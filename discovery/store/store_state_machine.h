#pragma once
// StoreStateMachine: the ClusterState behind Raft. Pure (no Asio, no I/O): it has exactly the
// methods of raft::StateMachine (discovery/raft/raft_node.h) and is plugged into a RaftNode
// through RaftStateMachine (raft_state_machine.h), which keeps Asio headers out of this core.
//
// Threading: the control thread only (the RaftNode's executor), like the driver that calls it.

#include "discovery/store/types.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::discovery::store {

class StoreStateMachine {
 public:
  static constexpr std::size_t kDefaultHistory = 4096;

  // Starts from initial_state(). `history`: how many applied commands deltas_since() keeps.
  explicit StoreStateMachine(std::size_t history = kDefaultHistory);

  // raft::StateMachine::apply: decodes the command bytes, applies them and returns
  // encode_result() bytes. `index` is the Raft log index (strictly increasing); a malformed
  // or rejected command changes nothing and is not recorded as a delta. Never throws.
  std::string apply(std::uint64_t index, std::string_view data);

  // raft::StateMachine::snapshot: encode_state(state()).
  std::string snapshot() const;

  // raft::StateMachine::restore: replaces the state with a snapshot() image and forgets the
  // delta history (deltas_since then answers nullopt for older revisions). A malformed image
  // cannot come from snapshot() (the WAL and transport are CRC-checked), so it aborts the
  // process rather than continue from a state that differs from the other replicas.
  void restore(std::string_view data);
  // As restore(), but reports a malformed image by returning false and keeping the state.
  bool try_restore(std::string_view data);

  const ClusterState& state() const { return state_; }
  std::uint64_t last_index() const { return last_index_; }

  // Deltas with revision > `revision`, oldest first, for resuming a watch. Empty when
  // `revision` >= the current revision; nullopt when some of them are no longer kept (the
  // watcher then needs a full snapshot).
  std::optional<std::vector<Delta>> deltas_since(std::uint64_t revision) const;

 private:
  ClusterState state_;
  std::uint64_t last_index_ = 0;
  std::size_t history_limit_;
  std::deque<Delta> history_;  // contiguous revisions, the newest last
};

}  // namespace routemesh::discovery::store
