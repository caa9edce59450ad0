#pragma once
// The pure part of the `routemesh` CLI (service/network/task/node/cluster commands): command-line
// arguments -> admin API requests (method, target, JSON body), and API answers -> the text
// printed to the user (docker-like tables, key/value listings, error lines). No I/O, no Asio:
// cli/cli.cc does the HTTP and the printing. Called on the main thread only. Never throws
// (except std::bad_alloc).
//
// The API shapes are those of discovery/store/state_json.h and the admin API
// (/v1/services, /v1/networks, /v1/tasks, /v1/nodes, /v1/cluster). Renderers are lenient: a
// missing field prints as "-" so an older or newer server still gives a readable table; only a
// missing list (e.g. no "services" array) is an error.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace routemesh::cli {

// A value or an error message. For builders the message names the flag
// ("--publish: expected [ADDRESS:]PUBLISHED:TARGET...") and the CLI exits 2; for renderers it
// describes an unexpected API answer and the CLI exits 1.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  static Result failure(std::string message) {
    Result r;
    r.error_ = std::move(message);
    return r;
  }
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  const T& value() const { return *value_; }
  T& value() { return *value_; }
  const std::string& error() const { return error_; }

 private:
  Result() = default;
  std::optional<T> value_;
  std::string error_;
};

// One admin API call. `body` is empty for GET/DELETE and for POSTs without a body.
struct ApiRequest {
  std::string method;  // "GET", "POST", "PUT", "DELETE"
  std::string target;  // path and query, e.g. "/v1/services/web"
  std::string body;    // JSON text
};

struct ServiceCreateArgs {
  std::string name;
  std::vector<std::string> labels;   // KEY=VALUE
  std::vector<std::string> publish;  // PUBLISHED:TARGET[/tcp]
  std::vector<std::string> networks;
  std::string mode;  // "" (server default: vip), "vip" or "dnsrr"
};

// `service update NAME` flags. Removals apply before additions (as in `docker service update`),
// so `--label-rm a --label-add a=2` replaces a label.
struct ServiceUpdateArgs {
  std::vector<std::string> label_add;    // KEY=VALUE
  std::vector<std::string> label_rm;     // KEY
  std::vector<std::string> publish_add;  // PUBLISHED:TARGET[/tcp]
  std::vector<std::string> publish_rm;   // PUBLISHED
  std::vector<std::string> network_add;
  std::vector<std::string> network_rm;
  std::string mode;  // "" = unchanged
};

struct NetworkCreateArgs {
  std::string name;
  std::string subnet;  // "" = allocated from the cluster's pool
};

// `policy add --from F --to T [--port P] --allow|--deny [--priority N]`.
struct PolicyAddArgs {
  std::string from;    // network:NAME | service:NAME | cidr:CIDR
  std::string to;      // service:NAME
  std::string port;    // "" = every port
  bool allow = false;  // exactly one of allow/deny
  bool deny = false;
  std::string priority;  // "" = 0
};

struct TaskAddArgs {
  std::string service;
  std::string node;  // "" = the node that handles the request
  std::string addr;  // IP:PORT
};

// --- addresses and paths ---

inline constexpr std::string_view kDefaultApiAddress = "127.0.0.1:9901";

// The admin API addresses, in the order to try them: the --api flag if given, else
// $ROUTEMESH_API if set and non-empty, else kDefaultApiAddress. A comma-separated list
// ("a:9901,b:9901,c:9901"; blanks around items ignored, a repeated address kept once). In each
// item a leading "http://" and a trailing "/" are dropped. Fails, naming where the value came
// from ("--api: expected HOST:PORT[,HOST:PORT...]" or "ROUTEMESH_API: ..."), unless every item
// is HOST:PORT or [IPv6]:PORT, port 1..65535, HOST an IPv4 literal or a host name
// (base::parse_host_port with host_names).
Result<std::vector<std::string>> api_addresses(const std::optional<std::string>& flag,
                                               const char* env_value);

// Splits an API address that api_addresses accepted into host (brackets removed) and port text
// (decimal, no leading zeros). Anything else comes back as {address, ""}.
std::pair<std::string, std::string> split_host_port(std::string_view address);

// Percent-encodes one path segment (everything except RFC 3986 §2.3 unreserved characters).
std::string encode_path_segment(std::string_view segment);

// --- argument parsing (exit 2 on failure, message names the flag) ---

// "8080:80", "8080:80/tcp" -> {"published":8080,"target":80,"protocol":"tcp"}. Same grammar as
// the config file's `published:` (base::parse_port_mapping).
Result<boost::json::object> parse_publish(std::string_view flag, std::string_view text);
// "k=v" -> {k, v}; the key must be non-empty, the value may be empty. Label semantics are
// checked by the server (the shared validator), which names the field.
Result<std::pair<std::string, std::string>> parse_label(std::string_view flag,
                                                        std::string_view text);
// A duration in whole seconds: "90" or "90s", "30m", "24h", "7d" (one number, one unit or
// none), at most `max_s`.
Result<std::int64_t> parse_duration_s(std::string_view flag, std::string_view text,
                                      std::int64_t max_s);

// --- requests ---

