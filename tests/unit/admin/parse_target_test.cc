#include "admin/admin_server.h"

#include <catch2/catch.hpp>

#include <map>
#include <string>

using routemesh::admin::parse_target;

TEST_CASE("targets split into a decoded path and query map") {
  std::string path;
  std::map<std::string, std::string> query;
  REQUIRE(parse_target("/v1/services/web%2Dapi?consistent=1&version=3", path, query));
  CHECK(path == "/v1/services/web-api");
  CHECK(query == std::map<std::string, std::string>{{"consistent", "1"}, {"version", "3"}});

  REQUIRE(parse_target("/v1/tasks?service=a+b&flag&x=%41&x=2", path, query));
  CHECK(path == "/v1/tasks");
  CHECK(query.at("service") == "a b");
  CHECK(query.at("flag").empty());
  CHECK(query.at("x") == "2");  // the last of a repeated key

  REQUIRE(parse_target("/a+b", path, query));
  CHECK(path == "/a+b");  // '+' is a space only in the query
  CHECK(query.empty());
}

TEST_CASE("malformed percent escapes are rejected") {
  std::string path;
  std::map<std::string, std::string> query;
  CHECK_FALSE(parse_target("/v1/%zz", path, query));
  CHECK_FALSE(parse_target("/v1/%4", path, query));
  CHECK_FALSE(parse_target("/v1?x=%", path, query));
}
