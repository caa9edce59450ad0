#include "proxy/tls_bridge.h"

#include "base/spawn.h"
#include "mesh/route_table.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace routemesh::proxy {

namespace {

using error_code = boost::system::error_code;

// How long the peer has to answer our close_notify.
constexpr milliseconds kShutdownWait{1'000};

struct Bridge {
  Bridge(Worker& w, std::unique_ptr<TlsStream> s, std::shared_ptr<const void> k, tcp::socket in,
         bool b, std::optional<std::uint64_t> r)
      : worker(w),
        rekey(r),
        keep(std::move(k)),
        stream(std::move(s)),
        inner(std::move(in)),
        guard(w, live),
        bulk(b),
        size(b ? Worker::kUpstreamBufferSize : Worker::kClientBufferSize) {
    live.down = &stream->next_layer();
    live.up = &inner;
    epoch = current_epoch(w);
    from_tls = bulk ? w.take_buffer() : w.take_client_buffer();
    to_tls = bulk ? w.take_buffer() : w.take_client_buffer();
  }
  ~Bridge() {
    for (auto* b : {&from_tls, &to_tls}) {
      if (bulk) {
        worker.give_buffer(std::move(*b));
      } else {
        worker.give_client_buffer(std::move(*b));
      }
    }
  }
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  static std::uint64_t current_epoch(Worker& w) {
    const auto table = w.table();
    return table ? table->overlay_key_epoch : 0;
  }

  Worker& worker;
  std::optional<std::uint64_t> rekey;  // see bridge_tls
  std::uint64_t epoch = 0;             // the key epoch of the connection's current keys
  std::shared_ptr<const void> keep;    // outlives `stream` (declared first)
  std::unique_ptr<TlsStream> stream;
  tcp::socket inner;
  LiveConn live;
  LiveGuard guard;
  bool bulk;
  std::size_t size;
  std::unique_ptr<char[]> from_tls;
  std::unique_ptr<char[]> to_tls;
  bool inner_closed = false;  // the caller closed its end
  bool failed = false;        // a write to the TLS peer failed or timed out
};

asio::awaitable<void> tls_to_inner(Bridge& b) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, n] = co_await b.stream->read_some(asio::buffer(b.from_tls.get(), b.size));
    if (ec || n == 0) {
      break;
    }
    auto [wec, wn] = co_await asio::async_write(b.inner, asio::buffer(b.from_tls.get(), n), tuple);
    if (wec) {
      break;
    }
  }
  error_code ignored;
  b.inner.shutdown(tcp::socket::shutdown_send, ignored);
}

// Before a write on an overlay connection: new keys when the cluster's epoch rose or enough
// was sent under the current ones.
void maybe_update_keys(Bridge& b) {
  const std::uint64_t epoch = Bridge::current_epoch(b.worker);
  const char* reason = nullptr;
  if (epoch > b.epoch) {
    reason = "epoch";
  } else if (*b.rekey != 0 && b.stream->written_since_update() >= *b.rekey) {
    reason = "bytes";
  }
  if (reason != nullptr && b.stream->update_keys()) {
    b.epoch = epoch;
    b.worker.metrics().overlay_key_updates.Add({{"reason", reason}}).Increment();
  }
}

asio::awaitable<void> inner_to_tls(Bridge& b) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, n] = co_await b.inner.async_read_some(asio::buffer(b.to_tls.get(), b.size), tuple);
    if (ec || n == 0) {
      b.inner_closed = !b.live.killed;
      break;
    }
    if (b.rekey) {
      maybe_update_keys(b);
    }
    b.live.arm(Clock::now(), b.worker.timeouts().idle);
    const error_code wec = co_await b.stream->write(asio::buffer(b.to_tls.get(), n));
    b.live.disarm();
    if (wec) {
      b.failed = true;
      break;
    }
  }
  error_code ignored;
  b.stream->next_layer().cancel(ignored);  // ends tls_to_inner's read
}

asio::awaitable<void> pump(std::unique_ptr<Bridge> b) {
  using namespace asio::experimental::awaitable_operators;
  co_await (tls_to_inner(*b) && inner_to_tls(*b));
  if (b->inner_closed && !b->failed) {
    // close_notify, so the peer can tell the end of the stream from a cut connection.
    b->live.arm(Clock::now(), kShutdownWait);
    co_await b->stream->shutdown();
    b->live.disarm();
  }
  error_code ignored;
  b->stream->next_layer().shutdown(tcp::socket::shutdown_both, ignored);
  b->stream->next_layer().close(ignored);
  b->inner.close(ignored);
}

}  // namespace

boost::system::result<tcp::socket> bridge_tls(Worker& w, std::unique_ptr<TlsStream> stream,
                                              std::shared_ptr<const void> keep, bool bulk,
                                              std::optional<std::uint64_t> rekey) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    const error_code ec(errno, boost::system::system_category());
    w.metrics().local_resource_errors.Increment();
    spdlog::warn("proxy: socketpair for a TLS connection failed: {}", ec.message());
    error_code ignored;
    stream->next_layer().close(ignored);
    return ec;
  }
  tcp::socket ours(w.io());
  tcp::socket theirs(w.io());
  error_code ec;
  ours.assign(tcp::v4(), fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
  } else {
    theirs.assign(tcp::v4(), fds[1], ec);
    if (ec) {
      ::close(fds[1]);  // fds[0] is `ours`'s now
    }
  }
  if (ec) {
    error_code ignored;
    stream->next_layer().close(ignored);
    return ec;
  }
  auto b =
      std::make_unique<Bridge>(w, std::move(stream), std::move(keep), std::move(ours), bulk, rekey);
  asio::co_spawn(w.io(), pump(std::move(b)),
                 base::log_and_count("proxy: tls bridge", &w.metrics().session_errors));
  return theirs;
}

}  // namespace routemesh::proxy
