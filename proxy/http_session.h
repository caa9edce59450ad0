#pragma once
// One HTTP/1.1 downstream connection: parse requests (pipelined, keep-alive), route by Host
// and path, pick an endpoint, forward head and body to a pooled upstream connection, stream
// the response back. Runs on its worker's thread as one coroutine.

#include "mesh/overlay/proxy_protocol.h"
#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

namespace routemesh::proxy {

// Started by the worker's accept loop with co_spawn; owns the socket. `w` outlives every
// session (sessions are destroyed with the worker's io_context). Never throws on expected
// failures; an exception is a bug and ends only this connection.
asio::awaitable<void> run_http_session(Worker& w, tcp::socket socket);

// The HTTPS port's decrypted side: `inner` is one end of a socketpair whose other end carries
// the client's plaintext (https_session.h); `client` names the real client (src) and the
// HTTPS port (dst). Starts a session on it, served like any HTTP connection, with
// X-Forwarded-Proto: https.
void start_https_inner_session(Worker& w, tcp::socket inner,
                               mesh::overlay::ProxiedAddresses client);

}  // namespace routemesh::proxy
