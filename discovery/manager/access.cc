#include "discovery/manager/access.h"

#include <utility>

namespace routemesh::discovery::manager {
namespace {

constexpr std::string_view kNodeRoleText = "node";  // X-Routemesh-Caller-Role of a node

ApiError forbidden(std::string message) {
  return ApiError{403, "forbidden", std::move(message), ""};
}

ApiError unauthenticated() {
  return ApiError{401, "unauthenticated",
                  "this API needs a client certificate from the cluster CA (cluster init's admin "
                  "certificate, or one from `routemesh cert issue`)",
                  ""};
}

bool is_read(std::string_view method) {
  return method == "GET" || method == "HEAD";
}

// `path` is `base` or under `base` + "/".
bool under(std::string_view path, std::string_view base) {
  return path == base ||
         (path.starts_with(base) && path.size() > base.size() && path[base.size()] == '/');
}

bool is_anonymous_path(std::string_view method, std::string_view path) {
  return (method == "POST" && path == "/v1/nodes/join") || (is_read(method) && path == "/v1/ca");
}

// A node caller from the state: `id` must be one of its nodes.
std::variant<Caller, ApiError> node_caller(const std::string& id, const ClusterState& state) {
  auto it = state.nodes.find(id);
  if (it == state.nodes.end()) {
    return forbidden("node " + id + " is not a member of this cluster (removed?)");
  }
  Caller c;
  c.kind = Caller::Kind::node;
  c.role = it->second.role == NodeRole::manager ? tls::Role::manager : tls::Role::worker;
  c.id = id;
  c.name = it->second.name;
  return c;
}

std::variant<Caller, ApiError> from_identity(const tls::Identity& identity,
                                             const ClusterState& state,
                                             std::string_view cluster_id) {
  if (!cluster_id.empty() && identity.cluster_id != cluster_id) {
    return forbidden("the certificate belongs to cluster " + identity.cluster_id + ", not " +
                     std::string(cluster_id));
  }
  if (tls::is_node_role(identity.role)) {
    return node_caller(identity.id, state);
  }
  Caller c;
  c.kind = Caller::Kind::user;
  c.role = identity.role;
  c.id = identity.id;
  return c;
}

const std::string* header(const std::map<std::string, std::string>& headers,
                          std::string_view name) {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? nullptr : &it->second;
}

}  // namespace

std::variant<Caller, ApiError> resolve_caller(const std::optional<tls::Identity>& peer,
                                              const std::map<std::string, std::string>& headers,
                                              const ClusterState& state,
                                              std::string_view cluster_id) {
  if (!peer) {
    return Caller{};
  }
  auto direct = from_identity(*peer, state, cluster_id);
  auto* c = std::get_if<Caller>(&direct);
  if (c == nullptr || c->kind != Caller::Kind::node || c->role != tls::Role::manager ||
      header(headers, kForwardedHeader) == nullptr) {
    return direct;
  }
  // A manager forwarding on behalf of someone: that someone is the caller.
  const std::string* role = header(headers, kCallerRoleHeader);
  const std::string* id = header(headers, kCallerIdHeader);
  if (role == nullptr) {
    return Caller{};
  }
  if (id == nullptr) {
    return forbidden("a forwarded request names a caller role but no caller id");
  }
  if (*role == kNodeRoleText) {
    return node_caller(*id, state);
  }
  auto user_role = tls::parse_role(*role);
  if (!user_role || tls::is_node_role(*user_role)) {
    return forbidden("a forwarded request names an unknown caller role \"" + *role + "\"");
  }
  Caller user;
  user.kind = Caller::Kind::user;
  user.role = *user_role;
  user.id = *id;
  return user;
}

void add_caller_headers(const Caller& caller, std::map<std::string, std::string>& headers) {
  switch (caller.kind) {
    case Caller::Kind::anonymous:
      return;
    case Caller::Kind::node:
      headers[std::string(kCallerRoleHeader)] = std::string(kNodeRoleText);
      break;
    case Caller::Kind::user:
      headers[std::string(kCallerRoleHeader)] = std::string(tls::to_string(caller.role));
      break;
  }
  headers[std::string(kCallerIdHeader)] = caller.id;
}

std::optional<ApiError> authorize(const Caller& caller, std::string_view method,
                                  std::string_view path) {
  if (is_anonymous_path(method, path)) {
    return std::nullopt;
  }
  switch (caller.kind) {
    case Caller::Kind::anonymous:
      return unauthenticated();
    case Caller::Kind::node: {
      const bool own_business = (is_read(method) && path == "/v1/watch") ||
                                (method == "POST" && path == "/v1/heartbeat") ||
                                (method == "POST" && path == "/v1/certs/renew") ||
                                (method == "PUT" && path.starts_with("/v1/tasks/") &&
                                 path.find('/', 10) == std::string_view::npos);
      if (own_business) {
        return std::nullopt;
      }
      return forbidden(describe(caller) +
                       " may only watch the state, send heartbeats, renew its certificate and "
                       "report the health of its own tasks");
    }
    case Caller::Kind::user:
      break;
  }
  if (method == "POST" && path == "/v1/certs/renew") {
    return std::nullopt;  // every user renews its own certificate (same role and name)
  }
  if (path == "/v1/watch" && caller.role != tls::Role::admin) {
    return forbidden(
        "the watch stream carries the whole state, HTTPS certificate keys included: "
        "nodes and admin only");
  }
  if (under(path, "/v1/cluster/autolock") && caller.role != tls::Role::admin) {
    return forbidden("autolock and its unlock key: admin only");
  }
  if (caller.role == tls::Role::admin || is_read(method)) {
    return std::nullopt;
  }
  if (caller.role == tls::Role::operator_ &&
      (under(path, "/v1/services") || under(path, "/v1/networks") || under(path, "/v1/tasks"))) {
    return std::nullopt;
  }
  if (caller.role == tls::Role::operator_) {
    return forbidden("role operator may change services, networks and tasks, not " +
                     std::string(method) + " " + std::string(path) + " (needs role admin)");
  }
  return forbidden("role " + std::string(tls::to_string(caller.role)) + " may only read (" +
                   std::string(method) + " " + std::string(path) + " needs operator or admin)");
}

std::optional<ApiError> authorize_task_write(const Caller& caller, const ClusterState& state,
                                             const std::string& task_id) {
  if (caller.kind != Caller::Kind::node) {
    return std::nullopt;
  }
  auto it = state.tasks.find(task_id);
  if (it == state.tasks.end() || it->second.node == caller.name) {
    return std::nullopt;
  }
  return forbidden("task " + task_id + " runs on " +
                   (it->second.node.empty() ? std::string("no node") : "node " + it->second.node) +
                   ", not on " + describe(caller));
}

std::string describe(const Caller& caller) {
  switch (caller.kind) {
    case Caller::Kind::anonymous:
      return "anonymous";
    case Caller::Kind::node:
      return std::string(tls::to_string(caller.role)) + " node " + caller.name + " (" + caller.id +
             ")";
    case Caller::Kind::user:
      break;
  }
  return std::string(tls::to_string(caller.role)) + " " + caller.id;
}

}  // namespace routemesh::discovery::manager
