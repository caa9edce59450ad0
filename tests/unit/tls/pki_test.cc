#include "tls/pki.h"

#include "tls/cluster_pki.h"
#include "tls/token.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <catch2/catch.hpp>

#include <memory>
#include <string>

using namespace routemesh;

namespace {

constexpr std::int64_t kNow = 1'760'000'000;  // 2025-10-09

tls::CertificateAuthority new_ca(const char* cluster = "c0ffee00c0ffee00") {
  auto ca = tls::CertificateAuthority::create(cluster, kNow);
  REQUIRE(ca.has_value());
  return std::move(*ca);
}

struct Issued {
  std::string key;
  std::string cert;
};

Issued issue(const tls::CertificateAuthority& ca, const tls::Subject& subject,
             std::int64_t lifetime = tls::kNodeLifetime) {
  auto key = tls::generate_key();
  REQUIRE(key.has_value());
  auto csr = tls::make_request(*key, "whatever the requester says");
  REQUIRE(csr.has_value());
  auto cert = ca.issue(*csr, subject, kNow, lifetime);
  REQUIRE(cert.has_value());
  return {*key, *cert};
}

tls::Subject node_subject() {
  return tls::Subject{
      {"c0ffee00c0ffee00", tls::Role::worker, "00000000000000b2"}, {"127.0.0.12"}, {"n2"}};
}

}  // namespace

TEST_CASE("a new CA has a digest of its certificate and loads back from its PEM files") {
  auto ca = new_ca();
  CHECK(tls::is_lower_hex(ca.digest(), 64));
  auto digest = tls::certificate_digest(ca.certificate_pem());
  REQUIRE(digest.has_value());
  CHECK(*digest == ca.digest());
  auto loaded = tls::CertificateAuthority::load(ca.certificate_pem(), ca.key_pem());
  REQUIRE(loaded.has_value());
  CHECK(loaded->digest() == ca.digest());
  CHECK(new_ca().digest() != ca.digest());
}

TEST_CASE("a CA does not load with another CA's key or with garbage") {
  auto a = new_ca();
  auto b = new_ca();
  auto mixed = tls::CertificateAuthority::load(a.certificate_pem(), b.key_pem());
  REQUIRE_FALSE(mixed.has_value());
  CHECK(mixed.error() == tls::errc::key_mismatch);
  auto garbage = tls::CertificateAuthority::load("not pem", a.key_pem());
  REQUIRE_FALSE(garbage.has_value());
  CHECK(garbage.error() == tls::errc::malformed_pem);
}

TEST_CASE("an issued certificate carries the identity the CA gave it, not the request's") {
  auto ca = new_ca();
  auto issued = issue(ca, node_subject());
  auto identity = tls::identity_of(issued.cert);
  REQUIRE(identity.has_value());
  CHECK(*identity == node_subject().identity);
  CHECK(tls::check_certificate(issued.cert, ca.certificate_pem(), issued.key, kNow).has_value());
  auto end = tls::not_after(issued.cert);
  REQUIRE(end.has_value());
  CHECK(*end == kNow + tls::kNodeLifetime);
}

TEST_CASE("a certificate is checked against its CA, its validity and its key") {
  auto ca = new_ca();
  auto other = new_ca();
  auto issued = issue(ca, node_subject(), tls::kDay);
  auto foreign = tls::check_certificate(issued.cert, other.certificate_pem(), "", kNow);
  REQUIRE_FALSE(foreign.has_value());
  CHECK(foreign.error() == tls::errc::not_issued_by_ca);
  auto expired =
      tls::check_certificate(issued.cert, ca.certificate_pem(), "", kNow + 2 * tls::kDay);
  REQUIRE_FALSE(expired.has_value());
  CHECK(expired.error() == tls::errc::not_issued_by_ca);
  // Backdated by kBackdate: a peer a minute behind accepts it.
  CHECK(tls::check_certificate(issued.cert, ca.certificate_pem(), "", kNow - 60).has_value());
  auto another_key = tls::generate_key();
  REQUIRE(another_key.has_value());
  auto mismatch = tls::check_certificate(issued.cert, ca.certificate_pem(), *another_key, kNow);
  REQUIRE_FALSE(mismatch.has_value());
  CHECK(mismatch.error() == tls::errc::key_mismatch);
}

