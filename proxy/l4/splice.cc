#include "proxy/l4/splice.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace routemesh::proxy {

namespace {

constexpr std::size_t kSpliceChunk = 1 << 20;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

struct PipeGuard {
  Worker& w;
  std::optional<Pipe> pipe;
  ~PipeGuard() {
    if (pipe) {
      w.give_pipe(*pipe);
    }
  }
};

// Shared state of the two directions of one connection.
struct SpliceState {
  bool failed = false;
  LiveConn& conn;
  milliseconds idle;
  prometheus::Counter* bytes;
};

// One direction. Bytes are first copied through a worker buffer (one recv, one send: cheaper
// than splice's two calls for small messages); once a read fills the buffer the direction is
// a bulk transfer and switches to socket -> pipe -> socket for good (HAProxy's "splice-auto").
// Returns true when `from` ended with EOF and every byte reached `to` (then `to` got a FIN:
// half-close, RFC 9293 §3.6), false on error or cancellation (then the other direction is
// cancelled too).
asio::awaitable<bool> pump(SpliceState& st, Worker& w, tcp::socket& from, tcp::socket& to,
                           std::uint64_t& total) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  const int in = from.native_handle();
  const int out = to.native_handle();
  auto fail = [&st]() {
    st.failed = true;
    st.conn.cancel_io();
    return false;
  };
  auto moved = [&](std::size_t m) {
    total += m;
    st.conn.arm(Clock::now(), st.idle);
    if (st.bytes != nullptr) {
      st.bytes->Increment(static_cast<double>(m));
    }
  };
  auto half_close = [&to] {
    boost::system::error_code ignored;
    to.shutdown(tcp::socket::shutdown_send, ignored);
  };

  // send_all: every byte of [p, p + n) to `to`, waiting for room when the socket is full.
  auto send_all = [&](const char* p, std::size_t n) -> asio::awaitable<bool> {
    std::size_t sent = 0;
    while (sent < n) {
      const ssize_t m = ::send(out, p + sent, n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (m > 0) {
        sent += static_cast<std::size_t>(m);
      } else if (m < 0 && errno == EINTR) {
        continue;
      } else if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        auto [ec] = co_await to.async_wait(tcp::socket::wait_write, tuple);
        if (ec || st.failed || st.conn.expired) {
          co_return false;
        }
      } else {
        co_return false;
      }
    }
    co_return true;
  };

  // Copy phase. The wait for bytes is an asio read into a small buffer in this frame: asio
  // queues it on the socket's edge-triggered epoll registration with no syscall, where
  // async_wait re-arms it with an epoll_ctl each time (one per message each way, measured
  // with strace under wrk). What does not fit is read into a worker buffer, held only while
  // bytes are in hand, so an idle connection holds no more than `first`.
  std::array<char, 1024> first;
  // A socket handed over by the HTTP session (a tunnel) may hold an EOF that raised no edge of
  // its own after a short DrainBuffer read (proxy/drain_read.h): look once before waiting.
  bool look_first = true;
  PipeGuard guard{w, std::nullopt};  // taken once a read shows bulk data
  bool no_pipe = false;
  for (;;) {
    if (st.failed || st.conn.expired) {
      co_return fail();
    }
    std::size_t n = 0;
    if (look_first) {
      look_first = false;
      const ssize_t r = ::recv(in, first.data(), first.size(), MSG_DONTWAIT);
      if (r == 0) {
        half_close();
        co_return true;
      }
      if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        co_return fail();
      }
      n = r > 0 ? static_cast<std::size_t>(r) : 0;
    }
    if (n == 0) {
      auto [ec, got] = co_await from.async_read_some(asio::buffer(first), tuple);
      if (ec == asio::error::eof) {
        half_close();
        co_return true;
      }
      if (ec || st.failed || st.conn.expired) {
        co_return fail();
      }
      n = got;
    }
    const bool sent = co_await send_all(first.data(), n);
    if (!sent) {
      co_return fail();
    }
    moved(n);
    if (n < first.size()) {
      continue;  // a short read drained the socket: wait for more
    }
    // More may be waiting: one worker-buffer read. Coming back full, it is bulk data: splice
    // from now on.
    std::unique_ptr<char[]> buf = w.take_client_buffer();
    ssize_t r = 0;
    do {
      r = ::recv(in, buf.get(), Worker::kClientBufferSize, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      w.give_client_buffer(std::move(buf));
      continue;
    }
    if (r <= 0) {
      w.give_client_buffer(std::move(buf));
      if (r == 0) {
        half_close();
        co_return true;
      }
      co_return fail();
    }
    const bool ok = co_await send_all(buf.get(), static_cast<std::size_t>(r));
    w.give_client_buffer(std::move(buf));
    if (!ok) {
      co_return fail();
    }
    moved(static_cast<std::size_t>(r));
    if (static_cast<std::size_t>(r) == Worker::kClientBufferSize && !no_pipe) {
      guard.pipe = w.take_pipe();
      if (guard.pipe) {
        break;
      }
      // No pipe (descriptors exhausted): keep copying. Rare; this phase serves bulk data too.
      spdlog::debug("proxy: no pipe for splice ({}); copying", std::strerror(errno));
      no_pipe = true;
    }
  }

