#include "discovery/raft/raft_core.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace routemesh::discovery::raft {

namespace {

void put_u64(Bytes& out, std::uint64_t v) {
  for (int k = 0; k < 8; ++k) {
    out.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
  }
}

bool get_u64(const Bytes& in, std::size_t& pos, std::uint64_t& v) {
  if (in.size() - pos < 8 || pos > in.size()) {
    return false;
  }
  v = 0;
  for (int k = 0; k < 8; ++k) {
    v |= static_cast<std::uint64_t>(in[pos + k]) << (8 * k);
  }
  pos += 8;
  return true;
}

void put_set(Bytes& out, const std::set<NodeId>& s) {
  put_u64(out, s.size());
  for (NodeId id : s) {
    put_u64(out, id);
  }
}

bool get_set(const Bytes& in, std::size_t& pos, std::set<NodeId>& s) {
  std::uint64_t n = 0;
  if (!get_u64(in, pos, n) || n > (in.size() - pos) / 8) {
    return false;
  }
  for (std::uint64_t k = 0; k < n; ++k) {
    std::uint64_t id = 0;
    if (!get_u64(in, pos, id)) {
      return false;
    }
    s.insert(id);
  }
  return true;
}

bool is_leader_message(MessageType t) {
  return t == MessageType::append || t == MessageType::heartbeat || t == MessageType::snapshot;
}

}  // namespace

Bytes encode_conf_change(const ConfChange& cc) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(cc.type));
  put_u64(out, cc.node);
  put_set(out, cc.result.voters);
  put_set(out, cc.result.learners);
  return out;
}

std::optional<ConfChange> decode_conf_change(const Bytes& data) {
  if (data.empty() || data[0] > static_cast<std::uint8_t>(ConfChangeType::remove)) {
    return std::nullopt;
  }
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(data[0]);
  std::size_t pos = 1;
  if (!get_u64(data, pos, cc.node) || !get_set(data, pos, cc.result.voters) ||
      !get_set(data, pos, cc.result.learners) || pos != data.size()) {
    return std::nullopt;
  }
  return cc;
}

namespace {

std::optional<Snapshot> base_snapshot(InitialState& st) {
  if (st.snapshot) {
    return std::move(st.snapshot);
  }
  // No snapshot yet: the bootstrap membership acts as the membership "as of index 0".
  Snapshot s;
  s.meta.conf = st.conf;
  return s;
}

}  // namespace

RaftCore::RaftCore(const Config& config, InitialState state)
    : config_(config),
      rng_state_(config.seed ^ (config.id * 0x9E3779B97F4A7C15ULL)),
      term_(state.hard_state.term),
      vote_(state.hard_state.vote),
      log_(base_snapshot(state), std::move(state.entries), state.hard_state.commit) {
  RM_CHECK(config_.id != kNoNode, "node id 0 is reserved");
  RM_CHECK(config_.heartbeat_tick > 0 && config_.election_tick > config_.heartbeat_tick,
           "need 0 < heartbeat_tick < election_tick");
  RM_CHECK(config_.max_inflight > 0 && config_.max_entries_per_append > 0,
           "flow control limits must be positive");
  conf_ = log_.snapshot().meta.conf;
  conf_applied_ = log_.snapshot().meta.index;
  apply_conf_up_to_commit();  // replay committed membership changes found in storage
  prev_hard_state_ = hard_state();
  role_ = detail::Follower{};
  reset_election_timer();
}

