#include "discovery/raft/raft_core.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/unit/discovery/raft/sim.h"

using namespace routemesh::discovery::raft;
using namespace routemesh::discovery::raft::sim;

namespace {

ClusterOptions options(bool pre_vote = true, bool check_quorum = true) {
  ClusterOptions o;
  o.pre_vote = pre_vote;
  o.check_quorum = check_quorum;
  return o;
}

void elect(Cluster& c, NodeId id) {
  c.core(id).campaign();
  c.deliver_all();
  REQUIRE(c.core(id).role() == Role::leader);
  REQUIRE(c.checker().ok());
}

Entry entry(Term term, Index index, const std::string& data = "") {
  return Entry{term, index, EntryType::normal, bytes_of(data)};
}

// A lone core over the given storage, for transcript-style tests.
RaftCore make_core(NodeId id, std::vector<Entry> entries, HardState hs = {},
                   bool pre_vote = false) {
  Config cfg;
  cfg.id = id;
  cfg.seed = id;
  cfg.pre_vote = pre_vote;
  InitialState st;
  st.hard_state = hs;
  st.entries = std::move(entries);
  st.conf.voters = {1, 2, 3};
  return RaftCore(cfg, std::move(st));
}

std::vector<Message> messages_of(RaftCore& core) {
  if (!core.has_ready()) {
    return {};
  }
  Ready rd = core.ready();
  core.advance(rd);
  return rd.messages;
}

Message msg(MessageType type, NodeId from, NodeId to, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

}  // namespace

TEST_CASE("single voter elects itself and commits a proposal", "[raft]") {
  Cluster c({1}, {}, options());
  elect(c, 1);
  Status st = c.core(1).propose(bytes_of("x"));
  REQUIRE(st.ok());
  c.deliver_all();
  CHECK(c.node(1).sm_index == st.index);
}

TEST_CASE("election timeout starts an election and a majority elects a leader (§5.2)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options(false, false));
  for (int k = 0; k < 30 && c.leader() == kNoNode; ++k) {
    c.tick_all();
    c.deliver_all();
  }
  NodeId l = c.leader();
  REQUIRE(l != kNoNode);
  CHECK(c.core(l).term() >= 1);
  for (NodeId id : {1, 2, 3}) {
    CHECK(c.core(id).leader() == l);
  }
}

TEST_CASE("candidate steps down on higher term (§5.1)", "[raft]") {
  RaftCore core = make_core(1, {});
  core.campaign();
  REQUIRE(core.role() == Role::candidate);
  REQUIRE(core.term() == 1);
  Message app = msg(MessageType::append, 2, 1, 3);
  core.step(app);
  CHECK(core.role() == Role::follower);
  CHECK(core.term() == 3);
  CHECK(core.leader() == 2);
  CHECK(core.hard_state().vote == kNoNode);  // a new term clears the vote
}

TEST_CASE("candidate steps down when a leader of its own term appears (§5.2)", "[raft]") {
  RaftCore core = make_core(1, {});
  core.campaign();
  core.step(msg(MessageType::heartbeat, 2, 1, 1));
  CHECK(core.role() == Role::follower);
  CHECK(core.leader() == 2);
  CHECK(core.term() == 1);
}

TEST_CASE("node grants one vote per term, first come first served (§5.2)", "[raft]") {
  RaftCore core = make_core(3, {});
  core.step(msg(MessageType::vote, 1, 3, 1));
  core.step(msg(MessageType::vote, 2, 3, 1));
  auto out = messages_of(core);
  REQUIRE(out.size() == 2);
  CHECK(out[0].to == 1);
  CHECK_FALSE(out[0].reject);
  CHECK(out[1].to == 2);
  CHECK(out[1].reject);
}

TEST_CASE("vote is refused to a candidate with a less up-to-date log (§5.4.1)", "[raft]") {
  RaftCore core = make_core(3, {entry(1, 1), entry(2, 2)}, HardState{2, kNoNode, 0});
  Message v = msg(MessageType::vote, 1, 3, 3);
  v.index = 5;
  v.log_term = 1;  // longer log but older last term
  core.step(v);
  auto out = messages_of(core);
  REQUIRE(out.size() == 1);
  CHECK(out[0].reject);
  CHECK(core.term() == 3);  // the term is still adopted (§5.1)
}

TEST_CASE("vote and term reach Ready.hard_state together with the vote response", "[raft]") {
  RaftCore core = make_core(3, {});
  core.step(msg(MessageType::vote, 1, 3, 4));
  Ready rd = core.ready();
  REQUIRE(rd.hard_state.has_value());
  CHECK(rd.hard_state->term == 4);
  CHECK(rd.hard_state->vote == 1);
  REQUIRE(rd.messages.size() == 1);
  CHECK(rd.messages[0].type == MessageType::vote_resp);
  CHECK_FALSE(rd.messages[0].reject);
  core.advance(rd);
  CHECK_FALSE(core.has_ready());  // hard state is only reported when it changes
}

TEST_CASE("follower rejects append with mismatched prev term (§5.3)", "[raft]") {
  RaftCore core = make_core(2, {entry(1, 1), entry(1, 2), entry(1, 3)}, HardState{2, 0, 1});
  Message app = msg(MessageType::append, 1, 2, 2);
  app.index = 3;
  app.log_term = 2;  // we have term 1 at index 3
  app.entries = {entry(2, 4)};
  core.step(app);
  auto out = messages_of(core);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == MessageType::append_resp);
  CHECK(out[0].reject);
  CHECK(out[0].index == 3);
  CHECK(out[0].reject_hint == 3);  // last index whose term <= 2
  CHECK(out[0].log_term == 1);
  CHECK(core.log().last_index() == 3);
}

