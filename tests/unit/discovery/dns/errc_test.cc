#include "discovery/dns/errc.h"

#include <catch2/catch.hpp>

using namespace routemesh::discovery::dns;

TEST_CASE("dns error codes have their own category and messages") {
  const boost::system::error_code ec = errc::upstream_timeout;
  CHECK(ec.category() == dns_category());
  CHECK(std::string(dns_category().name()) == "routemesh.dns");
  CHECK(ec.message() == "upstream resolver did not answer in time");
  CHECK(boost::system::error_code(errc::upstream_unreachable).message() ==
        "upstream resolver unreachable");
  CHECK(boost::system::error_code(errc::upstream_closed).message() ==
        "upstream resolver closed the connection");
  CHECK(ec != boost::system::error_code(errc::upstream_closed));
  CHECK(ec);
}