std::uint64_t RaftCore::next_random() {
  // splitmix64: tiny, seedable, good enough for election jitter.
  std::uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void RaftCore::reset_election_timer() {
  election_elapsed_ = 0;
  // §5.2: randomized election timeouts make split votes rare.
  randomized_election_timeout_ =
      config_.election_tick +
      static_cast<int>(next_random() % static_cast<std::uint64_t>(config_.election_tick));
}

Role RaftCore::role() const {
  switch (role_.index()) {
    case 0:
      return Role::follower;
    case 1:
      return Role::pre_candidate;
    case 2:
      return Role::candidate;
    default:
      return Role::leader;
  }
}

NodeId RaftCore::leader() const {
  if (const auto* f = std::get_if<detail::Follower>(&role_)) {
    return f->leader;
  }
  if (std::holds_alternative<detail::Leader>(role_)) {
    return config_.id;
  }
  return kNoNode;
}

const Progress* RaftCore::progress_for_test(NodeId id) const {
  if (const auto* l = std::get_if<detail::Leader>(&role_)) {
    auto it = l->progress.find(id);
    return it == l->progress.end() ? nullptr : &it->second;
  }
  return nullptr;
}

NodeId RaftCore::transferee_for_test() const {
  const auto* l = std::get_if<detail::Leader>(&role_);
  return l ? l->transferee : kNoNode;
}

void RaftCore::send(Message m) {
  m.from = config_.id;
  if (m.term == 0) {
    m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

// ---------------------------------------------------------------------------------------------
// Role transitions

void RaftCore::become_follower(Term term, NodeId leader) {
  if (term != term_) {
    // §5.1: a newer term resets the vote; a node votes at most once per term.
    term_ = term;
    vote_ = kNoNode;
  }
  role_ = detail::Follower{leader};
  reset_election_timer();
}

void RaftCore::become_leader() {
  detail::Leader l;
  Index last = log_.last_index();
  auto add = [&](NodeId id) {
    Progress pr;
    pr.next = last + 1;
    pr.recent_active = true;  // give everyone a full check-quorum round to answer
    if (id == config_.id) {
      pr.match = last;
      pr.become_replicate();
    }
    l.progress.emplace(id, pr);
  };
  for (NodeId id : conf_.voters) {
    add(id);
  }
  for (NodeId id : conf_.learners) {
    add(id);
  }
  role_ = std::move(l);
  election_elapsed_ = 0;
  // §8: a leader commits a blank no-op entry at the start of its term, so that it learns
  // which entries are committed (§5.4.2 lets it count replicas only for current-term entries)
  // and so that ReadIndex has a current-term commit to rely on (thesis §6.4).
  Entry noop;
  noop.term = term_;
  noop.index = last + 1;
  noop.type = EntryType::noop;
  append_entries({noop});
  // Refuse membership changes until the no-op commits: conf_ may not yet reflect a conf
  // change left uncommitted by the previous leader.
  leader_state()->pending_conf_index = log_.last_index();
}

void RaftCore::campaign() {
  if (std::holds_alternative<detail::Leader>(role_)) {
    return;
  }
  start_campaign(config_.pre_vote ? CampaignKind::pre_vote : CampaignKind::election, false);
}

void RaftCore::start_campaign(CampaignKind kind, bool transfer) {
  if (!promotable()) {
    return;  // learners and removed nodes never campaign
  }
  Term vote_term = 0;
  MessageType type = MessageType::vote;
  if (kind == CampaignKind::pre_vote) {
    // Thesis §9.6: ask whether we could win before disturbing anyone with a new term; our
    // term and vote stay unchanged.
    role_ = detail::PreCandidate{};
    reset_election_timer();
    vote_term = term_ + 1;
    type = MessageType::pre_vote;
  } else {
    // §5.2: increment term, vote for self, request votes.
    term_ += 1;
    vote_ = config_.id;
    role_ = detail::Candidate{};
    reset_election_timer();
    vote_term = term_;
  }
  poll(config_.id, true);
  Role expected = kind == CampaignKind::pre_vote ? Role::pre_candidate : Role::candidate;
  if (role() != expected) {
    return;  // single-voter cluster: won already
  }
  for (NodeId v : conf_.voters) {
    if (v == config_.id) {
      continue;
    }
    Message m;
    m.type = type;
    m.to = v;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = transfer;
    send(std::move(m));
  }
}

void RaftCore::poll(NodeId from, bool granted) {
  std::map<NodeId, bool>* votes = nullptr;
  bool pre = false;
  if (auto* p = std::get_if<detail::PreCandidate>(&role_)) {
    votes = &p->votes;
    pre = true;
  } else if (auto* c = std::get_if<detail::Candidate>(&role_)) {
    votes = &c->votes;
  } else {
    return;
  }
  votes->emplace(from, granted);  // first answer counts; duplicates are ignored
  std::size_t yes = 0;
  std::size_t no = 0;
  for (const auto& [id, g] : *votes) {
    if (!conf_.voters.contains(id)) {
      continue;  // learners' answers never count (thesis §4.2.1)
    }
    (g ? yes : no) += 1;
  }
  if (yes >= quorum()) {
    if (pre) {
      start_campaign(CampaignKind::election, false);
    } else {
      become_leader();
    }
  } else if (no >= quorum()) {
    become_follower(term_, kNoNode);
  }
}

bool RaftCore::in_lease() const {
  // Thesis §4.2.3: with check-quorum, a node that heard from a leader within the minimum
  // election timeout ignores vote requests, so a removed or partitioned server cannot depose
  // a healthy leader.
  return config_.check_quorum && leader() != kNoNode && election_elapsed_ < config_.election_tick;
}

// ---------------------------------------------------------------------------------------------
// Messages

void RaftCore::step(const Message& m) {
  if (m.to != config_.id) {
    return;
  }
  if (m.term > term_) {
    bool vote_request = m.type == MessageType::vote || m.type == MessageType::pre_vote;
    if (vote_request && !m.transfer && in_lease()) {
      return;
    }
    if (m.type == MessageType::pre_vote) {
      // A pre-vote does not change our term (thesis §9.6).
    } else if (m.type == MessageType::pre_vote_resp && !m.reject) {
      // A granted pre-vote is stamped with the future term; it is not a newer term for us.
    } else {
      // §5.1: "If RPC request or response contains term T > currentTerm: set currentTerm = T,
      // convert to follower".
      become_follower(m.term, is_leader_message(m.type) ? m.from : kNoNode);
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::append || m.type == MessageType::heartbeat) {
      // A stale leader (e.g. partitioned away, whose followers' pre-votes never raised the
      // term) learns the newer term from this answer and steps down (paper figure 2: the
      // answer carries currentTerm). Without it a follower whose term was raised by a
      // candidate that then went away, and which cannot campaign itself (it does not know
      // yet that it is a voter), would ignore the leader forever and never catch up.
      Message r;
      r.type = MessageType::append_resp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::pre_vote) {
      Message r;
      r.type = MessageType::pre_vote_resp;
      r.to = m.from;
      r.reject = true;
      send(std::move(r));
    }
    return;  // §5.1: stale requests are rejected
  }

  if (m.type == MessageType::vote || m.type == MessageType::pre_vote) {
    handle_vote_request(m);
  } else if (std::holds_alternative<detail::Follower>(role_)) {
    step_follower(m);
  } else if (std::holds_alternative<detail::Leader>(role_)) {
    step_leader(m);
  } else {
    step_candidate(m);
  }
  apply_conf_up_to_commit();
}

void RaftCore::handle_vote_request(const Message& m) {
  bool pre = m.type == MessageType::pre_vote;
  // §5.2: one vote per term, first come first served, and none while we follow a leader.
  // A pre-vote is not a vote: it may be granted for any higher term (thesis §9.6).
  bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && leader() == kNoNode) || (pre && m.term > term_);
  // A node whose removal it has applied takes no part in elections any more (thesis §4.2.3):
  // its vote could only help a candidate that still counts it, i.e. one with an older
  // configuration. Learners still vote (etcd's rule): a request reaching a learner means the
  // candidate applied its promotion, which this node may simply not know yet; refusing could
  // leave a quorum that needs it unable to elect anyone. For the same reason a node that is
  // in no configuration it knows of, because its log does not reach its own addition yet,
  // votes too: only an applied removal silences a node.
  if (removed_) {
    can_vote = false;
  }
  Message r;
  r.type = pre ? MessageType::pre_vote_resp : MessageType::vote_resp;
  r.to = m.from;
  // §5.4.1 election restriction: only grant if the candidate's log is at least as
  // up-to-date as ours.
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    r.term = m.term;
    if (!pre) {
      vote_ = m.from;
      election_elapsed_ = 0;
    }
  } else {
    r.reject = true;
  }
  send(std::move(r));
}

void RaftCore::step_follower(const Message& m) {
  auto& f = std::get<detail::Follower>(role_);
  switch (m.type) {
    case MessageType::append:
      election_elapsed_ = 0;
      f.leader = m.from;
      handle_append(m);
      break;
    case MessageType::heartbeat:
      election_elapsed_ = 0;
      f.leader = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::snapshot:
      election_elapsed_ = 0;
      f.leader = m.from;
      handle_snapshot(m);
      break;
    case MessageType::timeout_now:
      // Thesis §3.10: the leader made sure our log is up to date; start an election at once,
      // skipping pre-vote and the leader lease.
      start_campaign(CampaignKind::election, true);
      break;
    default:
      break;  // stale responses from an earlier role
  }
}

void RaftCore::step_candidate(const Message& m) {
  bool pre = std::holds_alternative<detail::PreCandidate>(role_);
  switch (m.type) {
    case MessageType::append:
    case MessageType::heartbeat:
    case MessageType::snapshot:
      // §5.2: "If AppendEntries RPC received from new leader: convert to follower" (same term;
      // higher terms were handled in step()).
      become_follower(term_, m.from);
      step_follower(m);
      break;
    case MessageType::pre_vote_resp:
      if (pre) {
        poll(m.from, !m.reject);
      }
      break;
    case MessageType::vote_resp:
      if (!pre) {
        poll(m.from, !m.reject);
      }
      break;
    default:
      break;
  }
}

void RaftCore::handle_append(const Message& m) {
  Message r;
  r.type = MessageType::append_resp;
  r.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to commit is known to match (Leader Completeness); answer with it so the
    // leader can skip ahead.
    r.index = log_.committed();
    send(std::move(r));
    return;
  }
  if (auto last = log_.maybe_append(m.index, m.log_term, m.commit, m.entries)) {
    r.index = *last;
  } else {
    // §5.3: reject when the log has no entry at prevLogIndex with prevLogTerm. Hint the last
    // index that could match (term <= the leader's prev term) to skip whole terms.
    Index hint = log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
    r.reject = true;
    r.index = m.index;
    r.reject_hint = hint;
    r.log_term = log_.term(hint).value_or(0);
  }
  send(std::move(r));
}