TEST_CASE("follower truncates a conflicting uncommitted suffix (§5.3)", "[raft]") {
  RaftCore core = make_core(2, {entry(1, 1), entry(1, 2), entry(1, 3)}, HardState{1, 0, 1});
  Message app = msg(MessageType::append, 1, 2, 2);
  app.index = 1;
  app.log_term = 1;
  app.entries = {entry(2, 2, "new")};
  app.commit = 2;
  core.step(app);
  CHECK(core.log().last_index() == 2);
  CHECK(core.log().term(2) == 2);
  CHECK(core.log().committed() == 2);
  Ready rd = core.ready();
  REQUIRE(rd.entries.size() == 1);  // the replacement must be persisted over the old suffix
  CHECK(rd.entries[0].index == 2);
  CHECK(rd.messages.at(0).index == 2);
  core.advance(rd);
}

TEST_CASE("a delayed shorter append does not truncate a longer matching log (§5.3)", "[raft]") {
  RaftCore core = make_core(2, {entry(1, 1), entry(1, 2), entry(1, 3)}, HardState{1, 0, 0});
  Message app = msg(MessageType::append, 1, 2, 1);
  app.index = 0;
  app.log_term = 0;
  app.entries = {entry(1, 1)};
  core.step(app);
  CHECK(core.log().last_index() == 3);
}

