#include "tls/pki.h"

#include "tls/openssl_ptr.h"
#include "tls/token.h"

#include "base/address.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace routemesh::tls {
namespace {

constexpr std::string_view kUriScheme = "routemesh://";

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string{};
}

ReqPtr read_request(std::string_view pem) {
  auto bio = read_bio(pem);
  return ReqPtr(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

boost::system::result<std::string> key_text(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return errc::crypto_failure;
  }
  return bio_text(bio.get());
}

boost::system::result<std::string> cert_text(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return errc::crypto_failure;
  }
  return bio_text(bio.get());
}

bool add_entry(X509_NAME* name, const char* field, std::string_view value) {
  return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(value.data()),
                                    static_cast<int>(value.size()), -1, 0) == 1;
}

// Adds one v3 extension written in OpenSSL's configuration syntax (x509v3_config(5)). The
// values are built from validated fields only, so no caller text reaches the parser unchecked.
bool add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

// A random positive serial of 127 bits (RFC 5280 §4.1.2.2: at most 20 octets, positive).
bool set_random_serial(X509* cert) {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return false;
  }
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;  // never zero, never shorter than expected
  BnPtr bn(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  return bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) != nullptr;
}

bool set_validity(X509* cert, std::int64_t now, std::int64_t lifetime) {
  std::time_t start = static_cast<std::time_t>(now);
  return X509_time_adj_ex(X509_getm_notBefore(cert), 0, -kBackdate, &start) != nullptr &&
         X509_time_adj_ex(X509_getm_notAfter(cert), static_cast<int>(lifetime / kDay),
                          static_cast<long>(lifetime % kDay), &start) != nullptr;
}

bool is_p256(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
    return false;
  }
  std::array<char, 64> group{};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group.data(), group.size(), &len) != 1) {
    return false;
  }
  const std::string_view name(group.data(), len);
  return name == "prime256v1" || name == "P-256";
}

KeyPtr new_p256_key() {
  return KeyPtr(EVP_EC_gen("P-256"));
}

}  // namespace

boost::system::result<std::string> generate_key() {
  KeyPtr key = new_p256_key();
  if (!key) {
    return errc::crypto_failure;
  }
  return key_text(key.get());
}

boost::system::result<std::string> make_request(std::string_view key_pem,
                                                std::string_view common_name) {
  KeyPtr key = read_key(key_pem);
  if (!key) {
    return errc::malformed_pem;
  }
  ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1) {
    return errc::crypto_failure;
  }
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  if (!common_name.empty() && !add_entry(name, "CN", common_name)) {
    return errc::bad_request;
  }
  if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) {
    return errc::crypto_failure;
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return errc::crypto_failure;
  }
  return bio_text(bio.get());
}

struct CertificateAuthority::Impl {
  KeyPtr key;
  CertPtr cert;
  std::string cert_pem;
  std::string key_pem;
  std::string digest;
};

CertificateAuthority::CertificateAuthority(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CertificateAuthority::CertificateAuthority(CertificateAuthority&&) noexcept = default;
CertificateAuthority& CertificateAuthority::operator=(CertificateAuthority&&) noexcept = default;
CertificateAuthority::~CertificateAuthority() = default;

const std::string& CertificateAuthority::certificate_pem() const {
  return impl_->cert_pem;
}
const std::string& CertificateAuthority::key_pem() const {
  return impl_->key_pem;
}
const std::string& CertificateAuthority::digest() const {
  return impl_->digest;
}

boost::system::result<CertificateAuthority> CertificateAuthority::create(
    std::string_view cluster_id, std::int64_t now, std::int64_t lifetime) {
  NamePtr name(X509_NAME_new());
  if (!name || !add_entry(name.get(), "CN", "routemesh cluster CA") ||
      !add_entry(name.get(), "O", cluster_id)) {
    return errc::bad_request;
  }
  return make_root(name.get(), now, lifetime);
}

boost::system::result<CertificateAuthority> CertificateAuthority::successor(
    std::int64_t now, std::int64_t lifetime) const {
  return make_root(X509_get_subject_name(impl_->cert.get()), now, lifetime);
}

boost::system::result<CertificateAuthority> CertificateAuthority::import(std::string_view cert_pem,
                                                                         std::string_view key_pem,
                                                                         std::int64_t now) {
  auto ca = load(cert_pem, key_pem);
  if (!ca) {
    return ca.error();
  }
  X509* cert = ca->impl_->cert.get();
  // X509_check_ca: 1 for CA:TRUE (and keyCertSign when a key usage is present).
  if (X509_check_ca(cert) != 1 || X509_check_issued(cert, cert) != X509_V_OK ||
      X509_verify(cert, ca->impl_->key.get()) != 1) {
    ERR_clear_error();
    return errc::not_a_root;
  }
  std::time_t at = static_cast<std::time_t>(now);
  if (X509_cmp_time(X509_get0_notBefore(cert), &at) > 0 ||
      X509_cmp_time(X509_get0_notAfter(cert), &at) < 0) {
    return errc::expired;
  }
  EVP_PKEY* key = ca->impl_->key.get();
  bool supported = false;
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    supported = EVP_PKEY_get_bits(key) >= 2048;
  } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    std::array<char, 64> group{};
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group.data(), group.size(), &len) == 1) {
      const std::string_view g(group.data(), len);
      supported = g == "prime256v1" || g == "P-256" || g == "secp384r1" || g == "P-384";
    }
  }
  if (!supported) {
    return errc::unsupported_key;
  }
  // The certificate alone, as routemesh writes it: whatever else the file held (text, more
  // certificates) must not become trusted with it.
  auto text = cert_text(cert);
  if (!text) {
    return text.error();
  }
  ca->impl_->cert_pem = std::move(*text);
  return ca;
}