TEST_CASE("the CA refuses requests it cannot trust and subjects it cannot write") {
  auto ca = new_ca();
  auto key = tls::generate_key();
  REQUIRE(key.has_value());
  auto csr = tls::make_request(*key, "n2");
  REQUIRE(csr.has_value());

  SECTION("a request whose signature was tampered with") {
    std::string tampered = *csr;
    // The signature is the last field of the request: change the eighth base64 digit before
    // the footer (skipping line breaks and padding), so that every bit of it is significant.
    const auto footer = tampered.find("-----END");
    REQUIRE(footer != std::string::npos);
    std::size_t at = footer;
    for (int digits = 0; digits < 8;) {
      REQUIRE(at > 0);
      --at;
      if (tampered[at] != '\n' && tampered[at] != '=') {
        ++digits;
      }
    }
    char& c = tampered[at];
    c = c == 'A' ? 'B' : 'A';
    auto cert = ca.issue(tampered, node_subject(), kNow, tls::kNodeLifetime);
    REQUIRE_FALSE(cert.has_value());
    CHECK((cert.error() == tls::errc::bad_signature || cert.error() == tls::errc::malformed_pem));
  }
  SECTION("not a request") {
    auto cert = ca.issue(ca.certificate_pem(), node_subject(), kNow, tls::kNodeLifetime);
    REQUIRE_FALSE(cert.has_value());
    CHECK(cert.error() == tls::errc::malformed_pem);
  }
  SECTION("SAN values that are not addresses or host names") {
    auto subject = node_subject();
    subject.ips = {"127.0.0.12,DNS:evil.example"};
    auto cert = ca.issue(*csr, subject, kNow, tls::kNodeLifetime);
    REQUIRE_FALSE(cert.has_value());
    CHECK(cert.error() == tls::errc::bad_request);
    subject = node_subject();
    subject.names = {"evil,URI:routemesh://x/admin/root"};
    cert = ca.issue(*csr, subject, kNow, tls::kNodeLifetime);
    REQUIRE_FALSE(cert.has_value());
    CHECK(cert.error() == tls::errc::bad_request);
  }
  SECTION("an identity that does not fit its role") {
    auto subject = node_subject();
    subject.identity.id = "alice";  // a worker is named by its node id
    auto cert = ca.issue(*csr, subject, kNow, tls::kNodeLifetime);
    REQUIRE_FALSE(cert.has_value());
    CHECK(cert.error() == tls::errc::bad_request);
  }
}

TEST_CASE("user certificates name a user and a role") {
  auto ca = new_ca();
  auto issued =
      issue(ca, {{"c0ffee00c0ffee00", tls::Role::operator_, "ops"}, {}, {}}, tls::kUserLifetime);
  auto identity = tls::identity_of(issued.cert);
  REQUIRE(identity.has_value());
  CHECK(identity->role == tls::Role::operator_);
  CHECK(identity->id == "ops");
}

TEST_CASE("serials: each certificate its own, spelled like openssl's in lower case") {
  auto ca = new_ca();
  auto a = issue(ca, {{"c0ffee00c0ffee00", tls::Role::viewer, "a"}, {}, {}}, tls::kUserLifetime);
  auto b = issue(ca, {{"c0ffee00c0ffee00", tls::Role::viewer, "b"}, {}, {}}, tls::kUserLifetime);
  auto sa = tls::serial_of(a.cert);
  auto sb = tls::serial_of(b.cert);
  REQUIRE(sa.has_value());
  REQUIRE(sb.has_value());
  CHECK(*sa != *sb);
  CHECK(tls::normalize_serial(*sa) == *sa);  // already in its own spelling
  CHECK_FALSE(sa->empty());
  CHECK(sa->size() <= 40);
  CHECK(sa->front() != '0');
  CHECK_FALSE(tls::serial_of(std::string_view("not a certificate")).has_value());

  CHECK(tls::normalize_serial("0A:1b:FF") == "a1bff");
  CHECK(tls::normalize_serial("00ff") == "ff");
  CHECK(tls::normalize_serial("7") == "7");
  CHECK(tls::normalize_serial(std::string(40, 'f')) == std::string(40, 'f'));
  CHECK_FALSE(tls::normalize_serial(std::string(41, 'f')).has_value());
  CHECK_FALSE(tls::normalize_serial("").has_value());
  CHECK_FALSE(tls::normalize_serial("00:00").has_value());  // zero is no serial
  CHECK_FALSE(tls::normalize_serial("12g4").has_value());
  CHECK_FALSE(tls::normalize_serial("12 34").has_value());
}