TEST_CASE("leader does not commit an old-term entry by counting replicas (§5.4.2, figure 8)",
          "[raft]") {
  // Node 1 holds (2, term 2) from its earlier leadership; 2 and 3 never saw it.
  ClusterOptions o = options(false, false);
  o.max_entries_per_append = 1;
  Cluster c({1, 2, 3}, {}, o);
  for (NodeId id : {1, 2, 3}) {
    std::vector<Entry> stored = {entry(1, 1, "a")};
    if (id == 1) {
      stored.push_back(entry(2, 2, "old"));
    }
    c.node(id).wal->save(std::nullopt, stored, HardState{3, kNoNode, 1});
    c.crash(id);
    REQUIRE(c.restart(id));
  }
  // Term 4: node 1 wins; its no-op (index 3, term 4) never reaches anyone, but the old
  // index 2 reaches node 2 (as the leader's append after a probe would carry it), so index 2
  // is on a majority.
  c.drop_if = [](const Message& m) {
    return m.type == MessageType::append &&
           std::any_of(m.entries.begin(), m.entries.end(),
                       [](const Entry& e) { return e.index >= 3; });
  };
  c.cut(1, 3);
  c.core(1).campaign();
  c.deliver_all();
  REQUIRE(c.core(1).role() == Role::leader);
  REQUIRE(c.core(1).term() == 4);
  Message app = msg(MessageType::append, 1, 2, 4);
  app.index = 1;
  app.log_term = 1;
  app.entries = {entry(2, 2, "old")};
  app.commit = 1;
  c.core(2).step(app);
  c.deliver_all();
  REQUIRE(c.core(1).progress_for_test(2)->match == 2);
  CHECK(c.core(1).log().committed() == 1);  // replicated on 2 of 3, yet not committed
  CHECK(c.node(1).sm_index == 1);
  // Once the current-term no-op is replicated, both commit (index 2 indirectly).
  c.drop_if = nullptr;
  c.heal();
  c.tick(1);
  c.deliver_all();
  CHECK(c.core(1).log().committed() == 3);
  CHECK(c.node(2).sm_index == 3);
}

TEST_CASE("new leader appends a no-op of its term first (§8)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 2);
  const RaftLog& log = c.core(2).log();
  CHECK(log.at(log.last_index()).type == EntryType::noop);
  CHECK(log.term(log.last_index()) == c.core(2).term());
  CHECK(log.committed() == log.last_index());
}

TEST_CASE("pre-vote prevents disruption by a partitioned node rejoining (thesis §9.6)", "[raft]") {
  for (bool pre_vote : {true, false}) {
    Cluster c({1, 2, 3}, {}, options(pre_vote, false));
    elect(c, 1);
    Term before = c.core(1).term();
    c.isolate(3);
    REQUIRE(c.core(1).propose(bytes_of("while 3 is away")).ok());
    c.deliver_all();
    c.tick(3, 100);  // many election timeouts in isolation
    c.deliver_all();
    c.heal();
    c.tick(3, 40);
    c.deliver_all();
    if (pre_vote) {
      CHECK(c.core(3).term() == before);  // pre-votes failed, term never moved
      CHECK(c.core(1).role() == Role::leader);
      CHECK(c.core(1).term() == before);
    } else {
      // Without pre-vote the rejoining node's inflated term deposes the leader.
      CHECK(c.core(3).term() > before);
      CHECK(c.core(1).term() > before);
    }
  }
}

TEST_CASE("leader steps down without quorum contact (check-quorum, thesis §6.2)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options(true, true));
  elect(c, 1);
  c.isolate(1);
  c.tick(1, 25);  // > 2 election timeouts
  CHECK(c.core(1).role() == Role::follower);
  // Without check-quorum the isolated leader stays leader.
  Cluster d({1, 2, 3}, {}, options(true, false));
  elect(d, 1);
  d.isolate(1);
  d.tick(1, 25);
  CHECK(d.core(1).role() == Role::leader);
}

TEST_CASE("followers in a leader lease ignore vote requests (check-quorum, thesis §4.2.3)",
          "[raft]") {
  Cluster c({1, 2, 3}, {}, options(false, true));
  elect(c, 1);
  Term t = c.core(1).term();
  c.core(3).campaign();  // not a timeout: 2 still hears from 1
  c.deliver_all();
  CHECK(c.core(2).term() == t);
  CHECK(c.core(1).role() == Role::leader);
}

TEST_CASE("leadership transfer hands over to a caught-up follower (thesis §3.10)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  c.isolate(3);
  for (int k = 0; k < 5; ++k) {
    REQUIRE(c.core(1).propose(bytes_of("e" + std::to_string(k))).ok());
  }
  c.deliver_all();
  c.heal();
  Index last = c.core(1).log().last_index();
  REQUIRE(c.core(1).transfer_leadership(3).ok());
  CHECK(c.core(1).propose(bytes_of("refused")).error == errc::transfer_in_progress);
  c.deliver_all();  // catch-up append, then TimeoutNow, then an election that bypasses leases
  CHECK(c.core(3).role() == Role::leader);
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(3).log().last_index() > last);  // holds everything plus its own no-op
  CHECK(c.core(1).transfer_leadership(2).error == errc::not_leader);
}