boost::system::result<CertificateAuthority> CertificateAuthority::make_root(const X509_NAME* name,
                                                                            std::int64_t now,
                                                                            std::int64_t lifetime) {
  auto impl = std::make_unique<Impl>();
  impl->key = new_p256_key();
  impl->cert.reset(X509_new());
  X509* cert = impl->cert.get();
  if (!impl->key || cert == nullptr || X509_set_version(cert, 2) != 1 || !set_random_serial(cert) ||
      !set_validity(cert, now, lifetime) || X509_set_pubkey(cert, impl->key.get()) != 1) {
    return errc::crypto_failure;
  }
  if (X509_set_subject_name(cert, name) != 1 || X509_set_issuer_name(cert, name) != 1) {
    return errc::crypto_failure;
  }
  if (!add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_extension(cert, cert, NID_subject_key_identifier, "hash") ||
      X509_sign(cert, impl->key.get(), EVP_sha256()) <= 0) {
    return errc::crypto_failure;
  }
  auto cert_pem = cert_text(cert);
  auto key_pem = key_text(impl->key.get());
  if (!cert_pem || !key_pem) {
    return errc::crypto_failure;
  }
  auto digest = certificate_digest(*cert_pem);
  if (!digest) {
    return digest.error();
  }
  impl->cert_pem = std::move(*cert_pem);
  impl->key_pem = std::move(*key_pem);
  impl->digest = std::move(*digest);
  return CertificateAuthority(std::move(impl));
}

boost::system::result<CertificateAuthority> CertificateAuthority::load(std::string_view cert_pem,
                                                                       std::string_view key_pem) {
  auto impl = std::make_unique<Impl>();
  impl->cert = read_cert(cert_pem);
  impl->key = read_key(key_pem);
  if (!impl->cert || !impl->key) {
    return errc::malformed_pem;
  }
  if (X509_check_private_key(impl->cert.get(), impl->key.get()) != 1) {
    return errc::key_mismatch;
  }
  auto digest = certificate_digest(cert_pem);
  if (!digest) {
    return digest.error();
  }
  impl->cert_pem = std::string(cert_pem);
  impl->key_pem = std::string(key_pem);
  impl->digest = std::move(*digest);
  return CertificateAuthority(std::move(impl));
}