void RaftCore::handle_heartbeat(const Message& m) {
  log_.commit_to(m.commit);
  Message r;
  r.type = MessageType::heartbeat_resp;
  r.to = m.from;
  r.read_seq = m.read_seq;
  send(std::move(r));
}

void RaftCore::handle_snapshot(const Message& m) {
  Message r;
  r.type = MessageType::append_resp;
  r.to = m.from;
  if (!m.snapshot) {
    return;
  }
  const Snapshot& s = *m.snapshot;
  if (s.meta.index <= log_.committed()) {
    r.index = log_.committed();  // nothing new
  } else if (log_.match_term(s.meta.index, s.meta.term)) {
    // We already have the entries it covers: just learn that they are committed. Answer with
    // the commit index, not our last index: entries after the snapshot may be a stale tail
    // that the leader does not have, and claiming them would let it count us for its own
    // entries at those indices (etcd's raft.restore answers with committed too).
    log_.commit_to(s.meta.index);
    r.index = log_.committed();
  } else {
    // §7: discard the entire log, it is superseded by the snapshot.
    log_.restore(s);
    conf_ = s.meta.conf;
    if (conf_.voters.contains(config_.id) || conf_.learners.contains(config_.id)) {
      removed_ = false;
    }
    conf_applied_ = s.meta.index;
    r.index = log_.last_index();
  }
  send(std::move(r));
}

