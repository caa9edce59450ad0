#include "discovery/raft/raft_node.h"

#include "discovery/raft/codec.h"
#include "discovery/raft/metrics.h"
#include "discovery/raft/raft_core.h"
#include "discovery/raft/transport.h"
#include "discovery/raft/wal.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/throw_exception.hpp>

#include <random>
#include <stdexcept>
#include <thread>

namespace routemesh::discovery::raft {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

class NodeCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "raft.node"; }
  std::string message(int ev) const override {
    switch (static_cast<node_errc>(ev)) {
      case node_errc::not_leader:
        return "not the Raft leader";
      case node_errc::stopped:
        return "Raft node stopped";
      case node_errc::timeout:
        return "Raft operation timed out";
      case node_errc::busy:
        return "Raft busy (leadership transfer or membership change in progress)";
      case node_errc::invalid_argument:
        return "invalid membership change";
    }
    return "unknown raft node error";
  }
};

const char* result_label(const NodeError* e) {
  if (e == nullptr) {
    return "ok";
  }
  switch (e->code) {
    case node_errc::not_leader:
      return "not_leader";
    case node_errc::stopped:
      return "stopped";
    case node_errc::timeout:
      return "timeout";
    case node_errc::busy:
      return "busy";
    case node_errc::invalid_argument:
      return "invalid_argument";
  }
  return "other";
}

// One pending API call. The node completes it; the awaiting coroutine only ever touches the
// waiter after it resumes, so a node destroyed (after stop()) in the meantime is harmless.
struct Waiter {
  Waiter(asio::any_io_executor ex, Metrics* m) : timer(std::move(ex)), metrics(m) {}
  asio::steady_timer timer;  // deadline; cancel() = "completed"
  Metrics* metrics;
  bool done = false;
  std::optional<NodeError> error;
  std::string value;
  Index index = 0;
  Term term = 0;
  bool read_ready = false;  // read_index: the read point is known (index)

  void succeed(std::string v = {}) {
    if (!done) {
      done = true;
      value = std::move(v);
      timer.cancel();
    }
  }
  void fail(NodeError e) {
    if (!done) {
      done = true;
      error = e;
      timer.cancel();
    }
  }
};
using WaiterPtr = std::shared_ptr<Waiter>;

asio::awaitable<void> wait_done(WaiterPtr w, Clock::time_point deadline) {
  w->timer.expires_at(deadline);
  while (!w->done) {
    auto [ec] = co_await w->timer.async_wait(kTuple);
    if (!ec && !w->done) {
      w->done = true;
      w->error = NodeError{node_errc::timeout};
    }
  }
}

void count(Metrics* m, const NodeError* e) {
  if (m != nullptr) {
    m->proposals.Add({{"result", result_label(e)}}).Increment();
  }
}

NodeError from_status(const Status& st) {
  switch (st.error) {
    case errc::not_leader:
      return {node_errc::not_leader, st.leader_hint};
    case errc::transfer_in_progress:
    case errc::conf_change_pending:
      return {node_errc::busy};
    case errc::invalid_conf_change:
    case errc::unknown_node:
      return {node_errc::invalid_argument};
    default:
      return {node_errc::invalid_argument};
  }
}

class RaftNodeImpl final : public RaftNode {
 public:
  RaftNodeImpl(asio::any_io_executor ex, RaftNodeOptions opt, StateMachine& sm,
               std::unique_ptr<LogStorage> storage, const Config& cfg, InitialState init,
               codec::PeerBook peers)
      : ex_(std::move(ex)),
        opt_(std::move(opt)),
        sm_(sm),
        storage_(std::move(storage)),
        core_(cfg, std::move(init)),
        tick_timer_(ex_),
        peers_(std::move(peers)),
        alive_(std::make_shared<bool>(true)),
        wal_work_(asio::make_work_guard(wal_io_)),
        wal_thread_([this] { wal_io_.run(); }) {
    applied_ = core_.log().snapshot().meta.index;
    last_snapshot_index_ = applied_;
  }

