#include "proxy/https_session.h"

#include "proxy/http_session.h"
#include "proxy/l4/l4_session.h"
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
#include <string>
#include <utility>

namespace routemesh::proxy {

namespace {

using error_code = boost::system::error_code;
namespace ssl = asio::ssl;

// Waits until the socket holds a whole ClientHello (or something that is not one), without
// consuming a byte: readability is re-armed with SO_RCVLOWAT one byte above what is there, so
// the wait does not wake again for bytes already peeked.
asio::awaitable<tls::ClientHelloInfo> peek_client_hello(Worker& w, LiveConn& conn,
                                                        tcp::socket& socket) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  // The thread's: read_client_hello copies what it keeps, and nothing waits between a peek
  // and that call (a connection's bytes never outlive its turn here).
  static thread_local std::array<char, tls::kMaxClientHello> buffer;
  tls::ClientHelloInfo info;
  info.status = tls::ClientHelloInfo::Status::not_tls;
  conn.arm(Clock::now(), w.timeouts().request_head);
  const int fd = socket.native_handle();
  bool lowat_raised = false;
  // The ClientHello is usually there by the time the connection is accepted: look before
  // waiting (a wait costs the reactor a re-arm and a wake-up).
  bool look_first = true;
  for (;;) {
    if (!std::exchange(look_first, false)) {
      auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, tuple);
      if (ec || conn.expired) {
        info.problem =
            conn.expired ? "no ClientHello within timeouts.request_head_ms" : ec.message();
        break;
      }
    }
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n <= 0) {
      info.problem = n == 0 ? "closed before a ClientHello" : "receive failed";
      break;
    }
    info = tls::read_client_hello(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    if (info.status != tls::ClientHelloInfo::Status::need_more) {
      break;
    }
    const int lowat = static_cast<int>(n) + 1;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    lowat_raised = true;
  }
  if (lowat_raised) {
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  }
  conn.disarm();
  co_return info;
}

asio::awaitable<void> terminate(Worker& w, tcp::socket socket, std::uint16_t port,
                                std::shared_ptr<const tls::IngressContexts> contexts) {
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
  co_await run_https_http_session(w, std::move(stream), std::move(contexts), std::move(client));
}

}  // namespace

asio::awaitable<void> run_https_session(Worker& w, tcp::socket socket, std::uint16_t port) {
  tls::ClientHelloInfo hello;
  {
    LiveConn conn;
    LiveGuard guard(w, conn);
    conn.down = &socket;
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
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
    co_await run_l4_session(w, std::move(socket), port, {}, std::move(hello.server_name));
    co_return;
  }
  std::shared_ptr<const tls::IngressContexts> contexts = w.ingress_tls();
  if (!contexts || contexts->size() == 0) {
    w.metrics().tls_no_certificate.Increment();
    spdlog::debug("proxy: https port {}: no certificate stored for {}", port,
                  hello.server_name.empty() ? "a client without SNI" : hello.server_name);
    co_return;
  }
  co_await terminate(w, std::move(socket), port, std::move(contexts));
}

}  // namespace routemesh::proxy
