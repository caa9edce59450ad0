#pragma once
// Layer-4 forwarding of a published TCP port: pick an endpoint of the port's cluster (one retry
// on another endpoint after a connect failure), connect, then splice both ways (splice.h) until
// both sides closed, one failed, or l4_idle_ms passed without a byte.

#include "mesh/overlay/proxy_protocol.h"
#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

#include <cstdint>

namespace routemesh::proxy {

// Started by an L4 listener's accept loop with co_spawn; owns the socket. `w` outlives every
// session. Expected failures (no route left, no endpoint reachable) end the session quietly;
// passive health and metrics record them.
// `vip` is the service VIP the connection was accepted on ("" for a published port).
// `sni`: a connection to the HTTPS port whose ClientHello (still unread in the socket) names a
// passthrough service (mesh.sni); `port` is then the HTTPS port, and `proxied` the client a
// load balancer named in a PROXY header the HTTPS port already read (none: the peer).
asio::awaitable<void> run_l4_session(
    Worker& w, tcp::socket socket, std::uint16_t port, std::string vip = {}, std::string sni = {},
    std::optional<mesh::overlay::ProxiedAddresses> proxied = std::nullopt);

}  // namespace routemesh::proxy
