#pragma once
// Per-proxy-thread keep-alive pool of upstream connections, keyed by endpoint ("ip:port").
// Used only from its worker's thread; no locks.
//
// Buckets are stable objects: a session holds a Bucket* (and a `users` count on it) for the
// duration of one request even if a new table arrives meanwhile. A bucket whose endpoint left
// the table is marked orphaned, its idle connections are closed, and it is freed by sweep()
// once no session uses it.

#include "mesh/route_table.h"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace routemesh::proxy {

class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  using tcp = boost::asio::ip::tcp;

  struct Idle {
    tcp::socket socket;
    Clock::time_point since;
  };

  struct Bucket {
    std::string key;
    tcp::endpoint endpoint;
    // A task on another node: connections are overlay streams to that node's overlay
    // listener, each opened with a preamble naming the task and port.
    std::optional<tcp::endpoint> via;
    std::string task_id;
    std::vector<Idle> idle;  // most recently used last (LIFO keeps the hottest connections)
    std::uint32_t users = 0;
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

  // Pops the most recently used idle connection, if any.
  std::optional<tcp::socket> take(Bucket& b);

  // Returns a connection after a complete keep-alive exchange. Closes it instead when the
  // bucket is full or orphaned.
  void put(Bucket& b, tcp::socket socket, Clock::time_point now);

  // Closes every idle connection of the bucket (its endpoint restarted: the rest are stale).
  void drop_idle(Bucket& b);

  // Closes connections idle longer than the timeout; frees unused orphaned buckets.
  void sweep(Clock::time_point now);

  void close_all();

 private:
  std::uint32_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  std::unordered_map<std::string, std::unique_ptr<Bucket>> buckets_;
  std::vector<std::vector<Bucket*>> index_;
};

// The socket address of an endpoint (parsed bytes, no text parsing).
boost::asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::Endpoint& e);
boost::asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::IpAddress& ip, std::uint16_t port);

// A pooled connection is usable when reading would block (no EOF, no error, no stray bytes).
bool idle_connection_alive(boost::asio::ip::tcp::socket& s);

}  // namespace routemesh::proxy
