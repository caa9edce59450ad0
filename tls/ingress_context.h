#pragma once
// The TLS contexts of a node's HTTPS port: one per certificate the cluster stores for a host
// (`routemesh cert add`), chosen by the name the client sends (SNI): an exact host first, then
// the longest wildcard that covers it, then the default certificate (host "*"). A name that
// nothing covers, when there is no default, fails the handshake with an unrecognized_name
// alert. TLS 1.2 and 1.3 only; ALPN offers http/1.1 only (a client that offers ALPN without
// it gets no_application_protocol); TLS 1.3 session tickets and the TLS 1.2 session cache
// live on the first context, which every connection starts with, so resumption works across
// proxy threads and across certificate choices.
//
// Built on the control thread when the stored certificates change; shared read-only by every
// proxy thread (OpenSSL contexts are safe to use from several threads for new connections).
// A connection keeps its IngressContexts alive until it ends.

#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace routemesh::tls {

struct IngressCertPem {
  std::string host;  // exact, "*.suffix" or "*"
  std::string cert;  // PEM chain, leaf first
  std::string key;   // PEM private key
};

class IngressContexts {
 public:
  // One context per certificate that loads; those that do not are named in `errors` (host:
  // why) and left out. nullptr when `certs` is empty.
  static std::shared_ptr<const IngressContexts> build(const std::vector<IngressCertPem>& certs,
                                                      std::vector<std::string>& errors);

  // The context a new connection starts with (asio::ssl::stream takes it by reference).
  boost::asio::ssl::context& initial() const { return *initial_; }
  std::size_t size() const { return contexts_.size(); }

  // The context for `name` (lower case; "" = the client sent none), or nullptr.
  ssl_ctx_st* choose(const std::string& name) const;

 private:
  IngressContexts() = default;

  std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;
  std::unique_ptr<boost::asio::ssl::context> initial_;  // the default's, or one without a cert
  std::map<std::string, ssl_ctx_st*> exact_;
  std::vector<std::pair<std::string, ssl_ctx_st*>> wildcards_;  // ".suffix", longest first
  ssl_ctx_st* default_ = nullptr;
};

}  // namespace routemesh::tls
