#pragma once
// Store: the replicated ClusterState of a manager = RaftNode (discovery/raft/raft_node.h) +
// StoreStateMachine (store_state_machine.h). A driver (Asio): it owns both, turns typed
// commands into Raft proposals and the proposals' result bytes back into ApplyResults, tells
// cmd/ about every new state (on_state: compile the RouteTable, publish it to the proxy) and
// wakes watch streams (wait_for_change).
//
// Threading: everything runs on the control thread's io_context (the RaftNode's executor):
// the Raft Ready loop, fdatasync (group commit), apply, the callbacks and every member
// function here. Nothing is thread-safe; nothing blocks except the WAL's fdatasync.

#include "discovery/raft/raft_node.h"
#include "discovery/store/store_state_machine.h"
#include "discovery/store/types.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace routemesh::discovery::store {

struct StoreOptions {
  raft::RaftNodeOptions raft;  // raft.metrics is optional
  raft::Bootstrap bootstrap;   // only `cluster init`'s first start; empty otherwise
  std::size_t history = StoreStateMachine::kDefaultHistory;  // deltas kept for watch resumption
  prometheus::Registry* registry = nullptr;                  // routemesh_store_* (optional)
};

// A write's outcome: the state machine's answer (which may be a rejection: ok == false), or
// why Raft did not apply it (not_leader with the leader's id, timeout, stopped, busy).
using ProposeResult = boost::system::result<ApplyResult, raft::NodeError>;

class Store {
 public:
  // Opens the RaftNode over data_dir (replaying snapshot + WAL into the state machine).
  // Errors as RaftNode::open.
  static boost::system::result<std::unique_ptr<Store>> open(boost::asio::any_io_executor executor,
                                                            StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const ClusterState& state() const;
  const StoreStateMachine& machine() const;
  raft::RaftNode& raft();
  const raft::RaftNode& raft() const;
  bool is_leader() const;

  // Called (on the control thread, from a posted handler) after each batch of applied
  // commands or a snapshot restore: bursts applied in one Ready are reported once. Replaces
  // the previous callback.
  void on_state(std::function<void(const ClusterState&)> callback);

  // Encodes `command` (with the client's request key, if any: commands.h encode_entry),
  // proposes it and completes once it was applied here. Leader only (otherwise not_leader); a
  // rejection is an ApplyResult with ok == false. A request key seen before gets the first
  // command's outcome (StoreStateMachine::apply), or key_reused.
  boost::asio::awaitable<ProposeResult> propose(Command command, std::optional<RequestKey> request);
  // The same without a request key. (An overload, not a default argument: a defaulted
  // std::optional would be a temporary inside the caller's co_await, which GCC 12 mishandles.)
  boost::asio::awaitable<ProposeResult> propose(Command command);

  // Watch support: StoreStateMachine::deltas_since, and a wait that completes true as soon as
  // the revision differs from `revision` (at once if it already does), false after `timeout`
  // or when the store stops.
  std::optional<std::vector<Delta>> deltas_since(std::uint64_t revision) const;
  boost::asio::awaitable<bool> wait_for_change(std::uint64_t revision,
                                               std::chrono::milliseconds timeout);

  bool stopped() const;
  // Stops the RaftNode and wakes every waiter. Idempotent; the destructor calls it.
  void stop();

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace routemesh::discovery::store
