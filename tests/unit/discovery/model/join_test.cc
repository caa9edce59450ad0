#include "discovery/model/join.h"

#include <catch2/catch.hpp>

#include <string>

using namespace routemesh::discovery;

TEST_CASE("join request: managers need a peer, workers drop it, token is accepted") {
  auto manager = parse_join_request(
      R"({"name":"n2","role":"manager","api":"127.0.0.12:9901","peer":"127.0.0.12:7946","token":"t"})");
  REQUIRE(manager.has_value());
  CHECK(manager->role == NodeRole::manager);
  CHECK(manager->peer == "127.0.0.12:7946");
  CHECK(manager->token == "t");

  auto worker = parse_join_request(
      R"({"name":"n4","role":"worker","api":"127.0.0.14:9901","peer":"127.0.0.14:7946"})");
  REQUIRE(worker.has_value());
  CHECK(worker->peer.empty());

  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"role":"worker","api":"127.0.0.1:1"})", "name"},
           Case{R"({"name":"a","role":"boss","api":"127.0.0.1:1"})", "role"},
           Case{R"({"name":"a","role":"worker","api":"localhost:1"})", "api"},
           Case{R"({"name":"a","role":"manager","api":"127.0.0.1:1"})", "peer"},
           Case{R"({"name":"a","role":"manager","api":"127.0.0.1:1","peer":"x"})", "peer"},
           Case{R"({"name":"a","role":"worker","api":"127.0.0.1:1","extra":1})", "extra"},
       }) {
    CAPTURE(c.body);
    auto parsed = parse_join_request(c.body);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().path == c.field);
  }
}

TEST_CASE("join request: a body that is not a JSON object is an error of the whole body") {
  for (const char* body : {"{not json", "[1]", "\"x\""}) {
    CAPTURE(body);
    auto parsed = parse_join_request(body);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().path.empty());
    CHECK_FALSE(parsed.error().conflict);
  }
}

TEST_CASE("join request: what the agent encodes the manager parses back") {
  JoinRequest manager{"n2", NodeRole::manager, "127.0.0.12:9901", "127.0.0.12:7946", ""};
  CHECK(encode_join_request(manager) ==
        R"({"name":"n2","role":"manager","api":"127.0.0.12:9901","peer":"127.0.0.12:7946"})");
  auto back = parse_join_request(encode_join_request(manager));
  REQUIRE(back.has_value());
  CHECK(*back == manager);

  JoinRequest worker{"n4", NodeRole::worker, "127.0.0.14:9901", "", "secret"};
  back = parse_join_request(encode_join_request(worker));
  REQUIRE(back.has_value());
  CHECK(*back == worker);

  worker.csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
  back = parse_join_request(encode_join_request(worker));
  REQUIRE(back.has_value());
  CHECK(*back == worker);
  auto bad = parse_join_request(R"({"name":"n4","role":"worker","api":"127.0.0.14:9901","csr":1})");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().path == "csr");
}

TEST_CASE("join reply: the certificate, the CA and the CA key travel when set") {
  JoinReply reply{"c0ffee", "00000000000000b2", {}, "CERT\n", "CA\n", ""};
  const std::string body = encode_join_reply(reply);
  CHECK(body.find("manager_key") == std::string::npos);
  auto back = decode_join_reply(body);
  REQUIRE(back.has_value());
  CHECK(*back == reply);
  reply.manager_key = "KEY";
  back = decode_join_reply(encode_join_reply(reply));
  REQUIRE(back.has_value());
  CHECK(back->manager_key == "KEY");
}

TEST_CASE("join reply: lists the state's managers and decodes back") {
  ClusterState state;
  state.cluster_id = "c0ffee";
  state.nodes["00000000000000a1"] =
      Node{"00000000000000a1", "n1", NodeRole::manager, "127.0.0.11:9901", "127.0.0.11:7946"};
  state.nodes["00000000000000b2"] =
      Node{"00000000000000b2", "n2", NodeRole::worker, "127.0.0.12:9901", ""};
  const JoinReply reply = make_join_reply(state, "00000000000000b2");
  REQUIRE(reply.managers.size() == 1);
  CHECK(reply.managers[0] ==
        JoinManager{"00000000000000a1", "n1", "127.0.0.11:9901", "127.0.0.11:7946"});

  const std::string body = encode_join_reply(reply);
  CHECK(
      body ==
      R"({"cluster_id":"c0ffee","node_id":"00000000000000b2","managers":[{"id":"00000000000000a1",)"
      R"("name":"n1","api":"127.0.0.11:9901","peer":"127.0.0.11:7946"}]})"
      "\n");
  auto back = decode_join_reply(body);
  REQUIRE(back.has_value());
  CHECK(*back == reply);
}

TEST_CASE("join reply: decoding needs a node id and skips managers without an api") {
  auto lenient = decode_join_reply(
      R"({"node_id":"00000000000000b2","managers":[1,{"id":"x"},{"api":"127.0.0.11:9901"}]})");
  REQUIRE(lenient.has_value());
  CHECK(lenient->cluster_id.empty());
  REQUIRE(lenient->managers.size() == 1);
  CHECK(lenient->managers[0].api == "127.0.0.11:9901");

  for (const char* body : {"", "[]", R"({"cluster_id":"c"})", R"({"node_id":"0000000000000000"})",
                           R"({"node_id":"123"})", R"({"node_id":"00000000000000zz"})"}) {
    CAPTURE(body);
    CHECK_FALSE(decode_join_reply(body).has_value());
  }
}
