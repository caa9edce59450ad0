#include "discovery/raft/raft_node.h"

#include "discovery/raft/metrics.h"
#include "discovery/raft/wal.h"
#include "tests/unit/support/run_until.h"
#include "tests/unit/support/temp_dir.h"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <string>

namespace asio = boost::asio;
using namespace routemesh::discovery::raft;
using namespace std::chrono_literals;

namespace {

// A counter: every command "N" adds N and returns the new total. Checks that indices only
// grow, which is the StateMachine contract.
class CounterMachine final : public StateMachine {
 public:
  std::string apply(std::uint64_t index, std::string_view data) override {
    CHECK(index > last_index);
    last_index = index;
    total += std::stoull(std::string(data));
    ++applied;
    return std::to_string(total);
  }
  std::string snapshot() const override {
    return std::to_string(total) + " " + std::to_string(last_index);
  }
  void restore(std::string_view data) override {
    std::string s(data);
    auto sp = s.find(' ');
    total = std::stoull(s.substr(0, sp));
    last_index = std::stoull(s.substr(sp + 1));
    ++restores;
  }
  std::uint64_t total = 0;
  std::uint64_t last_index = 0;
  int applied = 0;
  int restores = 0;
};

// A free port on `ip` (closed again; the node binds it with SO_REUSEADDR).
std::string free_address(asio::io_context& io, const std::string& ip) {
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address(ip), 0));
  return ip + ":" + std::to_string(a.local_endpoint().port());
}

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 10s) {
  return routemesh::test::run_until(io, done, limit);
}

template <class T>
std::shared_ptr<std::optional<T>> spawn(asio::io_context& io, asio::awaitable<T> a) {
  auto out = std::make_shared<std::optional<T>>();
  asio::co_spawn(io, std::move(a), [out](std::exception_ptr e, T v) {
    if (e) {
      std::rethrow_exception(e);
    }
    out->emplace(std::move(v));
  });
  return out;
}

template <class T>
T await(asio::io_context& io, asio::awaitable<T> a, std::chrono::milliseconds limit = 10s) {
  auto r = spawn(io, std::move(a));
  REQUIRE(run_until(
      io, [&] { return r->has_value(); }, limit));
  return std::move(**r);
}

struct Cluster {
  explicit Cluster(std::size_t n) : machines(n), nodes(n) {
    for (std::size_t i = 0; i < n; ++i) {
      dirs.push_back(std::make_unique<routemesh::test::TempDir>("rm-raftd"));
      addresses.push_back(free_address(io, "127.0.0." + std::to_string(21 + i)));
      boot.conf.voters.insert(i + 1);
      boot.peers[i + 1] = addresses[i];
    }
    for (std::size_t i = 0; i < n; ++i) {
      open(i);
    }
  }

  RaftNodeOptions options(std::size_t i) {
    RaftNodeOptions o;
    o.id = i + 1;
    o.peer_address = i < addresses.size() ? addresses[i] : "127.0.0.1:0";
    o.data_dir = dirs[i]->path;
    o.tick_ms = 20;
    o.election_ticks = 10;
    o.heartbeat_ticks = 1;
    o.snapshot_entries = 40;
    o.seed = 1000 + i;
    o.metrics = &metrics;
    return o;
  }

  void open(std::size_t i) {
    machines[i] = std::make_unique<CounterMachine>();
    auto r = RaftNode::open(io.get_executor(), options(i), *machines[i], boot);
    REQUIRE(r.has_value());
    nodes[i] = std::move(*r);
  }

  void kill(std::size_t i) {
    nodes[i]->stop();
    nodes[i].reset();
  }

  // Index of the single leader among live nodes that all agree on, or -1.
  int leader() const {
    int found = -1;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] && nodes[i]->status().role == Role::leader) {
        if (found >= 0) {
          return -1;
        }
        found = static_cast<int>(i);
      }
    }
    if (found < 0) {
      return -1;
    }
    for (const auto& n : nodes) {
      if (n && n->status().leader != static_cast<NodeId>(found + 1)) {
        return -1;
      }
    }
    return found;
  }

  int wait_leader() {
    int l = -1;
    REQUIRE(run_until(io, [&] { return (l = leader()) >= 0; }));
    return l;
  }

  asio::io_context io;
  prometheus::Registry registry;
  Metrics metrics{registry};
  // Pointers: growing the vector must not move (and so remove) a directory a node uses.
  std::vector<std::unique_ptr<routemesh::test::TempDir>> dirs;
  std::vector<std::string> addresses;
  std::vector<std::unique_ptr<CounterMachine>> machines;
  std::vector<std::unique_ptr<RaftNode>> nodes;
  Bootstrap boot;
};

}  // namespace

