#include "tls/socket.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>

namespace routemesh::tls {

namespace {

using error_code = boost::system::error_code;

// The largest TLS record on the wire: 16 KiB of plaintext plus TLS 1.2's worst-case expansion
// and the header. Each ring holds at least one, so OpenSSL never waits for a record that
// cannot fit.
constexpr std::size_t kMaxRecord = 16384 + 2048 + 5;

}  // namespace

TlsSocket::TlsSocket(tcp::socket socket, asio::ssl::context& ctx, std::size_t buffer_bytes)
    : socket_(std::move(socket)), flushed_(socket_.get_executor()) {
  const std::size_t size = std::max(buffer_bytes, kMaxRecord);
  BIO* internal = nullptr;
  ssl_ = SSL_new(ctx.native_handle());
  if (ssl_ == nullptr) {
    return;
  }
  // The first size is what OpenSSL may write before we flush, the second what we may read
  // from the socket before OpenSSL decrypts.
  if (BIO_new_bio_pair(&internal, size, &network_, size) != 1) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    network_ = nullptr;
    return;
  }
  SSL_set_bio(ssl_, internal, internal);  // the SSL owns `internal` now
  // Partial writes let a large write go out record by record as the ring fills.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
}

TlsSocket::~TlsSocket() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
  }
  if (network_ != nullptr) {
    BIO_free(network_);
  }
}

error_code TlsSocket::error_of(int ret) const {
  const int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_ZERO_RETURN) {
    return asio::error::eof;
  }
  if (e == SSL_ERROR_SSL) {
    const unsigned long code = ERR_get_error();
    if (code != 0) {
      return error_code(static_cast<int>(code), asio::error::get_ssl_category());
    }
  }
  if (e == SSL_ERROR_SYSCALL) {
    return asio::ssl::error::stream_truncated;
  }
  return error_code(asio::error::no_protocol_option);
}

asio::awaitable<error_code> TlsSocket::flush() {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  while (flushing_) {
    flushed_.expires_at(asio::steady_timer::time_point::max());
    co_await flushed_.async_wait(tuple);  // cancelled by the flush that ends
  }
  flushing_ = true;
  error_code ec;
  for (;;) {
    char* data = nullptr;
    const int pending = BIO_nread0(network_, &data);
    if (pending <= 0) {
      break;
    }
    if (stop_ != nullptr && *stop_) {
      ec = asio::error::operation_aborted;
      break;
    }
    auto [wec, n] = co_await asio::async_write(
        socket_, asio::buffer(data, static_cast<std::size_t>(pending)), tuple);
    if (wec) {
      peer_reset_ =
          peer_reset_ || wec == asio::error::connection_reset || wec == asio::error::broken_pipe;
      ec = wec;
      break;
    }
    BIO_nread(network_, &data, pending);
  }
  flushing_ = false;
  flushed_.cancel();
  co_return ec;
}

asio::awaitable<error_code> TlsSocket::fill() {
  char* space = nullptr;
  const int room = BIO_nwrite0(network_, &space);
  if (room <= 0) {
    co_return error_code(asio::error::no_buffer_space);  // cannot happen: see kMaxRecord
  }
  if (stop_ != nullptr && *stop_) {
    co_return error_code(asio::error::operation_aborted);
  }
  auto [ec, n] = co_await socket_.async_read_some(
      asio::buffer(space, static_cast<std::size_t>(room)), asio::as_tuple(asio::use_awaitable));
  if (ec == asio::error::eof) {
    co_return asio::ssl::error::stream_truncated;  // TCP ended without close_notify
  }
  if (ec) {
    peer_reset_ = peer_reset_ || ec == asio::error::connection_reset;
    co_return ec;
  }
  BIO_nwrite(network_, &space, static_cast<int>(n));
  co_return error_code{};
}

