#pragma once
// RaftCore: a pure, deterministic Raft state machine in the style of etcd-io/raft's
// raft.go/rawnode.go and ScyllaDB's raft::fsm. It does no I/O, reads no clock, starts no
// thread and takes its randomness from Config::seed. Inputs: step(message), tick(),
// propose(...), read_index(...), transfer_leadership(...), compact(...). Output: a Ready value
// (types.h) that the driver executes and then acknowledges with advance().
//
// Threading: a RaftCore is owned by one thread (the consensus loop); it is not thread-safe.
// Errors: operations that can be refused return a Status (never throw). Broken invariants
// (corrupt storage, a conflict with a committed entry) abort via RM_CHECK.
//
// Membership changes are single-server (thesis §4.1), one at a time, and take effect when
// the conf_change entry COMMITS (like etcd), on every node, inside the core. See README.md.

#include "discovery/raft/progress.h"
#include "discovery/raft/raft_log.h"
#include "discovery/raft/types.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <variant>
#include <vector>

namespace routemesh::discovery::raft {

enum class errc : std::uint8_t {
  ok = 0,
  not_leader,            // only the leader accepts this; Status::leader_hint names it if known
  transfer_in_progress,  // leadership transfer under way: proposals are refused (§3.10)
  conf_change_pending,   // an earlier membership change has not committed yet (§4.1)
  invalid_conf_change,   // e.g. promote a non-learner, add an existing member, remove last voter
  unknown_node,          // transfer target is not a voter
  compacted,             // compact(): index already covered by the snapshot
  not_applied,           // compact(): index not applied (or not persisted) yet
};

struct Status {
  errc error = errc::ok;
  NodeId leader_hint = kNoNode;  // not_leader: the leader this node believes in, if any
  Index index = 0;               // proposals: index of the appended entry
  Term term = 0;                 // proposals: its term
  bool ok() const { return error == errc::ok; }
};

struct Config {
  NodeId id = kNoNode;
  int election_tick = 10;    // election timeout is randomized in [election_tick, 2*election_tick)
  int heartbeat_tick = 1;    // must be < election_tick
  std::uint64_t seed = 0;    // the only source of randomness
  bool pre_vote = true;      // thesis §9.6
  bool check_quorum = true;  // thesis §6.2: leader steps down without a quorum of contact
  std::size_t max_entries_per_append = 64;
  std::size_t max_inflight = 16;  // pipelined appends per follower in replicate state
};

// What storage holds at start-up. A brand-new cluster member passes the bootstrap membership
// in `conf` (ignored when a snapshot exists); a node joining an existing cluster passes an
// empty `conf` and learns membership from the log or a snapshot.
struct InitialState {
  HardState hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;  // persisted entries after the snapshot
  ConfState conf;
};

// Conf-change entries carry the change and the resulting membership. Encoding is fixed
// little-endian; decode returns nullopt on malformed input.
Bytes encode_conf_change(const ConfChange& cc);
std::optional<ConfChange> decode_conf_change(const Bytes& data);

namespace detail {

struct Follower {
  NodeId leader = kNoNode;
};
struct PreCandidate {
  std::map<NodeId, bool> votes;
};
struct Candidate {
  std::map<NodeId, bool> votes;
};
struct PendingRead {
  std::uint64_t seq = 0;
  ReadState state;
};
struct Leader {
  std::map<NodeId, Progress> progress;  // every voter and learner, self included
  NodeId transferee = kNoNode;
  Index pending_conf_index = 0;  // last conf change (or the term's no-op) appended
  std::uint64_t read_seq = 0;    // ReadIndex rounds
  std::deque<PendingRead> reads;
  std::vector<Bytes> reads_waiting_commit;  // before this term committed an entry (§6.4)
  int heartbeat_elapsed = 0;
};

}  // namespace detail

class RaftCore {
 public:
  RaftCore(const Config& config, InitialState state);