TEST_CASE("a certificate without a routemesh identity has none") {
  auto ca = new_ca();
  auto identity = tls::identity_of(ca.certificate_pem());  // the CA names no one
  REQUIRE_FALSE(identity.has_value());
  CHECK(identity.error() == tls::errc::no_identity);
}

TEST_CASE("a new cluster's PKI: CA, first manager, admin and two tokens pinning the CA") {
  const tls::Subject first{
      {"c0ffee00c0ffee00", tls::Role::manager, "00000000000000a1"}, {"127.0.0.11"}, {"n1"}};
  auto pki = tls::new_cluster_pki(first, "admin", kNow);
  REQUIRE(pki.has_value());
  auto ca = tls::open_sealed_ca(pki->ca_pem, pki->sealed_ca_key, pki->manager_key);
  REQUIRE(ca.has_value());
  CHECK(
      tls::check_certificate(pki->node_cert_pem, pki->ca_pem, pki->node_key_pem, kNow).has_value());
  CHECK(tls::check_certificate(pki->admin_cert_pem, pki->ca_pem, pki->admin_key_pem, kNow)
            .has_value());
  auto node = tls::identity_of(pki->node_cert_pem);
  REQUIRE(node.has_value());
  CHECK(*node == first.identity);
  auto admin = tls::identity_of(pki->admin_cert_pem);
  REQUIRE(admin.has_value());
  CHECK(*admin == tls::Identity{"c0ffee00c0ffee00", tls::Role::admin, "admin"});
  CHECK(pki->worker_token.ca_digest == ca->digest());
  CHECK(pki->manager_token.ca_digest == ca->digest());
  CHECK(pki->worker_token.secret != pki->manager_token.secret);

  auto not_a_manager = first;
  not_a_manager.identity.role = tls::Role::worker;
  CHECK_FALSE(tls::new_cluster_pki(not_a_manager, "admin", kNow).has_value());
}

TEST_CASE("root rotation: cross certificates let a leaf of either root verify against the other") {
  auto old_root = new_ca();
  auto new_root = new_ca();  // same subject: the same cluster id
  CHECK(new_root.digest() != old_root.digest());
  auto cross_new = old_root.cross_sign(new_root.certificate_pem(), kNow);  // new key, old issuer
  auto cross_old = new_root.cross_sign(old_root.certificate_pem(), kNow);  // old key, new issuer
  REQUIRE(cross_new.has_value());
  REQUIRE(cross_old.has_value());
  const Issued fresh = issue(new_root, node_subject());
  const Issued stale = issue(old_root, node_subject());
  const auto& old_pem = old_root.certificate_pem();
  const auto& new_pem = new_root.certificate_pem();

  // Alone, a leaf verifies only against its own root.
  CHECK(tls::check_certificate(fresh.cert, new_pem, fresh.key, kNow + 60).has_value());
  CHECK(tls::check_certificate(fresh.cert, old_pem, "", kNow + 60).error() ==
        tls::errc::not_issued_by_ca);
  CHECK(tls::check_certificate(stale.cert, new_pem, "", kNow + 60).error() ==
        tls::errc::not_issued_by_ca);
  // With its cross certificate, against the other root too, despite the roots' pathlen 0.
  CHECK(tls::check_certificate(fresh.cert + *cross_new, old_pem, fresh.key, kNow + 60));
  CHECK(tls::check_certificate(stale.cert + *cross_old, new_pem, stale.key, kNow + 60));
  // The wrong cross certificate does not help.
  CHECK(!tls::check_certificate(fresh.cert + *cross_old, old_pem, "", kNow + 60));
  // Against a bundle of both roots, every combination verifies.
  for (const std::string& cert :
       {fresh.cert, stale.cert, fresh.cert + *cross_new, stale.cert + *cross_old}) {
    CHECK(tls::check_certificate(cert, new_pem + old_pem, "", kNow + 60));
    CHECK(tls::check_certificate(cert, old_pem + new_pem, "", kNow + 60));
  }
  // A third root's leaf gets nowhere, cross certificates or not.
  auto other = new_ca();
  const Issued stranger = issue(other, node_subject());
  CHECK(!tls::check_certificate(stranger.cert + *cross_new + *cross_old, new_pem + old_pem, "",
                                kNow + 60));
  CHECK(tls::signed_by(fresh.cert, new_pem));
  CHECK(!tls::signed_by(fresh.cert, old_pem));
  CHECK(tls::signed_by(*cross_new, old_pem));
  auto split = tls::split_certificates(fresh.cert + *cross_new);
  REQUIRE(split.has_value());
  REQUIRE(split->size() == 2);
  CHECK((*split)[0] == fresh.cert);
  CHECK(!tls::split_certificates("no PEM here"));
}

