#pragma once
// The node's HTTPS port (node.https_port). Each connection's ClientHello is read without being
// consumed (MSG_PEEK); then:
// - its server name is routed by SNI (a service labelled mesh.sni): the connection is spliced
//   to that service at layer 4, the TLS untouched (passthrough; l4/l4_session.h);
// - otherwise TLS is terminated here with the certificate the cluster stores for the name
//   (tls/ingress_context.h), and the connection is served by an ordinary HTTP session
//   (http_session.h) that reads and writes through the TLS socket, sees the real client
//   address and sends X-Forwarded-Proto: https to the task.
//
// The session is the HTTP port's, with three differences: response bodies are copied
// through TLS where the HTTP port splices them, an upgraded connection (101) is bridged to a
// socketpair for its tunnel (tls_bridge.h), and the connection ends with close_notify.
// Connections from node.proxy_protocol_from peers are not read for a PROXY header here.

#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

#include <cstdint>

namespace routemesh::proxy {

// Started by the HTTPS listener's accept loop with co_spawn; owns the socket. `port` is the
// HTTPS port (X-Forwarded-Port, policies).
asio::awaitable<void> run_https_session(Worker& w, tcp::socket socket, std::uint16_t port);

}  // namespace routemesh::proxy