void RaftCore::step_leader(const Message& m) {
  auto& l = std::get<detail::Leader>(role_);
  if (m.type == MessageType::append_resp) {
    handle_append_resp(l, m);
  } else if (m.type == MessageType::heartbeat_resp) {
    handle_heartbeat_resp(l, m);
  }
}

void RaftCore::handle_append_resp(detail::Leader& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) {
    return;
  }
  Progress& pr = it->second;
  pr.recent_active = true;
  if (m.reject) {
    // §5.3: "If AppendEntries fails because of log inconsistency: decrement nextIndex and
    // retry", accelerated with the follower's (index, term) hint.
    Index hint = m.reject_hint;
    if (m.log_term > 0) {
      hint = log_.find_conflict_by_term(m.reject_hint, m.log_term);
    }
    if (pr.maybe_decrease_to(m.index, hint)) {
      if (pr.state == ProgressState::replicate) {
        pr.become_probe();
      }
      send_append(l, m.from, true);
    }
    return;
  }
  bool was_paused = pr.is_paused(config_.max_inflight);
  if (!pr.maybe_update(m.index)) {
    return;  // duplicate or reordered acknowledgement
  }
  switch (pr.state) {
    case ProgressState::probe:
      pr.become_replicate();
      break;
    case ProgressState::snapshot:
      if (pr.match + 1 >= log_.first_index()) {
        pr.become_probe();
        pr.become_replicate();
      }
      break;
    case ProgressState::replicate:
      pr.free_inflight_to(m.index);
      break;
  }
  if (maybe_commit()) {
    broadcast_append();  // tell followers the new commit index
  } else if (was_paused) {
    send_append(l, m.from, false);
  }
  // Pipelining: keep the follower's window full.
  while (send_append(l, m.from, false)) {
  }
  if (m.from == l.transferee && pr.match == log_.last_index()) {
    Message t;
    t.type = MessageType::timeout_now;
    t.to = m.from;
    send(std::move(t));
  }
}

