#pragma once
// Byte moves between two TCP sockets, with half-close (RFC 9293 §3.6: FIN one way, the other
// way keeps flowing) and an idle timeout. Used by L4 sessions, HTTP tunnels, overlay streams
// and large HTTP bodies. splice_both copies each direction (waiting for bytes with an asio read
// into a 1 KiB buffer of its own, which needs no epoll_ctl, then a 16 KiB worker buffer taken
// only while bytes are in hand) until a read fills the worker buffer, then moves that direction
// with splice(2) through a pooled pipe, zero-copy: small exchanges cost a recv and a send, bulk
// transfers stay zero-copy. splice_exact always splices.

#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>

#include <cstdint>

namespace routemesh::proxy {

struct SpliceResult {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  bool error = false;  // a reset, a splice failure or a deadline/cancel ended it
};

// Forwards both directions until both sides have sent EOF, an error occurs, or the idle
// deadline (`idle` without bytes either way) passes. `conn` must name a and b as down/up so
// the worker's ticker and shutdown can cancel it. Does not close the sockets. Awaited by the
// caller, so the references outlive the coroutine. `bytes` (may be null) counts both ways.
asio::awaitable<SpliceResult> splice_both(Worker& w, LiveConn& conn, tcp::socket& a, tcp::socket& b,
                                          milliseconds idle, prometheus::Counter* bytes);

struct SpliceExactResult {
  boost::system::error_code ec;  // set when fewer than n bytes were delivered
  std::uint64_t moved = 0;       // bytes delivered to `to`
  bool read_side = false;        // ec came from `from` (EOF, reset) rather than `to`
};

// Moves exactly `n` bytes from `from` to `to` through a pipe (zero-copy), re-arming `conn`'s
// deadline to `idle` on progress. Used for large Content-Length bodies in HTTP proxying: the
// byte count is known, so nothing needs parsing. ec is asio::error::eof when `from` closed
// early, timed_out when the deadline passed, operation_not_supported when no pipe could be
// made (nothing was moved; the caller copies instead).
asio::awaitable<SpliceExactResult> splice_exact(Worker& w, LiveConn& conn, tcp::socket& from,
                                                tcp::socket& to, std::uint64_t n,
                                                milliseconds idle);

}  // namespace routemesh::proxy