  ~RaftNodeImpl() override {
    stop();
    *alive_ = false;
  }

  boost::system::error_code start() {
    TransportOptions to;
    to.self = opt_.id;
    to.listen_address = opt_.peer_address;
    to.metrics = opt_.metrics;
    to.tls = opt_.tls;
    to.admit = [this](NodeId id) {
      const auto& conf = core_.conf();
      return (conf.voters.empty() && conf.learners.empty()) || conf.voters.contains(id) ||
             conf.learners.contains(id);
    };
    auto t = make_tcp_transport(ex_, to, [this](Message m) { on_message(std::move(m)); });
    if (!t) {
      return t.error();
    }
    transport_ = std::move(*t);
    for (const auto& [id, addr] : peers_) {
      transport_->set_peer(id, addr);
    }
    spdlog::info("raft: node {:016x} listening on {} (term {}, commit {}, {} voters)", opt_.id,
                 transport_->local_address(), core_.term(), core_.log().committed(),
                 core_.conf().voters.size());
    next_tick_ = Clock::now();
    schedule_tick();
    schedule_ready();  // committed entries to replay, a single voter's election, ...
    return {};
  }

  // ---- API ------------------------------------------------------------------------------------

  asio::awaitable<NodeResult<std::string>> propose(std::string data) override {
    Metrics* m = opt_.metrics;
    auto deadline = Clock::now() + opt_.propose_timeout;
    auto w = start_proposal(codec::wrap_command(data));
    if (!w) {
      NodeError e = w.error();
      count(m, &e);
      co_return e;
    }
    co_await wait_done(*w, deadline);
    count(m, (*w)->error ? &*(*w)->error : nullptr);
    if ((*w)->error) {
      co_return *(*w)->error;
    }
    co_return std::move((*w)->value);
  }

  asio::awaitable<NodeResult<std::uint64_t>> read_index() override {
    if (stopped_) {
      co_return NodeError{node_errc::stopped};
    }
    auto deadline = Clock::now() + opt_.propose_timeout;
    std::uint64_t ctx = ++read_seq_;
    Bytes c(8);
    for (int i = 0; i < 8; ++i) {
      c[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ctx >> (8 * i));
    }
    Status st = core_.read_index(std::move(c));
    if (!st.ok()) {
      co_return from_status(st);
    }
    auto w = std::make_shared<Waiter>(ex_, opt_.metrics);
    reads_[ctx] = w;
    schedule_ready();
    co_await wait_done(w, deadline);
    if (w->error) {
      co_return *w->error;
    }
    co_return w->index;
  }

  asio::awaitable<NodeResult<void>> add_member(NodeId id, std::string peer_address,
                                               bool voter) override {
    auto alive = alive_;
    if (auto e = leader_check()) {
      co_return *e;
    }
    if (id == kNoNode || !base::parse_host_port(peer_address, kPeerAddressRules) ||
        core_.conf().voters.contains(id)) {
      co_return NodeError{node_errc::invalid_argument};
    }
    if (!core_.conf().learners.contains(id)) {
      // The address first, so that every member can reach the learner once it is added.
      auto w = start_proposal(codec::wrap_peers({{id, peer_address}}));
      if (!w) {
        co_return w.error();
      }
      co_await wait_done(*w, Clock::now() + opt_.propose_timeout);
      if ((*w)->error) {
        co_return *(*w)->error;
      }
      if (!*alive) {
        co_return NodeError{node_errc::stopped};
      }
      auto r = co_await conf_change(ConfChangeType::add_learner, id);
      if (!r) {
        co_return r.error();
      }
      if (!*alive) {
        co_return NodeError{node_errc::stopped};
      }
    }
    if (!voter) {
      co_return NodeResult<void>{};
    }
    co_return co_await promote_member(id);
  }

