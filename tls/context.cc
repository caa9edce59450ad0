#include "tls/context.h"

#include "tls/openssl_ptr.h"
#include "tls/pki.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/verify_context.hpp>

#include <ctime>
#include <limits>
#include <string>

namespace routemesh::tls {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

constexpr std::string_view kSessionContext = "routemesh-admin";

boost::system::result<void> use_pair(ssl::context& ctx, std::string_view cert_pem,
                                     std::string_view key_pem) {
  if (auto pair = check_pair(cert_pem, key_pem); !pair) {
    return pair.error();
  }
  boost::system::error_code ec;
  ctx.use_certificate_chain(asio::buffer(cert_pem.data(), cert_pem.size()), ec);
  if (ec) {
    return errc::malformed_pem;
  }
  ctx.use_private_key(asio::buffer(key_pem.data(), key_pem.size()), ssl::context::pem, ec);
  if (ec) {
    return errc::malformed_pem;
  }
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    return errc::key_mismatch;
  }
  return {};
}

boost::system::result<void> trust(ssl::context& ctx, std::string_view ca_pem) {
  boost::system::error_code ec;
  ctx.add_certificate_authority(asio::buffer(ca_pem.data(), ca_pem.size()), ec);
  if (ec) {
    return errc::malformed_pem;
  }
  return {};
}

void tls13_only(ssl::context& ctx) {
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_3_VERSION);
}

}  // namespace

bool PeerTrust::set(std::set<std::string> serials,
                    std::set<std::string, std::less<>> removed_nodes) {
  std::lock_guard lock(mu_);
  if (refused_->serials == serials && refused_->nodes == removed_nodes) {
    return false;
  }
  refused_ = std::make_shared<const Refused>(Refused{std::move(serials), std::move(removed_nodes)});
  generation_.store(next_generation(), std::memory_order_release);
  return true;
}

std::uint64_t PeerTrust::next_generation() {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::size_t PeerTrust::size() const {
  std::lock_guard lock(mu_);
  return refused_->serials.size() + refused_->nodes.size();
}

std::optional<std::string_view> PeerTrust::refused(const x509_st* cert, bool leaf) const {
  std::shared_ptr<const Refused> refused;
  {
    std::lock_guard lock(mu_);
    refused = refused_;
  }
  if (refused->serials.count(serial_of(cert)) != 0) {
    return "revoked";
  }
  if (leaf && !refused->nodes.empty()) {
    // Only node certificates name a node id; a user's certificate may carry any name.
    auto identity = identity_of(cert);
    if (identity && is_node_role(identity->role) && refused->nodes.contains(identity->id)) {
      return "removed";
    }
  }
  return std::nullopt;
}

struct PeerTrust::Retired {
  CertPtr cert;
  std::string digest;
};

void PeerTrust::add_retired_roots(const std::vector<std::string>& roots_pem) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<std::vector<std::shared_ptr<const Retired>>>(*retired_);
  for (const auto& pem : roots_pem) {
    auto digest = certificate_digest(pem);
    CertPtr cert = read_cert(pem);
    if (!digest || !cert) {
      continue;
    }
    bool known = false;
    for (const auto& r : *next) {
      known = known || r->digest == *digest;
    }
    if (!known) {
      auto r = std::make_shared<Retired>();
      r->cert = std::move(cert);
      r->digest = std::move(*digest);
      next->push_back(std::move(r));
    }
  }
  const bool added = next->size() != retired_->size();
  retired_ = std::move(next);
  if (added) {
    generation_.store(next_generation(), std::memory_order_release);
  }
}

std::optional<std::string_view> PeerTrust::peer_refused(const ssl_st* ssl) const {
  const X509* cert = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
  if (cert == nullptr) {
    return std::nullopt;
  }
  return refused(cert, true);
}

std::optional<std::string_view> PeerTrust::recheck(const ssl_st* ssl, std::int64_t now,
                                                   bool strict) const {
  const X509* cert = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
  if (cert == nullptr) {
    return std::nullopt;
  }
  if (auto why = peer_refused(ssl)) {
    return why;
  }
  if (!strict) {
    return std::nullopt;
  }
  std::time_t at = static_cast<std::time_t>(now);
  if (X509_cmp_time(X509_get0_notAfter(cert), &at) < 0) {
    return "expired";
  }
  std::shared_ptr<const std::vector<std::shared_ptr<const Retired>>> retired;
  {
    std::lock_guard lock(mu_);
    retired = retired_;
  }
  for (const auto& r : *retired) {
    // The signature, not the names: a rotation's roots share their subject. X509_verify does
    // not change the certificate; it takes it non-const for OpenSSL's own reasons.
    EVP_PKEY* key = X509_get0_pubkey(r->cert.get());
    if (key != nullptr && X509_verify(const_cast<X509*>(cert), key) == 1) {
      return "retired_root";
    }
  }
  ERR_clear_error();
  return std::nullopt;
}

