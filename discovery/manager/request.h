#pragma once
// Pure pieces of the REST API (discovery/manager/api.h): decoding request bodies into store
// commands, query parameters, the error JSON and status codes. No I/O, no Asio; unit-tested in
// tests/unit/discovery/manager/. Field paths in errors use the store's command paths
// ("service.ports[0]", "task.address") so a rejection reads the same whether the API or apply()
// found it.

#include "discovery/store/types.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace routemesh::discovery::manager {

// One API error: the HTTP status and {"error":{"code","message","field"}}.
struct ApiError {
  unsigned status = 400;
  std::string code = "invalid";  // invalid|conflict|not_found|version_mismatch|key_reused|...
  std::string message;
  std::string field;
  bool operator==(const ApiError&) const = default;
};

template <class T>
using Parsed = std::variant<T, ApiError>;

// 400 invalid, 404 not_found, 409 conflict and version_mismatch, 422 key_reused.
unsigned http_status(store::errc code);
ApiError from_store_error(const store::Error& error);
// A field error from a decoder (state_json.h, discovery/model/join.h): 409 when it says
// conflict, else 400 invalid.
ApiError from_state_error(const StateError& error);
std::string error_body(const ApiError& error);

// The revision of a write: `version` in the body wins over ?version=V. Errors at "version".
Parsed<std::optional<std::uint64_t>> version_param(const std::map<std::string, std::string>& query);
// ?consistent=1|true|yes (or a bare ?consistent).
bool consistent_param(const std::map<std::string, std::string>& query);

// How a GET is answered. linearizable (the default): through the leader's read index, after
// this state applied it (thesis §6.4). stale: this replica's state as it is, marked with the
// header X-Routemesh-Stale: true.
enum class ReadMode { linearizable, stale };
// ?stale=true|1|yes (or a bare ?stale) selects stale; false|0|no, or no parameter, keep the
// default. ?consistent=... is accepted (reads are linearizable anyway). Errors (field
// "stale"): another value, or stale together with a true consistent.
Parsed<ReadMode> read_mode(const std::map<std::string, std::string>& query);

// The Idempotency-Key header of a write (header names lower-case, as admin::Request has
// them): nullopt when absent; else the key and a fingerprint of the request (FNV-1a 64 of
// method, target and body, 16 hex digits), so that a key used again with another request is
// told apart (store::errc::key_reused). A value that is not 1..128 printable ASCII characters
// is a 400 at field "Idempotency-Key".
inline constexpr std::string_view kIdempotencyKeyHeader = "idempotency-key";
Parsed<std::optional<store::RequestKey>> request_key(
    const std::map<std::string, std::string>& headers, std::string_view method,
    std::string_view target, std::string_view body);

// POST /v1/services: the service spec {"name","labels","networks","ports","endpoint_mode"}.
// PUT /v1/services/NAME: the same plus an optional "version" (CAS); the name may be omitted
// and must match NAME when given. `name_from_path` is NAME for PUT, nullopt for POST.
struct ServiceSpec {
  Service service;
  std::optional<std::uint64_t> version;
};
Parsed<ServiceSpec> parse_service_spec(std::string_view body,
                                       const std::optional<std::string>& name_from_path);

// POST /v1/networks: {"name","subnet"?}.
Parsed<Network> parse_network_spec(std::string_view body);

// POST /v1/tasks: {"service","node"?,"address":"IP[:PORT]","port"?,"health"?,"id"?}. A port
// in "address" and in "port" must agree. The id is `generated_id` unless the body names one.
Parsed<Task> parse_task_spec(std::string_view body, const std::string& generated_id);

// PUT /v1/tasks/ID: {"health","version"?}.
Parsed<store::TaskUpdate> parse_task_update(std::string_view body, const std::string& id);

// POST /v1/policies: {"from","to","port"?,"action","priority"?} (discovery/model/policy.h for
// the grammar; checked here too, so a malformed rule is a 400 naming "policy.from" etc. before
// anything is proposed). The id is `generated_id`; a body naming one is refused.
Parsed<Policy> parse_policy_spec(std::string_view body, const std::string& generated_id);

// "/v1/services/web" with prefix "/v1/services/" -> {"web"}; "/v1/nodes/ID/promote" with
// "/v1/nodes/" -> {"ID", "promote"}. Empty segments are dropped.
std::vector<std::string> path_segments(std::string_view path, std::string_view prefix);

// A new random-looking id from 64 random bits: 16 lower-case hex digits.
std::string hex_id(std::uint64_t bits);

}  // namespace routemesh::discovery::manager
