#include "tls/types.h"

#include "base/address.h"
#include "tls/token.h"

#include <string>

namespace routemesh::tls {
namespace {

constexpr std::string_view kUriScheme = "routemesh://";

class TlsCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "routemesh.tls"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::malformed_pem:
        return "not a PEM document of the expected kind";
      case errc::bad_signature:
        return "the certificate request's signature does not verify";
      case errc::no_identity:
        return "the certificate names no routemesh identity";
      case errc::not_issued_by_ca:
        return "the certificate was not issued by the cluster CA (or has expired)";
      case errc::key_mismatch:
        return "the certificate and the key do not belong together";
      case errc::malformed_token:
        return "malformed join token (expected RMTKN-1-<64 hex digits>-<32 hex digits>)";
      case errc::bad_request:
        return "the identity cannot go into a certificate";
      case errc::crypto_failure:
        return "OpenSSL failed";
      case errc::missing_file:
        return "credential file missing";
      case errc::io_error:
        return "credential file cannot be read or written";
      case errc::not_a_root:
        return "not a self-signed CA certificate (CA:TRUE, allowed to sign certificates)";
      case errc::expired:
        return "the certificate is not valid now (expired, or not yet valid)";
      case errc::unsupported_key:
        return "unsupported key (ECDSA P-256 or P-384, or RSA of at least 2048 bits)";
      case errc::locked:
        return "the keys are locked (autolock): an unlock key is needed";
      case errc::wrong_unlock_key:
        return "the unlock key does not open the keys";
    }
    return "unknown tls error " + std::to_string(value);
  }
};

bool is_cluster_id(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view to_string(Role role) {
  switch (role) {
    case Role::admin:
      return "admin";
    case Role::operator_:
      return "operator";
    case Role::viewer:
      return "viewer";
    case Role::manager:
      return "manager";
    case Role::worker:
      return "worker";
  }
  return "viewer";
}

std::optional<Role> parse_role(std::string_view text) {
  for (Role r : {Role::admin, Role::operator_, Role::viewer, Role::manager, Role::worker}) {
    if (text == to_string(r)) {
      return r;
    }
  }
  return std::nullopt;
}

bool is_node_role(Role role) {
  return role == Role::manager || role == Role::worker;
}

std::string identity_uri(const Identity& identity) {
  std::string uri(kUriScheme);
  uri += identity.cluster_id;
  uri += '/';
  uri += to_string(identity.role);
  uri += '/';
  uri += identity.id;
  return uri;
}

std::optional<Identity> parse_identity_uri(std::string_view uri) {
  if (!uri.starts_with(kUriScheme)) {
    return std::nullopt;
  }
  uri.remove_prefix(kUriScheme.size());
  const auto first = uri.find('/');
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  const auto second = uri.find('/', first + 1);
  if (second == std::string_view::npos) {
    return std::nullopt;
  }
  Identity out;
  out.cluster_id = std::string(uri.substr(0, first));
  auto role = parse_role(uri.substr(first + 1, second - first - 1));
  out.id = std::string(uri.substr(second + 1));
  if (!role || !is_cluster_id(out.cluster_id)) {
    return std::nullopt;
  }
  out.role = *role;
  const bool id_ok = is_node_role(out.role)
                         ? is_lower_hex(out.id, 16) && out.id != "0000000000000000"
                         : base::is_object_name(out.id);
  if (!id_ok) {
    return std::nullopt;
  }
  return out;
}

const boost::system::error_category& error_category() noexcept {
  static const TlsCategory category;
  return category;
}

}  // namespace routemesh::tls
