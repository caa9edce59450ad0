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

// The Raft entry of `command` proposed with request key `key` (fingerprint `fp`).
std::string keyed(const std::string& command, const std::string& key, const std::string& fp = "f") {
  auto decoded = decode_command(command);
  REQUIRE(decoded.has_value());
  return encode_entry(Entry{*decoded, RequestKey{key, fp}});
}

std::string add_task(const std::string& id) {
  return R"({"op":"task.add","task":{"id":")" + id +
         R"(","service":"s1","address":"10.0.0.5","port":80}})";
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
  CHECK(image == R"({"state":)" + encode_state(a.state()) + R"(,"requests":[]})");

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
  CHECK((*some)[0].command->at("op").as_string() == "service.create");
  CHECK((*some)[0].command->at("service").as_object().at("name").as_string() == "s4");
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
    ApplyResult r = store::apply(s, *command_from_json(*d.command));
    REQUIRE(r.ok);
    CHECK(r.revision == d.revision);
  }
  CHECK(encode_state(s) == encode_state(sm.state()));

  // Past the history's limit (8): the oldest go, and a revision before the first kept one
  // has no deltas; from any kept one, exactly the rest, in order.
  for (int i = 6; i <= 12; ++i) {
    sm.apply(static_cast<std::uint64_t>(i + 1), create_service(i));
  }
  REQUIRE(sm.state().revision == 12);
  CHECK_FALSE(sm.deltas_since(3).has_value());
  for (std::uint64_t from = 4; from <= 12; ++from) {
    auto rest = sm.deltas_since(from);
    REQUIRE(rest);
    REQUIRE(rest->size() == 12 - from);
    for (std::size_t k = 0; k < rest->size(); ++k) {
      CHECK((*rest)[k].revision == from + 1 + k);
    }
  }
  // The deltas share the history's commands: handing them out copies no JSON.
  CHECK(sm.deltas_since(11)->front().command == sm.deltas_since(10)->back().command);
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

TEST_CASE("a repeated request key is answered with the first outcome and applies nothing") {
  StoreStateMachine sm;
  sm.apply(1, create_service(1));
  // A retried task.add: the proposer drew another task id for the retry.
  const std::string first = sm.apply(2, keyed(add_task("aaaa"), "k1", "fp-task"));
  auto r = decode_result(first);
  REQUIRE(r);
  REQUIRE(r->ok);
  CHECK(sm.state().tasks.size() == 1);
  const auto revision = sm.state().revision;

  CHECK(sm.apply(3, keyed(add_task("bbbb"), "k1", "fp-task")) == first);
  CHECK(sm.state().tasks.size() == 1);
  CHECK(sm.state().tasks.count("aaaa") == 1);
  CHECK(sm.state().revision == revision);
  CHECK(sm.replayed() == 1);
  CHECK(sm.last_index() == 3);
  // No watch delta for a replay.
  auto deltas = sm.deltas_since(revision);
  REQUIRE(deltas);
  CHECK(deltas->empty());

  // A retried create answers its first success, not "already exists".
  const std::string created = sm.apply(4, keyed(create_service(2), "k2", "fp-create"));
  REQUIRE(decode_result(created)->ok);
  CHECK(sm.apply(5, keyed(create_service(2), "k2", "fp-create")) == created);
  // Without the key the same command is a conflict, as before.
  CHECK(decode_result(sm.apply(6, create_service(2)))->error.code == errc::conflict);
}

TEST_CASE("a rejection is a first outcome too") {
  StoreStateMachine sm;
  const std::string first = sm.apply(1, keyed(R"({"op":"service.delete","name":"nope"})", "k"));
  REQUIRE(decode_result(first)->error.code == errc::not_found);
  sm.apply(2, create_service(7));
  CHECK(sm.apply(3, keyed(R"({"op":"service.delete","name":"nope"})", "k")) == first);
  CHECK(sm.replayed() == 1);
}

TEST_CASE("a request key used again with another fingerprint is key_reused and keeps its outcome") {
  StoreStateMachine sm;
  const std::string first = sm.apply(1, keyed(create_service(1), "k", "fp1"));
  auto reused = decode_result(sm.apply(2, keyed(create_service(2), "k", "fp2")));
  REQUIRE(reused);
  CHECK_FALSE(reused->ok);
  CHECK(reused->error.code == errc::key_reused);
  CHECK(reused->error.field == "Idempotency-Key");
  CHECK(sm.state().services.count("s2") == 0);
  CHECK(sm.apply(3, keyed(create_service(1), "k", "fp1")) == first);
}

TEST_CASE("request keys are bounded: the oldest is forgotten first") {
  StoreStateMachine sm(16, 3);
  for (int i = 1; i <= 4; ++i) {
    sm.apply(static_cast<std::uint64_t>(i), keyed(create_service(i), "k" + std::to_string(i)));
  }
  CHECK(sm.request_key_count() == 3);
  CHECK_FALSE(sm.request_outcome("k1"));
  CHECK(sm.request_outcome("k2"));
  CHECK(sm.request_outcome("k4"));
  // k1 is forgotten: its command is applied again (here: a conflict, the service exists).
  auto again = decode_result(sm.apply(5, keyed(create_service(1), "k1")));
  REQUIRE(again);
  CHECK(again->error.code == errc::conflict);
  CHECK(sm.replayed() == 0);
  // ...and k1 now holds that outcome, k2 went.
  CHECK_FALSE(sm.request_outcome("k2"));
  CHECK(sm.request_outcome("k1") == sm.apply(6, keyed(create_service(1), "k1")));
}