void RaftCore::handle_heartbeat_resp(detail::Leader& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) {
    return;
  }
  Progress& pr = it->second;
  pr.recent_active = true;
  pr.probe_sent = false;
  if (pr.state == ProgressState::replicate && pr.inflight.size() >= config_.max_inflight) {
    // The window may be full of lost messages: free a slot so a retry can flow (a gap makes
    // the follower reject, which drops us back to probe).
    pr.inflight.pop_front();
  }
  if (pr.match < log_.last_index()) {
    send_append(l, m.from, true);
  }
  if (m.read_seq > pr.read_ack) {
    pr.read_ack = m.read_seq;
    release_reads(l);
  }
}

// ---------------------------------------------------------------------------------------------
// Leader replication

void RaftCore::append_entries(std::vector<Entry> entries) {
  Index last = log_.append(entries);
  auto* l = leader_state();
  l->progress[config_.id].maybe_update(last);
  // The leader counts itself as soon as it appends: its entries are persisted before any
  // message of the same Ready is sent, so no follower can acknowledge (and thus no quorum can
  // form) before the leader's own copy is durable. See README.md.
  maybe_commit();
  broadcast_append();
}

bool RaftCore::send_append(detail::Leader& l, NodeId to, bool send_if_empty) {
  auto it = l.progress.find(to);
  if (it == l.progress.end() || to == config_.id) {
    return false;
  }
  Progress& pr = it->second;
  if (pr.is_paused(config_.max_inflight)) {
    return false;
  }
  Index prev = pr.next - 1;
  auto prev_term = log_.term(prev);
  if (!prev_term) {
    // §7: the entries this follower needs were compacted; send the snapshot instead.
    Message m;
    m.type = MessageType::snapshot;
    m.to = to;
    m.snapshot = log_.snapshot();
    pr.become_snapshot(log_.snapshot().meta.index);
    send(std::move(m));
    return true;
  }
  std::vector<Entry> ents =
      log_.slice(pr.next, log_.last_index() + 1, config_.max_entries_per_append);
  if (ents.empty() && !send_if_empty) {
    return false;
  }
  Message m;
  m.type = MessageType::append;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  if (!ents.empty()) {
    Index last_sent = ents.back().index;
    if (pr.state == ProgressState::replicate) {
      // Optimistic pipelining: assume delivery; a rejection resets to probe.
      pr.next = last_sent + 1;
      pr.inflight.push_back(last_sent);
    }
  }
  if (pr.state == ProgressState::probe) {
    pr.probe_sent = true;
  }
  m.entries = std::move(ents);
  send(std::move(m));
  return true;
}

void RaftCore::broadcast_append() {
  auto* l = leader_state();
  for (auto& [id, pr] : l->progress) {
    if (id != config_.id) {
      send_append(*l, id, true);
    }
  }
}

