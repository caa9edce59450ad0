#include "proxy/https_session.h"

#include "proxy/http_session.h"
#include "proxy/l4/l4_session.h"
#include "proxy/overlay/overlay.h"
#include "proxy/peek.h"
#include "proxy/tls_bridge.h"
#include "tls/client_hello.h"
#include "tls/ingress_context.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace routemesh::proxy {

namespace {

using error_code = boost::system::error_code;
namespace ssl = asio::ssl;

// Waits until the socket holds a whole ClientHello (or something that is not one), without
// consuming a byte.
asio::awaitable<tls::ClientHelloInfo> peek_client_hello(Worker& w, LiveConn& conn,
                                                        tcp::socket& socket) {
  // The thread's: read_client_hello copies what it keeps, and nothing waits between a peek
  // and that call (a connection's bytes never outlive its turn here).
  static thread_local std::array<char, tls::kMaxClientHello> buffer;
  tls::ClientHelloInfo info;
  const PeekEnd end = co_await peek_until(w, conn, socket, buffer, [&info](std::string_view bytes) {
    info = tls::read_client_hello(bytes);
    return info.status != tls::ClientHelloInfo::Status::need_more;
  });
  if (end != PeekEnd::enough || info.status == tls::ClientHelloInfo::Status::need_more) {
    info.status = tls::ClientHelloInfo::Status::not_tls;
    info.problem = end == PeekEnd::timeout  ? "no ClientHello within timeouts.request_head_ms"
                   : end == PeekEnd::closed ? "closed before a ClientHello"
                                            : "a ClientHello larger than we take";
  }
  co_return info;
}

asio::awaitable<void> terminate(Worker& w, tcp::socket socket, std::uint16_t port,
                                std::shared_ptr<const tls::IngressContexts> contexts,
                                std::optional<mesh::overlay::ProxiedAddresses> proxied) {
  error_code ignored;
  const auto peer = socket.remote_endpoint(ignored);
  const auto local = socket.local_endpoint(ignored);
  auto stream =
      std::make_unique<TlsStream>(std::move(socket), contexts->initial(), tls::kTlsRecordRing);
  {
    LiveConn live;
    LiveGuard guard(w, live);
    live.down = &stream->next_layer();
    live.arm(Clock::now(), w.timeouts().request_head);
    stream->stop_when(&live.expired);
    const error_code hec = co_await stream->handshake(true);
    stream->stop_when(nullptr);
    live.disarm();
    if (hec) {
      w.metrics().tls_handshake_failed.Increment();
      spdlog::debug("proxy: https: handshake with {} failed: {}", peer.address().to_string(),
                    hec.message());
      co_return;
    }
  }
  w.metrics().tls_terminated.Increment();
  if (SSL_session_reused(stream->native_handle()) == 1) {
    w.metrics().tls_resumed.Increment();
  }
  mesh::overlay::ProxiedAddresses client;
  client.src_ip = peer.address().to_string();
  client.src_port = peer.port();
  client.dst_ip = local.address().to_string();
  client.dst_port = port;
  if (proxied) {  // a load balancer in front named the client
    client.src_ip = std::move(proxied->src_ip);
    client.src_port = proxied->src_port;
  }
  co_await run_https_http_session(w, std::move(stream), std::move(contexts), std::move(client));
}

}  // namespace

asio::awaitable<void> run_https_session(Worker& w, tcp::socket socket, std::uint16_t port) {
  tls::ClientHelloInfo hello;
  std::optional<mesh::overlay::ProxiedAddresses> proxied;
  {
    LiveConn conn;
    LiveGuard guard(w, conn);
    conn.down = &socket;
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    // A load balancer in front sends a PROXY header before the ClientHello.
    if (const auto peer = socket.remote_endpoint(ignored);
        !ignored && w.proxy_protocol_peer(peer.address())) {
      if (!co_await read_proxy_header(w, conn, socket, proxied)) {
        co_return;
      }
    }
    hello = co_await peek_client_hello(w, conn, socket);
  }
  if (hello.status != tls::ClientHelloInfo::Status::complete) {
    w.metrics().tls_not_tls.Increment();
    spdlog::debug("proxy: https port {}: not a TLS connection: {}", port, hello.problem);
    co_return;
  }
  const auto& table = w.table();
  if (!hello.server_name.empty() && table &&
      mesh::find_sni_route(*table, hello.server_name) != nullptr) {
    w.metrics().tls_passthrough.Increment();
    co_await run_l4_session(w, std::move(socket), port, {}, std::move(hello.server_name),
                            std::move(proxied));
    co_return;
  }
  std::shared_ptr<const tls::IngressContexts> contexts = w.ingress_tls();
  if (!contexts || contexts->size() == 0) {
    w.metrics().tls_no_certificate.Increment();
    spdlog::debug("proxy: https port {}: no certificate stored for {}", port,
                  hello.server_name.empty() ? "a client without SNI" : hello.server_name);
    co_return;
  }
  co_await terminate(w, std::move(socket), port, std::move(contexts), std::move(proxied));
}

}  // namespace routemesh::proxy
