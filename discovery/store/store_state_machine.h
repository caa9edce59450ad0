#pragma once
// StoreStateMachine: the ClusterState behind Raft. Pure (no Asio, no I/O): it has exactly the
// methods of raft::StateMachine (discovery/raft/raft_node.h) and is plugged into a RaftNode
// through RaftStateMachine (raft_state_machine.h), which keeps Asio headers out of this core.
//
// Threading: the control thread only (the RaftNode's executor), like the driver that calls it.

#include "discovery/model/state_index.h"
#include "discovery/store/types.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace routemesh::discovery::store {

class StoreStateMachine {
 public:
  static constexpr std::size_t kDefaultHistory = 4096;
  // Request keys remembered with their outcome. Part of the replicated state machine: every
  // replica must use the same number, so only unit tests pass another one.
  static constexpr std::size_t kRequestKeys = 10000;

  // Starts from initial_state(). `history`: how many applied commands deltas_since() keeps.
  // Applying a command costs what it touches (state_machine.h apply with the state's index),
  // not a pass over the state; snapshot() and restore() are O(n).
  explicit StoreStateMachine(std::size_t history = kDefaultHistory,
                             std::size_t request_keys = kRequestKeys);

  // raft::StateMachine::apply: decodes the entry bytes (commands.h decode_entry), applies the
  // command and returns encode_result() bytes. `index` is the Raft log index (strictly
  // increasing); a malformed or rejected command changes nothing and is not recorded as a
  // delta. An entry with a request key:
  //  - a key seen before with the same fingerprint is not applied again: the answer is the
  //    first command's result bytes, byte for byte (counted by replayed());
  //  - a key seen before with another fingerprint is rejected as key_reused (and the key keeps
  //    its first outcome);
  //  - otherwise the command is applied and its result, rejection or not, is remembered under
  //    the key; beyond `request_keys` keys the oldest is forgotten.
  // Never throws.
  std::string apply(std::uint64_t index, std::string_view data);

  // raft::StateMachine::snapshot: {"state": the state's JSON (state_json.h),
  // "requests": [{"key","fingerprint","result"}...] oldest first}.
  std::string snapshot() const;

  // raft::StateMachine::restore: replaces the state and the request keys with a snapshot()
  // image (or an image of only the state's JSON, as written before request keys existed) and
  // forgets the delta history (deltas_since then answers nullopt for older revisions). A
  // malformed image cannot come from snapshot() (the WAL and transport are CRC-checked), so it
  // aborts the process rather than continue from a state that differs from the other replicas.
  void restore(std::string_view data);
  // As restore(), but reports a malformed image by returning false and keeping the state.
  bool try_restore(std::string_view data);

  const ClusterState& state() const { return state_; }
  // The index of state() that apply() keeps in step (for tests and readers that need lookups).
  const StateIndex& index() const { return index_; }
  std::uint64_t last_index() const { return last_index_; }

  // Commands answered from a request key's first outcome instead of being applied, since
  // this object was made (not replicated: a counter for metrics).
  std::uint64_t replayed() const { return replayed_; }
  // How many request keys are remembered, and the first outcome of one (encode_result bytes).
  std::size_t request_key_count() const { return keys_.size(); }
  std::optional<std::string> request_outcome(std::string_view key) const;

  // Deltas with revision > `revision`, oldest first, for resuming a watch. Empty when
  // `revision` >= the current revision; nullopt when some of them are no longer kept (the
  // watcher then needs a full snapshot).
  std::optional<std::vector<Delta>> deltas_since(std::uint64_t revision) const;

 private:
  struct Outcome {
    std::string fingerprint;
    std::string result;  // encode_result bytes of the first command with this key
  };

  void remember(const RequestKey& request, std::string result);

  ClusterState state_;
  StateIndex index_;  // of state_, kept in step by apply(), rebuilt by restore()
  std::uint64_t last_index_ = 0;
  std::size_t history_limit_;
  std::deque<Delta> history_;  // contiguous revisions, the newest last
  std::size_t key_limit_;
  std::unordered_map<std::string, Outcome> outcomes_;  // by request key
  std::deque<std::string> keys_;                       // the same keys, oldest first
  std::uint64_t replayed_ = 0;
};

}  // namespace routemesh::discovery::store
