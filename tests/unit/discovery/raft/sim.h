#pragma once
// Deterministic Raft simulator for tests (etcd rafttest-style): N RaftCores, each persisting
// through the real WAL (wal.h) and codec over a fault-injecting in-memory file system
// (fault_fs.h: unsynced writes lost or torn on a crash, fsync errors stop the node), a state
// machine that is a hash chain of applied entries, and a Checker that verifies the Raft safety
// properties (paper figure 3) after every step. No sockets, no clocks, no threads.

#include "discovery/raft/raft_core.h"
#include "discovery/raft/wal.h"
#include "tests/unit/discovery/raft/fault_fs.h"
#include "tests/unit/discovery/raft/sim_rng.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace routemesh::discovery::raft::sim {

std::uint64_t mix(std::uint64_t h, std::uint64_t v);
std::uint64_t entry_hash(const Entry& e);
Bytes bytes_of(const std::string& s);
std::string string_of(const Bytes& b);

// A crash while persisting a Ready: the process dies inside the fdatasync of its WAL record;
// `keep_bytes` of the unsynced write survive (nullopt: a random torn write, see FaultFs).
struct CrashInSync {
  std::optional<std::size_t> keep_bytes;
};

struct SimNode {
  NodeId id = kNoNode;
  Config config;
  std::unique_ptr<FaultFs> fs;  // this node's disk: survives crashes
  std::string dir;              // its WAL directory on `fs`
  std::uint64_t segment_bytes = 64 << 10;
  std::unique_ptr<LogStorage> wal;  // null while down
  std::unique_ptr<RaftCore> core;   // null while down
  bool up = true;
  Index sm_index = 0;         // state machine: last applied index
  std::uint64_t sm_hash = 0;  // and hash chain over applied entries
  std::vector<ReadState> read_states;
  std::vector<Entry> applied;  // applied normal entries since the last restart (tests)

  // Opens the WAL and builds a new core from what it read; the state machine reloads the
  // snapshot. False when the node could not start: it died again while opening (an fsync
  // error), or the WAL refused (then `problem` says why).
  bool restart(std::string* problem);
  // Stops the process: the WAL and core are dropped and the disk keeps what a crash keeps.
  void crash(std::optional<std::size_t> keep_bytes = std::nullopt);
};

// Safety properties, checked incrementally (each check is O(new facts)).
class Checker {
 public:
  // Log Matching (§5.3): an (index, term) pair identifies the entry AND its predecessor's
  // term; by induction two logs agreeing on (i, t) agree on every entry up to i.
  void on_new_entries(NodeId node, const RaftCore& core, const std::vector<Entry>& entries);
  // State Machine Safety (§5.4.3): no two nodes apply different entries at one index.
  void on_apply(NodeId node, Index index, std::uint64_t chain_hash);
  // Election Safety, committed-prefix agreement and Leader Completeness (§5.4).
  void on_state(const std::map<NodeId, SimNode>& nodes);
  void on_restart(NodeId node) { checked_commit_.erase(node); }

  bool ok() const { return failure_.empty(); }
  const std::string& failure() const { return failure_; }
  Index max_committed() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }
  void fail(const std::string& why);

 private:
  std::string failure_;
  std::map<Term, NodeId> leaders_;
  std::map<std::pair<Index, Term>, std::pair<std::uint64_t, Term>> log_facts_;
  std::map<Index, std::pair<Term, std::uint64_t>> committed_;  // index -> (term, entry hash)
  std::map<Index, std::uint64_t> applied_chain_;
  std::map<NodeId, Index> checked_commit_;
  std::set<std::pair<NodeId, Term>> checked_leaders_;
};

struct ClusterOptions {
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  std::size_t max_entries_per_append = 64;
  std::size_t max_inflight = 16;
  std::uint64_t seed = 1;
  std::uint64_t segment_bytes = 64 << 10;  // small segments exercise rotation and deletion
  double sync_error_rate = 0;              // per fdatasync: EIO, and the node stops
};

