#include "tls/ingress_context.h"

#include "tls/openssl_ptr.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

namespace routemesh::tls {

namespace {

namespace ssl = boost::asio::ssl;

constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// ALPN (RFC 7301): http/1.1 when the client offers it; a client that offers only other
// protocols (h2, say) is refused rather than spoken to in a protocol it did not ask for.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, kHttp11, sizeof kHttp11, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

int on_server_name(SSL* s, int* alert, void* arg) {
  const auto* self = static_cast<const IngressContexts*>(arg);
  const char* sent = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  std::string name = sent != nullptr ? sent : "";
  std::transform(name.begin(), name.end(), name.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (name.ends_with('.')) {
    name.pop_back();
  }
  SSL_CTX* ctx = self->choose(name);
  if (ctx == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  if (ctx != SSL_get_SSL_CTX(s)) {
    SSL_set_SSL_CTX(s, ctx);
  }
  return SSL_TLSEXT_ERR_OK;
}

std::unique_ptr<ssl::context> base_context() {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(
      c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // An idle keep-alive connection keeps no 16 KiB record buffers.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  SSL_CTX_set_session_id_context(c, reinterpret_cast<const unsigned char*>("routemesh-https"), 15);
  return ctx;
}

// Loads the chain (leaf first) and the key into `ctx`; an error message, or "".
std::string load(SSL_CTX* ctx, const IngressCertPem& pem) {
  BioPtr bio = read_bio(pem.cert);
  CertPtr leaf(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    return "the certificate does not load";
  }
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      return "an intermediate certificate does not load";
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  KeyPtr key = read_key(pem.key);
  if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    return "the key does not load";
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return "the key does not belong to the certificate";
  }
  return "";
}

}  // namespace

std::shared_ptr<const IngressContexts> IngressContexts::build(
    const std::vector<IngressCertPem>& certs, std::vector<std::string>& errors) {
  if (certs.empty()) {
    return nullptr;
  }
  std::shared_ptr<IngressContexts> self(new IngressContexts());
  for (const IngressCertPem& pem : certs) {
    auto ctx = base_context();
    if (std::string why = load(ctx->native_handle(), pem); !why.empty()) {
      ERR_clear_error();
      errors.push_back(pem.host + ": " + why);
      continue;
    }
    SSL_CTX* c = ctx->native_handle();
    if (pem.host == "*") {
      self->default_ = c;
    } else if (pem.host.starts_with("*.")) {
      self->wildcards_.emplace_back(pem.host.substr(1), c);
    } else {
      self->exact_[pem.host] = c;
    }
    self->contexts_.push_back(std::move(ctx));
  }
  std::stable_sort(self->wildcards_.begin(), self->wildcards_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  // Every connection starts on the initial context: its server-name callback picks the real
  // one, and its ticket keys and session cache serve resumption for all of them.
  self->initial_ = base_context();
  SSL_CTX* initial = self->initial_->native_handle();
  if (self->default_ != nullptr) {
    const IngressCertPem* d = nullptr;
    for (const auto& pem : certs) {
      if (pem.host == "*") {
        d = &pem;
      }
    }
    if (d != nullptr && !load(initial, *d).empty()) {
      ERR_clear_error();
    }
  }
  SSL_CTX_set_tlsext_servername_callback(initial, on_server_name);
  SSL_CTX_set_tlsext_servername_arg(initial, self.get());
  return self;
}

SSL_CTX* IngressContexts::choose(const std::string& name) const {
  if (!name.empty()) {
    if (auto it = exact_.find(name); it != exact_.end()) {
      return it->second;
    }
    for (const auto& [suffix, ctx] : wildcards_) {
      if (name.size() > suffix.size() && name.ends_with(suffix) &&
          name.find('.') == name.size() - suffix.size()) {
        return ctx;  // one label under the suffix, as certificates' wildcards match
      }
    }
  }
  return default_;
}

}  // namespace routemesh::tls