void RaftCore::broadcast_heartbeat() {
  auto* l = leader_state();
  for (auto& [id, pr] : l->progress) {
    if (id == config_.id) {
      continue;
    }
    Message m;
    m.type = MessageType::heartbeat;
    m.to = id;
    // Never tell a follower to commit past what it is known to hold.
    m.commit = std::min(pr.match, log_.committed());
    m.read_seq = l->read_seq;
    send(std::move(m));
  }
}

bool RaftCore::maybe_commit() {
  auto* l = leader_state();
  if (l == nullptr || conf_.voters.empty()) {
    return false;
  }
  std::vector<Index> matches;
  for (NodeId v : conf_.voters) {
    auto it = l->progress.find(v);
    matches.push_back(it == l->progress.end() ? 0 : it->second.match);
  }
  std::sort(matches.begin(), matches.end(), std::greater<>());
  Index candidate = matches[quorum() - 1];
  // §5.4.2: only an entry from the current term is committed by counting replicas; earlier
  // entries commit indirectly (figure 8).
  if (!log_.maybe_commit(candidate, term_)) {
    return false;
  }
  if (!l->reads_waiting_commit.empty()) {
    register_reads(*l, std::move(l->reads_waiting_commit));
    l->reads_waiting_commit.clear();
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// ReadIndex (thesis §6.4)

void RaftCore::register_reads(detail::Leader& l, std::vector<Bytes> ctxs) {
  l.read_seq += 1;
  for (auto& ctx : ctxs) {
    l.reads.push_back(detail::PendingRead{l.read_seq, ReadState{log_.committed(), std::move(ctx)}});
  }
  // Step 3 of §6.4: confirm we are still leader with a round of heartbeats; a response
  // echoing a round >= r proves leadership at a moment after read r was registered.
  broadcast_heartbeat();
  release_reads(l);
}

void RaftCore::release_reads(detail::Leader& l) {
  while (!l.reads.empty()) {
    std::uint64_t seq = l.reads.front().seq;
    std::size_t acks = 0;
    for (NodeId v : conf_.voters) {
      if (v == config_.id) {
        ++acks;
        continue;
      }
      auto it = l.progress.find(v);
      if (it != l.progress.end() && it->second.read_ack >= seq) {
        ++acks;
      }
    }
    if (acks < quorum()) {
      return;
    }
    read_states_.push_back(std::move(l.reads.front().state));
    l.reads.pop_front();
  }
}

Status RaftCore::read_index(Bytes ctx) {
  auto* l = leader_state();
  if (l == nullptr) {
    return Status{errc::not_leader, leader()};
  }
  if (conf_.voters.size() == 1 && promotable()) {
    read_states_.push_back(ReadState{log_.committed(), std::move(ctx)});
    return {};
  }
  if (!log_.match_term(log_.committed(), term_)) {
    // Step 1 of §6.4: the leader's commit index is only known to be current once an entry of
    // its own term (the no-op) committed.
    l->reads_waiting_commit.push_back(std::move(ctx));
    return {};
  }
  std::vector<Bytes> one;
  one.push_back(std::move(ctx));
  register_reads(*l, std::move(one));
  return {};
}

// ---------------------------------------------------------------------------------------------
// Ticks

void RaftCore::tick() {
  if (std::holds_alternative<detail::Leader>(role_)) {
    tick_leader();
  } else {
    tick_election();
  }
  apply_conf_up_to_commit();
}

void RaftCore::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
    campaign();
  }
}

void RaftCore::tick_leader() {
  auto* l = leader_state();
  ++l->heartbeat_elapsed;
  ++election_elapsed_;
  for (auto& [id, pr] : l->progress) {
    if (pr.state == ProgressState::snapshot && ++pr.snapshot_ticks >= config_.election_tick) {
      pr.become_probe();  // the snapshot (or its answer) was probably lost: probe again
    }
  }
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Thesis §6.2: a leader that did not hear from a quorum during an election timeout
      // steps down, so clients stop talking to a leader that cannot commit.
      std::size_t active = 0;
      for (NodeId v : conf_.voters) {
        auto it = l->progress.find(v);
        if (v == config_.id || (it != l->progress.end() && it->second.recent_active)) {
          ++active;
        }
      }
      if (active < quorum()) {
        become_follower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : l->progress) {
        pr.recent_active = id == config_.id;
      }
    }
    // §3.10: a transfer that did not finish within an election timeout is aborted.
    l->transferee = kNoNode;
  }
  if (l->heartbeat_elapsed >= config_.heartbeat_tick) {
    l->heartbeat_elapsed = 0;
    broadcast_heartbeat();
  }
}

