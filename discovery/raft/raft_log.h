#pragma once
// RaftLog: the core's view of the replicated log, split like etcd's raftLog/unstable into
//  - a stable part: what storage already holds durably (given at construction, then extended
//    by RaftCore::advance), and
//  - an unstable part: entries (and at most one received snapshot) the driver still has to
//    persist; they are handed out in Ready and become stable on advance().
// The core keeps every entry after the last snapshot in memory; compact() drops a prefix.
// Pure value code: no I/O. Not thread-safe (owned by one RaftCore).

#include "discovery/raft/types.h"

#include <cstddef>
#include <optional>
#include <vector>

namespace routemesh::discovery::raft {

class RaftLog {
 public:
  // `snapshot` may be empty (index 0). `entries` must be contiguous and start right after the
  // snapshot; `commit` must lie within [snapshot index, last entry].
  RaftLog(std::optional<Snapshot> snapshot, std::vector<Entry> entries, Index commit);

  Index first_index() const { return snapshot_.meta.index + 1; }
  Index last_index() const { return snapshot_.meta.index + entries_.size(); }
  Term last_term() const;
  // Term of the entry at `i`; the snapshot's own index answers with the snapshot term.
  // nullopt when compacted away (i < snapshot index) or beyond the last entry.
  std::optional<Term> term(Index i) const;
  bool match_term(Index i, Term t) const;
  const Entry& at(Index i) const;  // first_index() <= i <= last_index()

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  const Snapshot& snapshot() const { return snapshot_; }

  // §5.4.1 election restriction: is (last_index, last_term) at least as up-to-date as ours?
  bool is_up_to_date(Index last_index, Term last_term) const;

  // Follower side of AppendEntries (§5.3). If our log has (prev_index, prev_term), appends
  // `entries` (truncating a conflicting suffix, never a committed entry), advances commit to
  // min(commit, last new index) and returns that last new index; nullopt otherwise.
  std::optional<Index> maybe_append(Index prev_index, Term prev_term, Index commit,
                                    const std::vector<Entry>& entries);
  // Leader side: appends at the end (entries must continue the log). Returns the last index.
  Index append(const std::vector<Entry>& entries);

  // Largest index <= i whose term is <= t (etcd's findConflictByTerm); used for the
  // rejection hint of §5.3's "decrement nextIndex" optimisation.
  Index find_conflict_by_term(Index i, Term t) const;

  // Is any entry in [lo, hi] (clamped to what the log holds) a conf change?
  bool has_conf_change(Index lo, Index hi) const;

  // Entries [lo, hi) capped at max_count; lo must be >= first_index().
  std::vector<Entry> slice(Index lo, Index hi, std::size_t max_count) const;

  void commit_to(Index i);
  // §5.4.2: commit `i` only if its term is the leader's current term.
  bool maybe_commit(Index i, Term current_term);

  // Unstable parts handed to the driver.
  std::vector<Entry> unstable_entries() const;
  bool has_unstable_entries() const { return unstable_from_ <= last_index(); }
  Index unstable_from() const { return unstable_from_; }
  const std::optional<Snapshot>& unstable_snapshot() const { return pending_snapshot_; }
  std::vector<Entry> next_committed_entries() const;  // (applied, committed]
  bool has_next_committed_entries() const { return committed_ > applied_; }

  // Called on advance(): entries up to (i, t) and the snapshot at `snap_index` are durable;
  // entries up to `applied` are applied.
  void stable_to(Index i, Term t);
  void stable_snapshot_to(Index snap_index);
  void applied_to(Index i);

  // Replaces the whole log with a received snapshot (InstallSnapshot, §7): it becomes unstable
  // until persisted; commit and applied jump to its index.
  void restore(Snapshot snapshot);
  // Drops entries <= snapshot.meta.index (which must be applied and persisted). The snapshot
  // was persisted by the driver already, so it is stable.
  void compact(Snapshot snapshot);

 private:
  Snapshot snapshot_;                         // latest snapshot (stable or pending)
  std::optional<Snapshot> pending_snapshot_;  // received, not yet persisted
  std::vector<Entry> entries_;                // indices snapshot_.meta.index+1 ...
  Index unstable_from_ = 1;                   // first index not yet persisted
  Index committed_ = 0;
  Index applied_ = 0;
};

}  // namespace routemesh::discovery::raft
