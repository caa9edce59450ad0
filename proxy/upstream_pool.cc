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

IdleState idle_state(asio::ip::tcp::socket& s) {
  char c;
  const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    return IdleState::stray_bytes;
  }
  if (n == 0) {
    return IdleState::eof;
  }
  return errno == EAGAIN || errno == EWOULDBLOCK ? IdleState::alive : IdleState::error;
}

IdleState idle_state(UpstreamConn& c) {
  if (c.tls && c.tls->has_input()) {
    return IdleState::stray_bytes;
  }
  return idle_state(c.raw());
}

namespace {

UpstreamPool::CloseReason reason_of(IdleState s) {
  switch (s) {
    case IdleState::stray_bytes:
      return UpstreamPool::CloseReason::stray_bytes;
    case IdleState::eof:
      return UpstreamPool::CloseReason::eof;
    case IdleState::alive:
    case IdleState::error:
      break;
  }
  return UpstreamPool::CloseReason::error;
}

}  // namespace

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
        close_idle(*slot, CloseReason::orphaned);
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
      close_idle(*b, CloseReason::orphaned);
    }
  }
}

std::optional<UpstreamConn> UpstreamPool::take(Bucket& b) {
  while (!b.idle.empty()) {
    std::optional<UpstreamConn> c(std::move(b.idle.back().conn));
    b.idle.pop_back();
    boost::system::error_code ignored;
    c->raw().cancel(ignored);  // its wait's handler runs later and finds the id gone
    // Bytes or EOF that arrived before the wait's handler ran are never a response to the
    // next request: a late body, a backend's 408 before it closed.
    const IdleState st = idle_state(*c);
    if (st == IdleState::alive) {
      return c;
    }
    c->close();
    count(reason_of(st));
  }
  return std::nullopt;
}

void UpstreamPool::put(Bucket& b, UpstreamConn conn, Clock::time_point now) {
  if (!conn.is_open()) {
    return;
  }
  if (conn.tls && conn.tls->has_input()) {
    conn.close();
    count(CloseReason::stray_bytes);
    return;
  }
  if (b.orphaned || b.idle.size() >= max_idle_) {
    conn.close();
    count(b.orphaned ? CloseReason::orphaned : CloseReason::full);
    return;
  }
  if (conn.tls) {
    conn.tls->stop_when(nullptr);  // the session's deadline is not this connection's any more
  }
  b.idle.push_back(Idle{std::move(conn), now, next_id_++});
  watch(b, b.idle.back());
}

// The handler holds the bucket (its `waits` count keeps sweep() from freeing it) and the id,
// never the socket: entries move inside the vector, and a taken socket belongs to a session.
void UpstreamPool::watch(Bucket& b, Idle& i) {
  ++b.waits;
  i.conn.raw().async_receive(
      asio::buffer(&peeked_, 1), tcp::socket::message_peek,
      [this, bucket = &b, id = i.id](const boost::system::error_code& ec, std::size_t) {
        on_readable(*bucket, id, ec);
      });
}

void UpstreamPool::on_readable(Bucket& b, std::uint64_t id, const boost::system::error_code& ec) {
  --b.waits;
  const auto it =
      std::find_if(b.idle.begin(), b.idle.end(), [id](const Idle& i) { return i.id == id; });
  if (it == b.idle.end()) {
    return;  // taken, timed out or dropped meanwhile (its wait was cancelled)
  }
  CloseReason reason = CloseReason::error;
  if (!ec || ec == asio::error::eof) {  // a byte was peeked, or the backend closed
    const IdleState st = idle_state(it->conn);
    if (st == IdleState::alive) {  // a wake-up with nothing to read: keep watching
      watch(b, *it);
      return;
    }
    reason = reason_of(st);
  }
  it->conn.close();
  b.idle.erase(it);
  count(reason);
}

void UpstreamPool::drop_idle(Bucket& b) {
  for (auto& i : b.idle) {
    i.conn.close();
  }
  b.idle.clear();
}

void UpstreamPool::close_idle(Bucket& b, CloseReason r) {
  closed_[static_cast<std::size_t>(r)] += b.idle.size();
  drop_idle(b);
}

std::size_t UpstreamPool::close_untrusted(const std::function<bool(const ssl_st*)>& untrusted) {
  std::size_t closed = 0;
  for (auto& [key, b] : buckets_) {
    if (!b->via) {
      continue;
    }
    // A closed connection's wait finds its id gone (on_readable) and ends there.
    std::erase_if(b->idle, [&](Idle& i) {
      if (!i.conn.tls || !untrusted(i.conn.tls->native_handle())) {
        return false;
      }
      i.conn.close();
      ++closed;
      return true;
    });
  }
  closed_[static_cast<std::size_t>(CloseReason::revoked)] += closed;
  return closed;
}

void UpstreamPool::sweep(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    Bucket& b = *it->second;
    // Oldest connections are at the front.
    std::size_t expired = 0;
    while (expired < b.idle.size() && now - b.idle[expired].since >= idle_timeout_) {
      b.idle[expired].conn.close();
      ++expired;
    }
    if (expired > 0) {
      b.idle.erase(b.idle.begin(), b.idle.begin() + static_cast<std::ptrdiff_t>(expired));
      closed_[static_cast<std::size_t>(CloseReason::idle_timeout)] += expired;
    }
    // A bucket is freed only when no session holds it and no wait's handler is to run.
    if (b.orphaned && b.users == 0 && b.idle.empty() && b.waits == 0) {
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
