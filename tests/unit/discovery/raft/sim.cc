#include "tests/unit/discovery/raft/sim.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <queue>
#include <sstream>
#include <tuple>

namespace routemesh::discovery::raft::sim {

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  Rng r(h ^ (v * 0xD6E8FEB86659FD93ULL));
  return r.next();
}

std::uint64_t entry_hash(const Entry& e) {
  std::uint64_t h = mix(e.term, e.index);
  h = mix(h, static_cast<std::uint64_t>(e.type));
  for (std::uint8_t b : e.data) {
    h = mix(h, b);
  }
  return h;
}

Bytes bytes_of(const std::string& s) {
  return Bytes(s.begin(), s.end());
}
std::string string_of(const Bytes& b) {
  return std::string(b.begin(), b.end());
}

namespace {

Bytes encode_sm(Index index, std::uint64_t hash) {
  Bytes out;
  for (int k = 0; k < 8; ++k) {
    out.push_back(static_cast<std::uint8_t>(index >> (8 * k)));
  }
  for (int k = 0; k < 8; ++k) {
    out.push_back(static_cast<std::uint8_t>(hash >> (8 * k)));
  }
  return out;
}

std::pair<Index, std::uint64_t> decode_sm(const Bytes& b) {
  if (b.size() != 16) {
    return {0, 0};
  }
  Index index = 0;
  std::uint64_t hash = 0;
  for (int k = 0; k < 8; ++k) {
    index |= static_cast<std::uint64_t>(b[k]) << (8 * k);
    hash |= static_cast<std::uint64_t>(b[8 + k]) << (8 * k);
  }
  return {index, hash};
}

std::string str(const auto&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

bool SimNode::restart(std::string* problem) {
  wal.reset();
  core.reset();
  WalOptions opt;
  opt.segment_bytes = segment_bytes;
  opt.fs = fs.get();
  opt.on_fatal = [](const std::string&) { throw SimulatedCrash{}; };
  try {
    auto opened = open_wal(dir, opt, problem);
    if (!opened) {
      if (problem != nullptr && problem->empty()) {
        *problem = opened.error().message();
      }
      return false;
    }
    StoredState& st = opened->state;
    sm_index = 0;
    sm_hash = 0;
    if (st.snapshot) {
      std::tie(sm_index, sm_hash) = decode_sm(st.snapshot->data);
    }
    InitialState init;
    init.hard_state = st.hard_state;
    init.snapshot = std::move(st.snapshot);
    init.entries = std::move(st.entries);
    if (st.bootstrap) {
      init.conf = st.bootstrap->conf;
    }
    wal = std::move(opened->storage);
    core = std::make_unique<RaftCore>(config, std::move(init));
  } catch (const SimulatedCrash&) {
    crash();
    return false;
  }
  read_states.clear();
  applied.clear();
  return true;
}

void SimNode::crash(std::optional<std::size_t> keep_bytes) {
  core.reset();
  wal.reset();
  fs->crash(keep_bytes);
  up = false;
}

// ---------------------------------------------------------------------------------------------

void Checker::fail(const std::string& why) {
  if (failure_.empty()) {
    failure_ = why;
  }
}

void Checker::on_new_entries(NodeId node, const RaftCore& core, const std::vector<Entry>& ents) {
  for (std::size_t k = 0; k < ents.size(); ++k) {
    const Entry& e = ents[k];
    Term prev = k > 0 ? ents[k - 1].term : core.log().term(e.index - 1).value_or(0);
    auto fact = std::make_pair(entry_hash(e), prev);
    auto [it, inserted] = log_facts_.emplace(std::make_pair(e.index, e.term), fact);
    if (!inserted && it->second != fact) {
      fail(str("log matching (§5.3) violated: node ", node, " has a different entry or prev ",
               "term at index ", e.index, " term ", e.term));
    }
  }
}

void Checker::on_apply(NodeId node, Index index, std::uint64_t chain) {
  auto [it, inserted] = applied_chain_.emplace(index, chain);
  if (!inserted && it->second != chain) {
    fail(str("state machine safety (§5.4.3) violated: node ", node,
             " applied a different history at index ", index));
  }
}

void Checker::on_state(const std::map<NodeId, SimNode>& nodes) {
  for (const auto& [id, n] : nodes) {
    if (!n.up) {
      continue;
    }
    const RaftCore& core = *n.core;
    const RaftLog& log = core.log();
    Index snap = log.snapshot().meta.index;
    // Committed prefixes agree (and feed Leader Completeness below).
    Index from = std::max(checked_commit_.contains(id) ? checked_commit_[id] : 0, snap);
    for (Index i = from + 1; i <= log.committed(); ++i) {
      const Entry& e = log.at(i);
      auto val = std::make_pair(e.term, entry_hash(e));
      auto [it, inserted] = committed_.emplace(i, val);
      if (!inserted && it->second != val) {
        fail(str("committed entries disagree at index ", i, " (node ", id, ")"));
      }
    }
    checked_commit_[id] = log.committed();
    if (core.role() != Role::leader) {
      continue;
    }
    // Election Safety (§5.2): at most one leader per term.
    auto [lt, fresh] = leaders_.emplace(core.term(), id);
    if (!fresh && lt->second != id) {
      fail(str("election safety (§5.2) violated: nodes ", lt->second, " and ", id,
               " both leader in term ", core.term()));
    }
    // Leader Completeness (§5.4): a new leader holds every committed entry.
    if (!checked_leaders_.emplace(id, core.term()).second) {
      continue;
    }
    if (auto it = committed_.find(snap);
        it != committed_.end() && snap > 0 && it->second.first != log.snapshot().meta.term) {
      fail(str("leader ", id, " term ", core.term(), " has a snapshot that disagrees"));
    }
    for (auto it = committed_.upper_bound(snap); it != committed_.end(); ++it) {
      if (it->first > log.last_index() || log.at(it->first).term != it->second.first ||
          entry_hash(log.at(it->first)) != it->second.second) {
        fail(str("leader completeness (§5.4) violated: leader ", id, " term ", core.term(),
                 " lacks committed index ", it->first));
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

Cluster::Cluster(std::vector<NodeId> voters, std::vector<NodeId> learners, ClusterOptions opts)
    : opts_(opts) {
  ConfState conf;
  conf.voters.insert(voters.begin(), voters.end());
  conf.learners.insert(learners.begin(), learners.end());
  std::vector<NodeId> ids(conf.voters.begin(), conf.voters.end());
  ids.insert(ids.end(), conf.learners.begin(), conf.learners.end());
  for (NodeId id : ids) {
    add_node(id);
    SimNode& n = nodes_.at(id);
    n.fs->sync_error_rate = 0;
    n.wal->save_bootstrap(BootstrapState{conf, {}});
    std::string problem;
    if (!n.restart(&problem)) {
      checker_.fail(str("node ", id, " did not start: ", problem));
    }
    n.fs->sync_error_rate = opts_.sync_error_rate;
  }
}

void Cluster::add_node(NodeId id) {
  SimNode n;
  n.id = id;
  n.config.id = id;
  n.config.election_tick = opts_.election_tick;
  n.config.heartbeat_tick = opts_.heartbeat_tick;
  n.config.seed = mix(opts_.seed, id);
  n.config.pre_vote = opts_.pre_vote;
  n.config.check_quorum = opts_.check_quorum;
  n.config.max_entries_per_append = opts_.max_entries_per_append;
  n.config.max_inflight = opts_.max_inflight;
  n.fs = std::make_unique<FaultFs>(mix(opts_.seed, id + 1000));
  n.dir = str("/node-", id);
  n.segment_bytes = opts_.segment_bytes;
  std::string problem;
  if (!n.restart(&problem)) {
    checker_.fail(str("node ", id, " did not start: ", problem));
  }
  // Faults start once the node exists (its bootstrap is written without them).
  n.fs->sync_error_rate = opts_.sync_error_rate;
  nodes_.insert_or_assign(id, std::move(n));
}

std::vector<Message> Cluster::process_ready(NodeId id, std::optional<CrashInSync> crash) {
  std::vector<Message> out;
  while (auto rd = begin_ready(id)) {
    auto msgs = finish_ready(id, std::move(*rd), crash);
    out.insert(out.end(), std::make_move_iterator(msgs.begin()),
               std::make_move_iterator(msgs.end()));
    if (!nodes_.at(id).up) {
      break;
    }
  }
  return out;
}

std::optional<Ready> Cluster::begin_ready(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.up || !it->second.core->has_ready()) {
    return std::nullopt;
  }
  SimNode& n = it->second;
  Ready rd = n.core->ready();
  checker_.on_new_entries(id, *n.core, rd.entries);
  return rd;
}

std::vector<Message> Cluster::finish_ready(NodeId id, Ready rd,
                                           std::optional<CrashInSync> crash_in) {
  std::vector<Message> out;
  SimNode& n = nodes_.at(id);
  if (!n.up) {
    return out;
  }
  std::optional<CrashInSync> crash_now = crash_in;
  if (!crash_now && crash_in_ready_if) {
    crash_now = crash_in_ready_if(id, rd);
  }
  // 1. persist (one record, one fdatasync). A crash inside that fdatasync, or an fsync
  // error (the WAL stops the process), keeps only what the disk kept; nothing was sent
  // or applied.
  bool died = false;
  if (rd.must_sync) {
    n.fs->crash_at_next_sync = crash_now.has_value();
    try {
      n.wal->save(rd.snapshot, rd.entries, rd.hard_state);
    } catch (const SimulatedCrash&) {
      died = true;
    }
    n.fs->crash_at_next_sync = false;
  } else {
    died = crash_now.has_value();
  }
  if (died) {
    n.crash(crash_now ? crash_now->keep_bytes : std::nullopt);
    return out;
  }
  // 2. send
  for (Message& m : rd.messages) {
    out.push_back(std::move(m));
  }
  // 3. apply
  if (rd.snapshot) {
    std::tie(n.sm_index, n.sm_hash) = decode_sm(rd.snapshot->data);
    if (n.sm_index != rd.snapshot->meta.index) {
      checker_.fail(str("node ", id, " got a snapshot whose data does not match its index"));
    }
    checker_.on_apply(id, n.sm_index, n.sm_hash);
  }
  for (const Entry& e : rd.committed_entries) {
    if (e.index != n.sm_index + 1) {
      checker_.fail(str("node ", id, " applies index ", e.index, " after ", n.sm_index));
    }
    n.sm_hash = mix(n.sm_hash, entry_hash(e));
    n.sm_index = e.index;
    checker_.on_apply(id, e.index, n.sm_hash);
    if (e.type == EntryType::normal) {
      n.applied.push_back(e);
    }
  }
  for (ReadState& rs : rd.read_states) {
    n.read_states.push_back(std::move(rs));
  }
  // 4. advance
  n.core->advance(rd);
  return out;
}

void Cluster::crash(NodeId id, std::optional<std::size_t> keep_bytes) {
  nodes_.at(id).crash(keep_bytes);
}

bool Cluster::restart(NodeId id) {
  SimNode& n = nodes_.at(id);
  n.config.seed = mix(n.config.seed, ++restarts_);
  std::string problem;
  if (!n.restart(&problem)) {
    if (!problem.empty()) {
      checker_.fail(str("node ", id, "'s WAL refused to open after a crash: ", problem));
    }
    return false;
  }
  n.up = true;
  checker_.on_restart(id);
  return true;
}

void Cluster::check() {
  checker_.on_state(nodes_);
}

void Cluster::send(std::vector<Message> msgs) {
  for (Message& m : msgs) {
    queue_.push_back(std::move(m));
  }
}

void Cluster::deliver_all() {
  for (int guard = 0; guard < 1000000; ++guard) {
    for (auto& [id, n] : nodes_) {
      send(process_ready(id));
    }
    check();
    if (queue_.empty()) {
      return;
    }
    Message m = std::move(queue_.front());
    queue_.pop_front();
    auto it = nodes_.find(m.to);
    if (it == nodes_.end() || !it->second.up || !connected(m.from, m.to) ||
        (drop_if && drop_if(m))) {
      continue;
    }
    it->second.core->step(m);
  }
  checker_.fail("deliver_all did not quiesce");
}

void Cluster::tick(NodeId id, int n) {
  for (int k = 0; k < n; ++k) {
    if (nodes_.at(id).up) {
      nodes_.at(id).core->tick();
      send(process_ready(id));
      check();
    }
  }
}

void Cluster::tick_all(int n) {
  for (int k = 0; k < n; ++k) {
    for (auto& [id, node] : nodes_) {
      tick(id);
    }
  }
}

void Cluster::isolate(NodeId id) {
  for (auto& [other, n] : nodes_) {
    if (other != id) {
      cut(id, other);
    }
  }
}

void Cluster::cut(NodeId a, NodeId b) {
  cuts_.emplace(a, b);
  cuts_.emplace(b, a);
}

void Cluster::heal() {
  cuts_.clear();
}

bool Cluster::connected(NodeId a, NodeId b) const {
  return !cuts_.contains({a, b});
}

NodeId Cluster::leader() const {
  NodeId best = kNoNode;
  Term best_term = 0;
  for (const auto& [id, n] : nodes_) {
    if (n.up && n.core->role() == Role::leader && n.core->term() >= best_term) {
      best = id;
      best_term = n.core->term();
    }
  }
  return best;
}

Status Cluster::compact(NodeId id) {
  SimNode& n = nodes_.at(id);
  Status st = n.core->compact(n.sm_index, encode_sm(n.sm_index, n.sm_hash));
  if (st.ok()) {
    // The driver's order: the core drops the prefix, then the WAL saves the snapshot (the
    // core forgets nothing durable: a crash before the save restarts from the old log).
    try {
      n.wal->save_snapshot(n.core->log().snapshot());
    } catch (const SimulatedCrash&) {
      n.crash();
    }
  }
  return st;
}

// ---------------------------------------------------------------------------------------------
// Randomized simulation

namespace {

struct Timed {
  std::uint64_t at = 0;
  std::uint64_t seq = 0;
  Message m;
  bool operator>(const Timed& o) const { return std::tie(at, seq) > std::tie(o.at, o.seq); }
};

class Simulation {
 public:
  explicit Simulation(std::uint64_t seed) : rng_(seed), cluster_(make_cluster()) {}

  SimulationResult run();

 private:
  static constexpr std::uint64_t kTickUnits = 10;

  Cluster make_cluster() {
    voters_ = rng_.chance(0.5) ? 3 : 5;
    ClusterOptions o;
    o.seed = rng_.next();
    o.pre_vote = rng_.chance(0.75);
    o.check_quorum = rng_.chance(0.75);
    o.heartbeat_tick = 1 + static_cast<int>(rng_.below(3));
    o.max_inflight = 1 + rng_.below(8);
    o.max_entries_per_append = 1 + rng_.below(16);
    std::vector<NodeId> ids;
    for (NodeId id = 1; id <= voters_; ++id) {
      ids.push_back(id);
    }
    membership_ = rng_.chance(0.3);
    if (membership_) {
      spares_ = {voters_ + 1, voters_ + 2};
    }
    drop_ = static_cast<double>(rng_.below(4)) * 0.05;
    dup_ = static_cast<double>(rng_.below(3)) * 0.03;
    max_delay_ = 1 + rng_.below(30);
    crash_rate_ = rng_.chance(0.5) ? 1.0 / 1500 : 0.0;
    partition_rate_ = rng_.chance(0.6) ? 1.0 / 1500 : 0.0;
    mid_ready_crash_ = rng_.chance(0.5) ? 0.002 : 0.0;
    o.sync_error_rate = rng_.chance(0.25) ? 0.0005 : 0.0;
    o.segment_bytes = std::uint64_t{256} << rng_.below(7);  // 256 B .. 16 KiB
    // A removed voter that keeps running (it never learns of, or ignores, its removal) must
    // not disturb the cluster; without pre-vote it can (see README.md, "Not done yet").
    keep_removed_running_ = o.pre_vote && rng_.chance(0.5);
    duration_ = 3000 + rng_.below(3000);
    // Half the seeds persist as the node does, on a WAL thread: a Ready stays outstanding for
    // a while, and the core takes messages, ticks and proposals before it is advanced.
    async_persist_ = rng_.chance(0.5);
    return Cluster(ids, {}, o);
  }

  // One line per node for a failure message: what each node believes.
  std::string describe_nodes() {
    std::string out;
    for (const auto& [id, n] : cluster_.nodes()) {
      out += str("node ", id, ":");
      if (!n.up) {
        out += " down";
      } else {
        const RaftCore& c = *n.core;
        std::string voters;
        for (NodeId v : c.conf().voters) {
          voters += str(voters.empty() ? "" : ",", v);
        }
        out += str(" role ", static_cast<int>(c.role()), " term ", c.term(), " vote ",
                   c.hard_state().vote, " last ", c.log().last_index(), "/", c.log().last_term(),
                   " commit ", c.log().committed(), " voters {", voters, "}");
      }
      out += str(retired_.contains(id) ? " retired" : "", removed_.contains(id) ? " removed" : "",
                 "; ");
    }
    return out;
  }

  // RM_RAFT_TRACE=1 prints every delivered message to stderr (for one seed, RM_RAFT_SEED).
  std::string describe(const Message& m) const {
    return str(now_, ": ", m.from, "->", m.to, " type ", static_cast<int>(m.type), " term ", m.term,
               " index ", m.index, "/", m.log_term, " entries ", m.entries.size(), " commit ",
               m.commit, m.reject ? " reject" : "");
  }

  bool failed() const { return !cluster_.checker().ok() || !failure_.empty(); }
  void fail(const std::string& why) {
    if (failure_.empty()) {
      failure_ = why;
    }
  }
  bool live(NodeId id) {
    auto& nodes = cluster_.nodes();
    auto it = nodes.find(id);
    return it != nodes.end() && it->second.up && !retired_.contains(id);
  }
  bool linked(NodeId a, NodeId b) const {
    auto ga = group_.find(a);
    auto gb = group_.find(b);
    return (ga == group_.end() ? 0 : ga->second) == (gb == group_.end() ? 0 : gb->second);
  }

  void post(std::vector<Message> msgs, double drop, double dup, std::uint64_t max_delay) {
    for (Message& m : msgs) {
      if (rng_.chance(drop)) {
        continue;
      }
      if (rng_.chance(dup)) {
        queue_.push(Timed{now_ + 1 + rng_.below(2 * max_delay), seq_++, m});
      }
      queue_.push(Timed{now_ + 1 + rng_.below(max_delay), seq_++, std::move(m)});
    }
  }

  // After any input to node `id`: run its Ready loop (or, persisting asynchronously, start
  // its next Ready unless one is outstanding), observe results, check invariants.
  void settle(NodeId id, bool calm = false) {
    std::optional<CrashInSync> crash;
    if (!calm && rng_.chance(mid_ready_crash_)) {
      crash = CrashInSync{};  // a random torn write
    }
    if (async_persist_) {
      begin_persist(id, crash);
      observe(id);
      cluster_.check();
      return;
    }
    bool was_up = live(id);
    auto msgs = cluster_.process_ready(id, crash);
    after_ready(id, was_up, std::move(msgs), calm);
  }

  void after_ready(NodeId id, bool was_up, std::vector<Message> msgs, bool calm) {
    if (was_up && !cluster_.nodes().at(id).up) {
      ++result_.crashes;
      down_until_[id] = now_ + 50 + rng_.below(500);
    }
    post(std::move(msgs), calm ? 0.0 : drop_, calm ? 0.0 : dup_, calm ? 3 : max_delay_);
    observe(id);
    cluster_.check();
  }

  // Async persistence: the node's next Ready, made durable (and then sent, applied and
  // advanced) a few time units later by finish_persists().
  void begin_persist(NodeId id, std::optional<CrashInSync> crash) {
    if (persisting_.contains(id)) {
      return;
    }
    if (auto rd = cluster_.begin_ready(id)) {
      persisting_.emplace(id, Persisting{now_ + 1 + rng_.below(8), std::move(*rd), crash});
    }
  }

  void finish_persists(bool calm) {
    for (auto it = persisting_.begin(); it != persisting_.end();) {
      if (it->second.at > now_) {
        ++it;
        continue;
      }
      const NodeId id = it->first;
      Persisting p = std::move(it->second);
      it = persisting_.erase(it);
      const bool was_up = live(id);
      if (!cluster_.nodes().at(id).up) {
        continue;
      }
      auto msgs = cluster_.finish_ready(id, std::move(p.rd), p.crash);
      after_ready(id, was_up, std::move(msgs), calm);
      if (cluster_.nodes().at(id).up) {
        begin_persist(id, std::nullopt);  // the driver starts the next Ready at once
      }
    }
  }

  // A node that went down lost the Ready it was persisting (its WAL got nothing of it).
  void forget_persisting(NodeId id) { persisting_.erase(id); }

  void observe(NodeId id) {
    SimNode& n = cluster_.node(id);
    for (const Entry& e : n.applied) {
      std::string d = string_of(e.data);
      auto [it, fresh] = acked_.emplace(d, e.index);
      if (fresh) {
        ++result_.proposals_acked;
        max_acked_ = std::max(max_acked_, e.index);
      } else if (it->second != e.index) {
        fail(str("proposal ", d, " applied at index ", it->second, " and ", e.index));
      }
    }
    n.applied.clear();
    for (const ReadState& rs : n.read_states) {
      // Linearizable read (thesis §6.4): the read point covers every write acknowledged
      // before the read was issued.
      auto it = reads_.find(string_of(rs.ctx));
      if (it == reads_.end()) {
        fail("unknown read state");
      } else if (rs.index < it->second) {
        fail(str("read ", it->first, " got index ", rs.index, " but ", it->second,
                 " was acknowledged before it started"));
      } else {
        ++result_.reads_checked;
      }
    }
    n.read_states.clear();
    if (n.up && n.core->role() == Role::leader) {
      if (leader_terms_.insert(n.core->term()).second) {
        ++result_.leaders_elected;
      }
      // Nodes whose removal committed leave for good (no rejoin with the same id), or, in
      // some seeds, keep running as removed nodes.
      const RaftCore& c = *n.core;
      for (const auto& [m, idx] : removing_) {
        if (!c.conf().voters.contains(m) && !c.conf().learners.contains(m) &&
            c.log().committed() >= idx && !retired_.contains(m) && !removed_.contains(m)) {
          if (keep_removed_running_) {
            removed_.insert(m);
            ++result_.removed_running;
            continue;
          }
          retired_.insert(m);
          if (cluster_.nodes().at(m).up) {
            cluster_.crash(m);
          }
          forget_persisting(m);
        }
      }
    }
  }

  void deliver_due(bool calm) {
    while (!queue_.empty() && queue_.top().at <= now_) {
      Timed t = queue_.top();
      queue_.pop();
      if (!live(t.m.to) || !linked(t.m.from, t.m.to)) {
        continue;
      }
      if (t.m.type == MessageType::snapshot) {
        ++result_.snapshots_installed;
      }
      if (trace_) {
        std::fprintf(stderr, "%s\n", describe(t.m).c_str());
      }
      if (persisting_.contains(t.m.to)) {
        ++result_.steps_while_persisting;
      }
      cluster_.core(t.m.to).step(t.m);
      settle(t.m.to, calm);
    }
  }

  void tick_nodes(bool calm) {
    for (const auto& [id, n] : cluster_.nodes()) {
      if (live(id) && (now_ + id * 3) % kTickUnits == 0) {
        cluster_.core(id).tick();
        settle(id, calm);
      }
    }
  }

  NodeId some_live_node() {
    std::vector<NodeId> ids;
    for (const auto& [id, n] : cluster_.nodes()) {
      if (live(id)) {
        ids.push_back(id);
      }
    }
    return ids.empty() ? kNoNode : ids[rng_.below(ids.size())];
  }

  void client_ops() {
    NodeId at = some_live_node();
    if (at == kNoNode) {
      return;
    }
    if (rng_.chance(0.05)) {
      // A client proposes at a random node; a follower's hint redirects it once.
      std::string data = str("p", next_proposal_++);
      Status st = cluster_.core(at).propose(bytes_of(data));
      if (st.error == errc::not_leader && live(st.leader_hint)) {
        at = st.leader_hint;
        cluster_.core(at).propose(bytes_of(data));
      }
      settle(at);
    }
    if (!live(at)) {
      return;  // crashed while handling the proposal
    }
    if (rng_.chance(0.01) && cluster_.core(at).role() == Role::leader) {
      std::string ctx = str("r", next_read_++);
      reads_[ctx] = max_acked_;
      cluster_.core(at).read_index(bytes_of(ctx));
      settle(at);
    }
    if (rng_.chance(0.003) && live(at) && cluster_.core(at).role() == Role::leader) {
      // Leadership transfer to a random voter.
      auto& voters = cluster_.core(at).conf().voters;
      auto it = voters.begin();
      std::advance(it, static_cast<long>(rng_.below(voters.size())));
      cluster_.core(at).transfer_leadership(*it);
      settle(at);
    }
    if (membership_ && rng_.chance(0.004) && live(at) && cluster_.core(at).role() == Role::leader) {
      change_membership(at);
    }
  }

  void change_membership(NodeId at) {
    RaftCore& core = cluster_.core(at);
    const ConfState& c = core.conf();
    Status st;
    if (!c.learners.empty()) {
      NodeId l = *c.learners.begin();
      st = core.propose_conf_change(ConfChangeType::promote, l);
    } else if (!spares_.empty() && rng_.chance(0.6)) {
      NodeId id = spares_.back();
      st = core.propose_conf_change(ConfChangeType::add_learner, id);
      if (st.ok()) {
        spares_.pop_back();
        cluster_.add_node(id);  // a fresh, empty node that learns everything from the leader
      }
    } else if (c.voters.size() > 3) {
      auto it = c.voters.begin();
      std::advance(it, static_cast<long>(rng_.below(c.voters.size())));
      NodeId victim = *it;
      st = core.propose_conf_change(ConfChangeType::remove, victim);
      if (st.ok()) {
        removing_[victim] = st.index;
      }
    }
    if (st.ok() && st.index > 0) {
      ++result_.conf_changes;
    }
    settle(at);
  }

  void compactions() {
    for (const auto& [id, n] : cluster_.nodes()) {
      // The node compacts between Readys only: never while one is being persisted.
      if (!live(id) || persisting_.contains(id) || !rng_.chance(0.02)) {
        continue;
      }
      SimNode& node = cluster_.node(id);
      Index snap = node.core->log().snapshot().meta.index;
      if (node.sm_index >= snap + 8 && node.sm_index == node.core->log().applied()) {
        cluster_.compact(id);
        if (!node.up) {
          forget_persisting(id);
          ++result_.crashes;  // an fsync error while saving the snapshot
          down_until_[id] = now_ + 50 + rng_.below(500);
        }
      }
    }
  }

  void faults() {
    if (rng_.chance(crash_rate_)) {
      NodeId id = some_live_node();
      if (id != kNoNode) {
        cluster_.crash(id);
        forget_persisting(id);
        ++result_.crashes;
        down_until_[id] = now_ + 50 + rng_.below(800);
      }
    }
    for (auto it = down_until_.begin(); it != down_until_.end();) {
      if (it->second <= now_) {
        NodeId id = it->first;
        it = down_until_.erase(it);
        if (!retired_.contains(id)) {
          forget_persisting(id);
          if (cluster_.restart(id)) {
            settle(id);
          } else {
            down_until_[id] = now_ + 10;  // died again while opening its WAL
          }
        }
      } else {
        ++it;
      }
    }
    if (group_.empty() && rng_.chance(partition_rate_)) {
      for (const auto& [id, n] : cluster_.nodes()) {
        group_[id] = static_cast<int>(rng_.below(2));
      }
      heal_at_ = now_ + 100 + rng_.below(1500);
    } else if (!group_.empty() && now_ >= heal_at_) {
      group_.clear();
    }
  }

  void restart_all() {
    group_.clear();
    for (const auto& [id, n] : cluster_.nodes()) {
      n.fs->sync_error_rate = 0;
    }
    for (auto& [id, p] : persisting_) {
      p.crash.reset();  // decided before the calm: no crash from here on
    }
    for (auto& [id, until] : down_until_) {
      forget_persisting(id);
      if (!retired_.contains(id) && cluster_.restart(id)) {
        settle(id, true);
      }
    }
    down_until_.clear();
  }

  Rng rng_;
  bool trace_ = std::getenv("RM_RAFT_TRACE") != nullptr;
  NodeId voters_ = 3;
  bool membership_ = false;
  std::vector<NodeId> spares_;
  std::map<NodeId, Index> removing_;  // removal proposals: node -> entry index
  std::set<NodeId> retired_;
  std::set<NodeId> removed_;  // removed from the membership but still running
  bool keep_removed_running_ = false;
  double drop_ = 0;
  double dup_ = 0;
  std::uint64_t max_delay_ = 1;
  double crash_rate_ = 0;
  double partition_rate_ = 0;
  double mid_ready_crash_ = 0;
  bool async_persist_ = false;
  std::uint64_t duration_ = 0;
  Cluster cluster_;

  std::uint64_t now_ = 0;
  std::uint64_t seq_ = 0;
  std::priority_queue<Timed, std::vector<Timed>, std::greater<>> queue_;
  std::map<NodeId, int> group_;
  std::uint64_t heal_at_ = 0;
  std::map<NodeId, std::uint64_t> down_until_;
  // Async persistence: each node's Ready being made durable, and when that completes.
  struct Persisting {
    std::uint64_t at = 0;
    Ready rd;
    std::optional<CrashInSync> crash;
  };
  std::map<NodeId, Persisting> persisting_;
  std::map<std::string, Index> acked_;
  Index max_acked_ = 0;
  std::map<std::string, Index> reads_;
  std::set<Term> leader_terms_;
  std::uint64_t next_proposal_ = 0;
  std::uint64_t next_read_ = 0;
  std::string failure_;
  SimulationResult result_;
};

SimulationResult Simulation::run() {
  auto finish = [&] {
    result_.failure = !cluster_.checker().ok() ? cluster_.checker().failure() : failure_;
    for (const auto& [id, n] : cluster_.nodes()) {
      result_.torn_writes += n.fs->torn_writes();
      result_.sync_errors += n.fs->sync_errors();
    }
    if (!result_.failure.empty()) {
      result_.failure += str(" (at time ", now_, ")");
    }
    return result_;
  };
  for (now_ = 0; now_ < duration_ && !failed(); ++now_) {
    finish_persists(false);
    deliver_due(false);
    tick_nodes(false);
    faults();
    client_ops();
    compactions();
  }
  if (failed()) {
    return finish();
  }
  // Liveness: heal everything, restart everyone, and let the network be reliable. Within a
  // bounded quiet period a leader must emerge and a new proposal must commit everywhere.
  restart_all();
  std::uint64_t attempt = 0;
  std::string last = "final0";
  std::uint64_t deadline = now_ + 400 * kTickUnits;
  bool proposed = false;
  for (; now_ < deadline && !failed(); ++now_) {
    finish_persists(true);
    deliver_due(true);
    tick_nodes(true);
    NodeId l = cluster_.leader();
    if (!proposed && l != kNoNode && live(l) && now_ % kTickUnits == 0) {
      Status st = cluster_.core(l).propose(bytes_of(last));
      if (st.ok()) {
        proposed = true;
        settle(l, true);
      }
    }
    if (proposed && acked_.contains(last)) {
      bool all = l != kNoNode;
      std::set<NodeId> members;
      if (l != kNoNode) {
        members = cluster_.core(l).conf().voters;
        members.insert(cluster_.core(l).conf().learners.begin(),
                       cluster_.core(l).conf().learners.end());
      }
      for (NodeId m : members) {
        if (!live(m) || cluster_.node(m).sm_index < std::max(max_acked_, acked_[last])) {
          all = false;
        }
      }
      if (all) {
        return finish();
      }
    }
    if (proposed && l != kNoNode && !acked_.contains(last) && now_ % (50 * kTickUnits) == 0) {
      proposed = false;  // the leader may have changed and lost the entry: propose again
      last = str("final", ++attempt);
    }
  }
  if (!failed()) {
    fail(str("liveness: after healing, no proposal committed on every member (leader ",
             cluster_.leader(), ", proposed ", proposed, "); ", describe_nodes()));
  }
  return finish();
}

}  // namespace

SimulationResult run_simulation(std::uint64_t seed) {
  // Torn tails are routine here; the WAL's log lines would bury a failure's message.
  auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::off);
  SimulationResult r = Simulation(seed).run();
  spdlog::set_level(level);
  return r;
}

}  // namespace routemesh::discovery::raft::sim
