#include "proxy/overlay/overlay.h"

#include "proxy/l4/udp.h"

#include "base/spawn.h"
#include "base/tls_failure.h"
#include "mesh/overlay/proxy_protocol.h"
#include "mesh/route_table.h"
#include "proxy/l4/splice.h"
#include "proxy/peek.h"
#include "proxy/tls_bridge.h"
#include "proxy/upstream_pool.h"
#include "tls/context.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <string>

namespace routemesh::proxy {

namespace {

namespace overlay = mesh::overlay;
using boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// How long an accepted overlay connection may wait for its preamble: longer than a spare lives
// on the sending side, so a spare is never closed under the sender's feet.
constexpr milliseconds kPreambleWait{60'000};

void close_quietly(tcp::socket& s) {
  error_code ignored;
  s.close(ignored);
}

// Writes `bytes` under `conn`'s deadline.
asio::awaitable<error_code> write_all(LiveConn& conn, tcp::socket& s, const std::string& bytes,
                                      milliseconds timeout) {
  conn.arm(Clock::now(), timeout);
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(bytes), kTuple);
  if (conn.expired && !ec) {
    ec = asio::error::timed_out;
  }
  conn.disarm();
  co_return ec;
}

// The same for a connection that may be TLS.
asio::awaitable<error_code> write_all(LiveConn& conn, UpstreamConn& s, const std::string& bytes,
                                      milliseconds timeout) {
  if (!s.tls) {
    co_return co_await write_all(conn, s.socket, bytes, timeout);
  }
  conn.arm(Clock::now(), timeout);
  error_code ec = co_await s.tls->write(asio::buffer(bytes));
  if (conn.expired && !ec) {
    ec = asio::error::timed_out;
  }
  conn.disarm();
  co_return ec;
}

// At least one byte from a connection that may be TLS (TLS: bytes already decrypted, or a
// whole record).
asio::awaitable<std::tuple<error_code, std::size_t>> read_some(UpstreamConn& s,
                                                               asio::mutable_buffer buf) {
  if (s.tls) {
    co_return co_await s.tls->read_some(buf);
  }
  co_return co_await s.socket.async_read_some(buf, kTuple);
}

// The receiving end's policy check: the sending node checked too, but the table it used may be
// older or newer, and a stream may come from anything that reaches the overlay port. The
// destination is a VIP when the client connected to one (dst in the preamble), else a
// published port.
bool stream_allowed(Worker& w, const mesh::RouteTable& table, const overlay::Preamble& p,
                    const mesh::LocalTarget& target) {
  error_code ec;
  const auto client = asio::ip::make_address(p.client_ip, ec);
  if (ec) {
    return false;
  }
  mesh::policy::Destination dst{target.service, p.dst_port, mesh::policy::Entry::published, {}};
  if (const mesh::VipRoute* vr = mesh::find_vip_route(table, p.dst_ip, p.dst_port,
                                                      p.protocol == overlay::StreamProtocol::udp)) {
    dst.entry = mesh::policy::Entry::vip;
    dst.network = vr->network;
  }
  return w.policy_allows(table, client, dst, "overlay");
}

// Refusals of the overlay's TLS are logged at most once a second per thread (a scanner or a
// misconfigured node would fill the log); the metric counts them all.
bool may_log_tls_refusal() {
  thread_local Clock::time_point last{};
  const auto now = Clock::now();
  if (now - last < std::chrono::seconds(1)) {
    return false;
  }
  last = now;
  return true;
}

// Why the node that answered at `peer` may not carry streams, or nullptr when it may: its
// certificate must be a node certificate of this cluster, name the node the table puts at that
// address (another member's certificate at a node's address is not that node), and not be
// revoked. `why` says it for the log.
const char* outgoing_refusal(Worker& w, const OverlayTls& tls, const ssl_st* ssl,
                             const tcp::endpoint& peer, std::string& why) {
  const auto id = tls::verified_peer(ssl);
  if (!id || !tls::is_node_role(id->role) || id->cluster_id != tls.cluster_id) {
    why = "it did not present a node certificate of this cluster";
    return "out_not_a_node";
  }
  const std::shared_ptr<const mesh::RouteTable>& table = w.table();
  const auto hop = table ? table->node_hops.find(id->id) : decltype(table->node_hops.end()){};
  if (!table || hop == table->node_hops.end() ||
      to_tcp_endpoint(hop->second.ip, hop->second.port) != peer) {
    why = "its certificate names node " + id->id + ", whose overlay address this is not";
    return "out_wrong_node";
  }
  if (tls.trust && tls.trust->peer_revoked(ssl)) {
    why = "the certificate of node " + id->id + " was revoked";
    return "out_revoked";
  }
  return nullptr;
}

// `s`, just connected to a peer's overlay listener, through the TLS handshake when the overlay
// is encrypted, and the peer checked (outgoing_refusal): s.tls is then set. conn.up is
// &s.raw() on return.
asio::awaitable<error_code> secure_outgoing(Worker& w, LiveConn& conn, UpstreamConn& s,
                                            const tcp::endpoint& peer, milliseconds timeout) {
  const std::shared_ptr<const OverlayTls> tls = w.overlay_tls();
  if (!tls) {
    if (w.overlay_tls_required()) {  // the node has no certificate yet
      s.close();
      co_return asio::error::try_again;
    }
    co_return error_code{};
  }
  auto stream = std::make_unique<TlsStream>(std::move(s.socket), *tls->client, tls::kTlsBulkRing);
  conn.up = &stream->next_layer();
  conn.arm(Clock::now(), timeout);
  stream->stop_when(&conn.expired);
  const error_code ec = co_await stream->handshake(false);
  const bool expired = conn.expired;
  conn.disarm();
  conn.up = &s.socket;
  if (ec || expired || conn.killed) {
    w.metrics().overlay_refused.Add({{"reason", "out_tls"}}).Increment();
    if (may_log_tls_refusal()) {
      spdlog::warn("overlay: TLS handshake with {} failed: {}", peer.address().to_string(),
                   expired ? "timed out" : ec.message());
    }
    error_code ignored;
    stream->next_layer().close(ignored);
    co_return expired ? error_code(asio::error::timed_out)
                      : (ec ? ec : error_code(asio::error::operation_aborted));
  }
  std::string why;
  if (const char* reason = outgoing_refusal(w, *tls, stream->native_handle(), peer, why)) {
    w.metrics().overlay_refused.Add({{"reason", reason}}).Increment();
    if (may_log_tls_refusal()) {
      spdlog::warn("overlay: refused the node at {}: {}", peer.address().to_string(), why);
    }
    error_code ignored;
    stream->next_layer().close(ignored);
    co_return asio::error::connection_refused;
  }
  s.tls = std::move(stream);
  s.keep = tls;
  s.key_epoch = overlay_key_epoch(w);
  s.rekey_bytes = tls->rekey_bytes;
  conn.up = &s.raw();
  co_return error_code{};
}

// An accepted overlay connection through the TLS handshake when the overlay is encrypted: true
// with in.tls set (and in.keep its context); true with `in` unchanged when the overlay is
// plain; false (counted, logged, closed) when the peer is not a node of this cluster (no
// certificate, another CA, a revoked one, a user's) or the handshake fails.
asio::awaitable<bool> secure_incoming(Worker& w, UpstreamConn& in) {
  const std::shared_ptr<const OverlayTls> tls = w.overlay_tls();
  auto refuse = [&](const char* reason, const std::string& why) {
    w.metrics().overlay_refused.Add({{"reason", reason}}).Increment();
    if (may_log_tls_refusal()) {
      spdlog::warn("overlay: refused a connection: {}", why);
    }
  };
  if (!tls) {
    if (w.overlay_tls_required()) {
      refuse("tls_not_ready", "this node has no certificate yet");
      in.close();
      co_return false;
    }
    co_return true;
  }
  error_code ignored;
  const auto remote = in.socket.remote_endpoint(ignored);
  const std::string from = remote.address().to_string();
  auto s = std::make_unique<TlsStream>(std::move(in.socket), *tls->server, tls::kTlsBulkRing);
  bool expired = false;
  error_code ec;
  {
    LiveConn conn;
    LiveGuard guard(w, conn);
    conn.down = &s->next_layer();
    conn.arm(Clock::now(), w.timeouts().request_head);
    s->stop_when(&conn.expired);
    const error_code hec = co_await s->handshake(true);
    s->stop_when(nullptr);
    ec = hec;
    expired = conn.expired;
    conn.disarm();
  }
  if (ec || expired) {
    refuse("tls", "TLS handshake from " + from + " failed: " +
                      (expired ? std::string("timed out")
                               : base::tls_handshake_failure(s->native_handle(), ec)));
    s->next_layer().close(ignored);
    co_return false;
  }
  const auto peer = tls::verified_peer(s->native_handle());
  if (!peer || !tls::is_node_role(peer->role) || peer->cluster_id != tls->cluster_id) {
    refuse("not_a_node", "the peer at " + from +
                             " did not present a node certificate of this "
                             "cluster");
    s->next_layer().close(ignored);
    co_return false;
  }
  // No table yet: this node knows no task either, so nothing could be refused wrongly.
  const std::shared_ptr<const mesh::RouteTable> table = w.table();
  if (!table || !table->nodes.contains(peer->id)) {
    refuse("not_a_member", "the node " + peer->id + " at " + from +
                               " is not a member of the cluster (removed, or not known yet)");
    s->next_layer().close(ignored);
    co_return false;
  }
  in.keep = tls;
  in.tls = std::move(s);
  in.key_epoch = overlay_key_epoch(w);
  in.rekey_bytes = tls->rekey_bytes;
  co_return true;
}

}  // namespace

// ---- sending side ---------------------------------------------------------------------------

std::optional<UpstreamConn> OverlaySpares::take(const tcp::endpoint& peer) {
  Peer& p = peers_[peer];
  p.used = Clock::now();
  std::optional<UpstreamConn> out;
  while (!p.idle.empty() && !out) {
    Spare spare = std::move(p.idle.back());
    p.idle.pop_back();
    if (idle_state(spare.conn) == IdleState::alive) {
      out.emplace(std::move(spare.conn));
    } else {
      spare.conn.close();
    }
  }
  refill(peer);
  return out;
}

void OverlaySpares::refill(const tcp::endpoint& peer) {
  Peer& p = peers_[peer];
  if (closed_ || w_.draining() || !p.idle.empty() || p.connecting != 0) {
    return;
  }
  ++p.connecting;
  asio::co_spawn(
      w_.io(),
      [this, peer]() -> asio::awaitable<void> {
        // A frame of its own: LiveConn gives the connect the worker's deadline handling.
        LiveConn conn;
        LiveGuard guard(w_, conn);
        UpstreamConn s(tcp::socket(w_.io()));
        auto ec = co_await connect_upstream(conn, s.socket, peer, w_.timeouts().upstream_connect);
        if (!ec) {
          ec = co_await secure_outgoing(w_, conn, s, peer, w_.timeouts().upstream_connect);
        }
        auto it = peers_.find(peer);
        if (it == peers_.end()) {
          s.close();
          co_return;
        }
        --it->second.connecting;
        if (ec) {
          w_.metrics().overlay_connect_errors.Increment();
          spdlog::debug("overlay: spare connection to {} failed: {}", peer.address().to_string(),
                        ec.message());
          co_return;
        }
        if (closed_ || w_.draining()) {
          s.close();
          co_return;
        }
        if (s.tls) {
          s.tls->stop_when(nullptr);  // `conn` ends here
        }
        it->second.idle.push_back(Spare{std::move(s), Clock::now()});
      },
      base::log_and_count("overlay: spare connect", &w_.metrics().session_errors));
}

void OverlaySpares::sweep(Clock::time_point now) {
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto& idle = it->second.idle;
    for (auto s = idle.begin(); s != idle.end();) {
      if (now - s->since > kLifetime) {
        s->conn.close();
        s = idle.erase(s);
      } else {
        ++s;
      }
    }
    // A peer not used for a spare's lifetime gets no replacement; one in use gets a fresh one.
    if (now - it->second.used > kLifetime) {
      if (idle.empty() && it->second.connecting == 0) {
        it = peers_.erase(it);
        continue;
      }
    } else if (idle.empty()) {
      refill(it->first);
    }
    ++it;
  }
}

