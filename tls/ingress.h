#pragma once
// Certificates the HTTPS port presents to clients (TLS termination, chosen by SNI): the check a
// manager runs before it stores one (`routemesh cert add`). Unlike the cluster's own
// certificates these come from outside (a public CA, the operator's own): any issuer, any key
// type OpenSSL reads. Pure (libcrypto; `now` is an argument).

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace routemesh::tls {

// What a good certificate gives the store.
struct IngressCertInfo {
  std::string digest;          // SHA-256 of the leaf's DER, 64 lower-case hex digits
  std::int64_t not_after = 0;  // the leaf's expiry, seconds since the epoch
};

// Why a certificate was refused: the request field at fault ("cert", "key" or "host") and a
// short message.
struct IngressCertProblem {
  std::string field;
  std::string message;
};

// Checks `cert_pem` (the leaf, then any intermediates) and `key_pem` for `host`: both parse;
// the key is the leaf's; the leaf is valid at `now`; and the leaf names `host` (an exact host,
// a wildcard "*.example.com" the leaf covers for every name under it, or "*": the default
// certificate, for any name). The chain itself is not verified: clients do that.
std::variant<IngressCertInfo, IngressCertProblem> check_ingress_certificate(
    std::string_view cert_pem, std::string_view key_pem, std::string_view host, std::int64_t now);

}  // namespace routemesh::tls
