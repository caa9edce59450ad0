#include "discovery/raft/progress.h"

#include <algorithm>

namespace routemesh::discovery::raft {

void Progress::become_probe() {
  // After a snapshot the follower has at least the snapshot: probe right after it.
  if (state == ProgressState::snapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::probe;
  probe_sent = false;
  pending_snapshot = 0;
  inflight.clear();
}

void Progress::become_replicate() {
  next = match + 1;
  state = ProgressState::replicate;
  probe_sent = false;
  pending_snapshot = 0;
  inflight.clear();
}

void Progress::become_snapshot(Index snap_index) {
  state = ProgressState::snapshot;
  pending_snapshot = snap_index;
  snapshot_ticks = 0;
  probe_sent = false;
  inflight.clear();
}

bool Progress::maybe_update(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::maybe_decrease_to(Index rejected, Index match_hint) {
  if (state == ProgressState::replicate) {
    // A rejection of an index we already know matches is a reordered, stale answer.
    if (rejected <= match) {
      return false;
    }
    next = match + 1;
    return true;
  }
  // probe/snapshot: only the answer to the last probe counts.
  if (next == 0 || next - 1 != rejected) {
    return false;
  }
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::is_paused(std::size_t max_inflight) const {
  switch (state) {
    case ProgressState::probe:
      return probe_sent;
    case ProgressState::replicate:
      return inflight.size() >= max_inflight;
    case ProgressState::snapshot:
      return true;
  }
  return true;
}

void Progress::free_inflight_to(Index n) {
  while (!inflight.empty() && inflight.front() <= n) {
    inflight.pop_front();
  }
}

}  // namespace routemesh::discovery::raft
