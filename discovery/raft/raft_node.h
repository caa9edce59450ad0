#pragma once
// RaftNode: the Asio driver around the pure RaftCore (raft_core.h). It owns the core, the
// write-ahead log (wal.h), the TCP transport (transport.h) and the tick timer, and runs the
// Ready loop of README.md "Ready contract" on ONE executor (the control thread's io_context):
// persist (one fdatasync per Ready: group commit) → send → apply → advance.
//
// Threading: every member function must be called on the executor given to open(); nothing
// here is thread-safe. The awaitables must be co_awaited on that executor too.
//
// StateMachine is the seam the store implements (discovery/store/); the driver calls it on the
// same executor, in log order, exactly once per committed normal entry (and restore() for
// snapshots). Peer addresses are learned from the log: add_member() first commits an address
// record (a driver-internal entry the StateMachine never sees), then the conf change; snapshots
// carry the address book next to the StateMachine image.

#include "discovery/raft/transport.h"
#include "discovery/raft/types.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace routemesh::discovery::raft {

struct Metrics;

// ---- StateMachine seam (implemented by the store) -------------------------------------------

class StateMachine {
 public:
  StateMachine() = default;
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;
  virtual ~StateMachine() = default;

  // Applies the committed command at log `index` (strictly increasing across calls, gaps are
  // driver-internal or no-op entries). Deterministic; must not throw. Returns the result bytes
  // handed to the proposer's propose() (on the node that proposed it; ignored elsewhere).
  virtual std::string apply(std::uint64_t index, std::string_view data) = 0;
  // Serialized image of everything applied so far (called right after an apply).
  virtual std::string snapshot() const = 0;
  // Replaces the whole state with an image produced by snapshot() (on open from the newest
  // snapshot file, and when the leader sends InstallSnapshot).
  virtual void restore(std::string_view data) = 0;
};

// ---- errors -----------------------------------------------------------------------------------

// Errors of the driver's API (docs/style.md, "Errors"). Named node_errc because raft::errc is the
// core's.
enum class node_errc {
  not_leader = 1,    // NodeError::leader names the leader this node believes in (0 = unknown)
  stopped,           // stop() was called (or the node is stopping)
  timeout,           // not committed/applied (or no quorum answered) before the deadline
  busy,              // leadership transfer or another membership change in progress: retry
  invalid_argument,  // bad membership change (existing member, unknown node, last voter)
};

const boost::system::error_category& node_category() noexcept;
boost::system::error_code make_error_code(node_errc e) noexcept;

struct NodeError {
  node_errc code = node_errc::stopped;
  NodeId leader = kNoNode;  // not_leader only
  boost::system::error_code error_code() const { return make_error_code(code); }
  std::string message() const;
  bool operator==(const NodeError&) const = default;
};

// boost::system::result::value() throws through this (found by ADL) when it holds an error.
[[noreturn]] void throw_exception_from_error(const NodeError& e, const boost::source_location& loc);

template <class T>
using NodeResult = boost::system::result<T, NodeError>;

// ---- options, bootstrap, status ---------------------------------------------------------------

struct RaftNodeOptions {
  NodeId id = kNoNode;
  std::string peer_address;  // "IP:PORT" to listen on and advertise; port 0 = any (tests)
  std::string data_dir;      // WAL segments and snapshots (created if missing)
  unsigned tick_ms = 100;
  unsigned election_ticks = 10;
  unsigned heartbeat_ticks = 1;
  std::uint64_t snapshot_entries = 10000;           // compact after this many applied entries
  std::uint64_t seed = 0;                           // 0 = derive from the node id
  std::chrono::milliseconds propose_timeout{5000};  // default deadline of every API call
  Metrics* metrics = nullptr;                       // optional (tests omit it)
  // Mutual TLS between managers (transport.h); not enabled: plain TCP (tests). With TLS an
  // inbound peer must be a member of the configuration (voter or learner), or anyone holding
  // a manager certificate while this node knows no configuration yet (a learner that has
  // not received its first snapshot).
  TransportTls tls;
};

