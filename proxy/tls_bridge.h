#pragma once
// A TLS connection turned into a plain socket: after its handshake, a pump moves bytes between
// the TLS stream and one end of a socketpair, and the caller gets the other end, which every
// byte-moving piece of the proxy already handles (splice, tunnels, overlay streams). Used
// where the other side must be a socket: a layer-4 or UDP overlay stream on the sending node,
// a UDP one on the receiving node, and an upgraded connection's tunnel (HTTPS port, or an
// HTTP upstream over the encrypted overlay). HTTP sessions read and write their TLS sockets
// themselves, and the overlay listener relays TCP streams to the task with relay_tls (below),
// the same pump with the task's socket in place of the socketpair.
//
// The pump, both ways at once, with TCP's half-close carried by TLS 1.3's close_notify (which
// ends one direction only): TLS -> socketpair copies decrypted bytes, and the TLS peer's
// close_notify (or EOF) becomes a half-close of the socketpair; socketpair -> TLS encrypts,
// each write within timeouts.idle_ms, and the caller's half-close (EOF on the socketpair)
// becomes our close_notify while the peer's bytes keep coming. The pump ends when both
// directions have ended. When the caller closes its end altogether (or the other direction is
// over, or the connection is older than TLS 1.3), its EOF ends both directions at once: the
// pump sends close_notify (waiting at most 1 s for the peer's), then closes the TCP
// connection. An error either way ends both. A caller that closes its end after its
// half-close is noticed only at the peer's next bytes or close, so a bridge that sent its
// close_notify ends once nothing moved for timeouts.l4_idle_ms (before that, a bridge has no
// idle timeout of its own: its caller's end has one). The pump is in the worker's connection
// registry, so shutdown cancels it like any connection.
//
// Cost: two extra socket calls per read each way and two more descriptors per connection; a
// connection keeps two buffers from the worker's free lists while it lives: 16 KiB each, or
// 64 KiB each with `bulk` (overlay streams, which carry whole responses at once and are few),
// besides the TLS socket's rings (tls/socket.h).

#include "proxy/worker.h"
#include "tls/socket.h"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>

namespace routemesh::proxy {

using TlsStream = tls::TlsSocket;

// Starts the pump for `stream` (handshake done) and returns the caller's end of the
// socketpair: a tcp::socket over an AF_UNIX descriptor (reads, writes, waits and splice work;
// it has no TCP options and no addresses). `keep` lives as long as the stream (the context it
// was made with). An error (no descriptors for the socketpair) closes the stream.
// With `rekey` (the overlay), the pump updates the connection's keys (TLS 1.3 KeyUpdate)
// before a write when the route table's overlay_key_epoch rose since the connection's keys
// were made, or after *rekey plaintext bytes were sent (0: only for epochs), and counts each
// in routemesh_overlay_key_updates_total{reason}.
boost::system::result<tcp::socket> bridge_tls(Worker& w, std::unique_ptr<TlsStream> stream,
                                              std::shared_ptr<const void> keep, bool bulk = false,
                                              std::optional<std::uint64_t> rekey = std::nullopt);

// The cluster's overlay key epoch in the worker's route table (0 without one).
std::uint64_t overlay_key_epoch(Worker& w);

// Before a write on an overlay connection whose keys were made under `epoch`: updates them
// (TLS 1.3 KeyUpdate) when the cluster's epoch rose since (then `epoch` is the new one), or
// after `rekey_bytes` plaintext bytes were sent under them (0: only for epochs), and counts it
// in routemesh_overlay_key_updates_total{reason}.
void update_overlay_keys(Worker& w, TlsStream& s, std::uint64_t& epoch, std::uint64_t rekey_bytes);

// The same pump without the socketpair, for a caller whose other side is a socket already (an
// overlay stream's task): moves bytes between `stream` (handshake done) and `plain` as
// bridge_tls's pump does with `plain` as the caller's end: the peer's close_notify half-closes
// `plain`, and `plain`'s EOF (the task's FIN) becomes our close_notify while the peer may go
// on sending; an error on `plain` (a reset) ends both. It also ends when nothing moved either
// way for `idle` (a bridge leaves that to its caller's end). Closes both.
// Awaited by the caller; `keep` and `rekey` as for bridge_tls; `overlay_peer` (the sending
// node's id, owned by the caller) as LiveConn's: a table without that node ends the relay.
// The arguments are taken (moved from) when the coroutine starts.
asio::awaitable<void> relay_tls(Worker& w, std::unique_ptr<TlsStream>&& stream,
                                const std::shared_ptr<const void>& keep, tcp::socket&& plain,
                                milliseconds idle, std::optional<std::uint64_t> rekey,
                                const std::string* overlay_peer);

}  // namespace routemesh::proxy