std::size_t OverlaySpares::close_untrusted(const std::function<bool(const ssl_st*)>& untrusted) {
  std::size_t closed = 0;
  for (auto& [peer, p] : peers_) {
    std::erase_if(p.idle, [&](Spare& s) {
      if (!s.conn.tls || !untrusted(s.conn.tls->native_handle())) {
        return false;
      }
      s.conn.close();
      ++closed;
      return true;
    });
  }
  return closed;
}

void OverlaySpares::close_all() {
  closed_ = true;
  for (auto& [peer, p] : peers_) {
    for (auto& s : p.idle) {
      s.conn.close();
    }
    p.idle.clear();
  }
}

overlay::Preamble make_preamble(overlay::StreamProtocol protocol, const std::string& task_id,
                                std::uint16_t task_port, tcp::socket& client,
                                const std::optional<overlay::ProxiedAddresses>& proxied) {
  overlay::Preamble p;
  p.protocol = protocol;
  p.task_id = task_id;
  p.task_port = task_port;
  p.client_ip = "0.0.0.0";
  p.client_port = 1;
  p.dst_ip = "0.0.0.0";
  p.dst_port = 1;
  error_code ec;
  const auto remote = client.remote_endpoint(ec);
  if (!ec && remote.port() != 0) {
    p.client_ip = remote.address().to_string();
    p.client_port = remote.port();
  }
  const auto local = client.local_endpoint(ec);
  if (!ec && local.port() != 0) {
    p.dst_ip = local.address().to_string();
    p.dst_port = local.port();
  }
  if (proxied && proxied->src_port != 0 && proxied->dst_port != 0) {
    p.client_ip = proxied->src_ip;
    p.client_port = proxied->src_port;
    p.dst_ip = proxied->dst_ip;
    p.dst_port = proxied->dst_port;
  }
  return p;
}