TEST_CASE("raftd: three nodes elect, commit, lose the leader and catch up from disk") {
  spdlog::set_level(spdlog::level::warn);
  Cluster c(3);
  int l = c.wait_leader();

  // 100 concurrent proposals: each completes after apply with the counter's result.
  std::vector<std::shared_ptr<std::optional<NodeResult<std::string>>>> results;
  for (int i = 0; i < 100; ++i) {
    results.push_back(spawn(c.io, c.nodes[static_cast<std::size_t>(l)]->propose("1")));
  }
  REQUIRE(run_until(c.io, [&] {
    for (auto& r : results) {
      if (!r->has_value()) {
        return false;
      }
    }
    return true;
  }));
  std::set<std::string> values;
  for (auto& r : results) {
    REQUIRE((*r)->has_value());
    values.insert((*r)->value());
  }
  CHECK(values.size() == 100);
  CHECK(values.contains("1"));
  CHECK(values.contains("100"));
  CHECK(c.machines[static_cast<std::size_t>(l)]->total == 100);

  // A follower refuses with the leader's id (the API forwards).
  std::size_t f = (static_cast<std::size_t>(l) + 1) % 3;
  auto refused = await(c.io, c.nodes[f]->propose("1"));
  REQUIRE(refused.has_error());
  CHECK(refused.error().code == node_errc::not_leader);
  CHECK(refused.error().leader == static_cast<NodeId>(l + 1));
  auto follower_read = await(c.io, c.nodes[f]->read_index());
  REQUIRE(follower_read.has_error());
  CHECK(follower_read.error().code == node_errc::not_leader);

  // ReadIndex (thesis §6.4) is at least every write acknowledged before it.
  Index commit_before = c.nodes[static_cast<std::size_t>(l)]->status().commit;
  auto read = await(c.io, c.nodes[static_cast<std::size_t>(l)]->read_index());
  REQUIRE(read.has_value());
  CHECK(*read >= commit_before);
  CHECK(c.nodes[static_cast<std::size_t>(l)]->status().applied >= *read);
  // 100 entries with snapshot_entries = 40: the leader compacted its log.
  CHECK(c.nodes[static_cast<std::size_t>(l)]->status().snapshot_index >= 40);

  // Kill the leader: the other two elect a new one and keep committing.
  c.kill(static_cast<std::size_t>(l));
  int l2 = c.wait_leader();
  REQUIRE(l2 != l);
  auto after = await(c.io, c.nodes[static_cast<std::size_t>(l2)]->propose("5"));
  REQUIRE(after.has_value());
  CHECK(*after == "105");

  // Restart the old leader from its data_dir: snapshot + WAL, then catch up.
  c.open(static_cast<std::size_t>(l));
  auto& old = *c.machines[static_cast<std::size_t>(l)];
  CHECK(old.restores == 1);  // restored from its own snapshot before replaying the WAL
  REQUIRE(run_until(c.io, [&] { return old.total == 105; }));
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(run_until(c.io, [&] { return c.machines[i]->total == 105; }));
  }
  CHECK(c.metrics.leader_changes.Value() >= 2);
  CHECK(c.metrics.proposals.Add({{"result", "ok"}}).Value() >= 101);
  CHECK(c.metrics.proposals.Add({{"result", "not_leader"}}).Value() >= 1);
}

