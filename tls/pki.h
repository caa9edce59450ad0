#pragma once
// The cluster's PKI over values (OpenSSL 3 libcrypto; no files, no sockets, no clock: `now` is
// an argument, seconds since the epoch): ECDSA P-256 keys, certificate requests, the root CA
// and the certificates it issues, the digest a join token pins, and the identity a certificate
// speaks for (tls/types.h). Everything travels as PEM text. Keys, serial numbers and
// signatures draw from OpenSSL's CSPRNG (see token.h, new_secret, for why).
//
// Thread-safety: the functions are reentrant; a CertificateAuthority is used from one thread
// (the control thread) at a time.

#include "tls/types.h"

#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct x509_st;       // OpenSSL's X509 (the admin server reads a peer certificate's identity)
struct X509_name_st;  // OpenSSL's X509_NAME

namespace routemesh::tls {

inline constexpr std::int64_t kDay = 24 * 60 * 60;
inline constexpr std::int64_t kCaLifetime = 10 * 365 * kDay;
inline constexpr std::int64_t kNodeLifetime = 90 * kDay;
inline constexpr std::int64_t kUserLifetime = 365 * kDay;
// Certificates start this long before `now`, so a peer whose clock is a little behind accepts
// a certificate issued a moment ago.
inline constexpr std::int64_t kBackdate = 5 * 60;

// A new ECDSA P-256 private key as PEM (PKCS #8, unencrypted). errc::crypto_failure.
boost::system::result<std::string> generate_key();

// A certificate request (PEM) for the public key of `key_pem`, subject CN=`common_name`,
// signed with that key. The CA takes only the public key from it (and checks the signature,
// which proves the requester holds the key). errc::malformed_pem, errc::crypto_failure.
boost::system::result<std::string> make_request(std::string_view key_pem,
                                                std::string_view common_name);

// What an issued certificate says besides the requester's key.
struct Subject {
  Identity identity;               // the routemesh URI SAN and CN/OU/O
  std::vector<std::string> ips;    // IP SANs: IP literals (a node's admin and peer addresses)
  std::vector<std::string> names;  // DNS SANs: host names (a node's name)
};

class CertificateAuthority {
 public:
  // A new root: a P-256 key and a self-signed certificate (CN=routemesh cluster CA,
  // O=`cluster_id`, CA:TRUE, pathlen 0), valid from now - kBackdate for `lifetime` seconds.
  static boost::system::result<CertificateAuthority> create(std::string_view cluster_id,
                                                            std::int64_t now,
                                                            std::int64_t lifetime = kCaLifetime);
  // The CA of an existing cluster, from its certificate and key (errc::malformed_pem,
  // errc::key_mismatch).
  static boost::system::result<CertificateAuthority> load(std::string_view cert_pem,
                                                          std::string_view key_pem);

  // A root the operator brings (`cluster init --ca-cert F --ca-key F`): load(), and then the
  // certificate must be a self-signed CA (CA:TRUE; keyCertSign when it has a key usage), valid
  // at `now` (errc::not_a_root, errc::expired), with an ECDSA P-256 or P-384 key or an RSA key
  // of 2048 bits or more (errc::unsupported_key).
  static boost::system::result<CertificateAuthority> import(std::string_view cert_pem,
                                                            std::string_view key_pem,
                                                            std::int64_t now);

  CertificateAuthority(CertificateAuthority&&) noexcept;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept;
  ~CertificateAuthority();

  const std::string& certificate_pem() const;
  const std::string& key_pem() const;
  // certificate_digest(certificate_pem()).
  const std::string& digest() const;

  // Issues a certificate (PEM) for the public key of `request_pem`: its self-signature must
  // verify (errc::bad_signature) and the key must be ECDSA P-256 (errc::bad_request); its
  // subject is ignored. Subject CN=identity.id, OU=role, O=cluster id; SANs: the identity URI,
  // then `subject.ips` and `subject.names` (each validated: errc::bad_request); CA:FALSE,
  // digitalSignature, serverAuth + clientAuth; a random 127-bit serial; valid from
  // now - kBackdate for `lifetime` seconds.
  boost::system::result<std::string> issue(std::string_view request_pem, const Subject& subject,
                                           std::int64_t now, std::int64_t lifetime) const;

  // Root rotation. The cross certificate of another root (`root_pem`): that root's subject,
  // public key and key identifier, issued by this CA (CA:TRUE, pathlen 0), valid from
  // now - kBackdate until the earlier of the two roots' ends. A leaf of either root sent with
  // the matching cross certificate verifies against the other root alone: both roots have the
  // same subject, so the cross certificate is self-issued and pathlen 0 still holds (RFC 5280
  // §4.2.1.9). errc::malformed_pem, errc::crypto_failure.
  boost::system::result<std::string> cross_sign(std::string_view root_pem, std::int64_t now) const;

  // A certificate revocation list (PEM; RFC 5280 §5, v2) of `revoked`, signed by this CA, for
  // software outside the cluster that checks our certificates: thisUpdate `now`, nextUpdate
  // `now + validity`, CRL number `number` (it must grow with each new list: the state's
  // revision), the CA's key identifier. errc::bad_request for a serial that is not hex;
  // errc::crypto_failure.
  struct RevokedSerial {
    std::string serial;   // serial_of's spelling
    std::int64_t at = 0;  // when it was revoked, seconds since the epoch
  };
  boost::system::result<std::string> crl(const std::vector<RevokedSerial>& revoked,
                                         std::int64_t now, std::int64_t validity,
                                         std::uint64_t number) const;

  // A new root with this root's subject (and a new P-256 key, CA:TRUE, pathlen 0), for root
  // rotation: the cross certificates between the two are then self-issued. Errors as create().
  boost::system::result<CertificateAuthority> successor(std::int64_t now,
                                                        std::int64_t lifetime = kCaLifetime) const;

