#pragma once
// Per-proxy-thread keep-alive pool of upstream connections, keyed by endpoint ("ip:port").
// Used only from its worker's thread; no locks.
//
// Buckets are stable objects: a session holds a Bucket* (and a `users` count on it) for the
// duration of one request even if a new table arrives meanwhile. A bucket whose endpoint left
// the table is marked orphaned, its idle connections are closed, and it is freed by sweep()
// once no session uses it.
//
// An idle connection is watched: while it sits in a bucket a one-byte MSG_PEEK read is pending
// on it, and any byte, EOF or error closes it and removes it from the bucket at once (a
// backend's late bytes are never a response to a later request). Each Idle has an id the
// wait's handler looks up, and a bucket with waits pending is not freed, so a handler that
// runs after its connection was taken, swept or dropped finds nothing and returns.
//
// A peeking read rather than async_wait: asio re-arms the descriptor with epoll_ctl for every
// async_wait (it cannot tell whether readiness was already reported), one syscall per request
// on a busy keep-alive pool; a read that was just drained by the response is queued without
// one, and the next byte or EOF wakes it like any read.

#include "mesh/route_table.h"
#include "tls/socket.h"

#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace routemesh::proxy {

// A connection to an upstream: a TCP socket, or mutual TLS over one (an encrypted overlay
// stream to a task on another node). With `tls` set, `socket` is unused and every byte goes
// through `tls`, whose TCP socket raw() names (for waits, deadlines and peeks). The overlay
// listener holds its accepted connections in one too.
struct UpstreamConn {
  using tcp = boost::asio::ip::tcp;

  explicit UpstreamConn(tcp::socket s) : socket(std::move(s)) {}
  UpstreamConn(UpstreamConn&&) = default;
  // The TLS stream goes first, while the context it was made with is still held.
  UpstreamConn& operator=(UpstreamConn&& o) noexcept {
    tls = std::move(o.tls);
    keep = std::move(o.keep);
    socket = std::move(o.socket);
    key_epoch = o.key_epoch;
    rekey_bytes = o.rekey_bytes;
    return *this;
  }

  tcp::socket& raw() { return tls ? tls->next_layer() : socket; }
  bool is_open() const { return tls ? tls->next_layer().is_open() : socket.is_open(); }
  // Closes the TCP connection (no close_notify) and forgets the TLS stream.
  void close() {
    boost::system::error_code ignored;
    socket.close(ignored);
    tls.reset();
    keep.reset();
  }

  tcp::socket socket;
  std::shared_ptr<const void> keep;  // what `tls` was made with (its context)
  std::unique_ptr<tls::TlsSocket> tls;
  // With `tls`: the cluster's overlay key epoch its keys were made under, and how many bytes
  // it may send under one set of keys (0: no limit) (tls_bridge.h, update_overlay_keys).
  std::uint64_t key_epoch = 0;
  std::uint64_t rekey_bytes = 0;
};