asio::awaitable<bool> read_proxy_header(Worker& w, LiveConn& conn, tcp::socket& s,
                                        std::optional<overlay::ProxiedAddresses>& proxied) {
  std::array<char, overlay::kMaxHeaderBytes> buffer;
  overlay::Decoded decoded;
  const PeekEnd end = co_await peek_until(w, conn, s, buffer, [&decoded](std::string_view bytes) {
    decoded = overlay::decode(bytes);
    return decoded.status != overlay::Decoded::Status::incomplete;
  });
  if (end != PeekEnd::enough || decoded.status != overlay::Decoded::Status::ok) {
    if (end == PeekEnd::timeout) {
      w.bad_requests("proxy_header_timeout").Increment();
    } else if (end == PeekEnd::enough) {
      w.bad_requests(decoded.status == overlay::Decoded::Status::none ? "proxy_header_missing"
                                                                      : "proxy_header_invalid")
          .Increment();
    }
    co_return false;
  }
  // The bytes were peeked, so they are there: this takes exactly the header.
  if (::recv(s.native_handle(), buffer.data(), decoded.consumed, MSG_DONTWAIT) !=
      static_cast<ssize_t>(decoded.consumed)) {
    co_return false;
  }
  proxied = std::move(decoded.addresses);
  co_return true;
}