  asio::awaitable<NodeResult<void>> promote_member(NodeId id) override {
    auto alive = alive_;
    if (auto e = leader_check()) {
      co_return *e;
    }
    if (!core_.conf().learners.contains(id)) {
      co_return NodeError{node_errc::invalid_argument};
    }
    // Thesis §4.2.1: promote only once the learner holds everything committed when we
    // started waiting, so the new voter does not stall commits while it catches up.
    Index target = core_.log().committed();
    auto deadline = Clock::now() + opt_.propose_timeout;
    for (;;) {
      if (auto e = leader_check()) {
        co_return *e;
      }
      const Progress* p = core_.progress(id);
      if (p != nullptr && p->match >= target) {
        break;
      }
      if (Clock::now() >= deadline) {
        co_return NodeError{node_errc::timeout};
      }
      if (!co_await sleep_tick(alive)) {
        co_return NodeError{node_errc::stopped};
      }
    }
    co_return co_await conf_change(ConfChangeType::promote, id);
  }

  asio::awaitable<NodeResult<void>> remove_member(NodeId id) override {
    if (auto e = leader_check()) {
      co_return *e;
    }
    co_return co_await conf_change(ConfChangeType::remove, id);
  }

  asio::awaitable<NodeResult<void>> transfer_leadership(NodeId id) override {
    auto alive = alive_;
    if (stopped_) {
      co_return NodeError{node_errc::stopped};
    }
    if (core_.leader() == id && core_.role() == Role::leader) {
      co_return NodeResult<void>{};
    }
    Status st = core_.transfer_leadership(id);
    if (!st.ok()) {
      co_return from_status(st);
    }
    schedule_ready();
    auto deadline = Clock::now() + opt_.propose_timeout;
    while (Clock::now() < deadline) {
      if (!co_await sleep_tick(alive)) {
        co_return NodeError{node_errc::stopped};
      }
      if (core_.leader() == id) {
        co_return NodeResult<void>{};
      }
    }
    co_return NodeError{node_errc::timeout};
  }

  NodeStatus status() const override {
    NodeStatus s;
    s.id = opt_.id;
    s.term = core_.term();
    s.leader = core_.leader();
    s.role = core_.role();
    s.commit = core_.log().committed();
    s.applied = applied_;
    s.snapshot_index = core_.log().snapshot().meta.index;
    std::map<NodeId, Member> members;
    for (NodeId v : core_.conf().voters) {
      members[v] = Member{v, peer_of(v), true};
    }
    for (NodeId l : core_.conf().learners) {
      members[l] = Member{l, peer_of(l), false};
    }
    for (auto& [id, m] : members) {
      s.members.push_back(m);
    }
    return s;
  }

  std::string peer_address() const override { return transport_->local_address(); }

  std::size_t recheck_peers() override {
    return transport_ && !stopped_ ? transport_->recheck_peers() : 0;
  }

  void stop() override {
    if (stopped_) {
      return;
    }
    stopped_ = true;
    tick_timer_.cancel();
    if (transport_) {
      transport_->stop();
    }
    // A Ready being persisted finishes (the process may not leave a record half written);
    // its completion then finds the node stopped and sends and applies nothing.
    wal_work_.reset();
    if (wal_thread_.joinable()) {
      wal_thread_.join();
    }
    for (auto& [i, w] : proposals_) {
      w->fail({node_errc::stopped});
    }
    proposals_.clear();
    for (auto& [c, w] : reads_) {
      w->fail({node_errc::stopped});
    }
    reads_.clear();
    spdlog::info("raft: node {:016x} stopped (applied {})", opt_.id, applied_);
  }

 private:
  std::string peer_of(NodeId id) const {
    if (id == opt_.id) {
      return transport_ ? transport_->local_address() : opt_.peer_address;
    }
    auto it = peers_.find(id);
    return it == peers_.end() ? std::string{} : it->second;
  }