  Pipe& pipe = *guard.pipe;
  for (;;) {
    if (st.failed || st.conn.expired) {
      co_return fail();
    }
    bool eof = false;
    const ssize_t n = ::splice(in, nullptr, pipe.wr, nullptr, kSpliceChunk, kSpliceFlags);
    if (n > 0) {
      pipe.pending += static_cast<std::size_t>(n);
    } else if (n == 0) {
      eof = true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      // The pipe is always drained below before refilling, so EAGAIN means "no data".
      auto [ec] = co_await from.async_wait(tcp::socket::wait_read, tuple);
      if (ec) {
        co_return fail();
      }
      continue;
    } else {
      co_return fail();
    }
    while (pipe.pending > 0) {
      const ssize_t m = ::splice(pipe.rd, nullptr, out, nullptr, pipe.pending, kSpliceFlags);
      if (m > 0) {
        pipe.pending -= static_cast<std::size_t>(m);
        moved(static_cast<std::size_t>(m));
      } else if (m < 0 && errno == EINTR) {
        continue;
      } else if (m < 0 && errno == EAGAIN) {
        auto [ec] = co_await to.async_wait(tcp::socket::wait_write, tuple);
        if (ec || st.failed || st.conn.expired) {
          co_return fail();
        }
      } else {
        co_return fail();
      }
    }
    if (eof) {
      half_close();
      co_return true;
    }
  }
}

}  // namespace

asio::awaitable<SpliceResult> splice_both(Worker& w, LiveConn& conn, tcp::socket& a, tcp::socket& b,
                                          milliseconds idle, prometheus::Counter* bytes) {
  using namespace asio::experimental::awaitable_operators;
  SpliceResult result;
  // Non-blocking for our own recv/send/splice calls (asio's own reads work either way).
  boost::system::error_code ignored;
  a.non_blocking(true, ignored);
  b.non_blocking(true, ignored);
  SpliceState st{false, conn, idle, bytes};
  conn.arm(Clock::now(), idle);
  auto [ok1, ok2] = co_await (pump(st, w, a, b, result.a_to_b) && pump(st, w, b, a, result.b_to_a));
  result.error = !(ok1 && ok2);
  conn.disarm();
  co_return result;
}

asio::awaitable<SpliceExactResult> splice_exact(Worker& w, LiveConn& conn, tcp::socket& from,
                                                tcp::socket& to, std::uint64_t n,
                                                milliseconds idle) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  PipeGuard guard{w, w.take_pipe()};
  if (!guard.pipe) {
    co_return SpliceExactResult{asio::error::operation_not_supported, 0, false};
  }
  Pipe& pipe = *guard.pipe;
  boost::system::error_code ec;
  from.non_blocking(true, ec);
  to.non_blocking(true, ec);
  ec.clear();
  const int in = from.native_handle();
  const int out = to.native_handle();
  std::uint64_t moved = 0;
  std::uint64_t read = 0;
  bool read_side = false;
  conn.arm(Clock::now(), idle);  // the first wait's deadline starts with this step
  auto sys_error = [] {
    return boost::system::error_code(errno, boost::system::system_category());
  };
  while (moved < n) {
    if (pipe.pending == 0) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(n - read, kSpliceChunk));
      const ssize_t k = ::splice(in, nullptr, pipe.wr, nullptr, want, kSpliceFlags);
      if (k > 0) {
        pipe.pending += static_cast<std::size_t>(k);
        read += static_cast<std::uint64_t>(k);
      } else if (k == 0) {
        ec = asio::error::eof;
        read_side = true;
        break;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN) {
        auto [wec] = co_await from.async_wait(tcp::socket::wait_read, tuple);
        if (conn.expired || conn.killed) {
          ec = asio::error::timed_out;
          break;
        }
        if (wec) {
          ec = wec;
          read_side = true;
          break;
        }
        continue;
      } else {
        ec = sys_error();
        read_side = true;
        break;
      }
    }
    while (pipe.pending > 0) {
      const ssize_t m = ::splice(pipe.rd, nullptr, out, nullptr, pipe.pending, kSpliceFlags);
      if (m > 0) {
        pipe.pending -= static_cast<std::size_t>(m);
        moved += static_cast<std::uint64_t>(m);
        conn.arm(Clock::now(), idle);
      } else if (m < 0 && errno == EINTR) {
        continue;
      } else if (m < 0 && errno == EAGAIN) {
        auto [wec] = co_await to.async_wait(tcp::socket::wait_write, tuple);
        if (conn.expired || conn.killed) {
          ec = asio::error::timed_out;
          break;
        }
        if (wec) {
          ec = wec;
          break;
        }
      } else {
        ec = m == 0 ? asio::error::broken_pipe : sys_error();
        break;
      }
    }
    if (ec) {
      break;
    }
  }
  co_return SpliceExactResult{ec, moved, read_side};
}

}  // namespace routemesh::proxy
