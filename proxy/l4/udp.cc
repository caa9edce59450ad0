#include "proxy/l4/udp.h"

#include "base/spawn.h"
#include "proxy/overlay/overlay.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace routemesh::proxy {

namespace {

using udp = asio::ip::udp;
using error_code = boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string frame(std::string_view data) {
  std::string out;
  out.reserve(2 + data.size());
  out.push_back(static_cast<char>((data.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(data.size() & 0xff));
  out.append(data);
  return out;
}

// Reads from `stream` until `buf` holds at least `want` bytes.
asio::awaitable<error_code> fill(tcp::socket& stream, std::string& buf, std::size_t want) {
  while (buf.size() < want) {
    char chunk[16 * 1024];
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(chunk), kTuple);
    if (ec) {
      co_return ec;
    }
    buf.append(chunk, n);
  }
  co_return error_code{};
}

// Reads one frame from `stream` into `payload`, `buf` holding bytes read ahead. Returns an
// error at EOF, on a read error, or for a frame longer than a datagram can be.
asio::awaitable<error_code> read_frame(tcp::socket& stream, std::string& buf,
                                       std::string& payload) {
  if (auto ec = co_await fill(stream, buf, 2); ec) {
    co_return ec;
  }
  const std::size_t len = (static_cast<std::size_t>(static_cast<unsigned char>(buf[0])) << 8) |
                          static_cast<unsigned char>(buf[1]);
  if (len > mesh::overlay::kMaxDatagram) {
    co_return asio::error::message_size;
  }
  if (auto ec = co_await fill(stream, buf, 2 + len); ec) {
    co_return ec;
  }
  payload.assign(buf, 2, len);
  buf.erase(0, 2 + len);
  co_return error_code{};
}

udp::endpoint to_udp(const tcp::endpoint& e) {
  return udp::endpoint(e.address(), e.port());
}

}  // namespace

struct UdpFlow {
  udp::endpoint client;
  LiveConn conn;  // a live connection while the flow lasts: deadlines, shutdown
  std::shared_ptr<const mesh::RouteTable> table;
  std::uint64_t gen = 0;
  std::uint32_t cluster = 0;
  std::uint32_t endpoint = 0;
  bool remote = false;
  std::optional<udp::socket> up;      // a local task
  std::optional<tcp::socket> stream;  // a task on another node
  bool ready = false;                 // the stream is open
  bool writing = false;
  bool ended = false;
  bool failed = false;            // reported to passive health already
  std::deque<std::string> queue;  // frames for the stream
  Clock::time_point last;
};

UdpPort::UdpPort(Worker& w, udp::socket socket, std::uint16_t port, std::string address,
                 std::string vip)
    : w_(w),
      socket_(std::move(socket)),
      port_(port),
      address_(std::move(address)),
      vip_(std::move(vip)) {}

UdpPort::~UdpPort() {
  close();
}

void UdpPort::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  error_code ignored;
  socket_.close(ignored);
  auto flows = std::move(flows_);
  flows_.clear();
  for (auto& [client, flow] : flows) {
    end_flow(flow);
  }
}

void UdpPort::sweep(Clock::time_point now, milliseconds idle) {
  std::vector<std::shared_ptr<UdpFlow>> expired;
  for (auto& [client, flow] : flows_) {
    if (now - flow->last >= idle) {
      expired.push_back(flow);
    }
  }
  for (auto& flow : expired) {
    end_flow(flow);
  }
}

asio::awaitable<void> UdpPort::run() {
  auto self = shared_from_this();
  std::vector<char> buf(mesh::overlay::kMaxDatagram + 1);
  while (!closed_) {
    udp::endpoint from;
    auto [ec, n] = co_await socket_.async_receive_from(asio::buffer(buf), from, kTuple);
    if (closed_ || ec == asio::error::operation_aborted) {
      break;
    }
    if (ec) {
      continue;  // an ICMP error for an earlier answer to a client: nothing to do
    }
    w_.count_bytes(n, 0);
    on_datagram(from, std::string_view(buf.data(), n));
  }
}