// A set of nodes plus the Ready loop. Delivery policy is the caller's: deliver_all() is the
// FIFO, lossless-except-for-cuts network used by scenario tests.
class Cluster {
 public:
  Cluster(std::vector<NodeId> voters, std::vector<NodeId> learners, ClusterOptions opts);

  SimNode& node(NodeId id) { return nodes_.at(id); }
  RaftCore& core(NodeId id) { return *nodes_.at(id).core; }
  const std::map<NodeId, SimNode>& nodes() const { return nodes_; }
  Checker& checker() { return checker_; }
  const Checker& checker() const { return checker_; }

  // Adds a node that is not in the cluster yet (empty membership), e.g. a future learner.
  void add_node(NodeId id);
  // Runs the Ready loop of one node: persist (one WAL record, one fdatasync), then collect
  // messages, apply committed entries, advance. Returns the messages to send. With `crash`
  // set, the node dies inside the fdatasync of its next Ready (also when an fsync error
  // stops it).
  std::vector<Message> process_ready(NodeId id, std::optional<CrashInSync> crash = {});
  // The same loop in two halves, as a driver that persists on a thread of its own runs it
  // (raft_node.cc's WAL thread): begin_ready takes the node's next Ready (nullopt: none, or
  // the node is down); finish_ready persists it (with `crash`, the node dies in its
  // fdatasync), applies it and advances, and returns its messages. In between, the core takes
  // messages, ticks and proposals as usual; they go into the next Ready.
  std::optional<Ready> begin_ready(NodeId id);
  std::vector<Message> finish_ready(NodeId id, Ready rd, std::optional<CrashInSync> crash = {});
  void crash(NodeId id, std::optional<std::size_t> keep_bytes = std::nullopt);
  // False when the node stays down (see SimNode::restart); a WAL that refuses to open after
  // a crash is a checker failure.
  bool restart(NodeId id);
  void check();

  // Scenario-test network: deliver everything (FIFO) until quiet, dropping cut links.
  void deliver_all();
  void send(std::vector<Message> msgs);
  void tick(NodeId id, int n = 1);
  void tick_all(int n = 1);
  void isolate(NodeId id);
  void cut(NodeId a, NodeId b);
  void heal();
  bool connected(NodeId a, NodeId b) const;
  // The up node that is leader in the highest term, or kNoNode.
  NodeId leader() const;
  // Snapshot node `id`'s state machine at its applied index, save it, compact the core.
  Status compact(NodeId id);

  // Scenario tests: messages for which this returns true are dropped by deliver_all().
  std::function<bool(const Message&)> drop_if;
  // Scenario tests: when this returns a value for a node's Ready, the node crashes while
  // persisting it.
  std::function<std::optional<CrashInSync>(NodeId, const Ready&)> crash_in_ready_if;

 private:
  ClusterOptions opts_;
  std::map<NodeId, SimNode> nodes_;
  Checker checker_;
  std::deque<Message> queue_;
  std::set<std::pair<NodeId, NodeId>> cuts_;
  std::uint64_t restarts_ = 0;
};

// Randomized simulation of one seed; returns "" on success or a description of the first
// violated property.
struct SimulationResult {
  std::string failure;
  std::size_t proposals_acked = 0;
  std::size_t leaders_elected = 0;
  std::size_t crashes = 0;
  std::size_t snapshots_installed = 0;
  std::size_t reads_checked = 0;
  std::size_t conf_changes = 0;
  std::size_t torn_writes = 0;             // crashes that left part of an unsynced write on disk
  std::size_t sync_errors = 0;             // fdatasync failures (each stopped its node)
  std::size_t removed_running = 0;         // removed voters left running
  std::size_t steps_while_persisting = 0;  // messages and ticks a core took between ready()
                                           // and advance() (async persistence)
};
SimulationResult run_simulation(std::uint64_t seed);

}  // namespace routemesh::discovery::raft::sim