std::string proxy_header_for(discovery::ProxyProtocol version, tcp::socket& client,
                             const std::optional<overlay::ProxiedAddresses>& proxied) {
  const auto p = make_preamble(overlay::StreamProtocol::tcp, "", 0, client, proxied);
  const overlay::ProxiedAddresses a{p.client_ip, p.client_port, p.dst_ip, p.dst_port};
  return version == discovery::ProxyProtocol::v2 ? overlay::encode_v2(a) : overlay::encode_v1(a);
}

asio::awaitable<error_code> open_overlay_stream(Worker& w, LiveConn& conn, UpstreamConn& s,
                                                const tcp::endpoint& via,
                                                const overlay::Preamble& preamble) {
  const std::string line = overlay::encode(preamble);
  // Closing a TLS stream frees its socket: conn.up then names the plain one.
  auto close = [&conn, &s] {
    s.close();
    conn.up = &s.socket;
  };
  const milliseconds timeout = w.timeouts().upstream_connect;
  // A spare that died between its liveness check and our write (the peer restarted) costs
  // one more try on a new connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool spare = false;
    if (attempt == 0) {
      if (auto taken = w.overlay_spares().take(via)) {
        close();
        s = std::move(*taken);
        conn.up = &s.raw();
        if (s.tls) {
          s.tls->stop_when(&conn.expired);
        }
        spare = true;
        w.metrics().overlay_spare_hits.Increment();
      } else {
        w.metrics().overlay_spare_misses.Increment();
      }
    }
    if (!spare) {
      close();
      auto ec = co_await connect_upstream(conn, s.socket, via, timeout);
      if (!ec) {
        ec = co_await secure_outgoing(w, conn, s, via, timeout);
      }
      if (ec) {
        w.metrics().overlay_connect_errors.Increment();
        co_return ec;
      }
    }
    auto ec = co_await write_all(conn, s, line, timeout);
    if (conn.killed) {
      co_return asio::error::operation_aborted;
    }
    char answer = 0;
    if (!ec) {
      // The peer connects to the task before it answers: allow it its own connect timeout.
      conn.arm(Clock::now(), timeout * 2);
      auto [rec, n] = co_await read_some(s, asio::buffer(&answer, 1));
      ec = conn.expired && !conn.killed ? error_code(asio::error::timed_out) : rec;
      conn.disarm();
    }
    if (conn.killed) {
      co_return asio::error::operation_aborted;
    }
    if (ec) {
      close();
      if (spare && ec != asio::error::timed_out) {
        continue;  // a stale spare: connect afresh
      }
      w.metrics().overlay_connect_errors.Increment();
      co_return ec;
    }
    w.metrics().overlay_streams_out.Increment();
    if (answer == static_cast<char>(overlay::Reply::connected)) {
      co_return error_code{};
    }
    close();
    const char* reason = answer == static_cast<char>(overlay::Reply::refused) ? "out_refused"
                         : answer == static_cast<char>(overlay::Reply::connect_failed)
                             ? "out_task_connect_failed"
                             : "out_malformed";
    w.metrics().overlay_refused.Add({{"reason", reason}}).Increment();
    co_return asio::error::connection_refused;
  }
  co_return asio::error::connection_refused;
}

