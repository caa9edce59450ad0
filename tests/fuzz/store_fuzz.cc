// libFuzzer target for the store's replicated path and the API bodies that feed it: command
// decoding, the API's body parsers, apply(), the state snapshot codec and the route-table
// compiler. All of them run on bytes that arrive over the network, on every replica.
//
// Input: lines. A line starting with '{' is a command's JSON, applied as a replica would
// (apply_json). Otherwise its first byte picks an API body parser for the rest of the line
// (s: POST /v1/services, u: PUT /v1/services/web, n: POST /v1/networks, t: POST /v1/tasks,
// h: PUT /v1/tasks/t1, j: POST /v1/nodes/join, v: ?version=REST) and a parsed body becomes
// the command the API would propose. Checks (abort on failure):
//   - a decoded command's canonical JSON decodes again to the same canonical JSON;
//   - a parse error names a status 400 and a message;
//   - a rejected command changes nothing (byte-identical snapshot) and carries a message;
//     an applied one bumps the revision by exactly one;
//   - the final state's snapshot decodes and re-encodes to the same bytes;
//   - compile_route_table accepts every state apply let through.

#include "discovery/manager/request.h"
#include "discovery/model/join.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"
#include "mesh/route_table.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace {

using namespace routemesh::discovery;
using namespace routemesh::discovery::manager;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

template <class T>
const T* parsed_value(const Parsed<T>& p) {
  if (const auto* e = std::get_if<ApiError>(&p)) {
    check(e->status == 400 && !e->message.empty());
    return nullptr;
  }
  return &std::get<T>(p);
}

// The command the API would propose for an API body, or nullopt when the body is refused.
std::optional<store::Command> from_api(char kind, std::string_view body) {
  switch (kind) {
    case 's': {
      const auto parsed = parse_service_spec(body, std::nullopt);
      if (const auto* s = parsed_value(parsed)) {
        return store::ServiceCreate{s->service};
      }
      return std::nullopt;
    }
    case 'u': {
      const auto parsed = parse_service_spec(body, std::string("web"));
      if (const auto* s = parsed_value(parsed)) {
        return store::ServiceUpdate{s->service, s->version};
      }
      return std::nullopt;
    }
    case 'n': {
      const auto parsed = parse_network_spec(body);
      if (const auto* n = parsed_value(parsed)) {
        return store::NetworkCreate{*n};
      }
      return std::nullopt;
    }
    case 't': {
      const auto parsed = parse_task_spec(body, "0123456789abcdef");
      if (const auto* t = parsed_value(parsed)) {
        return store::TaskAdd{*t};
      }
      return std::nullopt;
    }
    case 'h': {
      const auto parsed = parse_task_update(body, "t1");
      if (const auto* u = parsed_value(parsed)) {
        return *u;
      }
      return std::nullopt;
    }
    case 'j': {
      // The join request's parser must accept or reject, never crash; an accepted one
      // round-trips through its encoder.
      const auto join = routemesh::discovery::parse_join_request(body);
      if (join) {
        const auto again = routemesh::discovery::parse_join_request(
            routemesh::discovery::encode_join_request(*join));
        if (!again || again->name != join->name || again->api != join->api) {
          __builtin_trap();
        }
      }
      return std::nullopt;
    }
    case 'v': {
      const std::map<std::string, std::string> query{{"version", std::string(body)}};
      const auto parsed = version_param(query);
      if (const auto* v = parsed_value(parsed)) {
        return store::ServiceDelete{"web", *v};
      }
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

void apply_checked(ClusterState& state, const store::Command& command) {
  const std::string before = store::encode_state(state);
  const std::uint64_t revision = state.revision;
  const store::ApplyResult r = store::apply(state, command);
  if (r.ok) {
    check(state.revision == revision + 1 && r.revision == state.revision);
    routemesh::mesh::compile_route_table(state);
  } else {
    check(!r.error.message.empty());
    check(store::encode_state(state) == before);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  ClusterState state = store::initial_state();
  std::size_t pos = 0;
  int lines = 0;
  while (pos < input.size() && ++lines <= 64) {
    const std::size_t nl = input.find('\n', pos);
    const std::string_view line =
        input.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? input.size() : nl + 1;
    if (line.empty()) {
      continue;
    }
    if (line.front() == '{') {
      const store::DecodeResult d = store::decode_command(line);
      if (!d) {
        check(!d.error().message.empty());
        const std::string before = store::encode_state(state);
        check(!store::apply_json(state, line).ok);
        check(store::encode_state(state) == before);
        continue;
      }
      const store::Command& command = *d;
      const std::string canonical = store::encode_command(command);
      const store::DecodeResult again = store::decode_command(canonical);
      check(again.has_value());
      check(store::encode_command(*again) == canonical);
      apply_checked(state, command);
      continue;
    }
    if (auto command = from_api(line.front(), line.substr(1))) {
      apply_checked(state, *command);
    }
  }
  const std::string snapshot = store::encode_state(state);
  const std::optional<ClusterState> restored = store::decode_state(snapshot);
  check(restored.has_value());
  check(store::encode_state(*restored) == snapshot);
  return 0;
}