TEST_CASE("a manager key wrapped with the current one opens only with it, and has an id") {
  auto current = tls::new_manager_key();
  auto next = tls::new_manager_key();
  auto stranger = tls::new_manager_key();
  REQUIRE((current && next && stranger));
  auto wrapped = tls::wrap_manager_key(*next, *current);
  REQUIRE(wrapped.has_value());
  CHECK(wrapped->starts_with("v1:"));
  CHECK(wrapped->size() == 3 + 2 * (12 + 32 + 16));
  CHECK(wrapped->find(*next) == std::string::npos);
  CHECK(*wrapped != *tls::wrap_manager_key(*next, *current));  // a fresh nonce each time
  auto opened = tls::unwrap_manager_key(*wrapped, *current);
  REQUIRE(opened.has_value());
  CHECK(*opened == *next);
  // Another key, an altered byte, a cut or foreign text: refused, never a wrong key.
  CHECK(tls::unwrap_manager_key(*wrapped, *stranger).error() == tls::errc::malformed_pem);
  std::string altered = *wrapped;
  altered[40] = altered[40] == '0' ? '1' : '0';
  CHECK(tls::unwrap_manager_key(altered, *current).error() == tls::errc::malformed_pem);
  CHECK(tls::unwrap_manager_key(wrapped->substr(0, 50), *current).error() ==
        tls::errc::malformed_pem);
  CHECK(tls::unwrap_manager_key("v2:" + wrapped->substr(3), *current).error() ==
        tls::errc::malformed_pem);
  CHECK(tls::unwrap_manager_key(*wrapped, "short").error() == tls::errc::bad_request);
  CHECK(tls::wrap_manager_key("short", *current).error() == tls::errc::bad_request);
  // The id: stable, different per key, and not a prefix of the key itself.
  const std::string id = tls::manager_key_id(*current);
  CHECK(id.size() == 16);
  CHECK(id == tls::manager_key_id(*current));
  CHECK(id != tls::manager_key_id(*next));
  CHECK(!current->starts_with(id));
  CHECK(tls::manager_key_id("short").empty());
}

TEST_CASE("a sealed CA key opens only with the manager key that sealed it") {
  auto root = new_ca();
  auto manager_key = tls::new_manager_key();
  REQUIRE(manager_key.has_value());
  CHECK(tls::is_manager_key(*manager_key));
  CHECK(*manager_key != *tls::new_manager_key());
  auto sealed = tls::seal_key(root.key_pem(), *manager_key);
  REQUIRE(sealed.has_value());
  CHECK(sealed->find("ENCRYPTED PRIVATE KEY") != std::string::npos);
  CHECK(sealed->find(root.key_pem()) == std::string::npos);
  auto opened = tls::open_sealed_ca(root.certificate_pem(), *sealed, *manager_key);
  REQUIRE(opened.has_value());
  CHECK(opened->digest() == root.digest());
  CHECK(opened->key_pem() == root.key_pem());
  // Another manager key does not open it; the wrong certificate does not go with it.
  auto other_key = tls::new_manager_key();
  REQUIRE(other_key.has_value());
  CHECK(tls::open_sealed_ca(root.certificate_pem(), *sealed, *other_key).error() ==
        tls::errc::malformed_pem);
  auto stranger = new_ca();
  CHECK(tls::open_sealed_ca(stranger.certificate_pem(), *sealed, *manager_key).error() ==
        tls::errc::key_mismatch);
  // Only a manager key's form is taken.
  CHECK(tls::seal_key(root.key_pem(), "short").error() == tls::errc::bad_request);
  CHECK(
      tls::open_sealed_ca(root.certificate_pem(), *sealed, manager_key->substr(1) + "G").error() ==
      tls::errc::bad_request);
  CHECK(!tls::is_manager_key(std::string(64, 'A')));
}