boost::system::result<std::string> CertificateAuthority::issue(std::string_view request_pem,
                                                               const Subject& subject,
                                                               std::int64_t now,
                                                               std::int64_t lifetime) const {
  ReqPtr req = read_request(request_pem);
  if (!req) {
    return errc::malformed_pem;
  }
  EVP_PKEY* public_key = X509_REQ_get0_pubkey(req.get());
  if (public_key == nullptr || X509_REQ_verify(req.get(), public_key) != 1) {
    return errc::bad_signature;
  }
  if (!is_p256(public_key)) {
    return errc::bad_request;
  }
  // Checked here too, so that nothing unvalidated reaches the SAN configuration string.
  const std::string uri = identity_uri(subject.identity);
  if (!parse_identity_uri(uri)) {
    return errc::bad_request;
  }
  std::string san = "URI:" + uri;
  for (const auto& ip : subject.ips) {
    if (!base::is_ip_literal(ip)) {
      return errc::bad_request;
    }
    san += ",IP:" + ip;
  }
  for (const auto& name : subject.names) {
    if (!base::is_host_name(name)) {
      return errc::bad_request;
    }
    san += ",DNS:" + name;
  }

  CertPtr cert(X509_new());
  X509* c = cert.get();
  if (c == nullptr || X509_set_version(c, 2) != 1 || !set_random_serial(c) ||
      !set_validity(c, now, lifetime) || X509_set_pubkey(c, public_key) != 1 ||
      X509_set_issuer_name(c, X509_get_subject_name(impl_->cert.get())) != 1) {
    return errc::crypto_failure;
  }
  NamePtr name(X509_NAME_new());
  if (!name || !add_entry(name.get(), "CN", subject.identity.id) ||
      !add_entry(name.get(), "OU", to_string(subject.identity.role)) ||
      !add_entry(name.get(), "O", subject.identity.cluster_id) ||
      X509_set_subject_name(c, name.get()) != 1) {
    return errc::crypto_failure;
  }
  X509* ca = impl_->cert.get();
  if (!add_extension(c, ca, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(c, ca, NID_key_usage, "critical,digitalSignature") ||
      !add_extension(c, ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
      !add_extension(c, ca, NID_subject_key_identifier, "hash") ||
      !add_extension(c, ca, NID_authority_key_identifier, "keyid:always") ||
      !add_extension(c, ca, NID_subject_alt_name, san) ||
      X509_sign(c, impl_->key.get(), EVP_sha256()) <= 0) {
    return errc::crypto_failure;
  }
  return cert_text(c);
}

boost::system::result<std::string> CertificateAuthority::cross_sign(std::string_view root_pem,
                                                                    std::int64_t now) const {
  CertPtr root = read_cert(root_pem);
  if (!root) {
    return errc::malformed_pem;
  }
  EVP_PKEY* public_key = X509_get0_pubkey(root.get());
  X509* ca = impl_->cert.get();
  CertPtr cert(X509_new());
  X509* c = cert.get();
  if (public_key == nullptr || c == nullptr || X509_set_version(c, 2) != 1 ||
      !set_random_serial(c) || X509_set_pubkey(c, public_key) != 1 ||
      X509_set_subject_name(c, X509_get_subject_name(root.get())) != 1 ||
      X509_set_issuer_name(c, X509_get_subject_name(ca)) != 1) {
    return errc::crypto_failure;
  }
  // Valid while both roots are: from now (less the backdate) to the earlier end.
  std::time_t start = static_cast<std::time_t>(now);
  const ASN1_TIME* end = X509_get0_notAfter(root.get());
  if (ASN1_TIME_compare(X509_get0_notAfter(ca), end) < 0) {
    end = X509_get0_notAfter(ca);
  }
  if (X509_time_adj_ex(X509_getm_notBefore(c), 0, -kBackdate, &start) == nullptr ||
      X509_set1_notAfter(c, end) != 1) {
    return errc::crypto_failure;
  }
  // The subject key identifier is computed from the key, so it is the other root's own.
  if (!add_extension(c, ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_extension(c, ca, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_extension(c, ca, NID_subject_key_identifier, "hash") ||
      !add_extension(c, ca, NID_authority_key_identifier, "keyid:always") ||
      X509_sign(c, impl_->key.get(), EVP_sha256()) <= 0) {
    return errc::crypto_failure;
  }
  return cert_text(c);
}

boost::system::result<std::string> CertificateAuthority::crl(
    const std::vector<RevokedSerial>& revoked, std::int64_t now, std::int64_t validity,
    std::uint64_t number) const {
  X509* ca = impl_->cert.get();
  CrlPtr list(X509_CRL_new());
  X509_CRL* l = list.get();
  std::time_t at = static_cast<std::time_t>(now);
  TimePtr this_update(ASN1_TIME_set(nullptr, at));
  TimePtr next_update(X509_time_adj_ex(nullptr, 0, static_cast<long>(validity), &at));
  if (l == nullptr || !this_update || !next_update ||
      X509_CRL_set_version(l, 1) != 1 ||  // v2 (the field holds the version minus one)
      X509_CRL_set_issuer_name(l, X509_get_subject_name(ca)) != 1 ||
      X509_CRL_set1_lastUpdate(l, this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(l, next_update.get()) != 1) {
    return errc::crypto_failure;
  }
  for (const RevokedSerial& r : revoked) {
    BIGNUM* raw = nullptr;
    const bool hex = !r.serial.empty() && r.serial.size() <= 40 &&
                     r.serial.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    if (!hex || BN_hex2bn(&raw, r.serial.c_str()) == 0) {
      return errc::bad_request;
    }
    BnPtr bn(raw);
    IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    std::time_t when = static_cast<std::time_t>(r.at);
    TimePtr date(ASN1_TIME_set(nullptr, when));
    RevokedPtr entry(X509_REVOKED_new());
    if (!serial || !date || !entry ||
        X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), date.get()) != 1 ||
        X509_CRL_add0_revoked(l, entry.get()) != 1) {
      return errc::crypto_failure;
    }
    entry.release();  // the list owns it now
  }
  IntegerPtr crl_number(ASN1_INTEGER_new());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca, nullptr, nullptr, l, 0);
  ExtPtr aki(X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!crl_number || ASN1_INTEGER_set_uint64(crl_number.get(), number) != 1 || !aki ||
      X509_CRL_add_ext(l, aki.get(), -1) != 1 ||
      X509_CRL_add1_ext_i2d(l, NID_crl_number, crl_number.get(), 0, 0) != 1 ||
      X509_CRL_sort(l) != 1 || X509_CRL_sign(l, impl_->key.get(), EVP_sha256()) <= 0) {
    return errc::crypto_failure;
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), l) != 1) {
    return errc::crypto_failure;
  }
  return bio_text(bio.get());
}