// Members to start a NEW cluster with (`cluster init`: just this node). Ignored (with a log
// line) when data_dir already holds state; empty for a node that joins an existing cluster.
struct Bootstrap {
  ConfState conf;
  std::map<NodeId, std::string> peers;  // peer address of each member
  bool empty() const { return conf.voters.empty() && conf.learners.empty(); }
};

struct Member {
  NodeId id = kNoNode;
  std::string peer;  // "" when not known (yet)
  bool voter = false;
  bool operator==(const Member&) const = default;
};

struct NodeStatus {
  NodeId id = kNoNode;
  Term term = 0;
  NodeId leader = kNoNode;
  Role role = Role::follower;
  Index commit = 0;
  Index applied = 0;
  Index snapshot_index = 0;
  std::vector<Member> members;  // voters and learners, ascending id
};

// ---- RaftNode ---------------------------------------------------------------------------------

class RaftNode {
 public:
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;
  virtual ~RaftNode() = default;

  // Opens data_dir (newest valid snapshot → StateMachine::restore, then the WAL after it),
  // binds the peer listener and starts ticking. `bootstrap` is used only for an empty data_dir.
  // Errors: data_dir unusable, WAL corruption outside the tail, listen failure (code + text in
  // the returned error_code's message via the log). `sm` must outlive the node.
  static boost::system::result<std::unique_ptr<RaftNode>> open(boost::asio::any_io_executor ex,
                                                               RaftNodeOptions options,
                                                               StateMachine& sm,
                                                               Bootstrap bootstrap = {});

  // Replicates `data`; completes after it is APPLIED here with StateMachine::apply's result.
  // Errors: not_leader (+leader), stopped, timeout (options.propose_timeout), busy (transfer).
  // A timeout does not mean "not applied": the entry may still commit later.
  virtual boost::asio::awaitable<NodeResult<std::string>> propose(std::string data) = 0;

  // Linearizable read point (thesis §6.4): completes with an index <= applied once this node,
  // as leader, confirmed its leadership with a quorum after the call. Leader only.
  virtual boost::asio::awaitable<NodeResult<std::uint64_t>> read_index() = 0;

  // Leader only. Commits the peer address, adds `id` as a learner, and when `voter` waits until
  // it caught up (match within a few entries of the leader's log) and promotes it.
  virtual boost::asio::awaitable<NodeResult<void>> add_member(NodeId id, std::string peer_address,
                                                              bool voter) = 0;
  // Leader only: promote an existing learner (after it caught up).
  virtual boost::asio::awaitable<NodeResult<void>> promote_member(NodeId id) = 0;
  // Leader only: removes a voter or learner (removing the leader itself steps it down).
  virtual boost::asio::awaitable<NodeResult<void>> remove_member(NodeId id) = 0;
  // Leader only: completes when `id` became leader (thesis §3.10), or timeout.
  virtual boost::asio::awaitable<NodeResult<void>> transfer_leadership(NodeId id) = 0;

  virtual NodeStatus status() const = 0;
  // Address the peer listener is bound to (resolves port 0).
  virtual std::string peer_address() const = 0;
  // What TransportTls::authenticate consults changed (a revocation): closes the peer
  // connections it now refuses (Transport::recheck_peers); returns how many.
  virtual std::size_t recheck_peers() = 0;
  // Completes every waiter with `stopped`, closes sockets and timers. Idempotent. The node may
  // be destroyed afterwards (pending coroutines only touch their own waiter state).
  virtual void stop() = 0;

 protected:
  RaftNode() = default;
};

}  // namespace routemesh::discovery::raft

namespace boost::system {
template <>
struct is_error_code_enum<routemesh::discovery::raft::node_errc> : std::true_type {};
}  // namespace boost::system
