#include "tls/token.h"

#include <catch2/catch.hpp>

#include <string>

using namespace routemesh;

namespace {

const std::string kDigest(64, 'a');
const std::string kSecret = "0123456789abcdef0123456789abcdef";

}  // namespace

TEST_CASE("a join token prints as RMTKN-1-<digest>-<secret> and parses back") {
  const tls::JoinToken token{kDigest, kSecret};
  const std::string text = tls::format_token(token);
  CHECK(text == "RMTKN-1-" + kDigest + "-" + kSecret);
  auto parsed = tls::parse_token(text);
  REQUIRE(parsed.has_value());
  CHECK(*parsed == token);
}

TEST_CASE("malformed join tokens are refused") {
  const std::string good = "RMTKN-1-" + kDigest + "-" + kSecret;
  for (const std::string& bad : {
           std::string{},
           std::string("RMTKN-2-") + kDigest + "-" + kSecret,  // another version
           "RMTKN-1-" + kDigest + kSecret,                     // no separator
           "RMTKN-1-" + kDigest.substr(1) + "-" + kSecret,     // short digest
           "RMTKN-1-" + kDigest + "-" + kSecret + "0",         // long secret
           "RMTKN-1-" + std::string(64, 'A') + "-" + kSecret,  // upper case
           "RMTKN-1-" + kDigest + "-" + std::string(32, 'g'),  // not hex
           good + "\n",
           std::string("127.0.0.11:9901"),
       }) {
    CAPTURE(bad);
    auto parsed = tls::parse_token(bad);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error() == tls::errc::malformed_token);
  }
}

TEST_CASE("new secrets are 32 hex digits and differ") {
  auto a = tls::new_secret();
  auto b = tls::new_secret();
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(tls::is_lower_hex(*a, 32));
  CHECK(*a != *b);
}

TEST_CASE("a secret matches only its own hash") {
  const std::string hash = tls::secret_hash(kSecret);
  CHECK(tls::is_lower_hex(hash, 64));
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  CHECK(tls::secret_hash("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(tls::secret_matches(kSecret, hash));
  CHECK_FALSE(tls::secret_matches(std::string(32, '0'), hash));
  CHECK_FALSE(tls::secret_matches(kSecret, ""));  // no token of that kind
  CHECK_FALSE(tls::secret_matches(kSecret, kSecret));
}

TEST_CASE("--join TOKEN@ADDR splits at the last @ and checks both halves") {
  const std::string token = "RMTKN-1-" + kDigest + "-" + kSecret;
  auto ok = tls::parse_join_target(token + "@127.0.0.11:9901");
  REQUIRE(std::holds_alternative<tls::JoinTarget>(ok));
  CHECK(std::get<tls::JoinTarget>(ok).address == "127.0.0.11:9901");
  CHECK(std::get<tls::JoinTarget>(ok).token == tls::JoinToken{kDigest, kSecret});
  for (const std::string& bad :
       {std::string("127.0.0.11:9901"), token, std::string("RMTKN-1-nope@127.0.0.11:9901"),
        token + "@", token + "@nope"}) {
    CAPTURE(bad);
    auto r = tls::parse_join_target(bad);
    REQUIRE(std::holds_alternative<std::string>(r));
    CHECK_FALSE(std::get<std::string>(r).empty());
  }
}
