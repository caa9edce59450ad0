#include "proxy/tls_bridge.h"

#include "base/spawn.h"
#include "mesh/route_table.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <poll.h>
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
         bool b, std::optional<std::uint64_t> r, std::optional<milliseconds> ri)
      : worker(w),
        rekey(r),
        relay_idle(ri),
        keep(std::move(k)),
        stream(std::move(s)),
        inner(std::move(in)),
        guard(w, live),
        bulk(b),
        size(b ? Worker::kUpstreamBufferSize : Worker::kClientBufferSize) {
    live.down = &stream->next_layer();
    live.up = &inner;
    if (rekey) {  // an overlay connection: a revocation of its peer ends it
      live.overlay_ssl = stream->native_handle();
    }
    stream->stop_when(&live.expired);
    epoch = overlay_key_epoch(w);
    from_tls = bulk ? w.take_buffer() : w.take_client_buffer();
    to_tls = bulk ? w.take_buffer() : w.take_client_buffer();
    touch();
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

  // After progress either way: a relay's idle deadline starts again; a bridge has none (its
  // caller's end has its own), only the deadline of a write in progress.
  void touch() {
    if (relay_idle) {
      live.arm(Clock::now(), *relay_idle);
    } else {
      live.disarm();
    }
  }

  Worker& worker;
  std::optional<std::uint64_t> rekey;      // see bridge_tls
  std::optional<milliseconds> relay_idle;  // relay_tls's idle timeout; none for a bridge
  std::uint64_t epoch = 0;                 // the key epoch of the connection's current keys
  std::shared_ptr<const void> keep;        // outlives `stream` (declared first)
  std::unique_ptr<TlsStream> stream;
  tcp::socket inner;
  LiveConn live;
  LiveGuard guard;
  bool bulk;
  std::size_t size;
  std::unique_ptr<char[]> from_tls;
  std::unique_ptr<char[]> to_tls;
  bool inner_closed = false;  // the inner side ended (EOF or an error, not our own cancel)
  bool failed = false;        // a write to the TLS peer failed or timed out
  bool tls_done = false;      // tls_to_inner is over (the peer's close_notify, EOF or an error)
  bool wrote_close = false;   // inner_to_tls sent close_notify at the inner side's EOF
  // Both directions must stop now: tls_to_inner must not wait on the TLS socket again.
  // Cancelling its read is not enough: when the read had already completed (the peer's bytes
  // and the reason to stop came in the same turn), the cancel finds nothing to cancel,
  // tls_to_inner writes what it read, and its next read would wait for the peer, which may be
  // waiting for an answer that will never come.
  bool ended = false;
};

// True when the other end of `s` is gone for good: closed, not just shut for writing (a
// socketpair's caller that closed its end; a TCP socket reports it only once both ways are
// shut, so for a task's socket this is false after its FIN).
bool hung_up(tcp::socket& s) {
  pollfd p{s.native_handle(), POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

asio::awaitable<void> tls_to_inner(Bridge& b) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, n] = co_await b.stream->read_some(asio::buffer(b.from_tls.get(), b.size));
    if (ec || n == 0 || b.ended) {
      break;
    }
    b.touch();
    auto [wec, wn] = co_await asio::async_write(b.inner, asio::buffer(b.from_tls.get(), n), tuple);
    if (wec || b.ended) {
      break;
    }
  }
  b.tls_done = true;
  error_code ignored;
  b.inner.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> inner_to_tls(Bridge& b) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  bool eof = false;
  for (;;) {
    auto [ec, n] = co_await b.inner.async_read_some(asio::buffer(b.to_tls.get(), b.size), tuple);
    if (ec || n == 0) {
      b.inner_closed = !b.live.killed;
      eof = ec == asio::error::eof && !b.live.killed && !b.live.expired;
      break;
    }
    if (b.rekey) {
      update_overlay_keys(b.worker, *b.stream, b.epoch, *b.rekey);
    }
    if (!b.relay_idle) {
      b.live.arm(Clock::now(), b.worker.timeouts().idle);
    }
    const error_code wec = co_await b.stream->write(asio::buffer(b.to_tls.get(), n));
    b.touch();
    if (wec) {
      b.failed = true;
      break;
    }
  }
  // The inner side's EOF is a half-close, as TCP's FIN is: close_notify ends our writing and
  // the peer may go on sending (TLS 1.3), until its own close_notify ends tls_to_inner. Not
  // when nothing could take the peer's bytes any more: the other direction is over, or the
  // caller closed its end of a socketpair altogether.
  if (eof && !b.tls_done && !hung_up(b.inner)) {
    if (!b.relay_idle) {
      b.live.arm(Clock::now(), b.worker.timeouts().idle);
    }
    const error_code wec = co_await b.stream->close_write();
    if (!b.relay_idle) {
      // From here on only the peer's bytes can end the pump, and a caller that closes its end
      // now goes unseen until they come: a bridge half-closed this way ends, as a relay does,
      // once nothing moved for timeouts.l4_idle_ms.
      b.relay_idle = b.worker.timeouts().l4_idle;
    }
    b.touch();
    if (!wec) {
      b.wrote_close = true;
      co_return;
    }
    b.failed = wec != asio::error::operation_not_supported;  // before TLS 1.3: end both
  }
  // Ends tls_to_inner's read, and (the flag also stops TLS socket waits) any read it would
  // start after a completion that the cancel came too late for.
  b.ended = true;
  b.stream->stop_when(&b.ended);
  error_code ignored;
  b.stream->next_layer().cancel(ignored);
}

asio::awaitable<void> pump(std::unique_ptr<Bridge> b) {
  using namespace asio::experimental::awaitable_operators;
  co_await (tls_to_inner(*b) && inner_to_tls(*b));
  b->stream->stop_when(&b->live.expired);
  if (b->inner_closed && !b->failed && !b->wrote_close) {
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

std::uint64_t overlay_key_epoch(Worker& w) {
  const auto table = w.table();
  return table ? table->overlay_key_epoch : 0;
}

void update_overlay_keys(Worker& w, TlsStream& s, std::uint64_t& epoch, std::uint64_t rekey_bytes) {
  const std::uint64_t now = overlay_key_epoch(w);
  const char* reason = nullptr;
  if (now > epoch) {
    reason = "epoch";
  } else if (rekey_bytes != 0 && s.written_since_update() >= rekey_bytes) {
    reason = "bytes";
  }
  if (reason != nullptr && s.update_keys()) {
    epoch = now;
    w.metrics().overlay_key_updates.Add({{"reason", reason}}).Increment();
  }
}

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
  auto b = std::make_unique<Bridge>(w, std::move(stream), std::move(keep), std::move(ours), bulk,
                                    rekey, std::nullopt);
  asio::co_spawn(w.io(), pump(std::move(b)),
                 base::log_and_count("proxy: tls bridge", &w.metrics().session_errors));
  return theirs;
}

asio::awaitable<void> relay_tls(Worker& w, std::unique_ptr<TlsStream>&& stream,
                                const std::shared_ptr<const void>& keep, tcp::socket&& plain,
                                milliseconds idle, std::optional<std::uint64_t> rekey,
                                const std::string* overlay_peer) {
  auto b =
      std::make_unique<Bridge>(w, std::move(stream), keep, std::move(plain), true, rekey, idle);
  b->live.overlay_peer = overlay_peer;
  co_await pump(std::move(b));
}

}  // namespace routemesh::proxy
