#include "tls/credentials.h"

#include "base/file.h"
#include "tests/unit/support/temp_dir.h"
#include "tls/pki.h"

#include <catch2/catch.hpp>

#include <filesystem>

#include <sys/stat.h>

using namespace routemesh;

namespace {

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("node credentials round-trip; keys are private, a manager's optional and removable") {
  test::TempDir dir("rm-tls");
  auto missing = tls::read_node_credentials(dir.path, "");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error() == tls::errc::missing_file);

  tls::NodeCredentials worker{"CA", "CERT", "KEY", "", ""};
  REQUIRE(tls::write_node_credentials(dir.path, worker).has_value());
  auto read = tls::read_node_credentials(dir.path, "");
  REQUIRE(read.has_value());
  CHECK(read->ca_pem == "CA");
  CHECK(read->cert_pem == "CERT");
  CHECK(read->key_pem == "KEY");
  CHECK(read->ca_key_pem.empty());
  CHECK(read->manager_key.empty());
  const std::string tls_dir = tls::tls_dir(dir.path);
  CHECK(mode_of(tls_dir) == 0700);
  CHECK(mode_of(tls_dir + "/node-key.pem") == 0600);
  CHECK(mode_of(tls_dir + "/node.pem") == 0644);

  const std::string manager_key(64, 'a');
  tls::NodeCredentials manager{"CA", "CERT2", "KEY2", manager_key, "CAKEY"};
  REQUIRE(tls::write_node_credentials(dir.path, manager).has_value());
  read = tls::read_node_credentials(dir.path, "");
  REQUIRE(read.has_value());
  CHECK(read->ca_key_pem == "CAKEY");
  CHECK(read->manager_key == manager_key);
  CHECK(mode_of(tls_dir + "/ca-key.pem") == 0600);
  CHECK(mode_of(tls_dir + "/manager-key") == 0600);

  // Demoted: the keys go away with the fields.
  REQUIRE(tls::write_node_credentials(dir.path, worker).has_value());
  read = tls::read_node_credentials(dir.path, "");
  REQUIRE(read.has_value());
  CHECK(read->ca_key_pem.empty());
  CHECK(read->manager_key.empty());
  struct stat st {};
  CHECK(::stat((tls_dir + "/manager-key").c_str(), &st) != 0);
  CHECK(::stat((tls_dir + "/ca-key.pem").c_str(), &st) != 0);
}

TEST_CASE("the CLI's credentials: the default place and the files") {
  CHECK(tls::default_client_dir("/x/certs", "/xdg", "/home/u") == "/x/certs");
  CHECK(tls::default_client_dir("", "/xdg", "/home/u") == "/xdg/routemesh");
  CHECK(tls::default_client_dir(nullptr, nullptr, "/home/u") == "/home/u/.config/routemesh");
  CHECK(tls::default_client_dir(nullptr, nullptr, nullptr).empty());
  CHECK(tls::client_files("/d").cert == "/d/cert.pem");
  CHECK(tls::client_files("/d").key == "/d/key.pem");
  CHECK(tls::client_files("/d").ca == "/d/ca.pem");

  test::TempDir dir("rm-cli-tls");
  const std::string place = dir.path + "/routemesh";
  REQUIRE(tls::write_client_credentials(place, {"CA", "CERT", "KEY"}).has_value());
  CHECK(mode_of(place) == 0700);
  CHECK(mode_of(place + "/key.pem") == 0600);
  auto key = tls::read_credential_file(place + "/key.pem");
  REQUIRE(key.has_value());
  CHECK(*key == "KEY");
  auto none = tls::read_credential_file(place + "/nope.pem");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error() == tls::errc::missing_file);
}