TEST_CASE("leadership transfer is aborted after an election timeout", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  c.isolate(2);
  REQUIRE(c.core(1).transfer_leadership(2).ok());
  c.deliver_all();
  CHECK(c.core(1).transferee_for_test() == 2);
  c.heal();
  c.cut(1, 2);
  c.tick(1, 12);
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).transferee_for_test() == kNoNode);
  CHECK(c.core(1).propose(bytes_of("accepted again")).ok());
}

TEST_CASE("read index is released only after a heartbeat quorum (thesis §6.4)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  REQUIRE(c.core(1).propose(bytes_of("w")).ok());
  c.deliver_all();
  Index commit = c.core(1).log().committed();
  REQUIRE(c.core(1).read_index(bytes_of("ctx-1")).ok());
  c.send(c.process_ready(1));
  CHECK(c.node(1).read_states.empty());  // not before the quorum answered
  c.deliver_all();
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == commit);
  CHECK(string_of(c.node(1).read_states[0].ctx) == "ctx-1");

  // A deposed leader in a minority cannot confirm a read.
  c.isolate(1);
  c.node(1).read_states.clear();
  REQUIRE(c.core(1).read_index(bytes_of("ctx-2")).ok());
  c.deliver_all();
  CHECK(c.node(1).read_states.empty());
  CHECK(c.core(2).read_index(bytes_of("x")).error == errc::not_leader);
  CHECK(c.core(2).read_index(bytes_of("x")).leader_hint == 1);
}

TEST_CASE("read index waits for the new leader's first commit (thesis §6.4)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  c.drop_if = [](const Message& m) { return m.type == MessageType::append_resp; };
  elect(c, 1);
  REQUIRE(c.core(1).read_index(bytes_of("early")).ok());
  c.deliver_all();
  CHECK(c.node(1).read_states.empty());  // no-op not committed yet
  c.drop_if = nullptr;
  c.tick(1, 2);
  c.deliver_all();
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == c.core(1).log().committed());
}

TEST_CASE("learner does not vote and never campaigns (thesis §4.2.1)", "[raft]") {
  Cluster c({1, 2}, {3}, options(false, false));
  c.tick(3, 100);
  CHECK(c.core(3).role() == Role::follower);
  CHECK(c.core(3).term() == 0);
  // 1's quorum is 2 of {1, 2}; the learner's answer does not count.
  c.cut(1, 2);
  c.core(1).campaign();
  c.deliver_all();
  CHECK(c.core(1).role() == Role::candidate);
  c.heal();
  c.core(1).campaign();
  c.deliver_all();
  CHECK(c.core(1).role() == Role::leader);
  REQUIRE(c.core(1).propose(bytes_of("to learner")).ok());
  c.deliver_all();
  CHECK(c.node(3).sm_index == c.core(1).log().committed());  // but it does get the log
}

TEST_CASE("lagging follower catches up by InstallSnapshot (§7)", "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  c.isolate(3);
  for (int k = 0; k < 20; ++k) {
    REQUIRE(c.core(1).propose(bytes_of("v" + std::to_string(k))).ok());
  }
  c.deliver_all();
  REQUIRE(c.compact(1).ok());
  REQUIRE(c.core(1).log().first_index() > c.core(3).log().last_index() + 1);
  c.heal();
  c.tick(1, 3);
  c.deliver_all();
  CHECK(c.node(3).sm_index == c.node(1).sm_index);
  CHECK(c.core(1).progress_for_test(3)->match == c.core(1).log().last_index());
  // And replication continues normally afterwards.
  REQUIRE(c.core(1).propose(bytes_of("after")).ok());
  c.deliver_all();
  CHECK(c.node(3).sm_index == c.core(1).log().committed());
  // The installed snapshot is durable: a restart starts from it.
  c.crash(3);
  REQUIRE(c.restart(3));
  CHECK(c.core(3).log().snapshot().meta.index > 0);
  CHECK(c.node(3).sm_index == c.core(3).log().snapshot().meta.index);
}