  // Advance logical time by one tick (driver's timer). Followers/candidates may start an
  // election; leaders send heartbeats and run check-quorum.
  void tick();
  // Feed a message received from a peer (m.to must be this node; others are ignored).
  void step(const Message& m);
  // Start an election now, as if the election timer fired (pre-vote first when enabled).
  void campaign();

  // Leader only: append a client command. The entry is committed when it shows up in
  // Ready::committed_entries; Status carries its index/term to match it.
  Status propose(Bytes data);
  // Leader only: one membership change at a time (add_learner -> promote; remove).
  Status propose_conf_change(ConfChangeType type, NodeId node);
  // Leader only: linearizable read point (§6.4 thesis). The answer arrives as a ReadState
  // with the same ctx in a later Ready once a quorum confirmed leadership. Reads are dropped
  // if leadership is lost; callers time out and retry.
  Status read_index(Bytes ctx);
  // Leader only: hand leadership to voter `to` (§3.10 thesis); aborted after an election
  // timeout without success.
  Status transfer_leadership(NodeId to);
  // Driver has durably saved a snapshot of the state machine at applied index `index`:
  // forget entries up to it and use `data` for InstallSnapshot.
  Status compact(Index index, Bytes data);

  // Ready protocol: at most one Ready is outstanding; has_ready() is false until advance().
  bool has_ready() const;
  Ready ready();
  void advance(const Ready& rd);

  NodeId id() const { return config_.id; }
  Term term() const { return term_; }
  Role role() const;
  NodeId leader() const;
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  const ConfState& conf() const { return conf_; }
  const RaftLog& log() const { return log_; }
  bool promotable() const { return conf_.voters.contains(config_.id); }
  // Leader only: the replication progress of `id` (nullptr when not leader or not a member).
  // The driver uses it to wait until a learner caught up before promoting it (thesis §4.2.1).
  const Progress* progress(NodeId id) const { return progress_for_test(id); }
  const Progress* progress_for_test(NodeId id) const;
  NodeId transferee_for_test() const;

 private:
  using RoleState =
      std::variant<detail::Follower, detail::PreCandidate, detail::Candidate, detail::Leader>;
  enum class CampaignKind { pre_vote, election };

  void send(Message m);
  void become_follower(Term term, NodeId leader);
  void become_leader();
  void start_campaign(CampaignKind kind, bool transfer);
  void poll(NodeId from, bool granted);
  void reset_election_timer();
  bool in_lease() const;

  void step_follower(const Message& m);
  void step_candidate(const Message& m);
  void step_leader(const Message& m);
  void handle_vote_request(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_resp(detail::Leader& l, const Message& m);
  void handle_heartbeat_resp(detail::Leader& l, const Message& m);

  void tick_election();
  void tick_leader();
  void append_entries(std::vector<Entry> entries);
  bool send_append(detail::Leader& l, NodeId to, bool send_if_empty);
  void broadcast_append();
  void broadcast_heartbeat();
  bool maybe_commit();
  void register_reads(detail::Leader& l, std::vector<Bytes> ctxs);
  void release_reads(detail::Leader& l);
  std::size_t quorum() const { return conf_.voters.size() / 2 + 1; }

  void apply_conf_up_to_commit();
  void on_conf_changed();
  ConfState conf_at(Index index) const;

  detail::Leader* leader_state() { return std::get_if<detail::Leader>(&role_); }
  std::uint64_t next_random();

  Config config_;
  std::uint64_t rng_state_;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  RaftLog log_;
  ConfState conf_;
  Index conf_applied_ = 0;  // conf_change entries up to here are reflected in conf_
  // This node applied the change that removed it. Not the same as "not in conf_": a new node
  // whose log does not reach its own addition yet is not in conf_ either, and must still vote.
  bool removed_ = false;
  RoleState role_;
  int election_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  HardState prev_hard_state_;
  bool ready_outstanding_ = false;
};

}  // namespace routemesh::discovery::raft