void UdpPort::reply(const udp::endpoint& client, std::string_view data) {
  error_code ec;
  socket_.send_to(asio::buffer(data.data(), data.size()), client, 0, ec);
  if (ec) {
    w_.metrics().udp_dropped.Add({{"reason", "client_send"}}).Increment();
    return;
  }
  w_.metrics().udp_datagrams.Add({{"direction", "to_client"}}).Increment();
  w_.count_bytes(0, data.size());
}

void UdpPort::on_datagram(const udp::endpoint& client, std::string_view data) {
  std::shared_ptr<UdpFlow> flow;
  if (auto it = flows_.find(client); it != flows_.end()) {
    flow = it->second;
  } else {
    if (flows_.size() >= kMaxFlows) {
      w_.metrics().udp_dropped.Add({{"reason", "too_many_flows"}}).Increment();
      return;
    }
    bool denied = false;
    flow = start_flow(client, denied);
    if (!flow) {
      w_.metrics().udp_dropped.Add({{"reason", denied ? "policy" : "no_endpoint"}}).Increment();
      return;
    }
  }
  flow->last = Clock::now();
  w_.metrics().udp_datagrams.Add({{"direction", "to_task"}}).Increment();
  if (!flow->remote) {
    error_code ec;
    flow->up->send(asio::buffer(data.data(), data.size()), 0, ec);
    if (ec == asio::error::would_block) {
      w_.metrics().udp_dropped.Add({{"reason", "task_send"}}).Increment();
    } else if (ec) {
      // ECONNREFUSED: an ICMP port unreachable came back for an earlier datagram.
      if (!flow->failed) {
        flow->failed = true;
        w_.finish(flow->gen, flow->table->clusters[flow->cluster], flow->endpoint,
                  mesh::Outcome::connect_failed, w_.service_metrics(flow->cluster));
      }
      end_flow(flow);
    }
    return;
  }
  if (flow->queue.size() >= kMaxQueued) {
    w_.metrics().udp_dropped.Add({{"reason", "queue_full"}}).Increment();
    return;
  }
  flow->queue.push_back(frame(data));
  if (flow->ready && !flow->writing) {
    flow->writing = true;
    auto write_loop = [](std::shared_ptr<UdpPort> port,
                         std::shared_ptr<UdpFlow> f) -> asio::awaitable<void> {
      while (!f->queue.empty() && !f->ended) {
        const std::string bytes = std::move(f->queue.front());
        f->queue.pop_front();
        auto [ec, n] = co_await asio::async_write(*f->stream, asio::buffer(bytes), kTuple);
        if (ec) {
          port->end_flow(f);
        }
      }
      f->writing = false;
    };
    asio::co_spawn(w_.io(), write_loop(shared_from_this(), flow),
                   base::log_and_count("proxy: udp stream writer", &w_.metrics().session_errors));
  }
}