// ---------------------------------------------------------------------------------------------
// Client operations

Status RaftCore::propose(Bytes data) {
  auto* l = leader_state();
  if (l == nullptr) {
    return Status{errc::not_leader, leader()};
  }
  if (l->transferee != kNoNode) {
    return Status{errc::transfer_in_progress, config_.id};
  }
  Entry e;
  e.term = term_;
  e.index = log_.last_index() + 1;
  e.data = std::move(data);
  Status st{errc::ok, config_.id, e.index, e.term};
  append_entries({std::move(e)});
  apply_conf_up_to_commit();
  return st;
}

Status RaftCore::propose_conf_change(ConfChangeType type, NodeId node) {
  auto* l = leader_state();
  if (l == nullptr) {
    return Status{errc::not_leader, leader()};
  }
  if (l->transferee != kNoNode) {
    return Status{errc::transfer_in_progress, config_.id};
  }
  if (l->pending_conf_index > log_.committed()) {
    return Status{errc::conf_change_pending, config_.id};
  }
  ConfState next = conf_;
  bool valid = node != kNoNode;
  switch (type) {
    case ConfChangeType::add_learner:
      valid = valid && !next.voters.contains(node) && !next.learners.contains(node);
      next.learners.insert(node);
      break;
    case ConfChangeType::promote:
      valid = valid && next.learners.erase(node) == 1;
      next.voters.insert(node);
      break;
    case ConfChangeType::remove:
      valid = valid && (next.voters.erase(node) + next.learners.erase(node)) == 1 &&
              !next.voters.empty();
      break;
  }
  if (!valid) {
    return Status{errc::invalid_conf_change, config_.id};
  }
  Entry e;
  e.term = term_;
  e.index = log_.last_index() + 1;
  e.type = EntryType::conf_change;
  e.data = encode_conf_change(ConfChange{type, node, next});
  l->pending_conf_index = e.index;
  Status st{errc::ok, config_.id, e.index, e.term};
  append_entries({std::move(e)});
  apply_conf_up_to_commit();
  return st;
}

Status RaftCore::transfer_leadership(NodeId to) {
  auto* l = leader_state();
  if (l == nullptr) {
    return Status{errc::not_leader, leader()};
  }
  if (to == config_.id) {
    return Status{errc::ok, config_.id};
  }
  if (!conf_.voters.contains(to)) {
    return Status{errc::unknown_node, config_.id};
  }
  l->transferee = to;
  election_elapsed_ = 0;  // the transfer gets one election timeout
  Progress& pr = l->progress.at(to);
  if (pr.match == log_.last_index()) {
    Message t;
    t.type = MessageType::timeout_now;
    t.to = to;
    send(std::move(t));
  } else {
    send_append(*l, to, true);  // catch it up first; timeout_now follows its ack
  }
  return Status{errc::ok, config_.id};
}

Status RaftCore::compact(Index index, Bytes data) {
  if (index <= log_.snapshot().meta.index) {
    return Status{errc::compacted, leader()};
  }
  if (index > log_.applied() || index >= log_.unstable_from()) {
    return Status{errc::not_applied, leader()};
  }
  Snapshot s;
  s.meta.index = index;
  s.meta.term = *log_.term(index);
  s.meta.conf = conf_at(index);
  s.data = std::move(data);
  log_.compact(std::move(s));
  return {};
}

// ---------------------------------------------------------------------------------------------
// Membership (thesis §4.1: one server at a time; applied at commit, see README.md)