TEST_CASE("a renewal replaces the pair; one cut short between its writes leaves a usable pair") {
  auto ca = tls::CertificateAuthority::create("c0ffee00c0ffee00", 1'700'000'000);
  REQUIRE(ca.has_value());
  auto pair = [&] {
    auto key = tls::generate_key();
    REQUIRE(key.has_value());
    auto csr = tls::make_request(*key, "0000000000000001");
    REQUIRE(csr.has_value());
    auto cert =
        ca->issue(*csr, {{"c0ffee00c0ffee00", tls::Role::worker, "0000000000000001"}, {}, {}},
                  1'700'000'000, tls::kDay);
    REQUIRE(cert.has_value());
    return std::pair{*cert, *key};
  };
  test::TempDir dir("rm-tls");
  const auto [old_cert, old_key] = pair();
  const auto [new_cert, new_key] = pair();
  REQUIRE(tls::write_node_credentials(dir.path, {ca->certificate_pem(), old_cert, old_key, ""})
              .has_value());
  const std::string tls_dir = tls::tls_dir(dir.path);

  SECTION("complete") {
    REQUIRE(tls::renew_node_credentials(dir.path, new_cert, new_key, "").has_value());
    auto read = tls::read_node_credentials(dir.path, "");
    REQUIRE(read.has_value());
    CHECK(read->cert_pem == new_cert);
    CHECK(read->key_pem == new_key);
    CHECK_FALSE(std::filesystem::exists(tls_dir + "/node-key.pem.old"));
  }
  SECTION("cut short after the new key, before the new certificate") {
    REQUIRE(base::write_file_atomic(tls_dir, "node-key.pem.old", old_key, 0600).has_value());
    REQUIRE(base::write_file_atomic(tls_dir, "node-key.pem", new_key, 0600).has_value());
    auto read = tls::read_node_credentials(dir.path, "");
    REQUIRE(read.has_value());
    CHECK(read->cert_pem == old_cert);
    CHECK(read->key_pem == old_key);  // the old pair, still valid
    CHECK(tls::check_pair(read->cert_pem, read->key_pem).has_value());
  }
}

TEST_CASE(
    "autolock: a manager's keys on disk are encrypted with the unlock key, and only it opens "
    "them") {
  auto key_pem = tls::generate_key();
  REQUIRE(key_pem.has_value());
  auto manager_key = tls::new_manager_key();
  auto unlock_key = tls::new_manager_key();
  auto other_key = tls::new_manager_key();
  REQUIRE((manager_key && unlock_key && other_key));
  test::TempDir dir("rm-tls");
  const std::string tls_dir = tls::tls_dir(dir.path);
  tls::NodeCredentials locked{"CA", "CERT", *key_pem, *manager_key, "", *unlock_key};
  REQUIRE(tls::write_node_credentials(dir.path, locked).has_value());

  // Neither key is on disk in clear.
  auto key_file = tls::read_credential_file(tls_dir + "/node-key.pem");
  auto manager_file = tls::read_credential_file(tls_dir + "/manager-key");
  REQUIRE((key_file && manager_file));
  CHECK(key_file->find("ENCRYPTED PRIVATE KEY") != std::string::npos);
  CHECK(key_file->find(*key_pem) == std::string::npos);
  CHECK(manager_file->starts_with("locked:"));
  CHECK(manager_file->find(*manager_key) == std::string::npos);
  CHECK(mode_of(tls_dir + "/node-key.pem") == 0600);
  CHECK(mode_of(tls_dir + "/manager-key") == 0600);

  auto none = tls::read_node_credentials(dir.path, "");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error() == tls::errc::locked);
  auto wrong = tls::read_node_credentials(dir.path, *other_key);
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error() == tls::errc::wrong_unlock_key);
  auto read = tls::read_node_credentials(dir.path, *unlock_key);
  REQUIRE(read.has_value());
  CHECK(read->key_pem == *key_pem);
  CHECK(read->manager_key == *manager_key);
  CHECK(read->unlock_key == *unlock_key);

  // A renewal keeps the new key locked too.
  auto next_key = tls::generate_key();
  REQUIRE(next_key.has_value());
  REQUIRE(tls::renew_node_credentials(dir.path, "CERT2", *next_key, *unlock_key).has_value());
  key_file = tls::read_credential_file(tls_dir + "/node-key.pem");
  REQUIRE(key_file.has_value());
  CHECK(key_file->find("ENCRYPTED PRIVATE KEY") != std::string::npos);
  read = tls::read_node_credentials(dir.path, *unlock_key);
  REQUIRE(read.has_value());
  CHECK(read->key_pem == *next_key);

  // Autolock off: written in clear again, and read without a key (one given is not kept).
  locked.unlock_key.clear();
  REQUIRE(tls::write_node_credentials(dir.path, locked).has_value());
  manager_file = tls::read_credential_file(tls_dir + "/manager-key");
  REQUIRE(manager_file.has_value());
  CHECK(*manager_file == *manager_key);
  read = tls::read_node_credentials(dir.path, *unlock_key);
  REQUIRE(read.has_value());
  CHECK(read->key_pem == *key_pem);
  CHECK(read->unlock_key.empty());
}
