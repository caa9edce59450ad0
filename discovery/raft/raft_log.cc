#include "discovery/raft/raft_log.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace routemesh::discovery::raft {

RaftLog::RaftLog(std::optional<Snapshot> snapshot, std::vector<Entry> entries, Index commit)
    : entries_(std::move(entries)) {
  if (snapshot) {
    snapshot_ = std::move(*snapshot);
  }
  for (std::size_t k = 0; k < entries_.size(); ++k) {
    RM_CHECK(entries_[k].index == snapshot_.meta.index + 1 + k,
             "stored entries must be contiguous after the snapshot");
  }
  unstable_from_ = last_index() + 1;
  // A persisted commit beyond the persisted log means storage lost entries it acknowledged.
  RM_CHECK(commit <= last_index(), "persisted commit index beyond the persisted log");
  committed_ = std::max(commit, snapshot_.meta.index);
  applied_ = snapshot_.meta.index;
}

Term RaftLog::last_term() const {
  return entries_.empty() ? snapshot_.meta.term : entries_.back().term;
}

std::optional<Term> RaftLog::term(Index i) const {
  if (i == snapshot_.meta.index) {
    return snapshot_.meta.term;
  }
  if (i < snapshot_.meta.index || i > last_index()) {
    return std::nullopt;
  }
  return entries_[i - first_index()].term;
}

bool RaftLog::match_term(Index i, Term t) const {
  auto got = term(i);
  return got && *got == t;
}

const Entry& RaftLog::at(Index i) const {
  RM_CHECK(i >= first_index() && i <= last_index(), "log index out of range");
  return entries_[i - first_index()];
}

bool RaftLog::is_up_to_date(Index idx, Term t) const {
  // §5.4.1: compare last terms first, then lengths.
  return t > last_term() || (t == last_term() && idx >= last_index());
}

std::optional<Index> RaftLog::maybe_append(Index prev_index, Term prev_term, Index commit,
                                           const std::vector<Entry>& entries) {
  if (!match_term(prev_index, prev_term)) {
    return std::nullopt;
  }
  Index last_new = prev_index + entries.size();
  // §5.3: "If an existing entry conflicts with a new one (same index but different terms),
  // delete the existing entry and all that follow it". Entries we already have are skipped so
  // a delayed, shorter AppendEntries never truncates a longer matching log.
  std::size_t k = 0;
  for (; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    if (e.index <= snapshot_.meta.index) {
      continue;  // compacted, hence committed, hence matching (Log Matching, §5.3)
    }
    if (!match_term(e.index, e.term)) {
      break;
    }
  }
  if (k < entries.size()) {
    Index conflict = entries[k].index;
    RM_CHECK(conflict > committed_, "AppendEntries conflicts with a committed entry");
    if (conflict <= last_index()) {
      entries_.resize(conflict - first_index());
    }
    unstable_from_ = std::min(unstable_from_, conflict);
    entries_.insert(entries_.end(), entries.begin() + static_cast<std::ptrdiff_t>(k),
                    entries.end());
  }
  // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
  commit_to(std::min(commit, last_new));
  return last_new;
}

Index RaftLog::append(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    RM_CHECK(e.index == last_index() + 1, "leader append must continue the log");
    entries_.push_back(e);
  }
  return last_index();
}

Index RaftLog::find_conflict_by_term(Index i, Term t) const {
  i = std::min(i, last_index());
  while (i > snapshot_.meta.index) {
    auto got = term(i);
    if (got && *got <= t) {
      break;
    }
    --i;
  }
  return i;
}

std::vector<Entry> RaftLog::slice(Index lo, Index hi, std::size_t max_count) const {
  RM_CHECK(lo >= first_index(), "slice of compacted entries");
  hi = std::min(hi, last_index() + 1);
  std::vector<Entry> out;
  for (Index i = lo; i < hi && out.size() < max_count; ++i) {
    out.push_back(entries_[i - first_index()]);
  }
  return out;
}

void RaftLog::commit_to(Index i) {
  if (i > committed_) {
    RM_CHECK(i <= last_index(), "commit beyond the last log index");
    committed_ = i;
  }
}

bool RaftLog::maybe_commit(Index i, Term current_term) {
  if (i > committed_ && match_term(i, current_term)) {
    commit_to(i);
    return true;
  }
  return false;
}

bool RaftLog::has_conf_change(Index lo, Index hi) const {
  for (Index i = std::max(lo, first_index()); i <= std::min(hi, last_index()); ++i) {
    if (entries_[i - first_index()].type == EntryType::conf_change) {
      return true;
    }
  }
  return false;
}

std::vector<Entry> RaftLog::unstable_entries() const {
  std::vector<Entry> out;
  for (Index i = std::max(unstable_from_, first_index()); i <= last_index(); ++i) {
    out.push_back(entries_[i - first_index()]);
  }
  return out;
}

std::vector<Entry> RaftLog::next_committed_entries() const {
  std::vector<Entry> out;
  for (Index i = std::max(applied_ + 1, first_index()); i <= committed_; ++i) {
    out.push_back(entries_[i - first_index()]);
  }
  return out;
}

void RaftLog::stable_to(Index i, Term t) {
  // Only if the entry is still the one that was handed out: a conflicting append between
  // ready() and advance() may have replaced it, and the replacement is not durable yet.
  if (i >= unstable_from_ && match_term(i, t)) {
    unstable_from_ = i + 1;
  }
}

void RaftLog::stable_snapshot_to(Index snap_index) {
  if (pending_snapshot_ && pending_snapshot_->meta.index == snap_index) {
    pending_snapshot_.reset();
  }
}

void RaftLog::applied_to(Index i) {
  if (i > applied_) {
    RM_CHECK(i <= committed_, "applied beyond commit");
    applied_ = i;
  }
}

void RaftLog::restore(Snapshot snapshot) {
  snapshot_ = std::move(snapshot);
  pending_snapshot_ = snapshot_;
  entries_.clear();
  unstable_from_ = snapshot_.meta.index + 1;
  committed_ = snapshot_.meta.index;
  applied_ = snapshot_.meta.index;
}

void RaftLog::compact(Snapshot snapshot) {
  Index idx = snapshot.meta.index;
  RM_CHECK(idx > snapshot_.meta.index && idx <= applied_ && idx < unstable_from_,
           "compaction point must be applied and persisted");
  RM_CHECK(match_term(idx, snapshot.meta.term), "snapshot term disagrees with the log");
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<std::ptrdiff_t>(idx - snapshot_.meta.index));
  snapshot_ = std::move(snapshot);
}

}  // namespace routemesh::discovery::raft
