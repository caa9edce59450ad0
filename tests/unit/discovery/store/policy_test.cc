#include "discovery/store/state_machine.h"

#include "discovery/model/policy.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/store_state_machine.h"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <string>

using namespace routemesh::discovery;
using namespace routemesh::discovery::store;

namespace {

std::string create(const std::string& id, const std::string& body) {
  return R"({"op":"policy.create","policy":{"id":")" + id + R"(",)" + body + "}}";
}

const std::string kId1 = "00000000000000a1";
const std::string kId2 = "00000000000000a2";

}  // namespace

TEST_CASE("policy.create stores the rule with a version; policy.delete removes it") {
  ClusterState state = initial_state();
  auto r = apply_json(
      state,
      create(
          kId1,
          R"("from":"network:front","to":"service:web","port":80,"action":"deny","priority":7)"));
  REQUIRE(r.ok);
  CHECK(r.revision == 1);
  REQUIRE(state.policies.count(kId1) == 1);
  const Policy& p = state.policies.at(kId1);
  CHECK(p.from == "network:front");
  CHECK(p.to == "service:web");
  CHECK(p.port == 80);
  CHECK(p.action == PolicyAction::deny);
  CHECK(p.priority == 7);
  CHECK(p.version == 1);

  auto stale = apply_json(state, R"({"op":"policy.delete","id":")" + kId1 + R"(","version":9})");
  CHECK_FALSE(stale.ok);
  CHECK(stale.error.code == errc::version_mismatch);
  auto d = apply_json(state, R"({"op":"policy.delete","id":")" + kId1 + R"(","version":1})");
  REQUIRE(d.ok);
  CHECK(state.policies.empty());
  CHECK(state.revision == 2);
  auto missing = apply_json(state, R"({"op":"policy.delete","id":")" + kId1 + R"("})");
  CHECK(missing.error.code == errc::not_found);
  CHECK(missing.error.field == "id");
}

TEST_CASE("policy validation names the field and changes nothing") {
  struct Case {
    std::string command;
    errc code;
    std::string field;
  };
  ClusterState state = initial_state();
  REQUIRE(
      apply_json(state,
                 create(kId1, R"("from":"cidr:10.0.0.0/8","to":"service:web","action":"allow")"))
          .ok);
  const std::vector<Case> cases = {
      {create(kId2, R"("from":"cidr:10.0.0.1/8","to":"service:web","action":"allow")"),
       errc::invalid, "policy.from"},
      {create(kId2, R"("from":"host:x","to":"service:web","action":"allow")"), errc::invalid,
       "policy.from"},
      {create(kId2, R"("from":"network:Bad Name","to":"service:web","action":"allow")"),
       errc::invalid, "policy.from"},
      {create(kId2, R"("from":"network:a","to":"network:b","action":"allow")"), errc::invalid,
       "policy.to"},
      {create(kId2, R"("from":"network:a","to":"service:web","action":"maybe")"), errc::invalid,
       "policy.action"},
      {create(kId2, R"("from":"network:a","to":"service:web")"), errc::invalid, "policy.action"},
      {create(kId2, R"("from":"network:a","to":"service:web","action":"deny","port":70000)"),
       errc::invalid, "policy.port"},
      {create(kId2, R"("from":"network:a","to":"service:web","action":"deny","priority":2000000)"),
       errc::invalid, "policy.priority"},
      {create("xyz", R"("from":"network:a","to":"service:web","action":"deny")"), errc::invalid,
       "policy.id"},
      {create(kId1, R"("from":"network:a","to":"service:web","action":"deny")"), errc::conflict,
       "policy.id"},
      {create(kId2, R"("from":"cidr:10.0.0.0/8","to":"service:web","action":"deny")"),
       errc::conflict, "policy.from"},
      {create(kId2, R"("from":"network:a","to":"service:web","action":"deny","extra":1)"),
       errc::invalid, "policy.extra"},
  };
  const std::string before = encode_state(state);
  for (const auto& c : cases) {
    INFO(c.command);
    auto r = apply_json(state, c.command);
    CHECK_FALSE(r.ok);
    CHECK(r.error.code == c.code);
    CHECK(r.error.field == c.field);
    CHECK(encode_state(state) == before);
  }
  // The same pair on another port is another rule.
  CHECK(
      apply_json(
          state,
          create(kId2, R"("from":"cidr:10.0.0.0/8","to":"service:web","port":443,"action":"deny")"))
          .ok);
}

