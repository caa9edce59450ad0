#pragma once
// Plugs StoreStateMachine into a RaftNode. raft::StateMachine lives in the Asio driver header
// (raft_node.h), so this adapter is header-only and included only by drivers (the Store);
// rm_store_core itself stays free of Asio (docs/style.md, "Pure cores").

#include "discovery/raft/raft_node.h"
#include "discovery/store/store_state_machine.h"

namespace routemesh::discovery::store {

// Forwards every call to the StoreStateMachine it was given, which must outlive it.
class RaftStateMachine final : public raft::StateMachine {
 public:
  explicit RaftStateMachine(StoreStateMachine& store) : store_(store) {}

  std::string apply(std::uint64_t index, std::string_view data) override {
    return store_.apply(index, data);
  }
  std::string snapshot() const override { return store_.snapshot(); }
  void restore(std::string_view data) override { store_.restore(data); }

 private:
  StoreStateMachine& store_;
};

}  // namespace routemesh::discovery::store
