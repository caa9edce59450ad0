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
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace routemesh::proxy {

namespace {

using error_code = boost::system::error_code;
namespace ssl = asio::ssl;

// Peeks at the socket, without consuming a byte, until `enough(bytes)` says what is there is
// enough to decide on (or `buffer` is full); "" then, else why it stopped (a timeout, a close).
// Readability is re-armed with SO_RCVLOWAT one byte above what is there, so a wait does not
// wake again for bytes already seen.
template <class Enough>
asio::awaitable<std::string> peek_until(Worker& w, LiveConn& conn, tcp::socket& socket,
                                        std::span<char> buffer, const char* what, Enough enough) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  std::string problem;
  conn.arm(Clock::now(), w.timeouts().request_head);
  const int fd = socket.native_handle();
  bool lowat_raised = false;
  // The bytes are usually there by the time the connection is accepted: look before waiting
  // (a wait costs the reactor a re-arm and a wake-up).
  bool look_first = true;
  for (;;) {
    if (!std::exchange(look_first, false)) {
      auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, tuple);
      if (ec || conn.expired) {
        problem = conn.expired ? std::string("no ") + what + " within timeouts.request_head_ms"
                               : ec.message();
        break;
      }
    }
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n <= 0) {
      problem = n == 0 ? std::string("closed before a ") + what : "receive failed";
      break;
    }
    if (enough(std::string_view(buffer.data(), static_cast<std::size_t>(n))) ||
        static_cast<std::size_t>(n) == buffer.size()) {
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
  co_return problem;
}

// Waits until the socket holds a whole ClientHello (or something that is not one), without
// consuming a byte.
asio::awaitable<tls::ClientHelloInfo> peek_client_hello(Worker& w, LiveConn& conn,
                                                        tcp::socket& socket) {
  // The thread's: read_client_hello copies what it keeps, and nothing waits between a peek
  // and that call (a connection's bytes never outlive its turn here).
  static thread_local std::array<char, tls::kMaxClientHello> buffer;
  tls::ClientHelloInfo info;
  auto problem =
      co_await peek_until(w, conn, socket, buffer, "ClientHello", [&info](std::string_view bytes) {
        info = tls::read_client_hello(bytes);
        return info.status != tls::ClientHelloInfo::Status::need_more;
      });
  if (!problem.empty() || info.status == tls::ClientHelloInfo::Status::need_more) {
    info.status = tls::ClientHelloInfo::Status::not_tls;
    info.problem = problem.empty() ? "a ClientHello larger than we take" : problem;
  }
  co_return info;
}

// A connection from a node.proxy_protocol_from peer: its PROXY header, consumed exactly (the
// ClientHello behind it stays unread for peek_client_hello and the handshake). False, counted
// like the HTTP port's, when it is missing, malformed or late; `proxied` stays empty for LOCAL
// and UNKNOWN (the peer's own address stands).
asio::awaitable<bool> read_proxy_preface(Worker& w, LiveConn& conn, tcp::socket& socket,
                                         std::optional<mesh::overlay::ProxiedAddresses>& proxied) {
  std::array<char, mesh::overlay::kMaxHeaderBytes> buffer;
  mesh::overlay::Decoded decoded;
  auto problem = co_await peek_until(
      w, conn, socket, buffer, "PROXY header", [&decoded](std::string_view bytes) {
        decoded = mesh::overlay::decode(bytes);
        return decoded.status != mesh::overlay::Decoded::Status::incomplete;
      });
  if (!problem.empty() || decoded.status != mesh::overlay::Decoded::Status::ok) {
    const bool missing = decoded.status == mesh::overlay::Decoded::Status::none;
    w.bad_requests(!problem.empty() ? "proxy_header_timeout"
                   : missing        ? "proxy_header_missing"
                                    : "proxy_header_invalid")
        .Increment();
    co_return false;
  }
  // The bytes were peeked, so they are there: this takes exactly the header.
  if (::recv(socket.native_handle(), buffer.data(), decoded.consumed, MSG_DONTWAIT) !=
      static_cast<ssize_t>(decoded.consumed)) {
    co_return false;
  }
  proxied = std::move(decoded.addresses);
  co_return true;
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
      if (!co_await read_proxy_preface(w, conn, socket, proxied)) {
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
