#pragma once
// Value types of the Raft consensus core (HAProxy "-t.h" idea: values only, no behaviour).
// Wire/disk encodings are the driver's business; these are the in-memory shapes the pure
// core (raft_core.h) consumes and produces.

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

namespace routemesh::discovery::raft {

using NodeId = std::uint64_t;
using Term = std::uint64_t;
using Index = std::uint64_t;
using Bytes = std::vector<std::uint8_t>;

// 0 is never a valid node id: it means "nobody" (no vote, no known leader).
inline constexpr NodeId kNoNode = 0;

enum class EntryType : std::uint8_t {
  normal,       // client command, opaque to Raft
  noop,         // appended by a new leader at the start of its term (Raft paper §8)
  conf_change,  // data = encode_conf_change(...) (raft_core.h)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::normal;
  Bytes data;
  bool operator==(const Entry&) const = default;
};

// What must be durable before any message that depends on it is sent (Raft paper figure 2,
// "persistent state on all servers"). `commit` is persisted too so a restart does not have to
// relearn it (etcd does the same); it is safe to lose because it can be relearned.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;
  bool operator==(const HardState&) const = default;
};

// Cluster membership. Voters count for elections and commit; learners only receive the log
// (thesis §4.2.1 "catch up new servers" as non-voting members).
struct ConfState {
  std::set<NodeId> voters;
  std::set<NodeId> learners;
  bool operator==(const ConfState&) const = default;
};

struct SnapshotMeta {
  Index index = 0;  // last entry covered by the snapshot
  Term term = 0;    // its term
  ConfState conf;   // membership as of `index`
  bool operator==(const SnapshotMeta&) const = default;
};

struct Snapshot {
  SnapshotMeta meta;
  Bytes data;  // opaque state-machine image
  bool operator==(const Snapshot&) const = default;
};

enum class ConfChangeType : std::uint8_t { add_learner, promote, remove };

struct ConfChange {
  ConfChangeType type = ConfChangeType::add_learner;
  NodeId node = kNoNode;
  // Membership after the change. Carried in the entry so that a node replaying the log from
  // scratch (a new learner) learns the full configuration, not only the delta.
  ConfState result;
  bool operator==(const ConfChange&) const = default;
};

enum class MessageType : std::uint8_t {
  pre_vote,        // thesis §9.6; term = candidate's term + 1, term not yet incremented
  pre_vote_resp,   //
  vote,            // RequestVote (paper §5.2)
  vote_resp,       //
  append,          // AppendEntries (paper §5.3)
  append_resp,     // also acknowledges an installed snapshot
  heartbeat,       // empty AppendEntries carrying commit and a ReadIndex round (thesis §6.4)
  heartbeat_resp,  //
  snapshot,        // InstallSnapshot (paper §7)
  timeout_now,     // leadership transfer (thesis §3.10)
};

// One tagged struct for every message (etcd's raftpb.Message shape): fields not used by a
// type stay zero. Meaning of the overloaded fields per type:
//   pre_vote/vote:      index, log_term = candidate's last log index/term; transfer = sent
//                       because of timeout_now (bypasses the leader lease).
//   *_resp to votes:    reject = vote not granted.
//   append:             index, log_term = prev log index/term; entries; commit.
//   append_resp:        accept: index = highest index known to match the leader.
//                       reject: index = the rejected prev index, reject_hint/log_term = the
//                       follower's guess of the last matching index and its term.
//   heartbeat:          commit (capped at the follower's match); read_seq = latest ReadIndex
//                       round of the leader.  heartbeat_resp: read_seq echoed.
//   snapshot:           snapshot.
struct Message {
  MessageType type = MessageType::append;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term log_term = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;
  std::uint64_t read_seq = 0;
  bool transfer = false;
  std::optional<Snapshot> snapshot;
  bool operator==(const Message&) const = default;
};

// A linearizable read point (thesis §6.4): once the state machine has applied `index`, a read
// tagged `ctx` may be served locally.
struct ReadState {
  Index index = 0;
  Bytes ctx;
  bool operator==(const ReadState&) const = default;
};

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };

// What the driver must do, in this order (see README.md "Ready contract"):
//   1. if `must_sync`: persist `snapshot` (if any), then `entries` (entries replace every
//      persisted entry with index >= entries.front().index), then `hard_state` (if any) — and
//      fsync; otherwise persist nothing (the Ready changes only a commit index that may be lost);
//   2. send `messages`;
//   3. apply `snapshot` (if any) and then `committed_entries` to the state machine, and hand
//      `read_states` to the waiting readers once their index is applied;
//   4. call RaftCore::advance(ready).
struct Ready {
  std::optional<HardState> hard_state;  // only when it changed since the last Ready
  std::vector<Entry> entries;           // unstable entries to persist
  std::optional<Snapshot> snapshot;     // received snapshot to persist and apply
  std::vector<Message> messages;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> read_states;
  // Something must be durable before messages go out: entries, a snapshot, a new term or
  // vote, or a commit index that covers a conf change. False when the hard state's commit
  // moved past ordinary entries only (etcd's MustSync).
  bool must_sync = false;
};

}  // namespace routemesh::discovery::raft
