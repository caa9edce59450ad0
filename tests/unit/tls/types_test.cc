#include "tls/types.h"

#include <catch2/catch.hpp>

#include <string>

using namespace routemesh;

TEST_CASE("roles print and parse; only manager and worker are node roles") {
  for (auto role : {tls::Role::admin, tls::Role::operator_, tls::Role::viewer, tls::Role::manager,
                    tls::Role::worker}) {
    CAPTURE(tls::to_string(role));
    CHECK(tls::parse_role(tls::to_string(role)) == role);
  }
  CHECK(tls::to_string(tls::Role::operator_) == "operator");
  CHECK_FALSE(tls::parse_role("root"));
  CHECK(tls::is_node_role(tls::Role::manager));
  CHECK(tls::is_node_role(tls::Role::worker));
  CHECK_FALSE(tls::is_node_role(tls::Role::admin));
}

TEST_CASE("identity URIs round-trip and name a node by its id, a user by an object name") {
  const tls::Identity node{"8f3a00c2d1e4b5a6", tls::Role::worker, "00000000000000b2"};
  CHECK(tls::identity_uri(node) == "routemesh://8f3a00c2d1e4b5a6/worker/00000000000000b2");
  CHECK(tls::parse_identity_uri(tls::identity_uri(node)) == node);
  const tls::Identity user{"8f3a00c2d1e4b5a6", tls::Role::viewer, "alice"};
  CHECK(tls::parse_identity_uri(tls::identity_uri(user)) == user);
}

TEST_CASE("malformed identity URIs are refused") {
  for (const char* bad : {
           "", "https://c1/admin/alice",
           "routemesh://c1/admin",         // no id
           "routemesh://c1/root/alice",    // unknown role
           "routemesh:///admin/alice",     // no cluster
           "routemesh://C1/admin/alice",   // upper-case cluster
           "routemesh://c1/worker/alice",  // a node is named by its id
           "routemesh://c1/worker/00000000000000b", "routemesh://c1/worker/0000000000000000",
           "routemesh://c1/admin/Alice",         // not an object name
           "routemesh://c1/admin/alice/extra",   // a slash in the id
           "routemesh://c1/admin/a,IP:1.2.3.4",  // would reach a SAN list
       }) {
    CAPTURE(bad);
    CHECK_FALSE(tls::parse_identity_uri(bad));
  }
}
