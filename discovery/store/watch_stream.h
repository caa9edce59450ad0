#pragma once
// The lines of GET /v1/watch (served by discovery/manager/api.h, followed by
// discovery/agent/watch_client.h), pure: splitting the NDJSON body into lines and applying them
// to a local replica of the ClusterState with the SAME store::apply the managers' state machines
// use, so a worker ends in the same state (VIPs included). No I/O; unit-tested in
// tests/unit/discovery/store/.
//
// Lines: {"type":"snapshot","revision":R,"state":{...}} (replaces the replica; sent first for
// from=0 or a revision the manager no longer has deltas for, and again whenever the manager
// cannot continue with deltas), {"type":"delta","revision":R,"command":{...}} (exactly the
// next revision), {"type":"ping"}.

#include "discovery/model/state_index.h"
#include "discovery/model/types.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace routemesh::discovery::store {

// Collects bytes and hands out complete lines (without the '\n'; a trailing '\r' is dropped).
class LineSplitter {
 public:
  // A line longer than this is an error (a state image of a big cluster fits easily).
  static constexpr std::size_t kMaxLine = 64 * 1024 * 1024;

  void feed(std::string_view data) { buffer_.append(data); }
  // The next complete line, or nullopt when none is buffered yet.
  std::optional<std::string> next_line();
  bool overflow() const { return buffer_.size() > kMaxLine; }
  void clear() {
    buffer_.clear();
    offset_ = 0;
  }

 private:
  std::string buffer_;
  std::size_t offset_ = 0;
};

enum class WatchEvent { snapshot, delta, ping };

class WatchReplica {
 public:
  WatchReplica();

  const ClusterState& state() const { return state_; }
  // False until the first snapshot (deltas need a base).
  bool has_state() const { return has_state_; }
  std::uint64_t revision() const { return state_.revision; }

  // Applies one line. Errors (the replica is unchanged, the stream should be dropped):
  // malformed JSON or unknown type, a snapshot whose state does not decode, a delta before
  // any snapshot, a delta that is not exactly revision()+1 ("gap"), or one that apply()
  // rejects or that lands on another revision (divergence: resync with a snapshot).
  std::variant<WatchEvent, std::string> apply_line(std::string_view line);

  // Forgets the state (next connection asks for a snapshot: from=0).
  void reset();

 private:
  ClusterState state_;
  StateIndex index_;  // of state_: a delta costs what it changes
  bool has_state_ = false;
};

}  // namespace routemesh::discovery::store