  std::optional<NodeError> leader_check() const {
    if (stopped_) {
      return NodeError{node_errc::stopped};
    }
    if (core_.role() != Role::leader) {
      return NodeError{node_errc::not_leader, core_.leader()};
    }
    return std::nullopt;
  }

  // Sleeps one tick; false when the node stopped or died meanwhile.
  asio::awaitable<bool> sleep_tick(std::shared_ptr<bool> alive) {
    asio::steady_timer t(ex_);
    t.expires_after(std::chrono::milliseconds(opt_.tick_ms));
    co_await t.async_wait(kTuple);
    co_return *alive && !stopped_;
  }

  NodeResult<WaiterPtr> start_proposal(Bytes data) {
    if (stopped_) {
      return NodeError{node_errc::stopped};
    }
    Status st = core_.propose(std::move(data));
    if (!st.ok()) {
      return from_status(st);
    }
    return track(st);
  }

  WaiterPtr track(const Status& st) {
    auto w = std::make_shared<Waiter>(ex_, opt_.metrics);
    w->index = st.index;
    w->term = st.term;
    proposals_[st.index] = w;
    schedule_ready();
    return w;
  }

  asio::awaitable<NodeResult<void>> conf_change(ConfChangeType type, NodeId id) {
    if (stopped_) {
      co_return NodeError{node_errc::stopped};
    }
    Status st = core_.propose_conf_change(type, id);
    if (!st.ok()) {
      co_return from_status(st);
    }
    auto w = track(st);
    co_await wait_done(w, Clock::now() + opt_.propose_timeout);
    if (w->error) {
      co_return *w->error;
    }
    co_return NodeResult<void>{};
  }

  // ---- the Ready loop ------------------------------------------------------------------------

  void on_message(Message m) {
    if (stopped_) {
      return;
    }
    core_.step(m);
    schedule_ready();
  }

  // Posting (instead of running inline) lets every message that arrived in the same batch of
  // socket reads be stepped first, so one Ready and one fdatasync cover all of them (group
  // commit). While a Ready is being persisted (on the WAL thread) this thread keeps stepping
  // messages, ticks and proposals; they go into the next Ready.
  void schedule_ready() {
    if (ready_scheduled_ || stopped_) {
      return;
    }
    ready_scheduled_ = true;
    asio::post(ex_, [this, alive = alive_] {
      if (!*alive) {
        return;
      }
      ready_scheduled_ = false;
      process_ready();
    });
  }

  // README.md "Ready contract": persist → send → apply → advance. A Ready that must be made
  // durable is written and fdatasynced on the WAL thread, and the rest of it runs back on this
  // thread once that returned (finish_ready); until then the core hands out no other Ready.
  // This thread meanwhile serves the admin API and steps what arrives, instead of waiting in
  // fdatasync: on 3 managers that was a third of the leader's time at thousands of writes a
  // second (bench/README.md, "Cluster").
  void process_ready() {
    while (!stopped_ && !persisting_ && core_.has_ready()) {
      Ready rd = core_.ready();
      if (!rd.must_sync) {
        finish_ready(rd);
        continue;
      }
      persisting_ = true;
      asio::post(wal_io_, [this, alive = alive_, rd = std::move(rd)]() mutable {
        storage_->save(rd.snapshot, rd.entries, rd.hard_state);  // aborts on failure
        const auto sync_ns = storage_->last_sync_ns();
        asio::post(ex_, [this, alive, sync_ns, rd = std::move(rd)]() mutable {
          if (!*alive) {
            return;
          }
          persisting_ = false;
          if (stopped_) {
            return;
          }
          if (opt_.metrics != nullptr) {
            opt_.metrics->fsync_duration.Observe(static_cast<double>(sync_ns) / 1e9);
          }
          finish_ready(rd);
          process_ready();
        });
      });
    }
    observe();
  }