TEST_CASE("compaction refuses entries not yet applied", "[raft]") {
  Cluster c({1}, {}, options());
  elect(c, 1);
  Index applied = c.core(1).log().applied();
  REQUIRE(c.core(1).propose(bytes_of("pending")).ok());
  CHECK(c.core(1).compact(applied + 1, {}).error == errc::not_applied);
  CHECK(c.core(1).compact(0, {}).error == errc::compacted);
}

TEST_CASE("membership changes one server at a time: learner, promote, remove (thesis §4.1)",
          "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  c.add_node(4);
  Status st = c.core(1).propose_conf_change(ConfChangeType::add_learner, 4);
  REQUIRE(st.ok());
  CHECK(c.core(1).propose_conf_change(ConfChangeType::remove, 2).error ==
        errc::conf_change_pending);
  c.deliver_all();
  CHECK(c.core(1).conf().learners == std::set<NodeId>{4});
  CHECK(c.core(4).conf().learners == std::set<NodeId>{4});  // learned from the log
  CHECK(c.node(4).sm_index == c.core(1).log().committed());
  CHECK(c.core(1).propose_conf_change(ConfChangeType::add_learner, 4).error ==
        errc::invalid_conf_change);

  REQUIRE(c.core(1).propose_conf_change(ConfChangeType::promote, 4).ok());
  c.deliver_all();
  CHECK(c.core(1).conf().voters == std::set<NodeId>{1, 2, 3, 4});
  CHECK(c.core(4).promotable());

  // The leader removes itself: it steps down once the change commits; the rest elect.
  REQUIRE(c.core(1).propose_conf_change(ConfChangeType::remove, 1).ok());
  c.deliver_all();
  CHECK(c.core(1).role() == Role::follower);
  CHECK_FALSE(c.core(1).promotable());
  c.crash(1);
  for (int k = 0; k < 60 && c.leader() == kNoNode; ++k) {
    c.tick_all();
    c.deliver_all();
  }
  NodeId l = c.leader();
  REQUIRE(l != kNoNode);
  CHECK(l != 1);
  REQUIRE(c.core(l).propose(bytes_of("with 3 of {2,3,4}")).ok());
  c.deliver_all();
  CHECK(c.node(4).sm_index == c.core(l).log().committed());
}

TEST_CASE("restart recovers term, vote and log from storage, and relearns the commit index",
          "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  REQUIRE(c.core(1).propose(bytes_of("durable")).ok());
  c.deliver_all();
  HardState before = c.core(2).hard_state();
  Index last = c.core(2).log().last_index();
  REQUIRE(c.node(2).sm_index == before.commit);
  c.crash(2);
  REQUIRE(c.restart(2));
  CHECK(c.core(2).hard_state().term == before.term);
  CHECK(c.core(2).hard_state().vote == before.vote);
  CHECK(c.core(2).log().last_index() == last);
  // A Ready that only moved the commit past ordinary entries was not synced (Ready::must_sync),
  // so the restarted node may know an older commit; the leader's next heartbeat carries it.
  CHECK(c.core(2).hard_state().commit <= before.commit);
  c.tick(1, options().heartbeat_tick);
  c.deliver_all();
  CHECK(c.node(2).sm_index == before.commit);  // re-applied from the stored log
}