std::optional<std::string_view> PeerTrust::recheck(const ssl_st* ssl, std::int64_t now, bool strict,
                                                   Memo& memo) const {
  // Read before the check: a change made during it leaves the memo stale, never wrong.
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  if (memo.generation == generation && memo.strict == strict && now < memo.good_until) {
    return std::nullopt;
  }
  auto why = recheck(ssl, now, strict);
  memo.generation = 0;
  if (why) {
    return why;
  }
  std::int64_t good_until = std::numeric_limits<std::int64_t>::max();
  if (strict && ssl != nullptr && SSL_get0_peer_certificate(ssl) != nullptr) {
    const auto expires = peer_not_after(ssl);
    if (!expires) {
      return std::nullopt;  // no memo: every request checks again
    }
    good_until = *expires;
  }
  memo = Memo{generation, strict, good_until};
  return std::nullopt;
}

boost::system::result<ContextPtr> server_context(const NodeCredentials& node,
                                                 std::shared_ptr<const PeerTrust> revoked) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  tls13_only(*ctx);
  if (auto r = use_pair(*ctx, node.cert_pem, node.key_pem); !r) {
    return r.error();
  }
  if (auto r = trust(*ctx, node.ca_pem); !r) {
    return r.error();
  }
  // Tell clients which CA to pick a certificate from (RFC 8446 §4.2.4).
  {
    auto bio = std::unique_ptr<BIO, decltype(&BIO_free)>(
        BIO_new_mem_buf(node.ca_pem.data(), static_cast<int>(node.ca_pem.size())), &BIO_free);
    X509* ca = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (ca == nullptr) {
      return errc::malformed_pem;
    }
    SSL_CTX_add_client_CA(ctx->native_handle(), ca);
    X509_free(ca);
  }
  // Asked for, verified when sent, not required: requests without one get 401 (see the header).
  ctx->set_verify_mode(ssl::verify_peer);
  if (revoked) {
    // On top of OpenSSL's chain check: no certificate of the chain may be revoked (the
    // client's own, or a cross certificate revoked when its rotation ended), and the client's
    // own may not name a removed node.
    ctx->set_verify_callback([revoked](bool preverified, ssl::verify_context& vc) {
      if (!preverified) {
        return false;
      }
      X509_STORE_CTX* store = vc.native_handle();
      if (revoked->refused(X509_STORE_CTX_get_current_cert(store),
                           X509_STORE_CTX_get_error_depth(store) == 0)) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED);
        return false;
      }
      return true;
    });
  }
  // Session resumption with client verification needs a session id context (SSL_CTX_set_verify).
  SSL_CTX_set_session_id_context(ctx->native_handle(),
                                 reinterpret_cast<const unsigned char*>(kSessionContext.data()),
                                 static_cast<unsigned>(kSessionContext.size()));
  return ctx;
}

boost::system::result<ContextPtr> client_context(std::string_view ca_pem, std::string_view cert_pem,
                                                 std::string_view key_pem) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  tls13_only(*ctx);
  if (auto r = trust(*ctx, ca_pem); !r) {
    return r.error();
  }
  if (!cert_pem.empty() || !key_pem.empty()) {
    if (auto r = use_pair(*ctx, cert_pem, key_pem); !r) {
      return r.error();
    }
  }
  ctx->set_verify_mode(ssl::verify_peer);
  // Chain verification is OpenSSL's; on top of it the server's own certificate must name a
  // node of the cluster. Host names are not checked: nodes are addressed by IP and the CLI by
  // whatever name the user typed, and the identity says more than either.
  ctx->set_verify_callback([](bool preverified, ssl::verify_context& vc) {
    if (!preverified) {
      return false;
    }
    X509_STORE_CTX* store = vc.native_handle();
    if (X509_STORE_CTX_get_error_depth(store) != 0) {
      return true;
    }
    auto identity = identity_of(X509_STORE_CTX_get_current_cert(store));
    if (!identity || !is_node_role(identity->role)) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return false;
    }
    return true;
  });
  return ctx;
}

ContextPtr unverified_client_context() {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  tls13_only(*ctx);
  ctx->set_verify_mode(ssl::verify_none);
  return ctx;
}

std::optional<Identity> verified_peer(const ssl_st* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
    return std::nullopt;
  }
  const X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) {
    return std::nullopt;
  }
  auto identity = identity_of(cert);
  if (!identity) {
    return std::nullopt;
  }
  return std::move(*identity);
}

std::optional<std::int64_t> peer_not_after(const ssl_st* ssl) {
  return ssl == nullptr ? std::nullopt : not_after(SSL_get0_peer_certificate(ssl));
}

boost::system::result<void> replace_certificate(ssl::context& context, std::string_view cert_pem,
                                                std::string_view key_pem) {
  return use_pair(context, cert_pem, key_pem);
}

boost::system::result<void> replace_trusted_roots(ssl::context& context, std::string_view ca_pem) {
  auto roots = split_certificates(ca_pem);
  if (!roots) {
    return roots.error();
  }
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) {
    return errc::crypto_failure;
  }
  for (const auto& root : *roots) {
    auto bio = std::unique_ptr<BIO, decltype(&BIO_free)>(
        BIO_new_mem_buf(root.data(), static_cast<int>(root.size())), &BIO_free);
    X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    const bool added = cert != nullptr && X509_STORE_add_cert(store, cert) == 1;
    X509_free(cert);
    if (!added) {
      X509_STORE_free(store);
      return errc::malformed_pem;
    }
  }
  SSL_CTX_set_cert_store(context.native_handle(), store);  // takes it, frees the old one
  return {};
}

}  // namespace routemesh::tls
