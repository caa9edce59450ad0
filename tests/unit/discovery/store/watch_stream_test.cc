#include "discovery/store/watch_stream.h"

#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"
#include "discovery/store/store_state_machine.h"

#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;
namespace json = boost::json;

namespace {

// A manager-side state machine fed with commands, and the watch lines it would send.
struct Manager {
  store::StoreStateMachine machine{16};
  std::uint64_t index = 0;

  void run(const std::string& command) {
    auto result = store::decode_result(machine.apply(++index, command));
    REQUIRE(result);
    REQUIRE(result->ok);
  }
  std::string snapshot_line() const {
    return json::serialize(json::object{{"type", "snapshot"},
                                        {"revision", machine.state().revision},
                                        {"state", store::to_json(machine.state())}});
  }
  std::vector<std::string> delta_lines(std::uint64_t from) const {
    std::vector<std::string> out;
    auto deltas = machine.deltas_since(from);
    REQUIRE(deltas);
    for (const auto& d : *deltas) {
      out.push_back(json::serialize(
          json::object{{"type", "delta"}, {"revision", d.revision}, {"command", *d.command}}));
    }
    return out;
  }
};

const char* kNetwork = R"({"op":"network.create","network":{"name":"appnet"}})";
const char* kService =
    R"({"op":"service.create","service":{"name":"web","labels":{"mesh.http":"w.example.com","mesh.http.port":"80"},"networks":["appnet"]}})";
const char* kTask =
    R"({"op":"task.add","task":{"id":"t1","service":"web","address":"127.0.0.1","port":9001}})";

bool is_error(const std::variant<WatchEvent, std::string>& r) {
  return std::holds_alternative<std::string>(r);
}

}  // namespace

TEST_CASE("line splitter hands out complete lines across arbitrary splits") {
  LineSplitter s;
  s.feed("{\"a\":1}\n{\"b\"");
  CHECK(s.next_line() == std::optional<std::string>("{\"a\":1}"));
  CHECK_FALSE(s.next_line());
  s.feed(":2}\r\n\n");
  CHECK(s.next_line() == std::optional<std::string>("{\"b\":2}"));
  CHECK(s.next_line() == std::optional<std::string>(""));
  CHECK_FALSE(s.next_line());
}

TEST_CASE("snapshot then deltas give the manager's state byte for byte (VIPs included)") {
  Manager m;
  m.run(kNetwork);
  const std::string snapshot = m.snapshot_line();
  const std::uint64_t at = m.machine.state().revision;
  m.run(kService);
  m.run(kTask);

  WatchReplica r;
  CHECK(std::get<WatchEvent>(r.apply_line(snapshot)) == WatchEvent::snapshot);
  for (const auto& line : m.delta_lines(at)) {
    CHECK(std::get<WatchEvent>(r.apply_line(line)) == WatchEvent::delta);
  }
  CHECK(store::encode_state(r.state()) == store::encode_state(m.machine.state()));
  CHECK(r.state().services.at("web").vips.at("appnet") == "10.10.0.3");
  CHECK(std::get<WatchEvent>(r.apply_line(R"({"type":"ping"})")) == WatchEvent::ping);
}

TEST_CASE("a delta that skips a revision is a gap and changes nothing") {
  Manager m;
  m.run(kNetwork);
  const std::string snapshot = m.snapshot_line();
  m.run(kService);
  m.run(kTask);
  auto deltas = m.delta_lines(1);
  REQUIRE(deltas.size() == 2);

  WatchReplica r;
  REQUIRE(std::get<WatchEvent>(r.apply_line(snapshot)) == WatchEvent::snapshot);
  auto gap = r.apply_line(deltas[1]);
  REQUIRE(is_error(gap));
  CHECK_THAT(std::get<std::string>(gap), Catch::StartsWith("gap"));
  CHECK(r.revision() == 1);
  // Duplicates (a resumed stream repeating the last delta) are gaps too.
  REQUIRE(std::get<WatchEvent>(r.apply_line(deltas[0])) == WatchEvent::delta);
  CHECK(is_error(r.apply_line(deltas[0])));
  CHECK(r.revision() == 2);
}

TEST_CASE("deltas need a snapshot first; malformed lines are errors") {
  WatchReplica r;
  CHECK(is_error(r.apply_line(
      R"({"type":"delta","revision":1,"command":{"op":"network.create","network":{"name":"a"}}})")));
  CHECK_FALSE(r.has_state());
  CHECK(is_error(r.apply_line("not json")));
  CHECK(is_error(r.apply_line(R"({"revision":1})")));
  CHECK(is_error(r.apply_line(R"({"type":"bogus","revision":1})")));
  CHECK(is_error(r.apply_line(R"({"type":"snapshot","revision":1,"state":{"revision":2}})")));
}

TEST_CASE("a delta the replica rejects is reported and leaves the state alone") {
  Manager m;
  m.run(kNetwork);
  WatchReplica r;
  REQUIRE(std::get<WatchEvent>(r.apply_line(m.snapshot_line())) == WatchEvent::snapshot);
  // Network "appnet" exists already: a diverged stream.
  auto rejected = r.apply_line(
      R"({"type":"delta","revision":2,"command":{"op":"network.create","network":{"name":"appnet"}}})");
  REQUIRE(is_error(rejected));
  CHECK(std::get<std::string>(rejected).find("rejected") != std::string::npos);
  CHECK(r.revision() == 1);
}

TEST_CASE("reset forgets the replica so the next stream starts from a snapshot") {
  Manager m;
  m.run(kNetwork);
  WatchReplica r;
  REQUIRE(std::get<WatchEvent>(r.apply_line(m.snapshot_line())) == WatchEvent::snapshot);
  r.reset();
  CHECK_FALSE(r.has_state());
  CHECK(r.revision() == 0);
}
