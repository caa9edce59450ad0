#include "proxy/errc.h"

#include <catch2/catch.hpp>

#include <cerrno>
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

TEST_CASE("running out of local resources is told apart from an endpoint's failure") {
  using routemesh::proxy::is_local_resource_error;
  for (int e : {EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL}) {
    CAPTURE(e);
    CHECK(is_local_resource_error(error_code(e, boost::system::system_category())));
  }
  for (int e : {ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNRESET}) {
    CAPTURE(e);
    CHECK_FALSE(is_local_resource_error(error_code(e, boost::system::system_category())));
  }
  CHECK_FALSE(is_local_resource_error(errc::upstream_connect_failed));
  CHECK_FALSE(is_local_resource_error(error_code{}));
}