TEST_CASE("a Ready that only moves the commit needs no fsync unless it commits a conf change",
          "[raft]") {
  Cluster c({1, 2, 3}, {}, options());
  elect(c, 1);
  c.add_node(4);
  struct Seen {
    bool must_sync;
    bool commits_conf;
  };
  std::vector<Seen> commit_only;  // node 2's Readies whose only durable change is the commit
  c.crash_in_ready_if = [&](NodeId id, const Ready& rd) -> std::optional<CrashInSync> {
    if (id == 2 && rd.hard_state && rd.entries.empty() && !rd.snapshot) {
      bool conf = std::any_of(rd.committed_entries.begin(), rd.committed_entries.end(),
                              [](const Entry& e) { return e.type == EntryType::conf_change; });
      commit_only.push_back({rd.must_sync, conf});
    }
    return std::nullopt;
  };
  REQUIRE(c.core(1).propose(bytes_of("ordinary")).ok());
  c.deliver_all();
  c.tick(1, options().heartbeat_tick);
  c.deliver_all();
  REQUIRE(c.core(1).propose_conf_change(ConfChangeType::add_learner, 4).ok());
  c.deliver_all();
  c.tick(1, options().heartbeat_tick);
  c.deliver_all();
  c.crash_in_ready_if = nullptr;
  REQUIRE(c.core(2).conf().learners.contains(4));
  bool saw_plain = false;
  bool saw_conf = false;
  for (const Seen& s : commit_only) {
    CHECK(s.must_sync == s.commits_conf);
    (s.commits_conf ? saw_conf : saw_plain) = true;
  }
  CHECK(saw_plain);  // the commit of "ordinary" came alone and was not synced
  CHECK(saw_conf);   // the commit of the conf change came alone and was synced
  // Restarted, node 2 still knows the learner: the commit covering the change is durable.
  c.crash(2);
  REQUIRE(c.restart(2));
  CHECK(c.core(2).conf().learners.contains(4));
}

TEST_CASE("a crash before fsync loses the vote, which was never sent", "[raft]") {
  Cluster c({1, 2, 3}, {}, options(false, false));
  c.core(1).campaign();
  c.send(c.process_ready(1));
  c.cut(1, 3);
  // Node 2 handles the request but crashes before its Ready is durable.
  c.drop_if = [](const Message& m) { return m.to == 2; };
  c.deliver_all();
  c.drop_if = nullptr;
  Message v = msg(MessageType::vote, 1, 2, 1);
  v.index = c.core(1).log().last_index();
  v.log_term = c.core(1).log().last_term();
  c.core(2).step(v);
  auto out = c.process_ready(2, CrashInSync{0});
  CHECK(out.empty());  // nothing leaves a node before its Ready is persisted
  CHECK_FALSE(c.node(2).up);
  REQUIRE(c.restart(2));
  CHECK(c.core(2).hard_state().vote == kNoNode);
  CHECK(c.core(1).role() == Role::candidate);
}

TEST_CASE("conf change encoding round-trips and rejects garbage", "[raft]") {
  ConfChange cc{ConfChangeType::promote, 7, ConfState{{1, 2, 7}, {9}}};
  auto back = decode_conf_change(encode_conf_change(cc));
  REQUIRE(back.has_value());
  CHECK(*back == cc);
  Bytes bad = encode_conf_change(cc);
  bad.pop_back();
  CHECK_FALSE(decode_conf_change(bad).has_value());
  CHECK_FALSE(decode_conf_change(Bytes{9}).has_value());
}

TEST_CASE("a removed node refuses votes and pre-votes (thesis §4.2.3)", "[raft]") {
  Cluster c({1, 2, 3, 4}, {}, options(true, true));
  elect(c, 1);
  REQUIRE(c.core(1).propose_conf_change(ConfChangeType::remove, 4).ok());
  c.deliver_all();
  REQUIRE(c.core(1).conf().voters == std::set<NodeId>{1, 2, 3});
  REQUIRE(c.core(4).conf().voters == std::set<NodeId>{1, 2, 3});  // 4 applied its removal
  // The leader no longer heartbeats 4: its leader lease runs out, so only the membership
  // rule below can make it refuse.
  c.tick(4, 3 * 10);
  Term t = c.core(4).term();
  for (MessageType type : {MessageType::pre_vote, MessageType::vote}) {
    Message v = msg(type, 3, 4, t + 1);
    v.index = c.core(3).log().last_index();
    v.log_term = c.core(3).log().last_term();
    c.core(4).step(v);
    auto out = messages_of(c.core(4));
    REQUIRE(out.size() == 1);
    CHECK(out[0].to == 3);
    CHECK(out[0].reject);
  }
  CHECK(c.core(4).hard_state().vote == kNoNode);
}

