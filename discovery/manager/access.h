#pragma once
// Who may call what on the REST API (pure). The admin server hands every handler the identity
// of the verified client certificate (admin::Request::caller); resolve_caller turns it into a
// Caller with the state's view of it, and authorize applies the rules below. Handlers check
// the two rules that need a request body or an object: authorize_task_write (a node reports
// the health of its own tasks only) and the heartbeat's node id (liveness.cc).
//
//   caller                         may
//   no certificate (anonymous)     POST /v1/nodes/join (the token decides), GET /v1/ca; else 401
//   user admin                     everything
//   user operator                  reads; writes to /v1/services*, /v1/networks*, /v1/tasks*
//   user viewer                    reads (GET/HEAD) only
//                                  (operator and viewer read neither the watch, which carries
//                                  HTTPS keys, nor /v1/cluster/autolock*, the unlock key)
//   node (manager or worker)       GET /v1/watch, POST /v1/heartbeat, PUT /v1/tasks/ID of its own
//                                  tasks, GET /v1/ca
//   anything else                  403, naming what the role may do
//
// Nodes are known by the id in their certificate; their role is the one the state gives them
// now (a promoted worker counts as a manager), and a node the state does not list (removed) is
// refused everything but the anonymous paths. A manager of the state that forwards a request
// to the leader (X-Routemesh-Forwarded) passes the original caller in X-Routemesh-Caller-Role
// and X-Routemesh-Caller-Id; the leader believes those headers from managers only, so the
// leader's rules apply to the original caller. The headers of any other caller are ignored.

#include "discovery/manager/request.h"
#include "discovery/model/types.h"
#include "tls/types.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace routemesh::discovery::manager {

inline constexpr std::string_view kForwardedHeader = "x-routemesh-forwarded";
inline constexpr std::string_view kCallerRoleHeader = "x-routemesh-caller-role";
inline constexpr std::string_view kCallerIdHeader = "x-routemesh-caller-id";

struct Caller {
  enum class Kind { anonymous, user, node };
  Kind kind = Kind::anonymous;
  // user: admin, operator or viewer (the certificate's); node: manager or worker (the state's).
  tls::Role role = tls::Role::viewer;
  std::string id;    // user: the certificate's name; node: the node id
  std::string name;  // node: its name in the state (tasks name the node they run on by it)
  bool operator==(const Caller&) const = default;
};

// The caller of a request. `peer` is the verified client certificate's identity (nullopt:
// none), `headers` the request's (lower-case names), `cluster_id` this cluster's id.
// Errors: 403 for a certificate of another cluster or a node the state does not list.
std::variant<Caller, ApiError> resolve_caller(const std::optional<tls::Identity>& peer,
                                              const std::map<std::string, std::string>& headers,
                                              const ClusterState& state,
                                              std::string_view cluster_id);

// Adds the headers that carry `caller` in a forwarded request (nothing for anonymous).
void add_caller_headers(const Caller& caller, std::map<std::string, std::string>& headers);

// nullopt when `caller` may send `method` to `path` (a decoded /v1/... path), else 401 for
// anonymous callers and 403 for the others (code "unauthenticated" / "forbidden").
std::optional<ApiError> authorize(const Caller& caller, std::string_view method,
                                  std::string_view path);

// A write to task `task_id` by a node: allowed when the state's task runs on that node (by
// name), or when no such task exists (the handler then answers 404). Users pass (authorize
// already decided for them).
std::optional<ApiError> authorize_task_write(const Caller& caller, const ClusterState& state,
                                             const std::string& task_id);

// "admin", "operator", "viewer", "manager node 00..a1", "worker node 00..b2", "anonymous".
std::string describe(const Caller& caller);

}  // namespace routemesh::discovery::manager
