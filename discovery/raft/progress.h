#pragma once
// Progress: the leader's view of one follower's log (paper figure 2 nextIndex/matchIndex),
// with etcd's flow-control states:
//   probe     — next is a guess; at most one AppendEntries in flight until it is answered
//               (§5.3 "decrement nextIndex and retry");
//   replicate — the follower is known to match; appends are pipelined optimistically up to
//               `max_inflight` unacknowledged messages;
//   snapshot  — the entries it needs are compacted; an InstallSnapshot is in flight (§7).

#include "discovery/raft/types.h"

#include <cstddef>
#include <deque>

namespace routemesh::discovery::raft {

enum class ProgressState : std::uint8_t { probe, replicate, snapshot };

struct Progress {
  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::probe;
  bool probe_sent = false;     // probe: a message is in flight, wait for its answer
  Index pending_snapshot = 0;  // snapshot: index of the snapshot sent
  int snapshot_ticks = 0;      // snapshot: ticks since it was sent (retry on loss)
  bool recent_active = false;  // heard from since the last check-quorum round (§6.2)
  std::uint64_t read_ack = 0;  // highest ReadIndex round acknowledged (§6.4)
  std::deque<Index> inflight;  // last index of each unacknowledged append (replicate)

  void become_probe();
  void become_replicate();
  void become_snapshot(Index snap_index);
  // An accepting append_resp for `n`. Returns whether match advanced.
  bool maybe_update(Index n);
  // A rejecting append_resp for prev index `rejected`, with the follower's hint. Returns false
  // when the rejection is stale (answers an older message) and must be ignored.
  bool maybe_decrease_to(Index rejected, Index match_hint);
  bool is_paused(std::size_t max_inflight) const;
  void free_inflight_to(Index n);
};

}  // namespace routemesh::discovery::raft
