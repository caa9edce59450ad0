#include "base/tls_failure.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace routemesh::base {

std::string tls_handshake_failure(const ssl_st* ssl, const boost::system::error_code& ec) {
  std::string text = ec.message();
  const long result = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (result != X509_V_OK) {
    text += " (";
    text += X509_verify_cert_error_string(result);
    text += ')';
  }
  return text;
}

}  // namespace routemesh::base