TEST_CASE("a learner still votes: it may have been promoted without knowing it yet", "[raft]") {
  // etcd's rule: a candidate only asks nodes that are voters in its configuration, so a
  // request reaching a learner means the promotion committed on the candidate's side. Refusing
  // could leave a quorum that needs this node unable to elect anyone.
  Cluster c({1, 2, 3}, {4}, options(false, false));
  Message v = msg(MessageType::vote, 3, 4, 1);
  c.core(4).step(v);
  auto out = messages_of(c.core(4));
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].reject);
}

TEST_CASE("a snapshot over a divergent tail is acknowledged at the commit index (§7)", "[raft]") {
  // Follower 2 holds 1..3 of term 1 (commit 2) and a stale tail 4..5 of term 2 that the term-3
  // leader never had. The leader's snapshot at (3, term 1) fast-forwards the commit, but the
  // follower must not claim to match the leader up to its own last index 5: the leader would
  // count it for entries 4..5 of term 3 that it does not hold (etcd answers with committed).
  RaftCore core = make_core(
      2, {entry(1, 1), entry(1, 2), entry(1, 3), entry(2, 4, "stale"), entry(2, 5, "stale")},
      HardState{2, kNoNode, 2});
  Message m = msg(MessageType::snapshot, 1, 2, 3);
  Snapshot s;
  s.meta.index = 3;
  s.meta.term = 1;
  s.meta.conf.voters = {1, 2, 3};
  m.snapshot = s;
  core.step(m);
  auto out = messages_of(core);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == MessageType::append_resp);
  CHECK_FALSE(out[0].reject);
  CHECK(out[0].index == 3);
  CHECK(core.log().committed() == 3);
  CHECK(core.log().last_index() == 5);  // the tail is kept until a leader's append replaces it
}

TEST_CASE("a new node whose log does not reach its own addition still votes", "[raft]") {
  // Node 4 was added and promoted, but so far it has only received the log up to index 1,
  // before its addition: it is in no configuration it knows of. It has not been removed, so it
  // must answer votes; a quorum that needs it could otherwise never elect a leader (found by
  // the simulator: leader 2 removed itself, and nodes 1 and 3 needed node 4's vote).
  InitialState st;
  st.conf.voters = {1, 2, 3};
  st.entries = {entry(1, 1)};
  st.hard_state = HardState{1, kNoNode, 1};
  Config cfg;
  cfg.id = 4;
  RaftCore core(cfg, std::move(st));
  REQUIRE_FALSE(core.conf().voters.contains(4));
  for (MessageType type : {MessageType::pre_vote, MessageType::vote}) {
    Message v = msg(type, 3, 4, 2);
    v.index = 5;
    v.log_term = 1;
    core.step(v);
    auto out = messages_of(core);
    REQUIRE(out.size() == 1);
    CHECK(out[0].to == 3);
    CHECK_FALSE(out[0].reject);
  }
  CHECK(core.hard_state().vote == 3);
}

TEST_CASE("a stale append is answered with the newer term, whatever the options (§5.1)", "[raft]") {
  // Without pre-vote and check-quorum too: a follower whose term a candidate raised, and that
  // cannot campaign itself, must tell the old leader, or it never hears from a leader again
  // (found by the simulator).
  for (bool options_on : {false, true}) {
    Config cfg;
    cfg.id = 2;
    cfg.pre_vote = options_on;
    cfg.check_quorum = options_on;
    InitialState st;
    st.hard_state = HardState{5, kNoNode, 1};
    st.entries = {entry(1, 1)};
    st.conf.voters = {1, 2, 3};
    RaftCore core(cfg, std::move(st));
    for (MessageType type : {MessageType::append, MessageType::heartbeat}) {
      Message m = msg(type, 1, 2, 3);
      m.index = 1;
      m.log_term = 1;
      core.step(m);
      auto out = messages_of(core);
      REQUIRE(out.size() == 1);
      CHECK(out[0].to == 1);
      CHECK(out[0].term == 5);
      CHECK(out[0].type == MessageType::append_resp);
    }
  }
}
