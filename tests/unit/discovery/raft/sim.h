#pragma once
// Deterministic Raft simulator for tests (etcd rafttest-style): N RaftCores, simulated
// storage that keeps only what a Ready asked to persist and was "fsynced", a state machine
// that is a hash chain of applied entries, and a Checker that verifies the Raft safety
// properties (paper figure 3) after every step. No sockets, no clocks, no threads.

#include "discovery/raft/raft_core.h"

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

// splitmix64; every random decision of a simulation comes from one of these.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  std::uint64_t state_;
};

std::uint64_t mix(std::uint64_t h, std::uint64_t v);
std::uint64_t entry_hash(const Entry& e);
Bytes bytes_of(const std::string& s);
std::string string_of(const Bytes& b);

// What survived on "disk". save() applies the records of a Ready in WAL order
// (snapshot, entries one by one, hard state); `keep` < record count models a crash before
// fsync that lost the unsynced tail (a torn write keeps a prefix).
struct Storage {
  HardState hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;
  ConfState bootstrap;

  InitialState initial_state() const;
  static std::size_t record_count(const Ready& rd);
  void save(const Ready& rd, std::size_t keep);
  void compact(const Snapshot& s);
};

struct SimNode {
  NodeId id = kNoNode;
  Config config;
  Storage storage;
  std::unique_ptr<RaftCore> core;
  bool up = true;
  Index sm_index = 0;         // state machine: last applied index
  std::uint64_t sm_hash = 0;  // and hash chain over applied entries
  std::vector<ReadState> read_states;
  std::vector<Entry> applied;  // applied normal entries since the last restart (tests)

  void restart();  // new core from storage; the state machine reloads the snapshot
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
  // Runs the Ready loop of one node: persist (keep = record count for a clean fsync), then
  // collect messages, apply committed entries, advance. Returns the messages to send. With
  // `crash_keep` set, the node crashes after persisting only that many records.
  std::vector<Message> process_ready(NodeId id, std::optional<std::size_t> crash_keep = {});
  void crash(NodeId id);
  void restart(NodeId id);
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
};
SimulationResult run_simulation(std::uint64_t seed);

}  // namespace routemesh::discovery::raft::sim