void RaftCore::apply_conf_up_to_commit() {
  bool changed = false;
  while (conf_applied_ < log_.committed()) {
    Index i = ++conf_applied_;
    if (i < log_.first_index()) {
      continue;
    }
    const Entry& e = log_.at(i);
    if (e.type != EntryType::conf_change) {
      continue;
    }
    auto cc = decode_conf_change(e.data);
    RM_CHECK(cc.has_value(), "malformed conf change entry in the log");
    conf_ = cc->result;
    if (cc->type == ConfChangeType::remove && cc->node == config_.id) {
      removed_ = true;
    } else if (conf_.voters.contains(config_.id) || conf_.learners.contains(config_.id)) {
      removed_ = false;
    }
    changed = true;
  }
  if (changed) {
    on_conf_changed();
  }
}

void RaftCore::on_conf_changed() {
  auto* l = leader_state();
  if (l == nullptr) {
    return;
  }
  if (!promotable()) {
    // The leader removed (or demoted) itself: it stops leading once the change commits.
    become_follower(term_, kNoNode);
    return;
  }
  for (auto it = l->progress.begin(); it != l->progress.end();) {
    if (!conf_.voters.contains(it->first) && !conf_.learners.contains(it->first)) {
      it = l->progress.erase(it);
    } else {
      ++it;
    }
  }
  auto add = [&](NodeId id) {
    if (!l->progress.contains(id)) {
      Progress pr;
      pr.next = log_.last_index() + 1;
      pr.recent_active = true;
      l->progress.emplace(id, pr);
    }
  };
  for (NodeId id : conf_.voters) {
    add(id);
  }
  for (NodeId id : conf_.learners) {
    add(id);
  }
  if (l->transferee != kNoNode && !conf_.voters.contains(l->transferee)) {
    l->transferee = kNoNode;
  }
  // The quorum changed: commit and pending reads may move.
  if (maybe_commit()) {
    broadcast_append();
  }
  release_reads(*l);
  broadcast_append();
  apply_conf_up_to_commit();
}

ConfState RaftCore::conf_at(Index index) const {
  ConfState c = log_.snapshot().meta.conf;
  for (Index i = log_.first_index(); i <= index; ++i) {
    const Entry& e = log_.at(i);
    if (e.type == EntryType::conf_change) {
      if (auto cc = decode_conf_change(e.data)) {
        c = cc->result;
      }
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Ready protocol

bool RaftCore::has_ready() const {
  if (ready_outstanding_) {
    return false;
  }
  return hard_state() != prev_hard_state_ || log_.has_unstable_entries() ||
         log_.unstable_snapshot().has_value() || !msgs_.empty() ||
         log_.has_next_committed_entries() || !read_states_.empty();
}

Ready RaftCore::ready() {
  RM_CHECK(!ready_outstanding_, "ready() called twice without advance()");
  Ready rd;
  HardState hs = hard_state();
  bool hard_state_must_sync = false;
  if (hs != prev_hard_state_) {
    rd.hard_state = hs;
    // A new term or vote must be durable before any message that depends on it (figure 2).
    // A commit index alone need not be: losing it in a crash only means relearning it from
    // the leader, as long as it covers no conf change (membership is rebuilt from the log up
    // to the persisted commit; README.md "Ready contract").
    hard_state_must_sync = hs.term != prev_hard_state_.term || hs.vote != prev_hard_state_.vote ||
                           log_.has_conf_change(prev_hard_state_.commit + 1, hs.commit);
    prev_hard_state_ = hs;
  }
  rd.entries = log_.unstable_entries();
  rd.snapshot = log_.unstable_snapshot();
  rd.must_sync = hard_state_must_sync || !rd.entries.empty() || rd.snapshot.has_value();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.committed_entries = log_.next_committed_entries();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  ready_outstanding_ = true;
  return rd;
}

void RaftCore::advance(const Ready& rd) {
  RM_CHECK(ready_outstanding_, "advance() without ready()");
  ready_outstanding_ = false;
  if (rd.snapshot) {
    log_.stable_snapshot_to(rd.snapshot->meta.index);
  }
  if (!rd.entries.empty()) {
    log_.stable_to(rd.entries.back().index, rd.entries.back().term);
  }
  if (!rd.committed_entries.empty()) {
    log_.applied_to(rd.committed_entries.back().index);
  }
}

}  // namespace routemesh::discovery::raft
