#pragma once
// The byte tunnel an HTTP connection becomes after 101 Switching Protocols (WebSocket and other
// upgrades, RFC 9110 §7.8): the HTTP session relays the 101, then bytes move both ways,
// uninterpreted, with the same splice machinery as a layer-4 port.

#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <cstdint>

namespace routemesh::proxy {

struct TunnelResult {
  boost::system::error_code ec;  // errc::client_gone: `to_client` was not delivered
  std::uint64_t to_client = 0;   // bytes written to the client, `to_client` included
  std::uint64_t to_upstream = 0;
  bool spliced = false;  // both first writes succeeded and the splice ran until it ended
};

// Writes `to_client` (the 101 head and any upstream bytes read after it) to the client, then
// `to_upstream` (client bytes read after the Upgrade request) to the upstream, each under the
// idle timeout; then splices both ways (splice_both) until both sides sent EOF, one failed, or
// `l4_idle_ms` passed without a byte. A failed write to the upstream ends the tunnel without
// error. Closes neither socket: the caller does. Called and awaited by the HTTP session on its
// worker's thread; every reference and buffer must outlive the call. `conn` names both
// sockets, so the worker's ticker and shutdown can cancel the tunnel.
asio::awaitable<TunnelResult> run_tunnel(Worker& w, LiveConn& conn, tcp::socket& client,
                                         tcp::socket& upstream,
                                         std::array<asio::const_buffer, 2> to_client,
                                         asio::const_buffer to_upstream);

}  // namespace routemesh::proxy