TEST_CASE("a new cluster's PKI seals the root's key, or leaves it in a file for an external CA") {
  const tls::Subject first{
      {"c0ffee00c0ffee00", tls::Role::manager, "00000000000000a1"}, {"127.0.0.11"}, {"n1"}};
  auto pki = tls::new_cluster_pki(first, "admin", kNow);
  REQUIRE(pki.has_value());
  CHECK(pki->ca_key_pem.empty());
  auto opened = tls::open_sealed_ca(pki->ca_pem, pki->sealed_ca_key, pki->manager_key);
  REQUIRE(opened.has_value());
  CHECK(tls::check_certificate(pki->node_cert_pem, opened->certificate_pem(), "", kNow));

  // The operator's root: the same certificate, its key sealed or (external) in a file.
  auto own = new_ca("0wn0wn0wn0wn0wn0");
  for (bool external : {false, true}) {
    auto made = tls::new_cluster_pki(first, "admin", kNow, tls::kNodeLifetime, tls::kUserLifetime,
                                     tls::RootChoice{&own, external});
    REQUIRE(made.has_value());
    CHECK(made->ca_pem == own.certificate_pem());
    CHECK(made->worker_token.ca_digest == own.digest());
    CHECK(tls::check_certificate(made->node_cert_pem, own.certificate_pem(), made->node_key_pem,
                                 kNow));
    if (external) {
      CHECK(made->ca_key_pem == own.key_pem());
      CHECK(made->manager_key.empty());
      CHECK(made->sealed_ca_key.empty());
    } else {
      CHECK(made->ca_key_pem.empty());
      auto back = tls::open_sealed_ca(made->ca_pem, made->sealed_ca_key, made->manager_key);
      REQUIRE(back.has_value());
      CHECK(back->key_pem() == own.key_pem());
    }
  }
}

TEST_CASE("an imported root must be a self-signed CA, valid now, with a key routemesh signs with") {
  auto root = new_ca();
  auto imported = tls::CertificateAuthority::import(root.certificate_pem(), root.key_pem(), kNow);
  REQUIRE(imported.has_value());
  CHECK(imported->digest() == root.digest());
  // Only the root itself is taken from the file: text around it and further certificates not.
  auto other_root = new_ca();
  auto bundled = tls::CertificateAuthority::import(
      "issuer: whoever\n" + root.certificate_pem() + other_root.certificate_pem(), root.key_pem(),
      kNow);
  REQUIRE(bundled.has_value());
  CHECK(bundled->certificate_pem() == root.certificate_pem());
  // A leaf is no root.
  const Issued leaf = issue(root, node_subject());
  CHECK(tls::CertificateAuthority::import(leaf.cert, leaf.key, kNow).error() ==
        tls::errc::not_a_root);
  // A cross certificate is a CA, but not self-signed.
  auto other = new_ca();
  auto cross = root.cross_sign(other.certificate_pem(), kNow);
  REQUIRE(cross.has_value());
  CHECK(tls::CertificateAuthority::import(*cross, other.key_pem(), kNow).error() ==
        tls::errc::not_a_root);
  // Outside its validity, and with another key.
  CHECK(tls::CertificateAuthority::import(root.certificate_pem(), root.key_pem(),
                                          kNow + tls::kCaLifetime + tls::kDay)
            .error() == tls::errc::expired);
  CHECK(tls::CertificateAuthority::import(root.certificate_pem(), root.key_pem(), kNow - tls::kDay)
            .error() == tls::errc::expired);
  CHECK(tls::CertificateAuthority::import(root.certificate_pem(), other.key_pem(), kNow).error() ==
        tls::errc::key_mismatch);
  CHECK(tls::CertificateAuthority::import("junk", root.key_pem(), kNow).error() ==
        tls::errc::malformed_pem);
}

