#pragma once
// The overlay's I/O: streams from this node to tasks on other nodes, and the listener side
// that accepts streams for this node's tasks. The wire format (preamble, one-byte answer) and
// the check of a target are pure and live in mesh/overlay/ and mesh/route_table.h; this file
// only moves bytes.
//
// A stream is one TCP connection from node A's proxy thread to node C's overlay listener. A
// writes the preamble, C checks the target is one of its own tasks of an exposed service,
// connects to it, answers one byte, then splices both ways. A proxy thread keeps one spare,
// pre-established connection to every peer it has used recently, so opening a stream costs
// the preamble's round trip, not a connect as well; HTTP keeps streams open between requests
// in its keep-alive pool like any upstream connection.
//
// In cluster mode every stream runs inside mutual TLS 1.3 between the two nodes (unless
// cluster.overlay_encryption is false): the sender verifies that the listener presents a node
// certificate of the cluster CA, the listener that the sender does (and that it is not
// revoked). Spare connections are made with their handshake done. After the handshake the
// bytes move without a socketpair where the other side is a socket the proxy reads itself:
// an HTTP session reads and writes its upstream's TLS stream (UpstreamConn::tls), and the
// listener relays decrypted bytes straight to the task (relay_tls, tls_bridge.h). Layer 4 and
// UDP streams on the sending side go through a tls_bridge.h socketpair, so splice and the
// datagram framing work on plain sockets there.

#include "mesh/overlay/preamble.h"
#include "mesh/overlay/proxy_protocol.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace routemesh::tls {
class PeerTrust;
}

namespace routemesh::proxy {

// The overlay's TLS contexts, made from this node's certificate (cmd/ builds them).
struct OverlayTls {
  std::shared_ptr<boost::asio::ssl::context> server;  // accepted streams
  std::shared_ptr<boost::asio::ssl::context> client;  // streams to other nodes
  std::string cluster_id;         // a peer's certificate must name a node of this cluster
  std::uint64_t rekey_bytes = 0;  // cluster.overlay_rekey_bytes (0: rekey on epochs only)
  // Revoked serials, asked again when a spare connection carries its preamble (it may have
  // waited since before the revocation). Null: only the handshake checks.
  std::shared_ptr<const tls::PeerTrust> trust;
};

// Spare overlay connections of one proxy thread, by peer. Worker thread only.
class OverlaySpares {
 public:
  explicit OverlaySpares(Worker& w) : w_(w) {}
  ~OverlaySpares() { close_all(); }
  OverlaySpares(const OverlaySpares&) = delete;
  OverlaySpares& operator=(const OverlaySpares&) = delete;

  // A live spare connection to `peer`, if one is ready; starts a replacement either way.
  std::optional<UpstreamConn> take(const tcp::endpoint& peer);
  // Closes spares older than their lifetime (the receiving side would close them after its
  // preamble timeout) and forgets peers not used since. Called from the worker's tick.
  void sweep(Clock::time_point now);
  // Closes the spares whose peer certificate `untrusted` picks; returns how many.
  std::size_t close_untrusted(const std::function<bool(const ssl_st*)>& untrusted);
  void close_all();

  static constexpr milliseconds kLifetime{20'000};

 private:
  struct Spare {
    UpstreamConn conn;
    Clock::time_point since;
  };
  struct Peer {
    std::vector<Spare> idle;
    unsigned connecting = 0;
    Clock::time_point used;
  };
  void refill(const tcp::endpoint& peer);

  Worker& w_;
  std::map<tcp::endpoint, Peer> peers_;
  bool closed_ = false;
};

// Opens an overlay stream on `s` to `via` for `preamble`: a spare connection or a new one, the
// preamble, the answer. On success `s` carries the stream, inside TLS (s.tls, which watches
// `conn`'s deadline: TlsSocket::stop_when) when the overlay is encrypted; conn.up is
// &s.raw(). Errors: asio::error::timed_out (connect or answer),
// connection_refused (the peer refused the target or could not connect to the task: nothing
// reached the task, so another endpoint may be tried), or the connect's error.
asio::awaitable<boost::system::error_code> open_overlay_stream(
    Worker& w, LiveConn& conn, UpstreamConn& s, const tcp::endpoint& via,
    const mesh::overlay::Preamble& preamble);

// The same for a caller that moves bytes socket to socket (layer 4, UDP): an encrypted stream
// comes back as the plain end of a tls_bridge.h socketpair. conn.up is &s.
asio::awaitable<boost::system::error_code> open_overlay_stream(
    Worker& w, LiveConn& conn, tcp::socket& s, const tcp::endpoint& via,
    const mesh::overlay::Preamble& preamble);

// The preamble for a stream to `task_id`:`task_port` on behalf of `client` (its remote and
// local addresses; unknown ones become 0.0.0.0:1), or of `proxied` when a load balancer in
// front named the real client with a PROXY header.
mesh::overlay::Preamble make_preamble(
    mesh::overlay::StreamProtocol protocol, const std::string& task_id, std::uint16_t task_port,
    tcp::socket& client, const std::optional<mesh::overlay::ProxiedAddresses>& proxied = {});

// The PROXY protocol header (v1 or v2) for a connection from `client` (or `proxied`), for a
// local task of a service labelled mesh.proxy_protocol.
std::string proxy_header_for(discovery::ProxyProtocol version, tcp::socket& client,
                             const std::optional<mesh::overlay::ProxiedAddresses>& proxied = {});

// A connection from a node.proxy_protocol_from peer: takes its PROXY header (v1 or v2) within
// timeouts.request_head, byte-exact (peek.h), so whatever follows (a request, a ClientHello,
// a layer-4 stream) stays in the socket for the caller. Returns true with `proxied` set to
// the header's addresses (left empty for LOCAL or UNKNOWN: the connection's own addresses
// stand); false, counted in routemesh_proxy_bad_requests_total, when the header is missing,
// malformed or late (the caller closes).
boost::asio::awaitable<bool> read_proxy_header(
    Worker& w, LiveConn& conn, tcp::socket& s,
    std::optional<mesh::overlay::ProxiedAddresses>& proxied);

// Serves one accepted overlay connection: preamble, check, connect, answer, splice.
asio::awaitable<void> run_overlay_session(Worker& w, tcp::socket socket);

}  // namespace routemesh::proxy
