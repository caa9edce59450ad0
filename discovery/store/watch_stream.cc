#include "discovery/store/watch_stream.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"

#include <boost/json/parse.hpp>

namespace routemesh::discovery::store {

namespace json = boost::json;

std::optional<std::string> LineSplitter::next_line() {
  const auto nl = buffer_.find('\n', offset_);
  if (nl == std::string::npos) {
    // Compact once the consumed prefix dominates, so the buffer does not grow forever.
    if (offset_ > 0 && offset_ * 2 >= buffer_.size()) {
      buffer_.erase(0, offset_);
      offset_ = 0;
    }
    return std::nullopt;
  }
  std::string line = buffer_.substr(offset_, nl - offset_);
  offset_ = nl + 1;
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return line;
}

WatchReplica::WatchReplica() : state_(store::initial_state()), index_(state_) {}

void WatchReplica::reset() {
  state_ = store::initial_state();
  index_ = StateIndex(state_);
  has_state_ = false;
}

std::variant<WatchEvent, std::string> WatchReplica::apply_line(std::string_view line) {
  boost::system::error_code ec;
  json::value value = json::parse(line, ec);
  const json::object* o = ec ? nullptr : value.if_object();
  if (o == nullptr) {
    return std::string("malformed watch line");
  }
  const json::value* type = o->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return std::string("watch line without a type");
  }
  const std::string_view t = type->get_string();
  if (t == "ping") {
    return WatchEvent::ping;
  }
  const json::value* rev = o->if_contains("revision");
  if (rev == nullptr || !(rev->is_uint64() || (rev->is_int64() && rev->get_int64() >= 0))) {
    return std::string("watch line without a revision");
  }
  const std::uint64_t revision =
      rev->is_uint64() ? rev->get_uint64() : static_cast<std::uint64_t>(rev->get_int64());
  if (t == "snapshot") {
    const json::value* image = o->if_contains("state");
    auto state = image == nullptr ? std::nullopt : store::state_from_json(*image);
    if (!state || state->revision != revision) {
      return std::string("snapshot state does not decode");
    }
    state_ = std::move(*state);
    index_ = StateIndex(state_);
    has_state_ = true;
    return WatchEvent::snapshot;
  }
  if (t != "delta") {
    return "unknown watch line type " + std::string(t);
  }
  if (!has_state_) {
    return std::string("delta before a snapshot");
  }
  if (revision != state_.revision + 1) {
    return "gap: delta for revision " + std::to_string(revision) + " after revision " +
           std::to_string(state_.revision);
  }
  const json::value* command = o->if_contains("command");
  if (command == nullptr) {
    return std::string("delta without a command");
  }
  auto decoded = store::command_from_json(*command);
  if (!decoded) {
    return "delta command does not decode: " + decoded.error().message;
  }
  // apply() is atomic: a rejection leaves the state as it was.
  store::ApplyResult result = store::apply(state_, index_, *decoded);
  if (!result.ok) {
    return "delta for revision " + std::to_string(revision) +
           " rejected here: " + result.error.message;
  }
  if (state_.revision != revision) {
    return "delta landed on revision " + std::to_string(state_.revision) + ", expected " +
           std::to_string(revision);
  }
  return WatchEvent::delta;
}

}  // namespace routemesh::discovery::store