asio::awaitable<error_code> open_overlay_stream(Worker& w, LiveConn& conn, tcp::socket& s,
                                                const tcp::endpoint& via,
                                                const overlay::Preamble& preamble) {
  UpstreamConn c(std::move(s));
  error_code ec = co_await open_overlay_stream(w, conn, c, via, preamble);
  if (!ec && c.tls) {
    // Byte moves from here on work on sockets: the TLS stream goes through a bridge.
    update_overlay_keys(w, *c.tls, c.key_epoch, c.rekey_bytes);
    auto inner = bridge_tls(w, std::move(c.tls), std::move(c.keep), true, c.rekey_bytes);
    if (inner) {
      s = std::move(*inner);
    } else {
      ec = inner.error();
    }
  } else {
    s = std::move(c.socket);
  }
  conn.up = &s;
  co_return ec;
}

// ---- receiving side -------------------------------------------------------------------------

asio::awaitable<void> run_overlay_session(Worker& w, tcp::socket socket) {
  UpstreamConn in(std::move(socket));  // the accepted connection, plain or (below) TLS
  const bool secured = co_await secure_incoming(w, in);
  if (!secured) {
    co_return;
  }
  // The node the connection's certificate names (encrypted overlay only): a table without it
  // ends the connection (Worker::close_removed_overlay_peers). Outlives `conn`.
  std::string peer_id;
  if (in.tls) {
    if (auto peer = tls::verified_peer(in.tls->native_handle())) {
      peer_id = std::move(peer->id);
    }
  }
  LiveConn conn;
  LiveGuard guard(w, conn);
  conn.down = &in.raw();
  if (in.tls) {
    in.tls->stop_when(&conn.expired);
  }
  if (!peer_id.empty()) {
    conn.overlay_peer = &peer_id;
  }
  if (in.tls) {
    conn.overlay_ssl = in.tls->native_handle();  // cleared where in.tls moves to a bridge
  }
  tcp::socket task(w.io());
  error_code ignored;
  in.raw().set_option(tcp::no_delay(true), ignored);

  auto refuse = [&](overlay::Reply reply, const char* reason) -> asio::awaitable<void> {
    w.metrics().overlay_refused.Add({{"reason", reason}}).Increment();
    const std::string answer(1, static_cast<char>(reply));
    co_await write_all(conn, in, answer, w.timeouts().upstream_connect);
    close_quietly(in.raw());
  };

  // The preamble: one line. Whatever follows it (a sender does not pipeline, but may) goes to
  // the task once it is connected.
  std::array<char, overlay::kMaxPreambleBytes> buf;
  std::size_t have = 0;
  std::size_t line_end = std::string_view::npos;
  conn.arm(Clock::now(), kPreambleWait);
  while (line_end == std::string_view::npos && have < buf.size()) {
    auto [ec, n] = co_await read_some(in, asio::buffer(buf.data() + have, buf.size() - have));
    if (ec || conn.killed) {
      close_quietly(in.raw());
      co_return;  // a spare that was never used, or the peer went away
    }
    const std::string_view seen(buf.data() + have, n);
    if (auto nl = seen.find('\n'); nl != std::string_view::npos) {
      line_end = have + nl;
    }
    have += n;
  }
  conn.disarm();
  if (line_end == std::string_view::npos) {
    co_await refuse(overlay::Reply::malformed, "malformed");
    co_return;
  }
  std::string why;
  const auto preamble = overlay::decode(std::string_view(buf.data(), line_end), why);
  if (!preamble) {
    spdlog::warn("overlay: refused a stream: {}", why);
    co_await refuse(overlay::Reply::malformed, "malformed");
    co_return;
  }
  const std::shared_ptr<const OverlayTls> otls = in.tls ? w.overlay_tls() : nullptr;
  if (otls && otls->trust) {
    // A spare may have waited since before its certificate was revoked.
    if (otls->trust->peer_revoked(in.tls->native_handle())) {
      spdlog::warn("overlay: refused a stream of node {}: its certificate was revoked", peer_id);
      co_await refuse(overlay::Reply::refused, "revoked");
      co_return;
    }
  }
  const std::shared_ptr<const mesh::RouteTable> table = w.table();
  const mesh::LocalTarget* target =
      table ? mesh::find_local_target(*table, preamble->task_id, preamble->task_port) : nullptr;
  if (target == nullptr) {
    spdlog::warn(
        "overlay: refused a stream for task {} port {}: not a task of this node of an "
        "exposed service",
        preamble->task_id, preamble->task_port);
    co_await refuse(overlay::Reply::refused, "unknown_target");
    co_return;
  }
  if (!stream_allowed(w, *table, *preamble, *target)) {
    co_await refuse(overlay::Reply::refused, "policy");
    co_return;
  }
  const std::string ok(1, static_cast<char>(overlay::Reply::connected));
  if (preamble->protocol == overlay::StreamProtocol::udp) {
    if (auto wec = co_await write_all(conn, in, ok, w.timeouts().upstream_connect); wec) {
      close_quietly(in.raw());
      co_return;
    }
    w.metrics().overlay_streams_in.Increment();
    if (in.tls) {
      // Datagram framing works on a plain socket: the TLS stream's goes through a bridge.
      conn.overlay_ssl = nullptr;
      auto inner = bridge_tls(w, std::move(in.tls), in.keep, true, in.rekey_bytes);
      if (!inner) {
        co_return;
      }
      in.socket = std::move(*inner);
      conn.down = &in.socket;
    }
    const auto ep = to_tcp_endpoint(target->ip, target->port);
    std::string pending(buf.data() + line_end + 1, have - line_end - 1);
    co_await run_overlay_udp(w, conn, in.socket, asio::ip::udp::endpoint(ep.address(), ep.port()),
                             std::move(pending));
    close_quietly(in.socket);
    co_return;
  }
  const auto ec = co_await connect_upstream(conn, task, to_tcp_endpoint(target->ip, target->port),
                                            w.timeouts().upstream_connect);
  if (ec || conn.killed) {
    spdlog::debug("overlay: task {} at {}:{}: connect failed: {}", preamble->task_id,
                  target->ip.text, target->port, ec.message());
    co_await refuse(overlay::Reply::connect_failed, "task_connect_failed");
    co_return;
  }
  std::string to_task;
  if (preamble->protocol == overlay::StreamProtocol::tcp &&
      target->proxy_protocol != discovery::ProxyProtocol::none) {
    const overlay::ProxiedAddresses a{preamble->client_ip, preamble->client_port, preamble->dst_ip,
                                      preamble->dst_port};
    to_task = target->proxy_protocol == discovery::ProxyProtocol::v2 ? overlay::encode_v2(a)
                                                                     : overlay::encode_v1(a);
  }
  to_task.append(buf.data() + line_end + 1, have - line_end - 1);
  if (!to_task.empty()) {
    if (auto wec = co_await write_all(conn, task, to_task, w.timeouts().upstream_connect); wec) {
      co_await refuse(overlay::Reply::connect_failed, "task_connect_failed");
      close_quietly(task);
      co_return;
    }
  }
  if (auto wec = co_await write_all(conn, in, ok, w.timeouts().upstream_connect); wec) {
    close_quietly(task);
    close_quietly(in.raw());
    co_return;
  }
  w.metrics().overlay_streams_in.Increment();
  if (in.tls) {
    // Decrypted bytes go straight to the task and the task's are encrypted straight onto the
    // connection: no socketpair, no splice (tls_bridge.h).
    conn.down = nullptr;
    conn.up = nullptr;
    conn.overlay_ssl = nullptr;
    const std::uint64_t rekey = in.rekey_bytes;
    const std::shared_ptr<const void> keep = in.keep;
    co_await relay_tls(w, std::move(in.tls), keep, std::move(task), w.timeouts().l4_idle, rekey,
                       peer_id.empty() ? nullptr : &peer_id);
    co_return;
  }
  co_await splice_both(w, conn, in.socket, task, w.timeouts().l4_idle, nullptr);
  close_quietly(task);
  close_quietly(in.socket);
}

}  // namespace routemesh::proxy