TEST_CASE("a root's successor has its subject, so the cross certificates are self-issued") {
  auto old_root = new_ca("0wn0wn0wn0wn0wn0");
  auto next = old_root.successor(kNow);
  REQUIRE(next.has_value());
  CHECK(next->digest() != old_root.digest());
  CHECK(tls::same_subject(next->certificate_pem(), old_root.certificate_pem()));
  CHECK_FALSE(tls::same_subject(new_ca().certificate_pem(), old_root.certificate_pem()));
  CHECK_FALSE(tls::same_subject("not PEM", old_root.certificate_pem()));
  auto cross_new = old_root.cross_sign(next->certificate_pem(), kNow);
  auto cross_old = next->cross_sign(old_root.certificate_pem(), kNow);
  REQUIRE(cross_new.has_value());
  REQUIRE(cross_old.has_value());
  const Issued fresh = issue(*next, node_subject());
  const Issued stale = issue(old_root, node_subject());
  CHECK(tls::check_certificate(fresh.cert + *cross_new, old_root.certificate_pem(), fresh.key,
                               kNow + 60));
  CHECK(tls::check_certificate(stale.cert + *cross_old, next->certificate_pem(), stale.key,
                               kNow + 60));
  // A successor is a root of its own: importable.
  CHECK(tls::CertificateAuthority::import(next->certificate_pem(), next->key_pem(), kNow + 60)
            .has_value());
}

namespace {

// OpenSSL's verdict on `leaf_pem` against `ca` with `crl_pem` checked, at kNow + 60.
int verify_with_crl(const tls::CertificateAuthority& ca, const std::string& leaf_pem,
                    const std::string& crl_pem) {
  auto read = [](const std::string& pem) {
    return std::unique_ptr<BIO, decltype(&BIO_free)>(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  };
  auto ca_bio = read(ca.certificate_pem());
  auto leaf_bio = read(leaf_pem);
  auto crl_bio = read(crl_pem);
  std::unique_ptr<X509, decltype(&X509_free)> root(
      PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr), &X509_free);
  std::unique_ptr<X509, decltype(&X509_free)> leaf(
      PEM_read_bio_X509(leaf_bio.get(), nullptr, nullptr, nullptr), &X509_free);
  std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(
      PEM_read_bio_X509_CRL(crl_bio.get(), nullptr, nullptr, nullptr), &X509_CRL_free);
  REQUIRE(root);
  REQUIRE(leaf);
  REQUIRE(crl);
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  REQUIRE(X509_STORE_add_cert(store.get(), root.get()) == 1);
  REQUIRE(X509_STORE_add_crl(store.get(), crl.get()) == 1);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free);
  REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr) == 1);
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_CRL_CHECK);
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(kNow + 60));
  X509_verify_cert(ctx.get());
  return X509_STORE_CTX_get_error(ctx.get());
}

}  // namespace

TEST_CASE("a CRL lists the revoked serials, signed by the CA, for openssl's CRL check") {
  auto ca = new_ca();
  auto carol =
      issue(ca, {{"c0ffee00c0ffee00", tls::Role::operator_, "carol"}, {}, {}}, tls::kUserLifetime);
  auto dave =
      issue(ca, {{"c0ffee00c0ffee00", tls::Role::viewer, "dave"}, {}, {}}, tls::kUserLifetime);
  auto serial = tls::serial_of(carol.cert);
  REQUIRE(serial.has_value());

  auto crl = ca.crl({{*serial, kNow - 100}}, kNow, 86400, 42);
  REQUIRE(crl.has_value());
  CHECK(crl->starts_with("-----BEGIN X509 CRL-----"));
  CHECK(verify_with_crl(ca, carol.cert, *crl) == X509_V_ERR_CERT_REVOKED);
  CHECK(verify_with_crl(ca, dave.cert, *crl) == X509_V_OK);

  // An empty list is a valid CRL too; nothing is revoked by it.
  auto empty = ca.crl({}, kNow, 86400, 43);
  REQUIRE(empty.has_value());
  CHECK(verify_with_crl(ca, carol.cert, *empty) == X509_V_OK);

  // Another CA's CRL does not speak for this one.
  auto other = new_ca("0123456789abcdef");
  auto foreign = other.crl({{*serial, kNow - 100}}, kNow, 86400, 1);
  REQUIRE(foreign.has_value());
  CHECK(verify_with_crl(ca, carol.cert, *foreign) != X509_V_ERR_CERT_REVOKED);

  // Past its next update, the list is stale.
  auto old = ca.crl({}, kNow - 7200, 3600, 44);
  REQUIRE(old.has_value());
  CHECK(verify_with_crl(ca, dave.cert, *old) == X509_V_ERR_CRL_HAS_EXPIRED);

  CHECK(ca.crl({{"not hex", kNow}}, kNow, 86400, 45).error() == tls::errc::bad_request);
  CHECK(ca.crl({{"", kNow}}, kNow, 86400, 45).error() == tls::errc::bad_request);
}