  // The rest of a Ready once it is durable: send, apply, advance.
  void finish_ready(Ready& rd) {
    for (Message& m : rd.messages) {
      transport_->send(std::move(m));
    }
    if (rd.snapshot) {
      apply_snapshot(*rd.snapshot);
    }
    for (const Entry& e : rd.committed_entries) {
      apply_entry(e);
    }
    for (const ReadState& rs : rd.read_states) {
      on_read_state(rs);
    }
    release_reads();
    core_.advance(rd);
    maybe_compact();
  }

  void apply_snapshot(const Snapshot& s) {
    auto d = codec::unwrap_snapshot_data(s.data);
    if (!d) {
      // Durable already and acknowledged next: a state we cannot load must stop the node.
      spdlog::critical("raft: snapshot {} from the leader is undecodable; stopping", s.meta.index);
      std::abort();
    }
    sm_.restore(d->sm_image);
    peers_ = std::move(d->peers);
    for (const auto& [id, addr] : peers_) {
      transport_->set_peer(id, addr);
    }
    applied_ = s.meta.index;
    last_snapshot_index_ = s.meta.index;
    // Our proposals up to here may or may not be inside the snapshot: the outcome is unknown.
    for (auto it = proposals_.begin(); it != proposals_.end() && it->first <= applied_;) {
      it->second->fail({node_errc::timeout});
      it = proposals_.erase(it);
    }
    spdlog::info("raft: node {:016x} installed snapshot at {} (term {})", opt_.id, s.meta.index,
                 s.meta.term);
  }

  void apply_entry(const Entry& e) {
    if (e.index <= applied_) {
      return;
    }
    std::string result;
    switch (e.type) {
      case EntryType::normal: {
        auto u = codec::unwrap_entry(e.data);
        if (!u) {
          spdlog::error("raft: entry {} has no driver envelope; skipped", e.index);
        } else if (u->kind == codec::EnvelopeKind::command) {
          result = sm_.apply(e.index, u->command);
        } else {
          for (auto& [id, addr] : u->peers) {
            peers_[id] = addr;
            transport_->set_peer(id, addr);
          }
        }
        break;
      }
      case EntryType::noop:
        break;
      case EntryType::conf_change: {
        // The core already switched membership at commit; the driver keeps the address book
        // in step (a removed node's address is forgotten on every member).
        auto cc = decode_conf_change(e.data);
        if (cc && cc->type == ConfChangeType::remove) {
          peers_.erase(cc->node);
          transport_->remove_peer(cc->node);
        }
        if (cc) {
          spdlog::info("raft: node {:016x} applied membership change at {}: {} voters, {} learners",
                       opt_.id, e.index, cc->result.voters.size(), cc->result.learners.size());
        }
        break;
      }
    }
    applied_ = e.index;
    auto it = proposals_.find(e.index);
    if (it != proposals_.end()) {
      if (it->second->term == e.term) {
        it->second->succeed(std::move(result));
      } else {
        // A new leader overwrote our entry (§5.3): it was never committed.
        it->second->fail({node_errc::not_leader, core_.leader()});
      }
      proposals_.erase(it);
    }
  }

  void on_read_state(const ReadState& rs) {
    if (rs.ctx.size() != 8) {
      return;
    }
    std::uint64_t ctx = 0;
    for (int i = 0; i < 8; ++i) {
      ctx |= static_cast<std::uint64_t>(rs.ctx[static_cast<std::size_t>(i)]) << (8 * i);
    }
    auto it = reads_.find(ctx);
    if (it != reads_.end()) {
      it->second->index = rs.index;
      it->second->read_ready = true;
    }
  }

