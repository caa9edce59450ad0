#include "discovery/store/store_state_machine.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <cstdlib>

namespace routemesh::discovery::store {

namespace json = boost::json;

StoreStateMachine::StoreStateMachine(std::size_t history, std::size_t request_keys)
    : state_(initial_state()), index_(state_), history_limit_(history), key_limit_(request_keys) {}

std::string StoreStateMachine::apply(std::uint64_t index, std::string_view data) {
  last_index_ = index;
  auto decoded = decode_entry(data);
  if (!decoded) {
    ApplyResult rejected;
    rejected.error = decoded.error();
    return encode_result(rejected);
  }
  const Entry& entry = *decoded;
  if (entry.request) {
    auto it = outcomes_.find(entry.request->key);
    if (it != outcomes_.end()) {
      if (it->second.fingerprint == entry.request->fingerprint) {
        ++replayed_;
        return it->second.result;
      }
      ApplyResult reused;
      reused.error = Error{errc::key_reused,
                           "this Idempotency-Key was first used with another request (method, "
                           "path or body); use a new key for a new request",
                           "Idempotency-Key"};
      return encode_result(reused);
    }
  }
  ApplyResult result = store::apply(state_, index_, entry.command);
  if (result.ok && history_limit_ > 0) {
    history_.push_back(Delta{result.revision, std::make_shared<const boost::json::object>(
                                                  command_to_json(entry.command))});
    while (history_.size() > history_limit_) {
      history_.pop_front();
    }
  }
  std::string bytes = encode_result(result);
  if (entry.request) {
    remember(*entry.request, bytes);
  }
  return bytes;
}

void StoreStateMachine::remember(const RequestKey& request, std::string result) {
  if (key_limit_ == 0) {
    return;
  }
  outcomes_.emplace(request.key, Outcome{request.fingerprint, std::move(result)});
  keys_.push_back(request.key);
  while (keys_.size() > key_limit_) {
    outcomes_.erase(keys_.front());
    keys_.pop_front();
  }
}

std::optional<std::string> StoreStateMachine::request_outcome(std::string_view key) const {
  auto it = outcomes_.find(std::string(key));
  if (it == outcomes_.end()) {
    return std::nullopt;
  }
  return it->second.result;
}

std::string StoreStateMachine::snapshot() const {
  json::array requests;
  requests.reserve(keys_.size());
  for (const auto& key : keys_) {
    const Outcome& o = outcomes_.at(key);
    // The result bytes come from encode_result, so they parse; kept as JSON for readability.
    boost::system::error_code ec;
    json::value result = json::parse(o.result, ec);
    requests.push_back(
        json::object{{"key", key}, {"fingerprint", o.fingerprint}, {"result", std::move(result)}});
  }
  return json::serialize(
      json::object{{"state", to_json(state_)}, {"requests", std::move(requests)}});
}

bool StoreStateMachine::try_restore(std::string_view data) {
  boost::system::error_code ec;
  json::value image = json::parse(data, ec);
  const json::object* o = ec ? nullptr : image.if_object();
  if (o == nullptr) {
    return false;
  }
  const json::value* state_json = o->if_contains("state");
  if (state_json == nullptr) {
    // An image of the state alone (written before request keys existed).
    auto restored = state_from_json(image);
    if (!restored) {
      return false;
    }
    state_ = std::move(*restored);
    index_ = StateIndex(state_);
    outcomes_.clear();
    keys_.clear();
    history_.clear();
    return true;
  }
  auto restored = state_from_json(*state_json);
  const json::value* requests_json = o->if_contains("requests");
  const json::array* requests = requests_json == nullptr ? nullptr : requests_json->if_array();
  if (!restored || requests == nullptr || o->size() != 2) {
    return false;
  }
  std::unordered_map<std::string, Outcome> outcomes;
  std::deque<std::string> keys;
  for (const auto& element : *requests) {
    const json::object* r = element.if_object();
    const json::value* key = r == nullptr ? nullptr : r->if_contains("key");
    const json::value* fingerprint = r == nullptr ? nullptr : r->if_contains("fingerprint");
    const json::value* result = r == nullptr ? nullptr : r->if_contains("result");
    if (key == nullptr || !key->is_string() || fingerprint == nullptr ||
        !fingerprint->is_string() || result == nullptr || r->size() != 3) {
      return false;
    }
    std::string k(key->get_string());
    std::string bytes = json::serialize(*result);
    if (!valid_request_key(k) || !decode_result(bytes) ||
        !outcomes.emplace(k, Outcome{std::string(fingerprint->get_string()), std::move(bytes)})
             .second) {
      return false;
    }
    keys.push_back(std::move(k));
  }
  // Trimmed to this machine's limit, oldest first, as apply() would have.
  while (keys.size() > key_limit_) {
    outcomes.erase(keys.front());
    keys.pop_front();
  }
  state_ = std::move(*restored);
  index_ = StateIndex(state_);
  outcomes_ = std::move(outcomes);
  keys_ = std::move(keys);
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
  // tells whether everything after `revision` is still here, and where it starts.
  if (history_.empty() || history_.front().revision > revision + 1) {
    return std::nullopt;
  }
  const auto first =
      history_.begin() + static_cast<std::ptrdiff_t>(revision + 1 - history_.front().revision);
  out.assign(first, history_.end());
  return out;
}

}  // namespace routemesh::discovery::store
