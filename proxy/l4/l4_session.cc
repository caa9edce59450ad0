#include "proxy/l4/l4_session.h"

#include "proxy/l4/splice.h"
#include "proxy/overlay/overlay.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <optional>

namespace routemesh::proxy {

namespace {

std::optional<std::uint32_t> cluster_for(Worker& w, std::uint16_t port, const std::string& vip,
                                         const std::string& sni) {
  if (!sni.empty()) {
    const mesh::SniRoute* r = w.table() ? mesh::find_sni_route(*w.table(), sni) : nullptr;
    return r != nullptr ? std::optional<std::uint32_t>(r->cluster) : std::nullopt;
  }
  return vip.empty() ? w.l4_cluster(port) : w.vip_cluster(vip, port);
}

}  // namespace

asio::awaitable<void> run_l4_session(Worker& w, tcp::socket socket, std::uint16_t port,
                                     std::string vip, std::string sni,
                                     std::optional<mesh::overlay::ProxiedAddresses> proxied) {
  LiveConn conn;
  LiveGuard guard(w, conn);
  conn.down = &socket;
  w.metrics().downstream_total.Increment();
  tcp::socket up(w.io());
  boost::system::error_code ignored;

  const auto cluster_index = cluster_for(w, port, vip, sni);
  if (!cluster_index) {
    co_return;  // the port left the table between accept and now
  }
  const std::shared_ptr<const mesh::RouteTable> table = w.table();
  const std::uint64_t gen = w.generation();
  const mesh::Cluster& cluster = table->clusters[*cluster_index];
  ServiceMetrics& sm = w.service_metrics(*cluster_index);
  sm.l4_connections->Increment();
  socket.set_option(tcp::no_delay(true), ignored);

  // A load balancer in front names the client in a PROXY header; the bytes after it stay in
  // the socket for the task. (The HTTPS port reads it itself, before the ClientHello:
  // `proxied` then.)
  if (const auto peer = socket.remote_endpoint(ignored);
      !ignored && sni.empty() && w.proxy_protocol_peer(peer.address())) {
    if (!co_await read_proxy_header(w, conn, socket, proxied)) {
      co_return;
    }
  }

  // Isolation and policies: a VIP takes connections from its own network unless a policy says
  // otherwise; a published port is open unless a policy names it. A denial closes at once.
  {
    const mesh::VipRoute* vr = vip.empty() ? nullptr : mesh::find_vip_route(*table, vip, port);
    mesh::policy::Destination dst{cluster.service, port, mesh::policy::Entry::published, {}};
    if (vr != nullptr) {
      dst.entry = mesh::policy::Entry::vip;
      dst.network = vr->network;
    }
    auto source = socket.remote_endpoint(ignored).address();
    if (proxied) {
      boost::system::error_code pec;
      const auto src = asio::ip::make_address(proxied->src_ip, pec);
      if (!pec) {
        source = src;
      }
    }
    if (!ignored && !w.policy_allows(*table, source, dst, "l4")) {
      socket.close(ignored);
      co_return;
    }
  }

  std::optional<std::uint32_t> exclude;
  std::optional<std::uint32_t> chosen;
  for (int attempt = 0; attempt < 2 && !chosen; ++attempt) {
    if (w.generation() != gen) {
      break;  // indices of `table` no longer match the balancer's
    }
    const auto pick = w.balancer().pick(cluster.index, w.next_random(), Clock::now(), {}, exclude);
    if (!pick) {
      break;
    }
    if (attempt > 0) {
      sm.retries->Increment();
    }
    w.balancer().on_start(cluster.index, pick->endpoint);
    const auto& ep = cluster.endpoints[pick->endpoint];
    boost::system::error_code ec;
    if (ep.via) {
      // The task's node writes the PROXY header, from the addresses in the preamble.
      const auto preamble =
          make_preamble(mesh::overlay::StreamProtocol::tcp, ep.task_id, ep.port, socket, proxied);
      const auto via = to_tcp_endpoint(ep.via->ip, ep.via->port);
      ec = co_await open_overlay_stream(w, conn, up, via, preamble);
    } else {
      ec = co_await connect_upstream(conn, up, to_tcp_endpoint(ep), w.timeouts().upstream_connect);
      if (!ec && cluster.proxy_protocol != discovery::ProxyProtocol::none) {
        const std::string header = proxy_header_for(cluster.proxy_protocol, socket, proxied);
        conn.arm(Clock::now(), w.timeouts().upstream_connect);
        auto [wec, n] = co_await asio::async_write(up, asio::buffer(header),
                                                   asio::as_tuple(asio::use_awaitable));
        conn.disarm();
        ec = wec;
        if (ec) {
          up.close(ignored);
        }
      }
    }
    if (conn.killed) {
      w.finish(gen, cluster, pick->endpoint, mesh::Outcome::local_abort, sm);
      co_return;
    }
    if (ec) {
      sm.connect_errors->Increment();
      w.finish(gen, cluster, pick->endpoint, mesh::Outcome::connect_failed, sm);
      exclude = pick->endpoint;
      continue;
    }
    chosen = pick->endpoint;
  }
  if (!chosen) {
    spdlog::debug("proxy: l4 port {} ({}): no endpoint reachable", port, cluster.service);
    co_return;
  }
  conn.attach(cluster, *chosen);
  const auto r = co_await splice_both(w, conn, socket, up, w.timeouts().l4_idle, sm.l4_bytes);
  conn.detach();
  w.count_bytes(r.a_to_b, r.b_to_a);
  w.finish(gen, cluster, *chosen, conn.killed ? mesh::Outcome::local_abort : mesh::Outcome::success,
           sm);
  up.close(ignored);
  socket.close(ignored);
}

}  // namespace routemesh::proxy