TEST_CASE("policy commands round-trip through their canonical JSON") {
  Policy p{kId1, "service:client", "service:web", 8080, PolicyAction::deny, 3, 0};
  for (const Command& c : {Command(PolicyCreate{p}), Command(PolicyDelete{kId1, 4}),
                           Command(PolicyDelete{kId1, std::nullopt})}) {
    const std::string text = encode_command(c);
    auto back = decode_command(text);
    REQUIRE(back.has_value());
    CHECK(encode_command(*back) == text);
    CHECK(op_name(*back) == op_name(c));
  }
  CHECK(encode_command(PolicyCreate{p}) ==
        R"({"op":"policy.create","policy":{"id":"00000000000000a1","from":"service:client",)"
        R"("to":"service:web","port":8080,"action":"deny","priority":3}})");
}

TEST_CASE(
    "policies survive the state JSON and a snapshot; a state without any keeps its old image") {
  ClusterState empty = initial_state();
  CHECK(encode_state(empty).find("policies") == std::string::npos);

  StoreStateMachine a;
  a.apply(1, create(kId1,
                    R"("from":"network:front","to":"service:web","action":"allow","priority":2)"));
  a.apply(2,
          create(kId2, R"("from":"cidr:fd00::/8","to":"service:web","port":53,"action":"deny")"));
  REQUIRE(a.state().policies.size() == 2);
  auto decoded = decode_state(encode_state(a.state()));
  REQUIRE(decoded);
  CHECK(encode_state(*decoded) == encode_state(a.state()));
  CHECK(decoded->policies.at(kId2).from == "cidr:fd00::/8");
  CHECK(decoded->policies.at(kId2).action == PolicyAction::deny);
  CHECK(decoded->policies.at(kId1).priority == 2);

  StoreStateMachine b;
  b.restore(a.snapshot());
  CHECK(b.snapshot() == a.snapshot());
  CHECK(b.state().policies.size() == 2);
  // Both go on identically.
  const std::string del = R"({"op":"policy.delete","id":")" + kId1 + R"("})";
  CHECK(a.apply(3, del) == b.apply(3, del));
  CHECK(a.snapshot() == b.snapshot());

  // A malformed policy makes the image malformed.
  CHECK_FALSE(decode_state(R"({"revision":1,"policies":[{"id":"x","from":"network:a"}]})"));
}

TEST_CASE("cert.revoke adds a serial once, checks it, and survives the state JSON") {
  ClusterState state = initial_state();
  auto r = apply_json(
      state,
      R"({"op":"cert.revoke","revocation":{"serial":"a1b2","name":"alice","at":1700000000}})");
  REQUIRE(r.ok);
  REQUIRE(state.revoked.count("a1b2") == 1);
  CHECK(state.revoked.at("a1b2").name == "alice");
  CHECK(state.revoked.at("a1b2").at == 1700000000);
  CHECK(state.revoked.at("a1b2").version == r.revision);

  auto again = apply_json(state, R"({"op":"cert.revoke","revocation":{"serial":"a1b2"}})");
  CHECK_FALSE(again.ok);
  CHECK(again.error.code == errc::conflict);
  CHECK(again.error.field == "revocation.serial");

  struct Case {
    std::string revocation;
    std::string field;
  };
  for (const Case& c :
       {Case{R"({"serial":"A1B2"})", "revocation.serial"},
        Case{R"({"serial":"0a1"})", "revocation.serial"},
        Case{R"({"serial":""})", "revocation.serial"},
        Case{R"({"serial":")" + std::string(41, 'a') + R"("})", "revocation.serial"},
        Case{R"({"serial":"ab","name":"Not A Name"})", "revocation.name"}}) {
    const std::uint64_t revision = state.revision;
    auto bad = apply_json(state, R"({"op":"cert.revoke","revocation":)" + c.revocation + "}");
    CHECK_FALSE(bad.ok);
    CHECK(bad.error.code == errc::invalid);
    CHECK(bad.error.field == c.field);
    CHECK(state.revision == revision);
  }
  CHECK_FALSE(decode_command(R"({"op":"cert.revoke"})").has_value());
  CHECK(state.revoked.size() == 1);

  const Command c = CertRevoke{Revocation{"ff01", "bob", 5, 0}};
  const std::string text = encode_command(c);
  CHECK(text == R"({"op":"cert.revoke","revocation":{"serial":"ff01","name":"bob","at":5}})");
  auto back = decode_command(text);
  REQUIRE(back.has_value());
  CHECK(encode_command(*back) == text);

  CHECK(encode_state(initial_state()).find("revoked") == std::string::npos);
  auto decoded = decode_state(encode_state(state));
  REQUIRE(decoded);
  CHECK(encode_state(*decoded) == encode_state(state));
  CHECK(decoded->revoked.at("a1b2").name == "alice");
}