// An Idempotency-Key for one write from 128 random bits: 32 lower-case hex digits. The CLI sends
// the same key with every attempt of that write, so a retry is answered with the first outcome.
std::string idempotency_key(std::uint64_t high, std::uint64_t low);
// Whether an answer is worth trying again on the next manager: 503 (no leader, no quorum, not
// committed in time, leadership changed). Everything else is the answer.
bool retry_status(unsigned status);

ApiRequest get_request(std::string target);
// A read's target with "stale=true" added to its query when `stale` (the API then answers from
// that manager's own copy instead of a linearizable read through the leader).
std::string read_target(std::string target, bool stale);
Result<ApiRequest> service_create_request(const ServiceCreateArgs& args);
// Applies the update flags to the service object from GET /v1/services/NAME (or its
// {"service":{...}} wrapper) and returns the PUT request for compare-and-swap: the spec with
// the "version" it was read at ("vips" dropped: the server assigns them). Fails when no flag
// changes anything or a flag is malformed.
Result<ApiRequest> service_update_request(std::string_view name, const boost::json::value& current,
                                          const ServiceUpdateArgs& args);
// True when at least one update flag was given (checked before the GET).
bool has_update_flags(const ServiceUpdateArgs& args);
// Validates the update flags without a current service (so bad flags exit 2 before any I/O).
std::optional<std::string> check_update_flags(const ServiceUpdateArgs& args);
Result<ApiRequest> network_create_request(const NetworkCreateArgs& args);
Result<ApiRequest> task_add_request(const TaskAddArgs& args);
// POST /v1/policies {"from","to","port"?,"action","priority"?}. Checks the grammar of every
// flag (discovery/model/policy.h) so a bad one exits 2 naming the flag.
Result<ApiRequest> policy_add_request(const PolicyAddArgs& args);
ApiRequest delete_request(std::string_view collection, std::string_view id);
// PUT /v1/tasks/ID {"health": HEALTH}: `task drain` (draining) and `task undrain` (unknown:
// routed again, or re-checked first when its service has a health check).
ApiRequest task_health_request(std::string_view id, std::string_view health);
// POST /v1/nodes/ID/promote|demote.
ApiRequest node_action_request(std::string_view id, std::string_view action);

// Node arguments may be an id (16 hex digits) or a name; names are resolved against the
// GET /v1/nodes answer. Fails with "no such node: X" or when the answer is malformed.
bool looks_like_node_id(std::string_view text);
Result<std::string> resolve_node_id(const boost::json::value& nodes_answer, std::string_view arg);

// --- rendering ---

// Columns padded to their widest cell and separated by three spaces (docker's look); the last
// column is not padded. One line per row, each ending in '\n'.
std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows);

// GET /v1/services: NAME MODE NETWORKS PUBLISHED LABELS VERSION.
Result<std::string> render_services(const boost::json::value& answer);
// GET /v1/services/NAME: a key/value listing (name, mode, version, networks with VIPs, ports,
// labels).
Result<std::string> render_service(const boost::json::value& answer);
// GET /v1/networks: NAME SUBNET GATEWAY BUILTIN VERSION.
Result<std::string> render_networks(const boost::json::value& answer);
// GET /v1/policies: ID FROM TO PORT ACTION PRIORITY VERSION, sorted by TO, then FROM.
Result<std::string> render_policies(const boost::json::value& answer);
// GET /v1/certs/revoked: SERIAL NAME REVOKED (UTC), by serial.
Result<std::string> render_revoked(const boost::json::value& answer);
// GET /v1/certs/crl: the CRL's PEM text, as is (`routemesh cert crl > crl.pem`).
Result<std::string> render_crl(const boost::json::value& answer);
// A field of an answer object as text ("-" when absent), and a unix-time field as UTC
// (2026-12-05T16:20:00Z; "-" when absent or not a number).
std::string field(const boost::json::object& o, std::string_view key);
std::string format_unix_time(const boost::json::object& o, std::string_view key);
// `cert ls`: HOST, EXPIRES, SHA256 (the leaf's digest), VERSION.
Result<std::string> render_ingress_certs(const boost::json::value& answer);
// GET /v1/tasks: ID SERVICE NODE ADDRESS HEALTH.
Result<std::string> render_tasks(const boost::json::value& answer);
// GET /v1/nodes (+ GET /v1/cluster when available, for VOTER and LEADER):
// ID NAME ROLE STATUS VOTER LEADER API PEER.
Result<std::string> render_nodes(const boost::json::value& answer,
                                 const boost::json::value* cluster);
// GET /v1/cluster: cluster id, leader, term, commit, applied, revision, then a members table.
Result<std::string> render_cluster(const boost::json::value& answer);
// GET/POST /v1/cluster/autolock: the unlock key with how to use it, or that autolock is off
// (an error when `off_is_error`: `cluster unlock-key` has nothing to show).
Result<std::string> render_autolock(const boost::json::value& answer, bool off_is_error);

// The one-line result of a write, e.g. the created service's name or the added task's id, taken
// from the answer ({"service":{...}}, {"task":{...}}, ...); `fallback` when absent.
std::string written_object_id(const boost::json::value& answer, std::string_view kind,
                              std::string_view fallback);

// An error answer: {"error":{"code","message","field"}} -> "<message> (field: <field>)";
// anything else -> "HTTP <status>: <first line of the body>" (or the status text).
std::string format_api_error(unsigned status, std::string_view body);
// The "code" of an error answer, "" when absent.
std::string api_error_code(std::string_view body);

}  // namespace routemesh::cli
