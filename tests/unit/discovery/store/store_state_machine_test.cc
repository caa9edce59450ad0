#include "discovery/store/store_state_machine.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"

#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <string>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

std::string create_service(int i) {
  return R"({"op":"service.create","service":{"name":"s)" + std::to_string(i) + R"("}})";
}

}  // namespace

TEST_CASE("apply takes command bytes and returns result bytes") {
  StoreStateMachine sm;
  auto r = decode_result(sm.apply(5, create_service(1)));
  REQUIRE(r);
  CHECK(r->ok);
  CHECK(r->revision == 1);
  CHECK(sm.state().services.count("s1") == 1);
  CHECK(sm.last_index() == 5);

  auto bad = decode_result(sm.apply(6, create_service(1)));
  REQUIRE(bad);
  CHECK_FALSE(bad->ok);
  CHECK(bad->error.code == errc::conflict);
  auto garbage = decode_result(sm.apply(7, "\x01\x02"));
  REQUIRE(garbage);
  CHECK(garbage->error.code == errc::invalid);
  CHECK(sm.state().revision == 1);
  CHECK(sm.last_index() == 7);
}

TEST_CASE("snapshot and restore reproduce the state on another instance") {
  StoreStateMachine a;
  for (int i = 0; i < 5; ++i) {
    a.apply(static_cast<std::uint64_t>(i + 1), create_service(i));
  }
  a.apply(6, R"({"op":"network.create","network":{"name":"n"}})");
  const std::string image = a.snapshot();
  CHECK(image == encode_state(a.state()));

  StoreStateMachine b;
  b.apply(1, create_service(99));  // replaced wholesale
  b.restore(image);
  CHECK(b.snapshot() == image);
  CHECK(b.state().services.count("s99") == 0);

  // Both continue identically.
  const std::string cmd = create_service(7);
  CHECK(a.apply(7, cmd) == b.apply(7, cmd));
  CHECK(a.snapshot() == b.snapshot());
}

TEST_CASE("try_restore rejects a malformed image and keeps the state") {
  StoreStateMachine sm;
  sm.apply(1, create_service(1));
  const std::string before = sm.snapshot();
  CHECK_FALSE(sm.try_restore("{\"revision\":"));
  CHECK_FALSE(sm.try_restore(R"({"revision":1,"services":7})"));
  CHECK(sm.snapshot() == before);
}

TEST_CASE("deltas_since returns the applied commands after a revision") {
  StoreStateMachine sm(8);
  for (int i = 1; i <= 5; ++i) {
    sm.apply(static_cast<std::uint64_t>(i), create_service(i));
  }
  sm.apply(6, create_service(1));  // rejected: not a delta
  REQUIRE(sm.state().revision == 5);

  auto all = sm.deltas_since(0);
  REQUIRE(all);
  REQUIRE(all->size() == 5);
  for (std::size_t i = 0; i < all->size(); ++i) {
    CHECK((*all)[i].revision == i + 1);
  }
  auto some = sm.deltas_since(3);
  REQUIRE(some);
  REQUIRE(some->size() == 2);
  CHECK((*some)[0].revision == 4);
  CHECK((*some)[0].command.at("op").as_string() == "service.create");
  CHECK((*some)[0].command.at("service").as_object().at("name").as_string() == "s4");
  auto none = sm.deltas_since(5);
  REQUIRE(none);
  CHECK(none->empty());
  auto future = sm.deltas_since(50);
  REQUIRE(future);
  CHECK(future->empty());

  // Replaying deltas on a copy of an older state gives the current state.
  StoreStateMachine replica;
  for (int i = 1; i <= 3; ++i) {
    replica.apply(static_cast<std::uint64_t>(i), create_service(i));
  }
  ClusterState s = replica.state();
  for (const auto& d : *some) {
    ApplyResult r = store::apply(s, *command_from_json(d.command));
    REQUIRE(r.ok);
    CHECK(r.revision == d.revision);
  }
  CHECK(encode_state(s) == sm.snapshot());
}

TEST_CASE("deltas_since is nullopt once the history no longer covers the revision") {
  StoreStateMachine sm(4);
  for (int i = 1; i <= 10; ++i) {
    sm.apply(static_cast<std::uint64_t>(i), create_service(i));
  }
  // Kept: revisions 7..10.
  CHECK_FALSE(sm.deltas_since(5));
  auto from6 = sm.deltas_since(6);
  REQUIRE(from6);
  CHECK(from6->size() == 4);
  CHECK(from6->front().revision == 7);

  // After a restore the history is gone: only the current revision can resume.
  StoreStateMachine other;
  other.restore(sm.snapshot());
  CHECK_FALSE(other.deltas_since(9));
  auto current = other.deltas_since(10);
  REQUIRE(current);
  CHECK(current->empty());
  other.apply(11, create_service(11));
  auto next = other.deltas_since(10);
  REQUIRE(next);
  CHECK(next->size() == 1);
}
