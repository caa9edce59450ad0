#include "tls/ingress.h"

#include "tls/pki.h"

#include <catch2/catch.hpp>

#include <ctime>
#include <string>

using namespace routemesh;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

struct Pair {
  std::string cert;
  std::string key;
};

// A certificate from a routemesh CA naming `host` in a DNS SAN (any issuer will do here).
Pair issue(const tls::CertificateAuthority& ca, const std::string& host, std::int64_t lifetime) {
  auto key = tls::generate_key();
  REQUIRE(key.has_value());
  auto csr = tls::make_request(*key, host);
  REQUIRE(csr.has_value());
  tls::Subject subject;
  subject.identity = tls::Identity{"c0ffee", tls::Role::operator_, "web"};
  subject.names = {host};
  auto cert = ca.issue(*csr, subject, kNow, lifetime);
  REQUIRE(cert.has_value());
  return {*cert, *key};
}

const tls::IngressCertProblem* problem_of(
    const std::variant<tls::IngressCertInfo, tls::IngressCertProblem>& r) {
  return std::get_if<tls::IngressCertProblem>(&r);
}

}  // namespace

TEST_CASE("a certificate for its host is accepted with its digest and expiry") {
  auto ca = tls::CertificateAuthority::create("c0ffee", kNow);
  REQUIRE(ca.has_value());
  const Pair a = issue(*ca, "a.test", 3600);
  auto r = tls::check_ingress_certificate(a.cert, a.key, "a.test", kNow);
  REQUIRE(std::holds_alternative<tls::IngressCertInfo>(r));
  const auto& info = std::get<tls::IngressCertInfo>(r);
  CHECK(info.digest == *tls::certificate_digest(a.cert));
  CHECK(info.not_after == kNow + 3600);
  // As the default certificate, any name will do.
  CHECK(std::holds_alternative<tls::IngressCertInfo>(
      tls::check_ingress_certificate(a.cert, a.key, "*", kNow)));
}

TEST_CASE("each refusal names the field at fault") {
  auto ca = tls::CertificateAuthority::create("c0ffee", kNow);
  REQUIRE(ca.has_value());
  const Pair a = issue(*ca, "a.test", 3600);
  const Pair b = issue(*ca, "b.test", 3600);
  struct Case {
    std::string cert, key, host;
    std::int64_t now;
    std::string field, words;
  };
  const Case cases[] = {
      {"junk", a.key, "a.test", kNow, "cert", "not a PEM certificate"},
      {a.cert, "junk", "a.test", kNow, "key", "not a PEM private key"},
      {a.cert, b.key, "a.test", kNow, "key", "does not belong"},
      {a.cert, a.key, "b.test", kNow, "host", "does not name b.test"},
      {a.cert, a.key, "*.test", kNow, "host", "does not name *.test"},
      {a.cert, a.key, "a.test", kNow + 7200, "cert", "expired"},
      {a.cert, a.key, "a.test", kNow - 3600, "cert", "not valid yet"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.field, c.words);
    auto r = tls::check_ingress_certificate(c.cert, c.key, c.host, c.now);
    const auto* p = problem_of(r);
    REQUIRE(p != nullptr);
    CHECK(p->field == c.field);
    CHECK(p->message.find(c.words) != std::string::npos);
  }
}