asio::awaitable<error_code> TlsSocket::handshake(bool server) {
  if (ssl_ == nullptr) {
    co_return error_code(asio::error::no_memory);
  }
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    const int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    const error_code failed = (r == 1 || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                  ? error_code{}
                                  : error_of(r);
    // Whatever OpenSSL wrote goes out first: the next flight, or the alert of a failure.
    const error_code fec = co_await flush();
    if (r == 1 || failed) {
      co_return failed ? failed : fec;
    }
    if (fec) {
      co_return fec;
    }
    if (e == SSL_ERROR_WANT_READ) {
      if (const error_code rec = co_await fill(); rec) {
        co_return rec;
      }
    }
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> TlsSocket::read_some(
    asio::mutable_buffer buf) {
  if (ssl_ == nullptr) {
    co_return std::tuple{error_code(asio::error::no_memory), std::size_t{0}};
  }
  const int want = static_cast<int>(std::min<std::size_t>(buf.size(), INT_MAX));
  for (;;) {
    ERR_clear_error();
    int r = SSL_read(ssl_, buf.data(), want);
    // SSL_read gives one record at a time: take every whole record that is here already, so
    // one read moves up to `buf` (a 1 MiB body then costs a write per 64 KiB, not per 16);
    // a small request, with nothing behind it, costs no second call.
    // Whatever stops the extra reads (no more input, close_notify, an error) is what the
    // next call sees first.
    while (r > 0 && r < want && has_input()) {
      const int more = SSL_read(ssl_, static_cast<char*>(buf.data()) + r, want - r);
      if (more <= 0) {
        ERR_clear_error();
        break;
      }
      r += more;
    }
    const int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    const error_code failed = (r > 0 || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                  ? error_code{}
                                  : error_of(r);
    if (BIO_ctrl_pending(network_) > 0) {
      // Reading made output (a key update's answer, an alert): send it.
      if (const error_code fec = co_await flush(); fec && !failed && r <= 0) {
        co_return std::tuple{fec, std::size_t{0}};
      }
    }
    if (r > 0) {
      co_return std::tuple{error_code{}, static_cast<std::size_t>(r)};
    }
    if (failed) {
      co_return std::tuple{failed, std::size_t{0}};
    }
    if (e == SSL_ERROR_WANT_READ) {
      if (const error_code rec = co_await fill(); rec) {
        co_return std::tuple{rec, std::size_t{0}};
      }
    }
  }
}

bool TlsSocket::encrypt(const char*& p, std::size_t& left, error_code& failed) {
  while (left > 0) {
    ERR_clear_error();
    const int r = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(left, INT_MAX)));
    if (r > 0) {
      p += r;
      left -= static_cast<std::size_t>(r);
      written_since_update_ += static_cast<std::uint64_t>(r);
      continue;
    }
    if (SSL_get_error(ssl_, r) != SSL_ERROR_WANT_WRITE) {
      failed = error_of(r);
      return false;
    }
    return true;  // the ring is full
  }
  return true;
}

asio::awaitable<error_code> TlsSocket::write(asio::const_buffer data) {
  auto [ec, n] = co_await write(data, asio::const_buffer());
  co_return ec;
}

asio::awaitable<std::tuple<error_code, std::size_t>> TlsSocket::write(asio::const_buffer first,
                                                                      asio::const_buffer second) {
  if (ssl_ == nullptr) {
    co_return std::tuple{error_code(asio::error::no_memory), std::size_t{0}};
  }
  if (first.size() + second.size() <= kCoalesceBytes && first.size() > 0 && second.size() > 0) {
    coalesced_.assign(static_cast<const char*>(first.data()), first.size());
    coalesced_.append(static_cast<const char*>(second.data()), second.size());
    first = asio::buffer(coalesced_);
    second = asio::const_buffer();
  }
  std::array<asio::const_buffer, 2> parts{first, second};
  std::size_t taken = 0;
  for (asio::const_buffer& part : parts) {
    const char* p = static_cast<const char*>(part.data());
    std::size_t left = part.size();
    while (left > 0) {
      error_code failed;
      const std::size_t before = left;
      const bool ok = encrypt(p, left, failed);
      taken += before - left;
      if (!ok) {
        co_await flush();  // the alert, if OpenSSL wrote one
        co_return std::tuple{failed, taken};
      }
      if (left > 0) {  // the ring is full: send it
        if (const error_code fec = co_await flush(); fec) {
          co_return std::tuple{fec, taken};
        }
      }
    }
  }
  const error_code fec = co_await flush();
  co_return std::tuple{fec, taken};
}

bool TlsSocket::has_input() const {
  return ssl_ != nullptr &&
         (SSL_has_pending(ssl_) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl_)) > 0);
}

long TlsSocket::fill_now() {
  char* space = nullptr;
  const int room = BIO_nwrite0(network_, &space);
  if (room <= 0) {
    return 0;
  }
  const ssize_t n =
      ::recv(socket_.native_handle(), space, static_cast<std::size_t>(room), MSG_DONTWAIT);
  if (n > 0) {
    BIO_nwrite(network_, &space, static_cast<int>(n));
    return static_cast<long>(n);
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return 0;
  }
  peer_reset_ = peer_reset_ || (n < 0 && errno == ECONNRESET);
  return -1;
}

bool TlsSocket::update_keys() {
  if (ssl_ == nullptr || SSL_version(ssl_) < TLS1_3_VERSION) {
    return false;
  }
  ERR_clear_error();
  if (SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED) != 1) {
    return false;
  }
  written_since_update_ = 0;
  return true;
}

asio::awaitable<error_code> TlsSocket::close_write() {
  if (ssl_ == nullptr) {
    co_return error_code(asio::error::no_memory);
  }
  if (SSL_version(ssl_) != TLS1_3_VERSION) {
    // Before 1.3 a close_notify asks the peer to close at once: no half-close.
    co_return error_code(asio::error::operation_not_supported);
  }
  if ((SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) {
    co_return error_code{};
  }
  auto [ec, both] = co_await write_close_notify();
  co_return ec;
}

asio::awaitable<std::tuple<error_code, bool>> TlsSocket::write_close_notify() {
  ERR_clear_error();
  const int r = SSL_shutdown(ssl_);  // 0: ours is written, theirs not seen yet; 1: both
  const error_code failed = r < 0 ? error_of(r) : error_code{};
  const error_code fec = co_await flush();
  co_return std::tuple{failed ? failed : fec, r == 1};
}

asio::awaitable<error_code> TlsSocket::shutdown() {
  if (ssl_ == nullptr) {
    co_return error_code(asio::error::no_memory);
  }
  if (peer_reset_) {
    co_return error_code(asio::error::connection_reset);
  }
  const int state = SSL_get_shutdown(ssl_);
  if ((state & SSL_SENT_SHUTDOWN) == 0) {
    auto [ec, both] = co_await write_close_notify();
    if (ec || both) {
      co_return ec;
    }
  } else if ((state & SSL_RECEIVED_SHUTDOWN) != 0) {
    co_return error_code{};  // close_write() sent ours, and theirs came already
  }
  // Read, discarding what the peer still sends, up to its close_notify.
  char scratch[512];
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, scratch, sizeof scratch);
    if (n > 0) {
      continue;
    }
    if (SSL_get_error(ssl_, n) != SSL_ERROR_WANT_READ) {
      const error_code ec = error_of(n);
      co_return ec == asio::error::eof ? error_code{} : ec;
    }
    if (const error_code rec = co_await fill(); rec) {
      co_return rec;
    }
  }
}

}  // namespace routemesh::tls