namespace {

// Never asks a terminal: the passphrase is given or reading fails.
int no_prompt(char*, int, int, void*) {
  return -1;
}

}  // namespace

boost::system::result<std::string> new_manager_key() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return errc::crypto_failure;
  }
  std::string out = lower_hex(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return out;
}

bool is_manager_key(std::string_view text) {
  return is_lower_hex(text, 64);
}

namespace {

constexpr std::size_t kNonce = 12;
constexpr std::size_t kTag = 16;
constexpr std::size_t kKeyBytes = 32;
constexpr std::string_view kWrapPrefix = "v1:";

// SHA-256 over `label`, a NUL and `key`: separate uses of one manager key get unrelated bytes.
std::array<unsigned char, 32> labelled_digest(std::string_view label, std::string_view key) {
  std::array<unsigned char, 32> out{};
  std::string input(label);
  input.push_back('\0');
  input.append(key);
  unsigned int n = 0;
  EVP_Digest(input.data(), input.size(), out.data(), &n, EVP_sha256(), nullptr);
  OPENSSL_cleanse(input.data(), input.size());
  return out;
}

std::optional<std::vector<unsigned char>> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) {
    return std::nullopt;
  }
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    return -1;
  };
  std::vector<unsigned char> out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = digit(text[2 * i]);
    const int lo = digit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace

std::string manager_key_id(std::string_view manager_key) {
  if (!is_manager_key(manager_key)) {
    return {};
  }
  const auto digest = labelled_digest("routemesh manager key id", manager_key);
  return lower_hex(digest.data(), 8);
}

boost::system::result<std::string> wrap_manager_key(std::string_view next,
                                                    std::string_view current) {
  if (!is_manager_key(next) || !is_manager_key(current)) {
    return errc::bad_request;
  }
  auto key = labelled_digest("routemesh manager key wrap", current);
  auto plain = from_hex(next);
  std::array<unsigned char, kNonce> nonce{};
  std::vector<unsigned char> out(kNonce + kKeyBytes + kTag);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  const bool ok =
      plain && plain->size() == kKeyBytes && ctx && RAND_bytes(nonce.data(), kNonce) == 1 &&
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) == 1 &&
      EVP_EncryptUpdate(ctx.get(), out.data() + kNonce, &n, plain->data(),
                        static_cast<int>(kKeyBytes)) == 1 &&
      n == static_cast<int>(kKeyBytes) &&
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kNonce + kKeyBytes, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag),
                          out.data() + kNonce + kKeyBytes) == 1;
  OPENSSL_cleanse(key.data(), key.size());
  if (plain) {
    OPENSSL_cleanse(plain->data(), plain->size());
  }
  if (!ok) {
    return errc::crypto_failure;
  }
  std::copy(nonce.begin(), nonce.end(), out.begin());
  return std::string(kWrapPrefix) + lower_hex(out.data(), out.size());
}

