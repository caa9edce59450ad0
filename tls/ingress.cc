#include "tls/ingress.h"

#include "tls/openssl_ptr.h"
#include "tls/pki.h"

#include <openssl/x509v3.h>

#include <ctime>
#include <optional>
#include <string>

namespace routemesh::tls {

namespace {

IngressCertProblem problem(std::string field, std::string message) {
  return IngressCertProblem{std::move(field), std::move(message)};
}

bool names(X509* leaf, const std::string& host) {
  return X509_check_host(leaf, host.data(), host.size(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                         nullptr) == 1;
}

}  // namespace

std::variant<IngressCertInfo, IngressCertProblem> check_ingress_certificate(
    std::string_view cert_pem, std::string_view key_pem, std::string_view host, std::int64_t now) {
  CertPtr leaf = read_cert(cert_pem);
  if (!leaf) {
    return problem("cert", "not a PEM certificate");
  }
  KeyPtr key = read_key(key_pem);
  if (!key) {
    return problem("key", "not a PEM private key (an encrypted key must be decrypted first)");
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return problem("key", "the key does not belong to the certificate (the first one in cert)");
  }
  const auto from = not_before(leaf.get());
  const auto until = not_after(leaf.get());
  if (!from || !until) {
    return problem("cert", "the certificate's validity period cannot be read");
  }
  if (*until <= now) {
    return problem("cert", "the certificate has expired");
  }
  if (*from > now) {
    return problem("cert", "the certificate is not valid yet");
  }
  if (host != "*") {
    // A wildcard host is covered when the leaf names any host under it (its own wildcard, or
    // a wider one); an exact host when the leaf names it, through a wildcard or not.
    const std::string probe = host.starts_with("*.")
                                  ? "routemesh-probe" + std::string(host.substr(1))
                                  : std::string(host);
    if (!names(leaf.get(), probe)) {
      return problem("host", "the certificate does not name " + std::string(host) +
                                 " (its subjectAltName DNS entries)");
    }
  }
  auto digest = certificate_digest(cert_pem);
  if (!digest) {
    return problem("cert", "the certificate cannot be encoded");
  }
  return IngressCertInfo{std::move(*digest), *until};
}

}  // namespace routemesh::tls