TEST_CASE("node.remove keeps the node's id refused; it never joins again under it") {
  ClusterState state = initial_state();
  const std::string add =
      R"({"op":"node.add","node":{"id":"00000000000000a1","name":"w1","role":"worker","address":"127.0.0.1:9901"}})";
  REQUIRE(apply_json(state, add).ok);
  CHECK(state.removed_nodes.empty());
  CHECK(encode_state(state).find("removed_nodes") == std::string::npos);
  REQUIRE(apply_json(state, R"({"op":"node.remove","id":"00000000000000a1"})").ok);
  CHECK(state.nodes.empty());
  REQUIRE(state.removed_nodes.count("00000000000000a1") == 1);
  CHECK(state.removed_nodes.at("00000000000000a1") == "w1");

  const std::uint64_t revision = state.revision;
  auto again = apply_json(state, add);
  CHECK_FALSE(again.ok);
  CHECK(again.error.code == errc::conflict);
  CHECK(again.error.field == "node.id");
  CHECK(state.revision == revision);
  CHECK(state.nodes.empty());

  auto decoded = decode_state(encode_state(state));
  REQUIRE(decoded);
  CHECK(encode_state(*decoded) == encode_state(state));
  CHECK(decoded->removed_nodes.at("00000000000000a1") == "w1");
  CHECK_FALSE(decode_state(R"({"revision":1,"removed_nodes":["00000000000000a1"]})"));
  CHECK_FALSE(decode_state(R"({"revision":1,"removed_nodes":{"00000000000000a1":1}})"));
}

TEST_CASE("ingress.cert.set stores a host's certificate; set replaces, delete removes") {
  ClusterState state = initial_state();
  const std::string pem = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";
  const std::string key = "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n";
  auto set = [&](const std::string& host, const std::string& extra = "") {
    return apply_json(state, R"({"op":"ingress.cert.set","cert":{"host":")" + host +
                                 R"(","cert":")" + pem + R"(","key":")" + key + R"(","digest":")" +
                                 std::string(64, 'a') + R"(","not_after":1900000000)" + extra +
                                 "}}");
  };
  auto r = set("a.test");
  REQUIRE(r.ok);
  REQUIRE(state.ingress_certs.count("a.test") == 1);
  const IngressCert& c = state.ingress_certs.at("a.test");
  CHECK(c.version == r.revision);
  CHECK(c.not_after == 1900000000);
  CHECK(c.key.find("PRIVATE KEY") != std::string::npos);
  // The answer (what the API returns) leaves the key out.
  CHECK(r.object.as_object().if_contains("key") == nullptr);
  CHECK(r.object.as_object().at("host") == "a.test");

  // Replace: any time without a version; with one, only if it matches.
  auto stale = set("a.test", R"(,"version":)" + std::to_string(c.version + 5));
  CHECK_FALSE(stale.ok);
  CHECK(stale.error.code == errc::version_mismatch);
  auto replaced = set("a.test", R"(,"version":)" + std::to_string(c.version));
  REQUIRE(replaced.ok);
  CHECK(state.ingress_certs.at("a.test").version == replaced.revision);
  auto missing = set("b.test", R"(,"version":3)");
  CHECK_FALSE(missing.ok);
  CHECK(missing.error.code == errc::not_found);
  REQUIRE(set("*.wild.test").ok);
  REQUIRE(set("*").ok);

  for (const char* bad : {"A.test", "*.", "a..test", "**", "a.*.test", ""}) {
    CAPTURE(bad);
    const std::uint64_t revision = state.revision;
    auto refused = set(bad);
    CHECK_FALSE(refused.ok);
    CHECK(refused.error.field == "cert.host");
    CHECK(state.revision == revision);
  }
  auto not_pem = apply_json(
      state, R"({"op":"ingress.cert.set","cert":{"host":"c.test","cert":"x","key":"y"}})");
  CHECK_FALSE(not_pem.ok);
  CHECK(not_pem.error.field == "cert.cert");

  // The state image keeps the key (nodes need it); decode(encode) is the identity.
  auto decoded = decode_state(encode_state(state));
  REQUIRE(decoded);
  CHECK(encode_state(*decoded) == encode_state(state));
  CHECK(decoded->ingress_certs.at("*").key.find("PRIVATE KEY") != std::string::npos);

  auto gone = apply_json(state, R"({"op":"ingress.cert.delete","host":"a.test"})");
  REQUIRE(gone.ok);
  CHECK(gone.object.as_object().if_contains("key") == nullptr);
  CHECK(state.ingress_certs.count("a.test") == 0);
  auto again = apply_json(state, R"({"op":"ingress.cert.delete","host":"a.test"})");
  CHECK_FALSE(again.ok);
  CHECK(again.error.code == errc::not_found);

  const Command command = IngressCertDelete{"x.test", 4};
  const std::string text = encode_command(command);
  CHECK(text == R"({"op":"ingress.cert.delete","host":"x.test","version":4})");
  auto back = decode_command(text);
  REQUIRE(back.has_value());
  CHECK(encode_command(*back) == text);
  CHECK(encode_state(initial_state()).find("ingress_certs") == std::string::npos);
}