boost::system::result<std::string> unwrap_manager_key(std::string_view wrapped,
                                                      std::string_view current) {
  if (!is_manager_key(current)) {
    return errc::bad_request;
  }
  if (!wrapped.starts_with(kWrapPrefix)) {
    return errc::malformed_pem;
  }
  auto bytes = from_hex(wrapped.substr(kWrapPrefix.size()));
  if (!bytes || bytes->size() != kNonce + kKeyBytes + kTag) {
    return errc::malformed_pem;
  }
  auto key = labelled_digest("routemesh manager key wrap", current);
  std::array<unsigned char, kKeyBytes> plain{};
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  const bool ok =
      ctx &&
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), bytes->data()) == 1 &&
      EVP_DecryptUpdate(ctx.get(), plain.data(), &n, bytes->data() + kNonce,
                        static_cast<int>(kKeyBytes)) == 1 &&
      n == static_cast<int>(kKeyBytes) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag),
                          bytes->data() + kNonce + kKeyBytes) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), plain.data() + kKeyBytes, &n) == 1;
  OPENSSL_cleanse(key.data(), key.size());
  std::string out = ok ? lower_hex(plain.data(), kKeyBytes) : std::string{};
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!ok) {
    return errc::malformed_pem;  // another key, or altered
  }
  return out;
}

boost::system::result<std::string> seal_key(std::string_view key_pem,
                                            std::string_view manager_key) {
  if (!is_manager_key(manager_key)) {
    return errc::bad_request;
  }
  KeyPtr key = read_key(key_pem);
  if (!key) {
    return errc::malformed_pem;
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(), manager_key.data(),
                                    static_cast<int>(manager_key.size()), nullptr, nullptr) != 1) {
    return errc::crypto_failure;
  }
  return bio_text(bio.get());
}

boost::system::result<std::string> unseal_key(std::string_view sealed_pem,
                                              std::string_view manager_key) {
  if (!is_manager_key(manager_key)) {
    return errc::bad_request;
  }
  // With a password callback OpenSSL would prompt; the passphrase goes in as `u` instead (a
  // NUL-terminated copy: PEM_read_bio_PrivateKey reads it as a C string).
  std::string pass(manager_key);
  auto bio = read_bio(sealed_pem);
  KeyPtr key;
  if (bio) {
    ERR_set_mark();
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, pass.data()));
    ERR_pop_to_mark();
  }
  OPENSSL_cleanse(pass.data(), pass.size());
  if (!key) {
    return errc::malformed_pem;
  }
  return key_text(key.get());
}

bool is_sealed_key(std::string_view pem) {
  return pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string_view::npos;
}

boost::system::result<CertificateAuthority> open_sealed_ca(std::string_view cert_pem,
                                                           std::string_view sealed_pem,
                                                           std::string_view manager_key) {
  auto key_pem = unseal_key(sealed_pem, manager_key);
  if (!key_pem) {
    return key_pem.error();
  }
  return CertificateAuthority::load(cert_pem, *key_pem);
}

bool same_subject(std::string_view cert_a, std::string_view cert_b) {
  CertPtr a = read_cert(cert_a);
  CertPtr b = read_cert(cert_b);
  return a && b &&
         X509_NAME_cmp(X509_get_subject_name(a.get()), X509_get_subject_name(b.get())) == 0;
}

boost::system::result<std::vector<std::string>> split_certificates(std::string_view pem) {
  auto bio = read_bio(pem);
  std::vector<std::string> out;
  while (bio) {
    CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, no_prompt, nullptr));
    if (!cert) {
      break;
    }
    auto text = cert_text(cert.get());
    if (!text) {
      return text.error();
    }
    out.push_back(std::move(*text));
  }
  ERR_clear_error();  // the end of the bundle reads as an error
  if (out.empty()) {
    return errc::malformed_pem;
  }
  return out;
}

bool signed_by(std::string_view cert_pem, std::string_view root_pem) {
  CertPtr cert = read_cert(cert_pem);
  CertPtr root = read_cert(root_pem);
  EVP_PKEY* key = root ? X509_get0_pubkey(root.get()) : nullptr;
  return cert && key != nullptr && X509_verify(cert.get(), key) == 1;
}

boost::system::result<std::string> certificate_digest(std::string_view cert_pem) {
  CertPtr cert = read_cert(cert_pem);
  if (!cert) {
    return errc::malformed_pem;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int n = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md.data(), &n) != 1) {
    return errc::crypto_failure;
  }
  return lower_hex(md.data(), n);
}

