#include "proxy/upstream_pool.h"

#include <boost/asio/ip/address.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace routemesh::proxy {

namespace asio = boost::asio;

asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::IpAddress& ip, std::uint16_t port) {
  if (ip.v6) {
    asio::ip::address_v6::bytes_type b;
    std::copy(ip.bytes.begin(), ip.bytes.end(), b.begin());
    return {asio::ip::address_v6(b), port};
  }
  asio::ip::address_v4::bytes_type b{ip.bytes[0], ip.bytes[1], ip.bytes[2], ip.bytes[3]};
  return {asio::ip::address_v4(b), port};
}

asio::ip::tcp::endpoint to_tcp_endpoint(const mesh::Endpoint& e) {
  return to_tcp_endpoint(e.ip, e.port);
}

bool idle_connection_alive(asio::ip::tcp::socket& s) {
  char c;
  const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

UpstreamPool::UpstreamPool(std::uint32_t max_idle_per_endpoint,
                           std::chrono::milliseconds idle_timeout)
    : max_idle_(max_idle_per_endpoint), idle_timeout_(idle_timeout) {}

UpstreamPool::~UpstreamPool() {
  close_all();
}

void UpstreamPool::on_table(const mesh::RouteTable& table) {
  for (auto& [key, b] : buckets_) {
    b->orphaned = true;
  }
  index_.clear();
  index_.resize(table.clusters.size());
  for (std::size_t c = 0; c < table.clusters.size(); ++c) {
    const auto& eps = table.clusters[c].endpoints;
    index_[c].reserve(eps.size());
    for (const auto& e : eps) {
      auto& slot = buckets_[e.key];
      if (!slot) {
        slot = std::make_unique<Bucket>();
        slot->key = e.key;
        slot->idle.reserve(std::min<std::uint32_t>(max_idle_, 64));
      }
      const auto ep = to_tcp_endpoint(e);
      std::optional<asio::ip::tcp::endpoint> via;
      if (e.via) {
        via = to_tcp_endpoint(e.via->ip, e.via->port);
      }
      if (slot->endpoint != ep || slot->via != via) {
        // The task's node moved its overlay listener (or the task became local): the idle
        // connections go somewhere else now.
        drop_idle(*slot);
        slot->endpoint = ep;
        slot->via = via;
      }
      slot->task_id = e.task_id;
      slot->orphaned = false;
      index_[c].push_back(slot.get());
    }
  }
  for (auto& [key, b] : buckets_) {
    if (b->orphaned) {
      drop_idle(*b);
    }
  }
}

std::optional<asio::ip::tcp::socket> UpstreamPool::take(Bucket& b) {
  if (b.idle.empty()) {
    return std::nullopt;
  }
  std::optional<tcp::socket> s(std::move(b.idle.back().socket));
  b.idle.pop_back();
  return s;
}

void UpstreamPool::put(Bucket& b, tcp::socket socket, Clock::time_point now) {
  if (b.orphaned || b.idle.size() >= max_idle_ || !socket.is_open()) {
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  b.idle.push_back(Idle{std::move(socket), now});
}

void UpstreamPool::drop_idle(Bucket& b) {
  for (auto& i : b.idle) {
    boost::system::error_code ignored;
    i.socket.close(ignored);
  }
  b.idle.clear();
}

void UpstreamPool::sweep(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    Bucket& b = *it->second;
    // Oldest connections are at the front.
    std::size_t expired = 0;
    while (expired < b.idle.size() && now - b.idle[expired].since >= idle_timeout_) {
      boost::system::error_code ignored;
      b.idle[expired].socket.close(ignored);
      ++expired;
    }
    if (expired > 0) {
      b.idle.erase(b.idle.begin(), b.idle.begin() + static_cast<std::ptrdiff_t>(expired));
    }
    if (b.orphaned && b.users == 0 && b.idle.empty()) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

void UpstreamPool::close_all() {
  for (auto& [key, b] : buckets_) {
    drop_idle(*b);
  }
}

}  // namespace routemesh::proxy