TEST_CASE("ca.set replaces the CA record at its version; ca.reissued records a rotation's nodes") {
  ClusterState state = initial_state();
  Node n;
  n.id = kId1;
  n.name = "n1";
  n.address = "127.0.0.1:1";
  n.peer = "127.0.0.1:2";
  n.role = NodeRole::manager;
  REQUIRE(apply(state, NodeAdd{n}).ok);
  const std::string root_a = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n";
  const std::string root_b = "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
  const std::string hash(64, 'c');

  CaSet start;
  start.ca.roots = {root_b, root_a};
  start.ca.sealed_key = "sealed";
  start.ca.cross_new = "x-new";
  start.ca.cross_old = "x-old";
  start.ca.started = 100;
  start.ca.retire_after = 160;
  start.ca.manager_key_id = "0123456789abcdef";
  start.ca.manager_key_wrapped = "v1:00";
  start.ca.unlock_key_wrapped = "v1:11";
  start.ca.secrets_key_wrapped = "v1:22";
  start.worker_token_hash = hash;
  start.manager_token_hash = std::string(64, 'd');

  // Round trip of the command through its JSON.
  const Command command = start;
  auto back = decode_command(encode_command(command));
  REQUIRE(back.has_value());
  CHECK(encode_command(*back) == encode_command(command));

  auto started = apply(state, start);
  REQUIRE(started.ok);
  CHECK(state.ca.rotating());
  CHECK(state.ca.roots == std::vector<std::string>{root_b, root_a});
  CHECK(state.ca.version == state.revision);
  CHECK(state.worker_token_hash == hash);
  // A second start at the old version loses (two rotations at once: one wins).
  auto again = apply(state, start);
  CHECK_FALSE(again.ok);
  CHECK(again.error.code == errc::version_mismatch);

  // Nodes are recorded for this rotation only, and only if they exist.
  CHECK(apply(state, CaReissued{kId1, 100}).ok);
  CHECK(state.ca.reissued == std::set<std::string>{kId1});
  CHECK(apply(state, CaReissued{kId1, 99}).error.code == errc::conflict);
  CHECK(apply(state, CaReissued{kId2, 100}).error.code == errc::not_found);

  // The record survives the state image (snapshots).
  auto decoded = decode_state(encode_state(state));
  REQUIRE(decoded);
  CHECK(encode_state(*decoded) == encode_state(state));
  CHECK(decoded->ca.reissued.count(kId1) == 1);
  CHECK(decoded->ca.retire_after == 160);
  CHECK(decoded->ca.manager_key_id == "0123456789abcdef");
  CHECK(decoded->ca.manager_key_wrapped == "v1:00");
  CHECK(decoded->ca.unlock_key_wrapped == "v1:11");
  CHECK(decoded->ca.secrets_key_wrapped == "v1:22");

  // The end: one root, nothing of the rotation left.
  CaSet end;
  end.version = state.ca.version;
  end.ca.roots = {root_b};
  end.ca.sealed_key = "sealed";
  REQUIRE(apply(state, end).ok);
  CHECK_FALSE(state.ca.rotating());
  CHECK(state.ca.reissued.empty());
  CHECK(state.worker_token_hash == hash);  // no token hashes given: unchanged
  CHECK(apply(state, CaReissued{kId1, 100}).error.code == errc::conflict);

  // Malformed records change nothing.
  const std::uint64_t revision = state.revision;
  CaSet bad = end;
  bad.version = state.ca.version;
  bad.ca.roots = {};
  CHECK(apply(state, bad).error.field == "ca.roots");
  bad.ca.roots = {"not a certificate"};
  CHECK(apply(state, bad).error.field == "ca.roots[0]");
  bad.ca.roots = {root_a, root_b};  // two roots without a rotation
  CHECK(apply(state, bad).error.field == "ca.started");
  bad.ca.started = 5;  // a rotation without its cross certificates
  CHECK(apply(state, bad).error.field == "ca.cross_new");
  bad = end;
  bad.version = state.ca.version;
  bad.worker_token_hash = "short";
  CHECK(apply(state, bad).error.field == "worker_token_hash");
  CHECK(state.revision == revision);
  CHECK(state.ca.roots == std::vector<std::string>{root_b});
  CHECK_FALSE(decode_command(R"({"op":"ca.set","ca":{"roots":[1]},"version":0})").has_value());
  CHECK_FALSE(decode_command(R"({"op":"ca.reissued","node":"x"})").has_value());
}
