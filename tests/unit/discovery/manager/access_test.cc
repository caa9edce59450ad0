#include "discovery/manager/access.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh;
using namespace routemesh::discovery;
using namespace routemesh::discovery::manager;

namespace {

constexpr const char* kCluster = "c0ffee00c0ffee00";

ClusterState state_with_nodes() {
  ClusterState s;
  s.cluster_id = kCluster;
  s.nodes["00000000000000a1"] = Node{"00000000000000a1", "n1", NodeRole::manager, "", ""};
  s.nodes["00000000000000b2"] = Node{"00000000000000b2", "n2", NodeRole::worker, "", ""};
  s.tasks["t1"] = Task{"t1", "web", "n2", "127.0.0.1", 9001};
  s.tasks["t2"] = Task{"t2", "web", "n1", "127.0.0.1", 9002};
  return s;
}

Caller resolved(const std::optional<tls::Identity>& peer,
                const std::map<std::string, std::string>& headers = {}) {
  auto r = resolve_caller(peer, headers, state_with_nodes(), kCluster);
  REQUIRE(std::holds_alternative<Caller>(r));
  return std::get<Caller>(r);
}

ApiError refused(const std::optional<tls::Identity>& peer,
                 const std::map<std::string, std::string>& headers = {}) {
  auto r = resolve_caller(peer, headers, state_with_nodes(), kCluster);
  REQUIRE(std::holds_alternative<ApiError>(r));
  return std::get<ApiError>(r);
}

tls::Identity user(tls::Role role, const char* name = "alice") {
  return {kCluster, role, name};
}

tls::Identity node(tls::Role role, const char* id) {
  return {kCluster, role, id};
}

unsigned status(const Caller& c, const char* method, const char* path) {
  auto e = authorize(c, method, path);
  return e ? e->status : 200;
}

}  // namespace

TEST_CASE("callers: none, a user, a node of the state with the state's role") {
  CHECK(resolved(std::nullopt).kind == Caller::Kind::anonymous);
  Caller admin = resolved(user(tls::Role::admin, "root"));
  CHECK(admin.kind == Caller::Kind::user);
  CHECK(admin.role == tls::Role::admin);
  CHECK(admin.id == "root");
  Caller n2 = resolved(node(tls::Role::worker, "00000000000000b2"));
  CHECK(n2.kind == Caller::Kind::node);
  CHECK(n2.role == tls::Role::worker);
  CHECK(n2.name == "n2");
  // A certificate issued as a worker to a node the state now calls a manager (promoted).
  Caller promoted = resolved(node(tls::Role::worker, "00000000000000a1"));
  CHECK(promoted.role == tls::Role::manager);
}

TEST_CASE("callers: a removed node and another cluster's certificate are refused") {
  ApiError removed = refused(node(tls::Role::worker, "00000000000000c3"));
  CHECK(removed.status == 403);
  CHECK(removed.message.find("not a member") != std::string::npos);
  ApiError foreign = refused(tls::Identity{"0ther", tls::Role::admin, "root"});
  CHECK(foreign.status == 403);
}

TEST_CASE("callers: only a manager's forwarded request speaks for someone else") {
  std::map<std::string, std::string> headers;
  add_caller_headers(resolved(user(tls::Role::viewer, "bob")), headers);
  headers[std::string(kForwardedHeader)] = "1";
  // Through manager n1: the viewer is the caller.
  Caller via_manager = resolved(node(tls::Role::manager, "00000000000000a1"), headers);
  CHECK(via_manager == Caller{Caller::Kind::user, tls::Role::viewer, "bob", ""});
  // A worker (or a user) sending the same headers speaks for itself.
  Caller via_worker = resolved(node(tls::Role::worker, "00000000000000b2"), headers);
  CHECK(via_worker.kind == Caller::Kind::node);
  CHECK(via_worker.id == "00000000000000b2");
  Caller via_user = resolved(user(tls::Role::viewer, "eve"), headers);
  CHECK(via_user.id == "eve");
  // Without X-Routemesh-Forwarded the manager speaks for itself.
  headers.erase(std::string(kForwardedHeader));
  CHECK(resolved(node(tls::Role::manager, "00000000000000a1"), headers).kind == Caller::Kind::node);
}

TEST_CASE("callers: forwarded nodes and anonymous callers") {
  std::map<std::string, std::string> headers{{std::string(kForwardedHeader), "1"}};
  CHECK(resolved(node(tls::Role::manager, "00000000000000a1"), headers).kind ==
        Caller::Kind::anonymous);
  add_caller_headers(resolved(node(tls::Role::worker, "00000000000000b2")), headers);
  Caller forwarded = resolved(node(tls::Role::manager, "00000000000000a1"), headers);
  CHECK(forwarded.kind == Caller::Kind::node);
  CHECK(forwarded.name == "n2");
  headers[std::string(kCallerRoleHeader)] = "manager";  // not a role a forwarder may claim
  CHECK(refused(node(tls::Role::manager, "00000000000000a1"), headers).status == 403);
}