boost::system::result<Identity> identity_of(const x509_st* cert) {
  if (cert == nullptr) {
    return errc::no_identity;
  }
  NamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) {
    return errc::no_identity;
  }
  std::optional<Identity> found;
  int uris = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) {
      continue;
    }
    const ASN1_IA5STRING* text = name->d.uniformResourceIdentifier;
    const std::string_view uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                               static_cast<std::size_t>(ASN1_STRING_length(text)));
    if (!uri.starts_with(kUriScheme)) {
      continue;
    }
    ++uris;
    found = parse_identity_uri(uri);
  }
  if (uris != 1 || !found) {
    return errc::no_identity;
  }
  return std::move(*found);
}

boost::system::result<Identity> identity_of(std::string_view cert_pem) {
  CertPtr cert = read_cert(cert_pem);
  if (!cert) {
    return errc::malformed_pem;
  }
  return identity_of(cert.get());
}

boost::system::result<void> check_certificate(std::string_view cert_pem, std::string_view ca_pem,
                                              std::string_view key_pem, std::int64_t now) {
  auto chain = split_certificates(cert_pem);
  auto roots = split_certificates(ca_pem);
  if (!chain || !roots) {
    return errc::malformed_pem;
  }
  CertPtr cert = read_cert(chain->front());
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  using ChainPtr =
      std::unique_ptr<STACK_OF(X509),
                      decltype([](STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); })>;
  ChainPtr untrusted(sk_X509_new_null());
  if (!cert || !store || !ctx || !untrusted) {
    return errc::crypto_failure;
  }
  for (const auto& root : *roots) {
    CertPtr ca = read_cert(root);
    if (!ca || X509_STORE_add_cert(store.get(), ca.get()) != 1) {
      return errc::crypto_failure;
    }
  }
  for (std::size_t i = 1; i < chain->size(); ++i) {
    CertPtr extra = read_cert((*chain)[i]);
    if (!extra || sk_X509_push(untrusted.get(), extra.get()) == 0) {
      return errc::crypto_failure;
    }
    extra.release();  // owned by the stack now
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), untrusted.get()) != 1) {
    return errc::crypto_failure;
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), static_cast<std::time_t>(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    return errc::not_issued_by_ca;
  }
  if (!key_pem.empty()) {
    KeyPtr key = read_key(key_pem);
    if (!key) {
      return errc::malformed_pem;
    }
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      return errc::key_mismatch;
    }
  }
  return {};
}

boost::system::result<void> check_pair(std::string_view cert_pem, std::string_view key_pem) {
  CertPtr cert = read_cert(cert_pem);
  KeyPtr key = read_key(key_pem);
  if (!cert || !key) {
    return errc::malformed_pem;
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return errc::key_mismatch;
  }
  return {};
}

namespace {

std::optional<std::int64_t> unix_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(timegm(&tm));
}

boost::system::result<std::int64_t> cert_time(std::string_view cert_pem, bool after) {
  CertPtr cert = read_cert(cert_pem);
  if (!cert) {
    return errc::malformed_pem;
  }
  auto t = after ? not_after(cert.get()) : not_before(cert.get());
  if (!t) {
    return errc::crypto_failure;
  }
  return *t;
}

}  // namespace

std::optional<std::int64_t> not_after(const x509_st* cert) {
  return cert == nullptr ? std::nullopt : unix_time(X509_get0_notAfter(cert));
}

std::optional<std::int64_t> not_before(const x509_st* cert) {
  return cert == nullptr ? std::nullopt : unix_time(X509_get0_notBefore(cert));
}

boost::system::result<std::int64_t> not_after(std::string_view cert_pem) {
  return cert_time(cert_pem, true);
}

boost::system::result<std::int64_t> not_before(std::string_view cert_pem) {
  return cert_time(cert_pem, false);
}

std::string serial_of(const x509_st* cert) {
  if (cert == nullptr) {
    return {};
  }
  BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) {
    return {};
  }
  char* hex = BN_bn2hex(bn.get());
  if (hex == nullptr) {
    return {};
  }
  std::string out(hex);
  OPENSSL_free(hex);
  return normalize_serial(out).value_or(std::string());
}

boost::system::result<std::string> serial_of(std::string_view cert_pem) {
  CertPtr cert = read_cert(cert_pem);
  if (!cert) {
    return errc::malformed_pem;
  }
  return serial_of(cert.get());
}

std::optional<std::string> normalize_serial(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ':') {
      continue;
    }
    if (c >= 'A' && c <= 'F') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return std::nullopt;
    }
    if (out.empty() && c == '0') {
      continue;  // leading zero
    }
    out.push_back(c);
  }
  if (out.empty() || out.size() > 40) {
    return std::nullopt;
  }
  return out;
}

}  // namespace routemesh::tls
