#include "discovery/raft/identity.h"

#include "tests/unit/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <fstream>

using namespace routemesh::discovery::raft;

TEST_CASE("identity: written file reads back; absent and malformed files are errors") {
  routemesh::test::TempDir tmp("rm-id");  // removed even when a REQUIRE fails
  std::string dir = tmp.path + "/data";

  auto missing = read_identity(dir);
  REQUIRE(missing.has_error());
  CHECK(missing.error() == boost::system::errc::no_such_file_or_directory);

  Identity id{"00c0ffee00c0ffee", 0x8000000000000001ull, "n1"};
  REQUIRE(write_identity(dir, id).has_value());
  auto back = read_identity(dir);
  REQUIRE(back.has_value());
  CHECK(*back == id);

  std::ofstream(identity_path(dir)) << R"({"cluster_id":"x","node_id":"12","name":"n1"})";
  auto bad = read_identity(dir);
  REQUIRE(bad.has_error());
  CHECK(bad.error() == boost::system::errc::invalid_argument);
}

TEST_CASE("identity: node ids are exactly 16 hex digits") {
  CHECK(format_node_id(0xabc) == "0000000000000abc");
  CHECK(parse_node_id("0000000000000ABC") == 0xabcu);
  CHECK_FALSE(parse_node_id("abc"));
  CHECK_FALSE(parse_node_id("000000000000000g"));
}
