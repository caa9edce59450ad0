#include "proxy/https_session.h"

#include "proxy/http_session.h"
#include "proxy/l4/l4_session.h"
#include "tls/client_hello.h"
#include "tls/ingress_context.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <string>

namespace routemesh::proxy {

namespace {

using error_code = boost::system::error_code;
namespace ssl = asio::ssl;

// How long a client has to finish its close_notify exchange after the session ended.
constexpr milliseconds kShutdownWait{1'000};

// Waits until the socket holds a whole ClientHello (or something that is not one), without
// consuming a byte: readability is re-armed with SO_RCVLOWAT one byte above what is there, so
// the wait does not wake again for bytes already peeked.
asio::awaitable<tls::ClientHelloInfo> peek_client_hello(Worker& w, LiveConn& conn,
                                                        tcp::socket& socket) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  std::string buffer(tls::kMaxClientHello, '\0');
  tls::ClientHelloInfo info;
  info.status = tls::ClientHelloInfo::Status::not_tls;
  conn.arm(Clock::now(), w.timeouts().request_head);
  const int fd = socket.native_handle();
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, tuple);
    if (ec || conn.expired) {
      info.problem = conn.expired ? "no ClientHello within timeouts.request_head_ms" : ec.message();
      break;
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
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  conn.disarm();
  co_return info;
}

// A terminated connection: the TLS stream to the client and our end of the socketpair whose
// other end the HTTP session reads. The contexts outlive the stream (declared first).
struct Terminated {
  Terminated(Worker& w, tcp::socket socket, std::shared_ptr<const tls::IngressContexts> c)
      : worker(w),
        contexts(std::move(c)),
        stream(std::move(socket), contexts->initial()),
        inner(w.io()),
        guard(w, live) {
    live.down = &stream.next_layer();
    live.up = &inner;
  }
  ~Terminated() {
    if (from_client) {
      worker.give_client_buffer(std::move(from_client));
    }
    if (to_client) {
      worker.give_client_buffer(std::move(to_client));
    }
  }
  Terminated(const Terminated&) = delete;
  Terminated& operator=(const Terminated&) = delete;

  Worker& worker;
  std::shared_ptr<const tls::IngressContexts> contexts;
  ssl::stream<tcp::socket> stream;
  tcp::socket inner;
  LiveConn live;
  LiveGuard guard;
  std::unique_ptr<char[]> from_client;
  std::unique_ptr<char[]> to_client;
  bool session_done = false;  // the HTTP session closed its end
  bool failed = false;        // a write to the client failed or timed out
};

// Client -> session: decrypted bytes into the socketpair. The client's EOF (or close_notify)
// becomes a half-close the session sees as EOF.
asio::awaitable<void> client_to_session(Terminated& t) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, n] = co_await t.stream.async_read_some(
        asio::buffer(t.from_client.get(), Worker::kClientBufferSize), tuple);
    if (ec || n == 0) {
      break;
    }
    t.worker.count_bytes(n, 0);
    auto [wec, wn] =
        co_await asio::async_write(t.inner, asio::buffer(t.from_client.get(), n), tuple);
    if (wec) {
      break;
    }
  }
  error_code ignored;
  t.inner.shutdown(tcp::socket::shutdown_send, ignored);
}

// Session -> client: the session's bytes, encrypted. Each write to the client must finish
// within timeouts.idle_ms. When the session closes its end, the other direction is stopped.
asio::awaitable<void> session_to_client(Terminated& t) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, n] = co_await t.inner.async_read_some(
        asio::buffer(t.to_client.get(), Worker::kClientBufferSize), tuple);
    if (ec || n == 0) {
      t.session_done = !t.live.killed;
      break;
    }
    t.live.arm(Clock::now(), t.worker.timeouts().idle);
    auto [wec, wn] =
        co_await asio::async_write(t.stream, asio::buffer(t.to_client.get(), n), tuple);
    t.live.disarm();
    if (wec) {
      t.failed = true;
      break;
    }
    t.worker.count_bytes(0, n);
  }
  error_code ignored;
  t.stream.next_layer().cancel(ignored);  // ends client_to_session's read
}

asio::awaitable<void> terminate(Worker& w, tcp::socket socket, std::uint16_t port,
                                std::shared_ptr<const tls::IngressContexts> contexts) {
  using namespace asio::experimental::awaitable_operators;
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  error_code ignored;
  const auto peer = socket.remote_endpoint(ignored);
  auto t = std::make_unique<Terminated>(w, std::move(socket), std::move(contexts));

  t->live.arm(Clock::now(), w.timeouts().request_head);
  auto [hec] = co_await t->stream.async_handshake(ssl::stream_base::server, tuple);
  t->live.disarm();
  if (hec) {
    w.metrics().tls_handshake_failed.Increment();
    spdlog::debug("proxy: https: handshake with {} failed: {}", peer.address().to_string(),
                  hec.message());
    co_return;
  }
  w.metrics().tls_terminated.Increment();
  if (SSL_session_reused(t->stream.native_handle()) == 1) {
    w.metrics().tls_resumed.Increment();
  }

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    w.metrics().local_resource_errors.Increment();
    spdlog::warn("proxy: https: socketpair failed: {}", std::strerror(errno));
    co_return;
  }
  tcp::socket session_end(w.io());
  t->inner.assign(tcp::v4(), fds[0], ignored);
  session_end.assign(tcp::v4(), fds[1], ignored);
  if (ignored) {
    ::close(fds[0]);
    ::close(fds[1]);
    co_return;
  }
  mesh::overlay::ProxiedAddresses client;
  client.src_ip = peer.address().to_string();
  client.src_port = peer.port();
  const auto local = t->stream.next_layer().local_endpoint(ignored);
  client.dst_ip = local.address().to_string();
  client.dst_port = port;
  start_https_inner_session(w, std::move(session_end), std::move(client));

  t->from_client = w.take_client_buffer();
  t->to_client = w.take_client_buffer();
  co_await (client_to_session(*t) && session_to_client(*t));

  if (t->session_done && !t->failed) {
    // close_notify, so the client can tell the end of the response from a cut connection.
    t->live.arm(Clock::now(), kShutdownWait);
    co_await t->stream.async_shutdown(tuple);
    t->live.disarm();
  }
  t->stream.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
  t->stream.next_layer().close(ignored);
  t->inner.close(ignored);
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
