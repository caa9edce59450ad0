#pragma once
// A TLS connection turned into a plain socket: after its handshake, a pump moves bytes between
// the TLS stream and one end of a socketpair, and the caller gets the other end, which every
// byte-moving piece of the proxy already handles (splice, tunnels, overlay streams). The
// overlay hands it to its stream logic on both sides; the HTTPS port only for an upgraded
// connection's tunnel (its HTTP session reads and writes the TLS socket itself).
//
// The pump, both ways at once: TLS -> socketpair copies decrypted bytes, and the TLS peer's EOF
// (or close_notify) becomes a half-close of the socketpair; socketpair -> TLS encrypts, each
// write within timeouts.idle_ms. When the caller closes its end, the pump sends close_notify
// (waiting at most 1 s for the peer's), then closes the TCP connection. The pump is in the
// worker's connection registry, so shutdown cancels it like any connection.
//
// Cost: two extra socket calls per read each way and two more descriptors per connection; a
// connection keeps two buffers from the worker's free lists while it lives: 16 KiB each, or
// 64 KiB each with `bulk` (overlay streams, which carry whole responses at once and are few),
// besides the TLS socket's rings (tls/socket.h).

#include "proxy/worker.h"
#include "tls/socket.h"

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

}  // namespace routemesh::proxy