 private:
  struct Impl;
  explicit CertificateAuthority(std::unique_ptr<Impl> impl);
  // A new self-signed root named `name`: a P-256 key, CA:TRUE, pathlen 0.
  static boost::system::result<CertificateAuthority> make_root(const X509_name_st* name,
                                                               std::int64_t now,
                                                               std::int64_t lifetime);
  std::unique_ptr<Impl> impl_;
};

// The manager key: what seals the signing root's key in the replicated state, so that every
// manager (and only a manager) can sign. 32 bytes from OpenSSL's CSPRNG as 64 lower-case hex
// digits; errc::crypto_failure.
boost::system::result<std::string> new_manager_key();
// Whether `text` has a manager key's form (64 lower-case hex digits).
bool is_manager_key(std::string_view text);

// What names a manager key without giving it away: 16 lower-case hex digits of a SHA-256 over a
// label and the key. The state carries the current key's id, so a manager sees when its own
// key is not the current one ("" for a string that is not a manager key).
std::string manager_key_id(std::string_view manager_key);
// `next` (a manager key) sealed with `current`, so that every manager holding `current` can
// learn `next` from the replicated state: AES-256-GCM under a SHA-256 of a label and `current`,
// a random 96-bit nonce, as "v1:" and the lower-case hex of nonce, ciphertext and tag.
// errc::bad_request (either is not a manager key), errc::crypto_failure.
boost::system::result<std::string> wrap_manager_key(std::string_view next,
                                                    std::string_view current);
// The manager key `wrapped` holds, opened with `current`: errc::bad_request (not a manager key),
// errc::malformed_pem (not what wrap_manager_key writes, or sealed with another key).
boost::system::result<std::string> unwrap_manager_key(std::string_view wrapped,
                                                      std::string_view current);

// `key_pem` sealed with `manager_key`: PKCS #8 with PBES2 (AES-256-CBC, PBKDF2), the manager key
// as the passphrase. errc::malformed_pem (the key), errc::bad_request (not a manager key),
// errc::crypto_failure.
boost::system::result<std::string> seal_key(std::string_view key_pem, std::string_view manager_key);
// The key `sealed_pem` holds (what seal_key wrote with `manager_key`), as unencrypted PEM:
// errc::bad_request (not a manager key), errc::malformed_pem (not sealed, or with another key).
boost::system::result<std::string> unseal_key(std::string_view sealed_pem,
                                              std::string_view manager_key);
// Whether `pem` holds a sealed key (an encrypted PKCS #8 key, as seal_key writes), not one in
// clear.
bool is_sealed_key(std::string_view pem);
// The CA of `cert_pem` whose key `sealed_pem` holds, sealed with `manager_key`:
// errc::malformed_pem (another manager key, or not PEM), errc::key_mismatch (the key of another
// certificate), errc::bad_request (not a manager key).
boost::system::result<CertificateAuthority> open_sealed_ca(std::string_view cert_pem,
                                                           std::string_view sealed_pem,
                                                           std::string_view manager_key);

// Whether two PEM certificates have the same subject name (false when either does not parse).
bool same_subject(std::string_view cert_a, std::string_view cert_b);

// The certificates of a PEM bundle, each as PEM text, in order (errc::malformed_pem when there is
// none or one does not parse).
boost::system::result<std::vector<std::string>> split_certificates(std::string_view pem);

// Whether `root_pem` signed `cert_pem` (the first certificate of each; the signature is checked,
// not the names or the times).
bool signed_by(std::string_view cert_pem, std::string_view root_pem);

// SHA-256 of the certificate's DER encoding, 64 lower-case hex digits: what a join token pins.
boost::system::result<std::string> certificate_digest(std::string_view cert_pem);

// The identity of a certificate: its one SAN URI that starts with routemesh:// must parse
// (tls/types.h, parse_identity_uri); errc::no_identity otherwise.
boost::system::result<Identity> identity_of(std::string_view cert_pem);
boost::system::result<Identity> identity_of(const x509_st* cert);

// Whether `cert_pem` (a certificate, then any chain certificates) was issued by a root of `ca_pem`
// (one or more certificates) and is valid at `now` (errc::not_issued_by_ca),
// and, unless `key_pem` is empty, whether it pairs with that key (errc::key_mismatch).
boost::system::result<void> check_certificate(std::string_view cert_pem, std::string_view ca_pem,
                                              std::string_view key_pem, std::int64_t now);

// Whether the certificate and the key are a pair (errc::malformed_pem, errc::key_mismatch).
boost::system::result<void> check_pair(std::string_view cert_pem, std::string_view key_pem);

// The certificate's notAfter as seconds since the epoch (for `routemesh cert issue`'s output
// and the README's examples).
boost::system::result<std::int64_t> not_after(std::string_view cert_pem);
// Its notBefore (the issue time less a small backdate for clock skew).
boost::system::result<std::int64_t> not_before(std::string_view cert_pem);
// The same of a parsed certificate; nullopt for null or an unreadable time.
std::optional<std::int64_t> not_after(const x509_st* cert);
std::optional<std::int64_t> not_before(const x509_st* cert);

// A certificate's serial number as routemesh writes it: lower-case hex without leading zeros
// (what `openssl x509 -serial` prints, in lower case). "" for a null certificate.
std::string serial_of(const x509_st* cert);
boost::system::result<std::string> serial_of(std::string_view cert_pem);
// A serial as a user may type it (upper or lower case, colons between bytes, leading zeros) in
// serial_of's spelling; nullopt unless it is 1..40 hex digits (RFC 5280: at most 20 octets)
// and not zero.
std::optional<std::string> normalize_serial(std::string_view text);

}  // namespace routemesh::tls
