#pragma once
// Looking at a connection's first bytes without consuming them: the HTTPS port reads the
// ClientHello this way (the handshake then reads it again), and every port reads a load
// balancer's PROXY header this way so that it takes exactly the header and nothing after it.

#include "proxy/worker.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace routemesh::proxy {

// Why a peek stopped before its caller had enough.
enum class PeekEnd {
  enough,   // `enough` said yes, or the buffer is full
  timeout,  // nothing sufficient within timeouts.request_head
  closed,   // the peer closed or reset first
};

// Peeks at the socket, without consuming a byte, until `enough(bytes)` says what is there is
// enough to decide on (or `buffer` is full), within timeouts.request_head (armed on `conn`).
// Readability is re-armed with SO_RCVLOWAT one byte above what is there, so a wait does not
// wake again for bytes already seen.
template <class Enough>
boost::asio::awaitable<PeekEnd> peek_until(Worker& w, LiveConn& conn,
                                           boost::asio::ip::tcp::socket& socket,
                                           std::span<char> buffer, Enough enough) {
  const auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  PeekEnd end = PeekEnd::enough;
  conn.arm(Clock::now(), w.timeouts().request_head);
  const int fd = socket.native_handle();
  bool lowat_raised = false;
  // The bytes are usually there by the time the connection is accepted: look before waiting
  // (a wait costs the reactor a re-arm and a wake-up).
  bool look_first = true;
  for (;;) {
    if (!std::exchange(look_first, false)) {
      auto [ec] = co_await socket.async_wait(boost::asio::ip::tcp::socket::wait_read, tuple);
      if (ec || conn.expired) {
        end = conn.expired ? PeekEnd::timeout : PeekEnd::closed;
        break;
      }
    }
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n <= 0) {
      end = PeekEnd::closed;
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
  co_return end;
}

}  // namespace routemesh::proxy
