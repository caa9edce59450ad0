#pragma once
// Value types of the cluster's PKI: who a certificate speaks for (Identity), the join token
// and the errors of tls/. No OpenSSL here, so any folder may hold these values.

#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace routemesh::tls {

// What a certificate of the cluster CA lets its holder be. Node certificates (manager,
// worker) are issued at join; user certificates (admin, operator, viewer) by `cluster init`
// (admin) and `routemesh cert issue`. `operator_` has a trailing underscore only because
// `operator` is a keyword; its text is "operator".
enum class Role { admin, operator_, viewer, manager, worker };

// "admin", "operator", "viewer", "manager", "worker".
std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view text);
// manager and worker: the certificate names a node (its id), not a user.
bool is_node_role(Role role);

// The claim a certificate carries in its one routemesh URI SAN,
// "routemesh://<cluster_id>/<role>/<id>", where `id` is the node id (16 hex digits) of a node
// certificate or the user name (an object name: [a-z0-9][a-z0-9_.-]{0,62}) of a user
// certificate. The subject repeats it for people reading certificates: CN=id, OU=role,
// O=cluster id.
struct Identity {
  std::string cluster_id;
  Role role = Role::viewer;
  std::string id;
  bool operator==(const Identity&) const = default;
};

// "routemesh://c/role/id"; the inverse of parse_identity_uri.
std::string identity_uri(const Identity& identity);
// nullopt unless the text is exactly a well-formed identity URI: a cluster id of 1..64
// [0-9a-z] characters, a known role, and an id that fits the role.
std::optional<Identity> parse_identity_uri(std::string_view uri);

// A join token, "RMTKN-1-<ca digest>-<secret>": the SHA-256 digest of the cluster CA's
// certificate (DER, 64 lower-case hex digits), which pins the CA the joining node will trust,
// and a secret of 32 lower-case hex digits (128 random bits) that the managers know only by its
// SHA-256 hash.
struct JoinToken {
  std::string ca_digest;
  std::string secret;
  bool operator==(const JoinToken&) const = default;
};

enum class errc {
  malformed_pem = 1,  // not a PEM key / certificate / request of the expected kind
  bad_signature,      // a certificate request whose self-signature does not verify
  no_identity,        // a certificate without exactly one well-formed routemesh URI SAN
  not_issued_by_ca,   // a certificate that does not verify against the cluster CA
  key_mismatch,       // a certificate and a key that are not a pair
  malformed_token,    // not RMTKN-1-<64 hex>-<32 hex>
  bad_request,        // an identity or name that cannot go into a certificate
  crypto_failure,     // OpenSSL failed (out of memory, no randomness)
  missing_file,       // a credential file that does not exist
  io_error,           // a credential file that cannot be read or written
  not_a_root,         // a certificate that is not a self-signed CA certificate
  expired,            // a certificate outside its validity period
  unsupported_key,    // a CA key that is neither ECDSA P-256/P-384 nor RSA of 2048+ bits
  locked,             // keys on disk encrypted with an unlock key (autolock) and none given
  wrong_unlock_key,   // an unlock key that does not open the keys on disk
};

// Name "routemesh.tls".
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace routemesh::tls

template <>
struct boost::system::is_error_code_enum<routemesh::tls::errc> : std::true_type {};