  // Thesis §6.4 step 4: serve the read once the state machine applied the read point.
  void release_reads() {
    for (auto it = reads_.begin(); it != reads_.end();) {
      if (it->second->done) {
        it = reads_.erase(it);
      } else if (it->second->read_ready && it->second->index <= applied_) {
        it->second->succeed();
        it = reads_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void maybe_compact() {
    if (opt_.snapshot_entries == 0 || applied_ - last_snapshot_index_ < opt_.snapshot_entries) {
      return;
    }
    std::string image = sm_.snapshot();
    // Our own address is in the book only if it came through the log (bootstrap, join); a
    // member that installs this snapshot must be able to reach us either way.
    codec::PeerBook book = peers_;
    book.try_emplace(opt_.id, transport_->local_address());
    Status st = core_.compact(applied_, codec::wrap_snapshot_data(book, image));
    if (!st.ok()) {
      return;  // applied entries not persisted yet (cannot happen after advance); retry later
    }
    // README asks to persist before compact(); compact() only trimmed the core's memory and no
    // message left in between, so saving right now is equivalent, and the core computed the
    // ConfState as of `applied_` for us.
    storage_->save_snapshot(core_.log().snapshot());
    last_snapshot_index_ = applied_;
    if (opt_.metrics != nullptr) {
      opt_.metrics->snapshots.Increment();
    }
    spdlog::info("raft: node {:016x} snapshot at {} ({} WAL segments left)", opt_.id, applied_,
                 storage_->segment_count());
  }

  void observe() {
    NodeId leader = core_.leader();
    bool is_leader = core_.role() == Role::leader;
    if (leader != last_leader_) {
      if (leader != kNoNode) {
        spdlog::info("raft: node {:016x} sees leader {:016x} in term {}", opt_.id, leader,
                     core_.term());
        if (opt_.metrics != nullptr) {
          opt_.metrics->leader_changes.Increment();
        }
      }
      last_leader_ = leader;
    }
    if (was_leader_ && !is_leader) {
      // The core drops pending reads when it loses leadership (thesis §6.4).
      for (auto& [c, w] : reads_) {
        w->fail({node_errc::not_leader, leader});
      }
      reads_.clear();
    }
    was_leader_ = is_leader;
    if (Metrics* m = opt_.metrics) {
      m->term.Set(static_cast<double>(core_.term()));
      m->commit_index.Set(static_cast<double>(core_.log().committed()));
      m->applied_index.Set(static_cast<double>(applied_));
      m->is_leader.Set(is_leader ? 1 : 0);
    }
  }

  // Drift-free: each deadline is the previous one plus tick_ms, so a slow Ready does not
  // stretch election timeouts; after a long stall (e.g. a slow fsync) it resynchronises
  // instead of firing a burst of ticks.
  void schedule_tick() {
    auto tick = std::chrono::milliseconds(opt_.tick_ms);
    next_tick_ += tick;
    auto now = Clock::now();
    if (now - next_tick_ > 5 * tick) {
      next_tick_ = now + tick;
    }
    tick_timer_.expires_at(next_tick_);
    tick_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
      if (ec || !*alive || stopped_) {
        return;
      }
      core_.tick();
      sweep_waiters();
      schedule_ready();
      schedule_tick();
    });
  }

  // Waiters that timed out stay in the maps until their index applies; drop them here.
  void sweep_waiters() {
    if (++sweep_ticks_ % 16 != 0) {
      return;
    }
    std::erase_if(proposals_, [](const auto& kv) { return kv.second->done; });
    std::erase_if(reads_, [](const auto& kv) { return kv.second->done; });
  }

  asio::any_io_executor ex_;
  RaftNodeOptions opt_;
  StateMachine& sm_;
  std::unique_ptr<LogStorage> storage_;
  RaftCore core_;
  std::unique_ptr<Transport> transport_;
  asio::steady_timer tick_timer_;
  Clock::time_point next_tick_;
  codec::PeerBook peers_;
  Index applied_ = 0;
  Index last_snapshot_index_ = 0;
  bool stopped_ = false;
  bool ready_scheduled_ = false;
  NodeId last_leader_ = kNoNode;
  bool was_leader_ = false;
  std::uint64_t read_seq_ = 0;
  std::uint64_t sweep_ticks_ = 0;
  std::map<Index, WaiterPtr> proposals_;      // by log index (propose and conf changes)
  std::map<std::uint64_t, WaiterPtr> reads_;  // by read ctx
  std::shared_ptr<bool> alive_;               // false once destroyed (posted handlers check it)
  // The WAL thread: LogStorage::save of one Ready at a time (persisting_ is set meanwhile;
  // nothing else touches storage_ then). Last, so it starts once everything above exists.
  bool persisting_ = false;
  asio::io_context wal_io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> wal_work_;
  std::thread wal_thread_;
};

}  // namespace