TEST_CASE("authorization: anonymous callers may join and fetch the CA, nothing else") {
  Caller anonymous;
  CHECK(status(anonymous, "POST", "/v1/nodes/join") == 200);
  CHECK(status(anonymous, "GET", "/v1/ca") == 200);
  CHECK(status(anonymous, "GET", "/v1/services") == 401);
  CHECK(status(anonymous, "GET", "/v1/watch") == 401);
  CHECK(status(anonymous, "POST", "/v1/heartbeat") == 401);
}

TEST_CASE("authorization: admin everything, operator services/networks/tasks, viewer reads") {
  Caller admin{Caller::Kind::user, tls::Role::admin, "root", ""};
  Caller op{Caller::Kind::user, tls::Role::operator_, "ops", ""};
  Caller viewer{Caller::Kind::user, tls::Role::viewer, "bob", ""};
  struct Row {
    const char* method;
    const char* path;
    unsigned admin, op, viewer;
  };
  const std::vector<Row> rows{
      {"GET", "/v1/services", 200, 200, 200},
      {"GET", "/v1/watch", 200, 403, 403},  // the state it streams holds HTTPS keys
      {"GET", "/v1/ingress/certs", 200, 200, 200},
      {"PUT", "/v1/ingress/certs/a.test", 200, 403, 403},
      {"DELETE", "/v1/ingress/certs/a.test", 200, 403, 403},
      {"POST", "/v1/services", 200, 200, 403},
      {"DELETE", "/v1/services/web", 200, 200, 403},
      {"POST", "/v1/networks", 200, 200, 403},
      {"PUT", "/v1/tasks/t1", 200, 200, 403},
      {"POST", "/v1/tasks", 200, 200, 403},
      {"DELETE", "/v1/nodes/00000000000000b2", 200, 403, 403},
      {"POST", "/v1/nodes/00000000000000b2/promote", 200, 403, 403},
      {"POST", "/v1/cluster/tokens/worker/rotate", 200, 403, 403},
      {"POST", "/v1/certs", 200, 403, 403},
      {"POST", "/v1/certs/renew", 200, 200, 200},      // each its own
      {"GET", "/v1/cluster/autolock", 200, 403, 403},  // it shows the unlock key
      {"POST", "/v1/cluster/autolock", 200, 403, 403},
      {"POST", "/v1/cluster/autolock/rotate", 200, 403, 403},
      {"POST", "/v1/servicesx", 200, 403, 403},  // not under /v1/services
  };
  for (const auto& r : rows) {
    CAPTURE(r.method, r.path);
    CHECK(status(admin, r.method, r.path) == r.admin);
    CHECK(status(op, r.method, r.path) == r.op);
    CHECK(status(viewer, r.method, r.path) == r.viewer);
  }
}

TEST_CASE("authorization: nodes watch, heartbeat, renew and report their own tasks") {
  for (auto role : {tls::Role::worker, tls::Role::manager}) {
    Caller n{Caller::Kind::node, role, "00000000000000b2", "n2"};
    CAPTURE(tls::to_string(role));
    CHECK(status(n, "GET", "/v1/watch") == 200);
    CHECK(status(n, "POST", "/v1/heartbeat") == 200);
    CHECK(status(n, "POST", "/v1/certs/renew") == 200);
    CHECK(status(n, "POST", "/v1/certs") == 403);
    CHECK(status(n, "PUT", "/v1/tasks/t1") == 200);
    CHECK(status(n, "DELETE", "/v1/tasks/t1") == 403);
    CHECK(status(n, "PUT", "/v1/tasks/t1/x") == 403);
    CHECK(status(n, "POST", "/v1/services") == 403);
    CHECK(status(n, "GET", "/v1/services") == 403);
    CHECK(status(n, "DELETE", "/v1/nodes/00000000000000a1") == 403);
  }
  const ClusterState s = state_with_nodes();
  Caller n2{Caller::Kind::node, tls::Role::worker, "00000000000000b2", "n2"};
  CHECK_FALSE(authorize_task_write(n2, s, "t1"));  // runs on n2
  auto other = authorize_task_write(n2, s, "t2");  // runs on n1
  REQUIRE(other);
  CHECK(other->status == 403);
  CHECK_FALSE(authorize_task_write(n2, s, "gone"));  // 404 from the handler
  Caller admin{Caller::Kind::user, tls::Role::admin, "root", ""};
  CHECK_FALSE(authorize_task_write(admin, s, "t2"));
}
