#pragma once
// The node's HTTPS port (node.https_port). Each connection's ClientHello is read without being
// consumed (MSG_PEEK); then:
// - its server name is routed by SNI (a service labelled mesh.sni): the connection is spliced
//   to that service at layer 4, the TLS untouched (passthrough; l4/l4_session.h);
// - otherwise TLS is terminated here with the certificate the cluster stores for the name
//   (tls/ingress_context.h). The decrypted bytes go through a socketpair to an ordinary HTTP
//   session (http_session.h), which sees the real client address and sends
//   X-Forwarded-Proto: https to the task. A pump moves bytes between the TLS stream and the
//   socketpair, both ways.
//
// The socketpair keeps one HTTP session for both ports, at the cost of two extra socket calls
// each way per read; serving the session directly over the TLS stream would save them.
// Connections from node.proxy_protocol_from peers are not read for a PROXY header here.

#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

#include <cstdint>

namespace routemesh::proxy {

// Started by the HTTPS listener's accept loop with co_spawn; owns the socket. `port` is the
// HTTPS port (X-Forwarded-Port, policies).
asio::awaitable<void> run_https_session(Worker& w, tcp::socket socket, std::uint16_t port);

}  // namespace routemesh::proxy