std::shared_ptr<UdpFlow> UdpPort::start_flow(const udp::endpoint& client, bool& denied) {
  const auto cluster_index =
      vip_.empty() ? w_.udp_cluster(port_) : w_.vip_cluster(vip_, port_, true);
  if (!cluster_index) {
    return nullptr;
  }
  {
    // A VIP takes datagrams from its own network unless a policy says otherwise; a published
    // port is open unless a policy names it (as for TCP, l4_session.cc). Judged per flow.
    const mesh::RouteTable& table = *w_.table();
    mesh::policy::Destination dst{
        table.clusters[*cluster_index].service, port_, mesh::policy::Entry::published, {}};
    if (!vip_.empty()) {
      dst.entry = mesh::policy::Entry::vip;
      if (const mesh::VipRoute* vr = mesh::find_vip_route(table, vip_, port_, true)) {
        dst.network = vr->network;  // a view of the table's string (the table outlives dst)
      }
    }
    if (!w_.policy_allows(table, client.address(), dst, "l4")) {
      denied = true;
      return nullptr;
    }
  }
  auto flow = std::make_shared<UdpFlow>();
  flow->client = client;
  flow->table = w_.table();
  flow->gen = w_.generation();
  flow->cluster = *cluster_index;
  const mesh::Cluster& cluster = flow->table->clusters[*cluster_index];
  const auto pick = w_.balancer().pick(cluster.index, w_.next_random(), Clock::now());
  if (!pick) {
    return nullptr;
  }
  w_.balancer().on_start(cluster.index, pick->endpoint);
  flow->endpoint = pick->endpoint;
  flow->last = Clock::now();
  const mesh::Endpoint& ep = cluster.endpoints[pick->endpoint];
  w_.add_live(flow->conn);
  flows_[client] = flow;
  w_.metrics().udp_flows.Increment();

  if (!ep.via) {
    error_code ec;
    const udp::endpoint task = to_udp(to_tcp_endpoint(ep));
    flow->up.emplace(w_.io());
    flow->up->open(task.protocol(), ec);
    if (!ec) {
      flow->up->non_blocking(true, ec);
    }
    if (!ec) {
      flow->up->connect(task, ec);
    }
    if (ec) {
      spdlog::debug("proxy: udp port {}: cannot open a socket to {}: {}", port_, ep.key,
                    ec.message());
      end_flow(flow);
      return nullptr;
    }
    auto read_loop = [](std::shared_ptr<UdpPort> port,
                        std::shared_ptr<UdpFlow> f) -> asio::awaitable<void> {
      std::vector<char> buf(mesh::overlay::kMaxDatagram + 1);
      while (!f->ended) {
        auto [ec, n] = co_await f->up->async_receive(asio::buffer(buf), kTuple);
        if (f->ended || ec == asio::error::operation_aborted) {
          break;
        }
        if (ec) {
          if (!f->failed) {
            f->failed = true;
            port->w_.finish(f->gen, f->table->clusters[f->cluster], f->endpoint,
                            mesh::Outcome::connect_failed, port->w_.service_metrics(f->cluster));
          }
          port->end_flow(f);
          break;
        }
        f->last = Clock::now();
        port->reply(f->client, std::string_view(buf.data(), n));
      }
    };
    asio::co_spawn(w_.io(), read_loop(shared_from_this(), flow),
                   base::log_and_count("proxy: udp reader", &w_.metrics().session_errors));
    return flow;
  }

  flow->remote = true;
  flow->stream.emplace(w_.io());
  mesh::overlay::Preamble preamble;
  preamble.protocol = mesh::overlay::StreamProtocol::udp;
  preamble.task_id = ep.task_id;
  preamble.task_port = ep.port;
  preamble.client_ip = client.address().to_string();
  preamble.client_port = client.port() == 0 ? 1 : client.port();
  error_code ec;
  const auto local = socket_.local_endpoint(ec);
  preamble.dst_ip = ec ? "0.0.0.0" : local.address().to_string();
  preamble.dst_port = ec ? 1 : local.port();
  const tcp::endpoint via = to_tcp_endpoint(ep.via->ip, ep.via->port);
  auto open_loop = [](std::shared_ptr<UdpPort> port, std::shared_ptr<UdpFlow> f,
                      mesh::overlay::Preamble p, tcp::endpoint to) -> asio::awaitable<void> {
    Worker& w = port->w_;
    const error_code ec = co_await open_overlay_stream(w, f->conn, *f->stream, to, p);
    if (f->ended) {
      co_return;
    }
    if (ec) {
      f->failed = true;
      w.finish(f->gen, f->table->clusters[f->cluster], f->endpoint, mesh::Outcome::connect_failed,
               w.service_metrics(f->cluster));
      port->end_flow(f);
      co_return;
    }
    f->ready = true;
    if (!f->queue.empty() && !f->writing) {
      // Datagrams that arrived while the stream opened: one writer drains them.
      std::string first = std::move(f->queue.front());
      f->queue.pop_front();
      f->writing = true;
      while (!f->ended) {
        auto [wec, n] = co_await asio::async_write(*f->stream, asio::buffer(first), kTuple);
        if (wec) {
          port->end_flow(f);
          break;
        }
        if (f->queue.empty()) {
          break;
        }
        first = std::move(f->queue.front());
        f->queue.pop_front();
      }
      f->writing = false;
    }
    std::string buf;
    std::string payload;
    while (!f->ended) {
      const error_code rec = co_await read_frame(*f->stream, buf, payload);
      if (f->ended) {
        break;
      }
      if (rec) {
        port->end_flow(f);
        break;
      }
      f->last = Clock::now();
      port->reply(f->client, payload);
    }
  };
  asio::co_spawn(w_.io(), open_loop(shared_from_this(), flow, std::move(preamble), via),
                 base::log_and_count("proxy: udp overlay flow", &w_.metrics().session_errors));
  return flow;
}

