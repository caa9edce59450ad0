#pragma once
// A TLS connection over a TCP socket, driven by hand instead of by asio::ssl::stream, so that
// the socket is read and written in large blocks: OpenSSL reads from and writes to the two
// ends of a BIO pair, and the socket moves whatever the pair holds in one call. asio's stream
// moves one TLS record (16 KiB at most) per socket call; an overlay stream carrying a 1 MiB
// response then costs 64 reads and 64 writes each way instead of a handful.
//
// The socket's bytes go straight into and out of the pair's ring buffers (BIO_nwrite0 /
// BIO_nread0), so the only copies are OpenSSL's own. One read and one write may run at the
// same time (the bridge's two pumps); output that a read produces (an alert, a key update
// answer) and a write's output are sent by one flush at a time. All on one worker thread, like
// every connection of a proxy thread.
//
// Errors: OpenSSL's as asio::error::get_ssl_category() codes; the peer's close_notify reads as
// asio::error::eof, a TCP end without it as asio::ssl::error::stream_truncated.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <openssl/ssl.h>

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

namespace routemesh::tls {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Ring sizes: HTTPS connections are many and carry small requests, so one record each way;
// overlay streams are few and carry whole responses.
constexpr std::size_t kTlsRecordRing = 0;  // rounded up to one record
constexpr std::size_t kTlsBulkRing = 128 * 1024;

class TlsSocket {
 public:
  // `buffer_bytes`: the size of each direction's ring (at least one TLS record, which the
  // constructor enforces): what one socket call may move at most.
  TlsSocket(tcp::socket socket, asio::ssl::context& ctx, std::size_t buffer_bytes);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  tcp::socket& next_layer() { return socket_; }
  SSL* native_handle() { return ssl_; }
  // False when OpenSSL could not make the connection's objects (out of memory): every
  // operation then fails at once.
  bool valid() const { return ssl_ != nullptr; }

  asio::awaitable<boost::system::error_code> handshake(bool server);
  // Decrypts into `buf`: at least one byte, or an error (asio::error::eof on close_notify).
  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      asio::mutable_buffer buf);
  // Encrypts and sends all of `data`.
  asio::awaitable<boost::system::error_code> write(asio::const_buffer data);
  // Encrypts and sends all of `first` then `second`, and answers how many plaintext bytes were
  // taken (all of both unless an error is returned). Together they make one record when they
  // fit in kCoalesceBytes (an HTTP head and a small body), copied into a buffer of this
  // connection's; larger ones are encrypted where they are.
  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write(
      asio::const_buffer first, asio::const_buffer second);
  static constexpr std::size_t kCoalesceBytes = 4096;

  // Whether a read_some() could make progress without the socket: decrypted bytes, or
  // ciphertext that came with earlier reads and is not decrypted yet.
  bool has_input() const;
  // Moves what the socket holds now into the read ring, without waiting: the bytes moved, 0
  // when nothing is there (or the ring is full), -1 when the peer closed or the socket failed.
  long fill_now();
  // Sends close_notify and waits for the peer's (the caller bounds the wait).
  asio::awaitable<boost::system::error_code> shutdown();
  // Sends close_notify and returns: in TLS 1.3 that ends only this side's writing, like a TCP
  // FIN, and the peer may go on sending (read_some still works). A later shutdown() sends no
  // second close_notify and only waits for the peer's. Before TLS 1.3 a close_notify means
  // "close now": asio::error::operation_not_supported, nothing sent.
  asio::awaitable<boost::system::error_code> close_write();
  // TLS 1.3 KeyUpdate, asking the peer to update its keys too: the next write goes out under
  // new keys. False when the connection cannot (not TLS 1.3, not connected).
  bool update_keys();
  // Plaintext bytes written since the handshake or the last update_keys().
  std::uint64_t written_since_update() const { return written_since_update_; }

  // The owner's deadline flag (the proxy's LiveConn::expired), or null. While it is true, no
  // socket wait starts: the operation in progress fails with asio::error::operation_aborted.
  // A deadline cancels the socket's pending wait once; one operation here may wait on the
  // socket several times (a record that arrives in parts), and a cancel that fell between two
  // waits would otherwise be lost.
  void stop_when(const bool* flag) { stop_ = flag; }

 private:
  // Sends everything OpenSSL has written, one flush at a time.
  asio::awaitable<boost::system::error_code> flush();
  // Writes and sends our close_notify: the error, and whether the peer's had come already.
  asio::awaitable<std::tuple<boost::system::error_code, bool>> write_close_notify();
  // Reads once from the socket into the pair.
  asio::awaitable<boost::system::error_code> fill();
  // The error for a failed SSL_* call that returned `ret`.
  boost::system::error_code error_of(int ret) const;
  // Encrypts from `p` into the write ring until all `left` bytes are in or the ring is full
  // (true, p and left advanced), or fails (false, `failed` set).
  bool encrypt(const char*& p, std::size_t& left, boost::system::error_code& failed);

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  BIO* network_ = nullptr;  // our end of the pair; OpenSSL holds the other
  bool flushing_ = false;
  const bool* stop_ = nullptr;  // see stop_when
  std::uint64_t written_since_update_ = 0;
  // The peer reset the connection (a read or write said so): shutdown() sends nothing then, as
  // no close_notify can reach it.
  bool peer_reset_ = false;
  asio::steady_timer flushed_;  // waiters for another flush to end (cancelled when it does)
  std::string coalesced_;       // write(first, second)'s copy when both are small
};

}  // namespace routemesh::tls
