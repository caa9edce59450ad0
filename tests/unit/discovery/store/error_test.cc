#include "discovery/store/error.h"

#include <catch2/catch.hpp>

using namespace routemesh::discovery::store;

TEST_CASE("store errors are an error_code category with the API's wire names") {
  const boost::system::error_code ec = errc::version_mismatch;
  CHECK(ec.category().name() == std::string("routemesh.store"));
  CHECK(ec == errc::version_mismatch);
  CHECK(ec != errc::conflict);
  CHECK_FALSE(ec.message().empty());
  CHECK(to_string(errc::invalid) == "invalid");
  CHECK(to_string(errc::conflict) == "conflict");
  CHECK(to_string(errc::not_found) == "not_found");
  CHECK(to_string(errc::version_mismatch) == "version_mismatch");
  CHECK(to_string(errc::key_reused) == "key_reused");
  CHECK(boost::system::error_code(errc::key_reused).message().find("idempotency") !=
        std::string::npos);
  CHECK(Error{}.code == errc::invalid);  // never "success"
}
