#pragma once
// TLS contexts (Asio over OpenSSL 3) for the admin API and every node-to-node call that goes
// through base/http_client.h: TLS 1.3 only, certificates of the cluster CA only.
//
// - server_context: the admin server of a cluster node. Presents the node certificate; asks
//   for a client certificate and verifies one that is sent against the cluster CA (a failed
//   verification fails the handshake), but lets a client without one in: the admin server
//   answers its requests 401, except the few paths anyone may use (/healthz, /metrics, the CA
//   certificate, the join request). A certificate the cluster revoked fails the handshake.
// - client_context: a node calling a manager, or the CLI. Trusts only the cluster CA and
//   accepts only a server certificate that names a node of it (role manager or worker: which
//   nodes may serve what is the callers' business); presents a client certificate when given.
// - unverified_client_context: verifies nothing. Only for the one request a joining node makes
//   before it knows the CA (GET /v1/ca), whose answer it checks against the digest in its join
//   token.
//
// A context is built once at startup (or join) and shared by the calls of one thread.

#include "tls/credentials.h"
#include "tls/types.h"

#include <boost/asio/ssl/context.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

struct ssl_st;   // OpenSSL's SSL
struct x509_st;  // OpenSSL's X509

namespace routemesh::tls {

using ContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// What a node no longer trusts, as the cluster state says: the serials (serial_of's spelling)
// of revoked certificates, the ids of nodes removed from the cluster, and the roots retired by
// a rotation. A server context given one refuses, at the handshake, a chain with a revoked
// certificate in it (the client's own, or a cross certificate revoked when its rotation ended)
// and a node certificate naming a removed node (every certificate it ever got, renewals
// included); recheck() asks the same again of a connection made earlier, which a long-lived
// connection (or a resumed TLS session, which is not verified again) needs. Thread-safe: the
// control thread replaces the sets while any thread handshakes.
class PeerTrust {
 public:
  // Replaces the revoked serials and the removed node ids; false (and nothing replaced) when
  // they are the same.
  bool set(std::set<std::string> serials, std::set<std::string, std::less<>> removed_nodes = {});
  // Revoked serials and removed nodes together.
  std::size_t size() const;
  // Adds roots (PEM) that a rotation retired; their certificates are refused by recheck().
  // Kept for the node's lifetime (a few per rotation); one already there is not added again.
  void add_retired_roots(const std::vector<std::string>& roots_pem);

  // Whether the verified client certificate of an established connection is still good at
  // `now`: nullopt when it is (or when the connection has none), else why not: "revoked" (its
  // serial), "removed" (a node certificate of a removed node), and, for `strict` callers,
  // "expired" (past its notAfter) and "retired_root" (signed by a root's key that a rotation
  // retired). Nodes are checked for revocation and removal only: their long-lived connections
  // are re-established after a renewal, and who they are is checked against the state on
  // every request anyway.
  std::optional<std::string_view> recheck(const ssl_st* ssl, std::int64_t now, bool strict) const;
  // What recheck() last found good for one connection, so that the connection's next requests
  // cost a comparison instead of reading the certificate again (its serial, its notAfter: a
  // few percent of a manager's CPU per write). Valid until this trust changes (set() with new
  // contents, add_retired_roots()) or, for strict checks, until the certificate's notAfter.
  // One per connection, used by that connection's thread only.
  struct Memo {
    std::uint64_t generation = 0;  // of the trust it was found good under; 0 = not yet
    bool strict = false;
    std::int64_t good_until = 0;  // unix seconds
  };
  std::optional<std::string_view> recheck(const ssl_st* ssl, std::int64_t now, bool strict,
                                          Memo& memo) const;
  // recheck() for nodes: "revoked" or "removed" when the peer certificate of `ssl` is refused
  // now, nullopt when it is not (or there is none). Needs no clock.
  std::optional<std::string_view> peer_refused(const ssl_st* ssl) const;
  bool peer_revoked(const ssl_st* ssl) const { return peer_refused(ssl).has_value(); }
  // The same for one certificate of a chain being verified: `leaf` says it is the peer's own.
  std::optional<std::string_view> refused(const x509_st* cert, bool leaf) const;

 private:
  struct Refused {
    std::set<std::string> serials;
    std::set<std::string, std::less<>> nodes;
  };
  struct Retired;
  // A fresh value from one process-wide counter at construction and at each change, so that
  // a Memo of one PeerTrust never matches another.
  static std::uint64_t next_generation();
  std::atomic<std::uint64_t> generation_{next_generation()};
  mutable std::mutex mu_;
  std::shared_ptr<const Refused> refused_ = std::make_shared<const Refused>();
  std::shared_ptr<const std::vector<std::shared_ptr<const Retired>>> retired_ =
      std::make_shared<const std::vector<std::shared_ptr<const Retired>>>();
};

// errc::malformed_pem when a certificate or key does not load, errc::key_mismatch when they do
// not pair. `revoked`, when given, is consulted at every handshake (see PeerTrust).
boost::system::result<ContextPtr> server_context(
    const NodeCredentials& node, std::shared_ptr<const PeerTrust> revoked = nullptr);

// `cert_pem` and `key_pem` both empty: no client certificate.
boost::system::result<ContextPtr> client_context(std::string_view ca_pem,
                                                 std::string_view cert_pem = {},
                                                 std::string_view key_pem = {});

ContextPtr unverified_client_context();

// Renewal: the context presents `cert_pem`/`key_pem` from now on. Connections already made keep
// the certificate they were made with; new ones get the new one, so no connection drops. The
// pair is checked first (errc::malformed_pem, errc::key_mismatch) and the context is left as it
// was on error. Not thread-safe: call it on the thread that makes the context's connections.
boost::system::result<void> replace_certificate(boost::asio::ssl::context& context,
                                                std::string_view cert_pem,
                                                std::string_view key_pem);

// Root rotation: the context trusts the certificates of `ca_pem` (one or more roots) from now on,
// instead of the ones it trusted before; handshakes already past verification are unaffected.
// errc::malformed_pem leaves the context as it was. Not thread-safe, as replace_certificate.
boost::system::result<void> replace_trusted_roots(boost::asio::ssl::context& context,
                                                  std::string_view ca_pem);

// The identity of the peer of an established connection: its certificate passed verification
// against the context's CA and names a routemesh identity. nullopt when the peer sent no
// certificate, or one without an identity.
std::optional<Identity> verified_peer(const ssl_st* ssl);
// When the peer certificate of an established connection expires (its notAfter, seconds since
// the epoch); nullopt without one.
std::optional<std::int64_t> peer_not_after(const ssl_st* ssl);

}  // namespace routemesh::tls
