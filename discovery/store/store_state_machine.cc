#include "discovery/store/store_state_machine.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"

#include <cstdio>
#include <cstdlib>

namespace routemesh::discovery::store {

StoreStateMachine::StoreStateMachine(std::size_t history)
    : state_(initial_state()), history_limit_(history) {}

std::string StoreStateMachine::apply(std::uint64_t index, std::string_view data) {
  last_index_ = index;
  auto decoded = decode_command(data);
  if (!decoded) {
    ApplyResult rejected;
    rejected.error = decoded.error();
    return encode_result(rejected);
  }
  const Command& command = *decoded;
  ApplyResult result = store::apply(state_, command);
  if (result.ok && history_limit_ > 0) {
    history_.push_back(Delta{result.revision, command_to_json(command)});
    while (history_.size() > history_limit_) {
      history_.pop_front();
    }
  }
  return encode_result(result);
}

std::string StoreStateMachine::snapshot() const {
  return encode_state(state_);
}

bool StoreStateMachine::try_restore(std::string_view data) {
  auto restored = decode_state(data);
  if (!restored) {
    return false;
  }
  state_ = std::move(*restored);
  history_.clear();
  return true;
}

void StoreStateMachine::restore(std::string_view data) {
  if (!try_restore(data)) {
    // docs/style.md, "Errors": a broken invariant stops the node (RM_CHECK semantics).
    std::fprintf(stderr, "store: snapshot image is not a valid ClusterState (%zu bytes)\n",
                 data.size());
    std::abort();
  }
}

std::optional<std::vector<Delta>> StoreStateMachine::deltas_since(std::uint64_t revision) const {
  std::vector<Delta> out;
  if (revision >= state_.revision) {
    return out;
  }
  // Revisions in history_ are contiguous and end at state_.revision, so the first kept one
  // tells whether everything after `revision` is still here.
  if (history_.empty() || history_.front().revision > revision + 1) {
    return std::nullopt;
  }
  for (const auto& delta : history_) {
    if (delta.revision > revision) {
      out.push_back(delta);
    }
  }
  return out;
}

}  // namespace routemesh::discovery::store
