#pragma once
// One HTTP/1.1 downstream connection: parse requests (pipelined, keep-alive), route by Host
// and path, pick an endpoint, forward head and body to a pooled upstream connection, stream
// the response back. Runs on its worker's thread as one coroutine.

#include "mesh/overlay/proxy_protocol.h"
#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

#include <memory>

namespace routemesh::tls {
class TlsSocket;
}

namespace routemesh::proxy {

// Started by the worker's accept loop with co_spawn; owns the socket. `w` outlives every
// session (sessions are destroyed with the worker's io_context). Never throws on expected
// failures; an exception is a bug and ends only this connection.
asio::awaitable<void> run_http_session(Worker& w, tcp::socket socket);

// The HTTPS port's terminated connection (https_session.h), its handshake done: served like any
// HTTP connection, reading and writing through `tls` (no splice; an upgraded connection's
// tunnel runs over a bridge, tls_bridge.h), with X-Forwarded-Proto: https. `client` names the
// real client (src) and the HTTPS port (dst); `keep` (the TLS context) lives as long as `tls`.
asio::awaitable<void> run_https_http_session(Worker& w, std::unique_ptr<tls::TlsSocket> tls,
                                             std::shared_ptr<const void> keep,
                                             mesh::overlay::ProxiedAddresses client);

}  // namespace routemesh::proxy