TEST_CASE("raftd: a fourth node joins as learner, is promoted and takes leadership") {
  spdlog::set_level(spdlog::level::warn);
  Cluster c(3);
  int l = c.wait_leader();
  auto& leader = *c.nodes[static_cast<std::size_t>(l)];
  for (int i = 0; i < 50; ++i) {  // enough to force a snapshot (InstallSnapshot, §7)
    REQUIRE(await(c.io, leader.propose("2")).has_value());
  }

  // A new node: empty data_dir, no bootstrap, port 0; it learns everything from the leader.
  c.dirs.push_back(std::make_unique<routemesh::test::TempDir>("rm-raftd"));
  c.machines.push_back(std::make_unique<CounterMachine>());
  auto o = c.options(3);
  o.peer_address = "127.0.0.24:0";
  auto r = RaftNode::open(c.io.get_executor(), o, *c.machines[3], {});
  REQUIRE(r.has_value());
  c.nodes.push_back(std::move(*r));
  std::string addr4 = c.nodes[3]->peer_address();
  CHECK(addr4.rfind("127.0.0.24:", 0) == 0);
  CHECK(addr4 != "127.0.0.24:0");

  auto added = await(c.io, leader.add_member(4, addr4, /*voter=*/false));
  REQUIRE(added.has_value());
  auto st = leader.status();
  REQUIRE(st.members.size() == 4);
  CHECK_FALSE(st.members[3].voter);
  CHECK(st.members[3].peer == addr4);
  REQUIRE(run_until(c.io, [&] { return c.machines[3]->total == 100; }));

  auto promoted = await(c.io, leader.promote_member(4));
  REQUIRE(promoted.has_value());
  st = leader.status();
  CHECK(st.members[3].voter);
  REQUIRE(run_until(c.io, [&] { return c.nodes[3]->status().members.size() == 4; }));
  // Every member learned every address from the log.
  for (const auto& m : c.nodes[3]->status().members) {
    CHECK_FALSE(m.peer.empty());
  }

  // Leadership transfer (thesis §3.10) to the new voter.
  auto moved = await(c.io, leader.transfer_leadership(4));
  REQUIRE(moved.has_value());
  REQUIRE(run_until(c.io, [&] { return c.leader() == 3; }));
  auto on_new = await(c.io, c.nodes[3]->propose("1"));
  REQUIRE(on_new.has_value());
  CHECK(*on_new == "101");

  // The old leader is removed; the three remaining voters still commit.
  auto removed = await(c.io, c.nodes[3]->remove_member(static_cast<NodeId>(l + 1)));
  REQUIRE(removed.has_value());
  CHECK(c.nodes[3]->status().members.size() == 3);
  c.kill(static_cast<std::size_t>(l));
  auto last = await(c.io, c.nodes[3]->propose("1"));
  REQUIRE(last.has_value());
  CHECK(*last == "102");
}

TEST_CASE("raftd: proposals time out without a quorum and fail with stopped on stop()") {
  spdlog::set_level(spdlog::level::warn);
  Cluster c(3);
  int l = c.wait_leader();
  std::size_t li = static_cast<std::size_t>(l);
  for (std::size_t i = 0; i < 3; ++i) {
    if (i != li) {
      c.kill(i);
    }
  }
  auto o = c.nodes[li]->status();
  CHECK(o.role == Role::leader);
  // No quorum: the entry cannot commit; the caller gets a timeout (outcome unknown) — or
  // not_leader if check-quorum (thesis §6.2) deposed the leader first.
  auto lonely = await(c.io, c.nodes[li]->propose("1"), 15s);
  REQUIRE(lonely.has_error());
  CHECK(
      (lonely.error().code == node_errc::timeout || lonely.error().code == node_errc::not_leader));

  auto pending = spawn(c.io, c.nodes[li]->read_index());
  c.io.poll();
  c.nodes[li]->stop();
  REQUIRE(run_until(c.io, [&] { return pending->has_value(); }));
  REQUIRE((*pending)->has_error());
  CHECK(((*pending)->error().code == node_errc::stopped ||
         (*pending)->error().code == node_errc::not_leader));
  auto after_stop = await(c.io, c.nodes[li]->propose("1"));
  REQUIRE(after_stop.has_error());
  CHECK(after_stop.error().code == node_errc::stopped);
}

TEST_CASE("raftd: a node whose WAL is damaged in the middle refuses to start") {
  spdlog::set_level(spdlog::level::off);
  Cluster c(1);
  c.wait_leader();
  for (int i = 0; i < 3; ++i) {
    auto r = await(c.io, c.nodes[0]->propose("1"));
    REQUIRE(r.has_value());
  }
  c.kill(0);
  auto segs = list_segments(c.dirs[0]->path);
  REQUIRE(segs.size() == 1);
  {
    // Inside the first record (the bootstrap), right after the 24-byte segment header: the
    // records after it were synced and acknowledged.
    std::fstream f(segs[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(24 + 14);
    f.put('\x5a');
  }
  c.machines[0] = std::make_unique<CounterMachine>();
  auto r = RaftNode::open(c.io.get_executor(), c.options(0), *c.machines[0], c.boot);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(wal_errc::corrupt));
  CHECK(check_wal(c.dirs[0]->path).problem.find(segs[0] + " at byte offset 24") !=
        std::string::npos);
}