TEST_CASE("the default bound is 10000 request keys") {
  StoreStateMachine sm;
  for (int i = 1; i <= 10001; ++i) {
    sm.apply(static_cast<std::uint64_t>(i),
             keyed(R"({"op":"service.delete","name":"x"})", "key-" + std::to_string(i)));
  }
  CHECK(sm.request_key_count() == 10000);
  CHECK_FALSE(sm.request_outcome("key-1"));
  CHECK(sm.request_outcome("key-2"));
}

TEST_CASE("request keys survive snapshot and restore, in order") {
  StoreStateMachine a(16, 3);
  a.apply(1, create_service(1));
  const std::string first = a.apply(2, keyed(add_task("t1"), "k1", "fp"));
  a.apply(3, keyed(create_service(2), "k2"));
  a.apply(4, keyed(create_service(3), "k3"));
  const std::string image = a.snapshot();

  StoreStateMachine b(16, 3);
  b.apply(1, keyed(create_service(9), "other"));
  REQUIRE(b.try_restore(image));
  CHECK(b.snapshot() == image);
  CHECK_FALSE(b.request_outcome("other"));
  CHECK(b.request_outcome("k1") == first);
  // The same replay on both, byte for byte.
  CHECK(b.apply(5, keyed(add_task("t2"), "k1", "fp")) == first);
  CHECK(a.apply(5, keyed(add_task("t2"), "k1", "fp")) == first);
  // The same eviction order on both: k1 is the oldest.
  a.apply(6, keyed(create_service(4), "k4"));
  b.apply(6, keyed(create_service(4), "k4"));
  CHECK_FALSE(b.request_outcome("k1"));
  CHECK(a.snapshot() == b.snapshot());
}

TEST_CASE("an image of the state alone (before request keys) still restores") {
  StoreStateMachine a;
  a.apply(1, create_service(1));
  StoreStateMachine b;
  b.apply(1, keyed(create_service(5), "k"));
  REQUIRE(b.try_restore(encode_state(a.state())));
  CHECK(encode_state(b.state()) == encode_state(a.state()));
  CHECK(b.request_key_count() == 0);
}

TEST_CASE("malformed request keys in an image or an entry are refused") {
  StoreStateMachine sm;
  const std::string state = encode_state(sm.state());
  CHECK_FALSE(sm.try_restore(R"({"state":)" + state + "}"));
  CHECK_FALSE(sm.try_restore(R"({"state":)" + state + R"(,"requests":[{"key":""}]})"));
  CHECK_FALSE(sm.try_restore(R"({"state":)" + state +
                             R"(,"requests":[{"key":"k","fingerprint":"f","result":{}}]})"));
  const std::string result = R"({"ok":true,"revision":1,"object":{}})";
  const std::string twice = R"({"key":"k","fingerprint":"f","result":)" + result + "}";
  CHECK_FALSE(
      sm.try_restore(R"({"state":)" + state + R"(,"requests":[)" + twice + "," + twice + "]}"));
  CHECK(sm.try_restore(R"({"state":)" + state + R"(,"requests":[)" + twice + "]}"));
  CHECK(sm.request_outcome("k") == result);

  auto bad = decode_result(
      sm.apply(1, R"({"request":{"key":"","fingerprint":"f"},"command":{"op":"x"}})"));
  REQUIRE(bad);
  CHECK(bad->error.code == errc::invalid);
  CHECK(bad->error.field == "request.key");
}

TEST_CASE("an entry without a request key is the bare command; with one, an envelope") {
  auto command = decode_command(create_service(1));
  REQUIRE(command.has_value());
  CHECK(encode_entry(Entry{*command, std::nullopt}) == encode_command(*command));
  const std::string keyed_entry = encode_entry(Entry{*command, RequestKey{"k 1", "abc"}});
  CHECK(keyed_entry == R"({"request":{"key":"k 1","fingerprint":"abc"},"command":)" +
                           encode_command(*command) + "}");
  auto back = decode_entry(keyed_entry);
  REQUIRE(back.has_value());
  CHECK(back->request == std::optional<RequestKey>(RequestKey{"k 1", "abc"}));
  CHECK(encode_command(back->command) == encode_command(*command));
  auto bare = decode_entry(create_service(1));
  REQUIRE(bare.has_value());
  CHECK_FALSE(bare->request);

  for (const char* bad :
       {R"({"request":{"key":"k"}})", R"({"request":{"key":"k"},"command":{}})",
        R"({"request":{"key":"k"},"command":{"op":"service.create"},"x":1})",
        R"({"request":{"fingerprint":"f"},"command":{"op":"service.delete","name":"a"}})",
        R"({"request":"k","command":{"op":"service.delete","name":"a"}})"}) {
    INFO(bad);
    auto e = decode_entry(bad);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().code == errc::invalid);
  }
  CHECK(valid_request_key("a"));
  CHECK(valid_request_key(std::string(128, ' ')));
  CHECK_FALSE(valid_request_key(""));
  CHECK_FALSE(valid_request_key(std::string(129, 'a')));
  CHECK_FALSE(valid_request_key("a\nb"));
}
