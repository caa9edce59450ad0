// The store takes an HTTP service before its tasks: the "task port for HTTP" rule moves from
// the service (config file) to each task (store). See discovery/model/state.h validate_service.
#include "discovery/store/state_machine.h"

#include <catch2/catch.hpp>

#include <string>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

ApplyResult run(ClusterState& state, const std::string& command) {
  return apply_json(state, command);
}

}  // namespace

TEST_CASE("store accepts an HTTP service without a port source before it has tasks") {
  ClusterState state = initial_state();
  auto r = run(
      state,
      R"({"op":"service.create","service":{"name":"api","labels":{"mesh.http":"api.example.com"}}})");
  INFO(r.error.message);
  CHECK(r.ok);
}

TEST_CASE("store rejects a task without a port for an HTTP service with no port source") {
  ClusterState state = initial_state();
  REQUIRE(
      run(state,
          R"({"op":"service.create","service":{"name":"api","labels":{"mesh.http":"api.example.com"}}})")
          .ok);
  const auto before = state.revision;
  auto r =
      run(state, R"({"op":"task.add","task":{"id":"t1","service":"api","address":"127.0.0.1"}})");
  CHECK_FALSE(r.ok);
  CHECK(r.error.code == errc::invalid);
  CHECK(r.error.field == "task.port");
  CHECK(state.revision == before);

  auto ok = run(
      state,
      R"({"op":"task.add","task":{"id":"t1","service":"api","address":"127.0.0.1","port":9001}})");
  CHECK(ok.ok);
}

TEST_CASE("store accepts a portless task when the label or a published target gives the port") {
  ClusterState state = initial_state();
  REQUIRE(
      run(state,
          R"({"op":"service.create","service":{"name":"a","labels":{"mesh.http":"a.example.com","mesh.http.port":"80"}}})")
          .ok);
  REQUIRE(
      run(state,
          R"({"op":"service.create","service":{"name":"b","labels":{"mesh.http":"b.example.com"},"ports":[{"published":9000,"target":80}]}})")
          .ok);
  CHECK(
      run(state, R"({"op":"task.add","task":{"id":"t1","service":"a","address":"127.0.0.1"}})").ok);
  CHECK(
      run(state, R"({"op":"task.add","task":{"id":"t2","service":"b","address":"127.0.0.1"}})").ok);
}

TEST_CASE("store still rejects a service update that leaves existing portless tasks unroutable") {
  ClusterState state = initial_state();
  REQUIRE(
      run(state,
          R"({"op":"service.create","service":{"name":"a","labels":{"mesh.http":"a.example.com","mesh.http.port":"80"}}})")
          .ok);
  REQUIRE(
      run(state, R"({"op":"task.add","task":{"id":"t1","service":"a","address":"127.0.0.1"}})").ok);
  auto r = run(
      state,
      R"({"op":"service.update","service":{"name":"a","labels":{"mesh.http":"a.example.com"}}})");
  CHECK_FALSE(r.ok);
  CHECK(r.error.field == "service.labels.mesh.http");
}