class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  using tcp = boost::asio::ip::tcp;

  struct Idle {
    UpstreamConn conn;
    Clock::time_point since;
    std::uint64_t id = 0;  // unique within the pool; what the readability wait looks up
  };

  // Why an idle connection was closed (routemesh_proxy_upstream_pool_closed_total{reason}).
  enum class CloseReason : std::uint8_t {
    stray_bytes,   // the upstream sent bytes while the connection was idle
    eof,           // the upstream closed it
    error,         // a socket error (reset)
    idle_timeout,  // unused for timeouts.upstream_idle_ms
    full,          // returned to a bucket at limits.max_idle_upstream_per_endpoint
    orphaned,      // its endpoint left the table, or moved
    stale,         // a sibling taken from the same bucket had died unseen (drop_stale)
    revoked,       // an overlay stream whose peer's certificate was revoked meanwhile
  };
  static constexpr std::size_t kCloseReasons = 8;
  static constexpr std::array<const char*, kCloseReasons> kCloseReasonNames{
      "stray_bytes", "eof", "error", "idle_timeout", "full", "orphaned", "stale", "revoked"};

  struct Bucket {
    std::string key;
    tcp::endpoint endpoint;
    // A task on another node: connections are overlay streams to that node's overlay
    // listener, each opened with a preamble naming the task and port.
    std::optional<tcp::endpoint> via;
    std::string task_id;
    std::vector<Idle> idle;  // most recently used last (LIFO keeps the hottest connections)
    std::uint32_t users = 0;
    std::uint32_t waits = 0;  // readability waits not yet completed (their handlers use this)
    bool orphaned = false;
  };

  UpstreamPool(std::uint32_t max_idle_per_endpoint, std::chrono::milliseconds idle_timeout);
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // New limits (a reload): applied to connections returned or swept from now on.
  void set_limits(std::uint32_t max_idle_per_endpoint, std::chrono::milliseconds idle_timeout) {
    max_idle_ = max_idle_per_endpoint;
    idle_timeout_ = idle_timeout;
  }

  // Rebuilds the [cluster][endpoint] -> Bucket index for a new table (worker thread).
  void on_table(const mesh::RouteTable& table);

  // The bucket of endpoint `e` of cluster `c` in the table last given to on_table.
  Bucket* at(std::uint32_t c, std::uint32_t e) const { return index_[c][e]; }

  // Pops the most recently used idle connection that is still usable, if any: its wait is
  // cancelled, and connections with bytes, EOF or an error waiting are closed (and counted)
  // instead, in case the wait's handler has not run yet.
  std::optional<UpstreamConn> take(Bucket& b);

  // Returns a connection after a complete keep-alive exchange and starts watching it. Closes
  // it instead when the bucket is full or orphaned, or when it is TLS and holds input already.
  void put(Bucket& b, UpstreamConn conn, Clock::time_point now);

  // Closes every idle connection of the bucket, uncounted (shutdown).
  void drop_idle(Bucket& b);
  // The same, counted as `stale`: a connection taken from this bucket died before answering
  // (the endpoint restarted or timed its keep-alive out), so the rest are likely dead too.
  void drop_stale(Bucket& b) { close_idle(b, CloseReason::stale); }

  // Closes the idle TLS connections (overlay streams) whose peer certificate `untrusted`
  // picks, counted as `revoked`; returns how many.
  std::size_t close_untrusted(const std::function<bool(const ssl_st*)>& untrusted);

  // Closes connections idle longer than the timeout; frees unused orphaned buckets.
  void sweep(Clock::time_point now);

  void close_all();

  // Closes counted since the last call, by CloseReason; resets them (the worker's tick).
  std::array<std::uint64_t, kCloseReasons> take_close_counts() {
    return std::exchange(closed_, {});
  }

 private:
  void watch(Bucket& b, Idle& i);
  void on_readable(Bucket& b, std::uint64_t id, const boost::system::error_code& ec);
  void count(CloseReason r) { ++closed_[static_cast<std::size_t>(r)]; }
  void close_idle(Bucket& b, CloseReason r);

  std::uint32_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  std::unordered_map<std::string, std::unique_ptr<Bucket>> buckets_;
  std::vector<std::vector<Bucket*>> index_;
  std::uint64_t next_id_ = 1;
  std::array<std::uint64_t, kCloseReasons> closed_{};
  char peeked_ = 0;  // where the watches' peeks land; never read
};

// The socket address of an endpoint (parsed bytes, no text parsing).
boost::asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::Endpoint& e);
boost::asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::IpAddress& ip, std::uint16_t port);

// What a non-blocking peek finds on an idle connection.
enum class IdleState { alive, stray_bytes, eof, error };
IdleState idle_state(boost::asio::ip::tcp::socket& s);
// The same for either kind: a TLS connection with bytes inside OpenSSL has stray bytes too.
IdleState idle_state(UpstreamConn& c);

// A pooled connection is usable when reading would block (no EOF, no error, no stray bytes).
inline bool idle_connection_alive(boost::asio::ip::tcp::socket& s) {
  return idle_state(s) == IdleState::alive;
}

}  // namespace routemesh::proxy
