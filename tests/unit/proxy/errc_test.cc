#include "proxy/errc.h"

#include <catch2/catch.hpp>

#include <string>

using boost::system::error_code;
using routemesh::proxy::errc;

TEST_CASE("proxy errors carry their own category and message") {
  const error_code ec = errc::upstream_reset;
  CHECK(ec.category() == routemesh::proxy::proxy_category());
  CHECK(std::string(ec.category().name()) == "routemesh.proxy");
  CHECK_FALSE(ec.message().empty());
  CHECK(ec != error_code{});
  CHECK(ec == errc::upstream_reset);
  CHECK(ec != errc::upstream_connect_failed);
}