const boost::system::error_category& node_category() noexcept {
  static const NodeCategory cat;
  return cat;
}

boost::system::error_code make_error_code(node_errc e) noexcept {
  return {static_cast<int>(e), node_category()};
}

std::string NodeError::message() const {
  std::string s = make_error_code(code).message();
  if (code == node_errc::not_leader && leader != kNoNode) {
    s += fmt::format(" (leader {:016x})", leader);
  }
  return s;
}

void throw_exception_from_error(const NodeError& e, const boost::source_location& loc) {
  boost::throw_exception(boost::system::system_error(e.error_code(), e.message()), loc);
}

boost::system::result<std::unique_ptr<RaftNode>> RaftNode::open(asio::any_io_executor ex,
                                                                RaftNodeOptions options,
                                                                StateMachine& sm,
                                                                Bootstrap bootstrap) {
  if (options.id == kNoNode || options.tick_ms == 0 || options.heartbeat_ticks == 0 ||
      options.heartbeat_ticks >= options.election_ticks) {
    return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  auto opened = open_wal(options.data_dir);
  if (!opened) {
    return opened.error();
  }
  StoredState& st = opened->state;
  if (st.truncated_bytes > 0) {
    spdlog::warn("raft: node {:016x} dropped a torn WAL tail of {} bytes", options.id,
                 st.truncated_bytes);
  }
  bool has_bootstrap = !bootstrap.empty() || !bootstrap.peers.empty();
  if (st.empty()) {
    if (has_bootstrap) {
      BootstrapState b{bootstrap.conf, bootstrap.peers};
      opened->storage->save_bootstrap(b);
      st.bootstrap = std::move(b);
    }
  } else if (has_bootstrap) {
    spdlog::info("raft: node {:016x} has state in {}; bootstrap ignored", options.id,
                 options.data_dir);
  }
  codec::PeerBook peers;
  if (st.bootstrap) {
    peers = st.bootstrap->peers;
  }
  if (st.snapshot) {
    auto d = codec::unwrap_snapshot_data(st.snapshot->data);
    if (!d) {
      spdlog::error("raft: snapshot {} in {} is undecodable", st.snapshot->meta.index,
                    options.data_dir);
      return make_error_code(wal_errc::bad_snapshot);
    }
    sm.restore(d->sm_image);
    peers = std::move(d->peers);
  }
  Config cfg;
  cfg.id = options.id;
  cfg.election_tick = static_cast<int>(options.election_ticks);
  cfg.heartbeat_tick = static_cast<int>(options.heartbeat_ticks);
  cfg.seed = options.seed != 0 ? options.seed : (options.id ^ std::random_device{}());
  InitialState init{st.hard_state, std::move(st.snapshot), std::move(st.entries),
                    st.bootstrap ? st.bootstrap->conf : ConfState{}};
  auto node = std::make_unique<RaftNodeImpl>(ex, std::move(options), sm, std::move(opened->storage),
                                             cfg, std::move(init), std::move(peers));
  if (auto ec = node->start()) {
    return ec;
  }
  return std::unique_ptr<RaftNode>(std::move(node));
}

}  // namespace routemesh::discovery::raft