void UdpPort::end_flow(const std::shared_ptr<UdpFlow>& flow) {
  if (flow->ended) {
    return;
  }
  flow->ended = true;
  error_code ignored;
  if (flow->up) {
    flow->up->close(ignored);
  }
  if (flow->stream) {
    flow->stream->close(ignored);
  }
  flow->queue.clear();
  if (!flow->failed) {
    w_.finish(flow->gen, flow->table->clusters[flow->cluster], flow->endpoint,
              mesh::Outcome::success, w_.service_metrics(flow->cluster));
  }
  w_.remove_live(flow->conn);
  w_.metrics().udp_flows.Decrement();
  if (auto it = flows_.find(flow->client); it != flows_.end() && it->second == flow) {
    flows_.erase(it);
  }
}

// ---- receiving end of the overlay ----------------------------------------------------------

asio::awaitable<void> run_overlay_udp(Worker& w, LiveConn& conn, tcp::socket& stream,
                                      const udp::endpoint& task, std::string pending) {
  struct Shared {
    explicit Shared(asio::io_context& io) : sock(io), done(io) {}
    udp::socket sock;
    asio::steady_timer done;  // cancelled by the task->stream loop when it ends
    bool ended = false;
  };
  auto s = std::make_shared<Shared>(w.io());
  error_code ec;
  s->sock.open(task.protocol(), ec);
  if (!ec) {
    s->sock.non_blocking(true, ec);
  }
  if (!ec) {
    s->sock.connect(task, ec);
  }
  if (ec) {
    co_return;
  }
  const milliseconds idle = w.timeouts().udp_idle;
  conn.arm(Clock::now(), idle);
  s->done.expires_at(Clock::time_point::max());

  // task -> stream: each datagram as a frame. Only this loop writes to the stream.
  auto to_stream = [](Worker& w, LiveConn& conn, tcp::socket& stream, std::shared_ptr<Shared> s,
                      milliseconds idle) -> asio::awaitable<void> {
    std::vector<char> buf(mesh::overlay::kMaxDatagram + 1);
    while (!s->ended) {
      auto [ec, n] = co_await s->sock.async_receive(asio::buffer(buf), kTuple);
      if (s->ended || ec) {
        break;
      }
      conn.arm(Clock::now(), idle);
      const std::string bytes = frame(std::string_view(buf.data(), n));
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kTuple);
      if (wec) {
        break;
      }
      w.metrics().udp_datagrams.Add({{"direction", "from_task"}}).Increment();
    }
    s->ended = true;
    error_code ignored;
    stream.cancel(ignored);
    s->done.cancel();
  };
  asio::co_spawn(w.io(), to_stream(w, conn, stream, s, idle),
                 base::log_and_count("proxy: udp overlay relay", &w.metrics().session_errors));

  // stream -> task
  std::string payload;
  while (!s->ended) {
    const error_code rec = co_await read_frame(stream, pending, payload);
    if (s->ended || rec) {
      break;
    }
    conn.arm(Clock::now(), idle);
    error_code sec;
    s->sock.send(asio::buffer(payload), 0, sec);
    if (sec && sec != asio::error::would_block) {
      break;  // the task's port is closed (ICMP unreachable)
    }
    w.metrics().udp_datagrams.Add({{"direction", "to_task"}}).Increment();
  }
  if (!s->ended) {
    s->ended = true;
    error_code ignored;
    s->sock.close(ignored);
    co_await s->done.async_wait(kTuple);  // the other loop has left `stream`
  }
  conn.disarm();
}

}  // namespace routemesh::proxy
