#include "proxy/worker.h"

#include "base/spawn.h"
#include "proxy/http_session.h"
#include "proxy/https_session.h"
#include "proxy/l4/l4_session.h"
#include "proxy/l4/udp.h"
#include "proxy/overlay/overlay.h"
#include "tls/context.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <random>
#include <set>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace routemesh::proxy {

namespace {

constexpr std::size_t kMaxFreeBuffers = 64;
constexpr std::size_t kMaxFreePipes = 64;
// Parsers and head strings kept for reuse: enough for every request in flight on a busy
// thread; beyond that an idle connection's are freed.
constexpr std::size_t kMaxFreeParsers = 256;
constexpr std::size_t kHeadBufferReserve = 2048;
constexpr int kPipeSize = 1 << 20;

const prometheus::Histogram::BucketBoundaries& duration_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return b;
}

milliseconds ms(std::uint32_t v) {
  return milliseconds(v);
}

// The ticker must be finer than the shortest configured deadline, but a coarse tick costs
// nothing on the request path, so: an eighth of the shortest timeout, within [5, 100] ms.
Timeouts timeouts_of(const config::NodeConfig& cfg) {
  return Timeouts{ms(cfg.timeouts.request_head_ms),
                  ms(cfg.timeouts.idle_ms),
                  ms(cfg.timeouts.upstream_connect_ms),
                  ms(cfg.timeouts.upstream_response_ms),
                  ms(cfg.timeouts.upstream_idle_ms),
                  ms(cfg.timeouts.l4_idle_ms),
                  ms(cfg.timeouts.drain_ms),
                  ms(cfg.timeouts.udp_idle_ms),
                  ms(cfg.timeouts.request_body_ms),
                  cfg.timeouts.body_min_rate_bps,
                  ms(cfg.timeouts.body_min_rate_grace_ms)};
}

http::Limits limits_of(const config::NodeConfig& cfg) {
  return http::Limits{cfg.limits.max_header_bytes, cfg.limits.max_uri_bytes, cfg.limits.max_headers,
                      cfg.limits.max_request_body_bytes};
}

milliseconds tick_for(const Timeouts& t) {
  auto shortest = std::min({t.request_head, t.idle, t.upstream_connect, t.upstream_response,
                            t.l4_idle, t.upstream_idle});
  if (t.request_body.count() > 0) {
    shortest = std::min(shortest, t.request_body);
  }
  if (t.body_min_rate_bps > 0 && t.body_min_rate_grace.count() > 0) {
    shortest = std::min(shortest, t.body_min_rate_grace);
  }
  return std::clamp(shortest / 8, milliseconds(5), milliseconds(100));
}

std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

void ServiceMetrics::count(unsigned status, double seconds) {
  ++pending_requests[status >= 100 && status < 600 ? status / 100 : 0];
  const auto& b = duration_buckets();
  std::size_t i = 0;
  while (i < b.size() && seconds > b[i]) {
    ++i;
  }
  pending_buckets[i] += 1;
  pending_sum += seconds;
  dirty = true;
}

void ServiceMetrics::flush() {
  if (!dirty) {
    return;
  }
  for (std::size_t i = 0; i < pending_requests.size(); ++i) {
    if (pending_requests[i] != 0) {
      requests[i]->Increment(static_cast<double>(pending_requests[i]));
      pending_requests[i] = 0;
    }
  }
  duration->ObserveMultiple(pending_buckets, pending_sum);
  std::fill(pending_buckets.begin(), pending_buckets.end(), 0.0);
  pending_sum = 0;
  dirty = false;
}

struct Listener {
  explicit Listener(asio::io_context& io) : acceptor(io) {}
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  std::string vip;      // set for a service VIP listener
  std::string address;  // the address bound ("" = node.listen)
  ListenerKind kind = ListenerKind::http;
  bool accepting = false;
};

void LiveConn::cancel_io() {
  boost::system::error_code ignored;
  if (down != nullptr && down->is_open()) {
    down->cancel(ignored);
  }
  if (up != nullptr && up->is_open()) {
    up->cancel(ignored);
  }
}

Worker::Worker(unsigned index, std::shared_ptr<const config::NodeConfig> config, Metrics& metrics,
               std::shared_ptr<AccessLog> log)
    // One thread per io_context. UNSAFE_IO additionally drops the per-socket reactor mutex:
    // every socket of a worker is used from its thread only (the control thread touches
    // them solely before run() starts and after join()). Posting from other threads stays
    // safe: the scheduler keeps its lock.
    : io_(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO)),
      index_(index),
      cfg_(std::move(config)),
      metrics_(metrics),
      timeouts_(timeouts_of(*cfg_)),
      http_limits_(limits_of(*cfg_)),
      via_(cfg_->node.via ? "routemesh" : ""),
      tick_period_(tick_for(timeouts_)),
      balancer_(cfg_->health),
      pool_(std::make_unique<UpstreamPool>(cfg_->limits.max_idle_upstream_per_endpoint,
                                           timeouts_.upstream_idle)),
      overlay_spares_(std::make_unique<OverlaySpares>(*this)),
      free_buffers_(kMaxFreeBuffers),
      free_request_parsers_(kMaxFreeParsers),
      free_response_parsers_(kMaxFreeParsers),
      free_head_buffers_(kMaxFreeParsers),
      free_client_buffers_(kMaxFreeParsers),
      rng_state_(std::random_device{}() ^ (std::uint64_t{index} << 32) ^
                 static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())) {
  live_head_.prev = &live_head_;
  live_head_.next = &live_head_;
  no_route_metrics_ = &metrics_for("");
  log_ = std::move(log);
  if (log_) {
    access_log_.emplace(*log_);
  }
  free_pipes_.reserve(kMaxFreePipes);
}

Worker::~Worker() {
  // Sockets must die before the io_context that owns their services; the io_context must die
  // before the registry and pools its session frames unregister from.
  listeners_.clear();
  vip_listeners_.clear();
  close_udp_ports();
  overlay_listener_.reset();
  https_listener_.reset();
  ticker_.reset();
  pool_->close_all();
  overlay_spares_.reset();
  for (auto& p : free_pipes_) {
    ::close(p.rd);
    ::close(p.wr);
  }
  free_pipes_.clear();
  io_.reset();
  flush_metrics();
  if (access_log_) {
    access_log_->flush();
  }
}

std::uint64_t Worker::next_random() {
  return splitmix64(rng_state_);
}

void Worker::make_request_id(char (&out)[16]) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t r = next_random();
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[r & 15];
    r >>= 4;
  }
}

std::optional<std::uint32_t> Worker::vip_cluster(std::string_view vip, std::uint16_t port,
                                                 bool udp) const {
  if (!table_) {
    return std::nullopt;
  }
  if (const mesh::VipRoute* r = mesh::find_vip_route(*table_, vip, port, udp)) {
    return r->cluster;
  }
  return std::nullopt;
}

namespace {

// The cluster of the route on `port` in `routes` (sorted by port).
std::optional<std::uint32_t> route_on(const std::vector<mesh::L4Route>& routes,
                                      std::uint16_t port) {
  auto it =
      std::lower_bound(routes.begin(), routes.end(), port,
                       [](const mesh::L4Route& r, std::uint16_t p) { return r.published < p; });
  if (it == routes.end() || it->published != port) {
    return std::nullopt;
  }
  return it->cluster;
}

}  // namespace

std::optional<std::uint32_t> Worker::udp_cluster(std::uint16_t port) const {
  return table_ ? route_on(table_->udp, port) : std::nullopt;
}

std::optional<std::uint32_t> Worker::l4_cluster(std::uint16_t port) const {
  return table_ ? route_on(table_->l4, port) : std::nullopt;
}

ServiceMetrics& Worker::metrics_for(const std::string& service) {
  auto& slot = service_metrics_[service];
  if (!slot) {
    slot = std::make_unique<ServiceMetrics>();
    slot->service = service;
    static constexpr const char* kClass[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (std::size_t i = 0; i < 6; ++i) {
      slot->requests[i] = &metrics_.requests.Add({{"service", service}, {"code_class", kClass[i]}});
    }
    slot->duration = &metrics_.request_duration.Add({{"service", service}}, duration_buckets());
    slot->pending_buckets.assign(duration_buckets().size() + 1, 0.0);
    slot->connect_errors = &metrics_.upstream_connect_errors.Add({{"service", service}});
    slot->upstream_errors = &metrics_.upstream_errors.Add({{"service", service}});
    slot->retries = &metrics_.upstream_retries.Add({{"service", service}});
    slot->ejections = &metrics_.ejections.Add({{"service", service}});
    slot->l4_connections = &metrics_.l4_connections.Add({{"service", service}});
    slot->l4_bytes = &metrics_.l4_bytes.Add({{"service", service}});
  }
  return *slot;
}

void Worker::apply_table(std::shared_ptr<const mesh::RouteTable> table,
                         std::shared_ptr<const tls::IngressContexts> ingress) {
  if (!table) {
    return;
  }
  table_ = std::move(table);
  ingress_tls_ = std::move(ingress);
  balancer_.on_table(*table_);
  pool_->on_table(*table_);
  cluster_metrics_.clear();
  cluster_metrics_.reserve(table_->clusters.size());
  for (const auto& c : table_->clusters) {
    cluster_metrics_.push_back(&metrics_for(c.service));
  }
  if (!draining_) {
    reconcile_listeners();
  }
  mark_drained_upstreams();
  close_untrusted_overlay(false);
}

bool Worker::overlay_peer_revoked(const ssl_st* ssl) {
  const tls::PeerTrust* trust = overlay_tls_ ? overlay_tls_->trust.get() : nullptr;
  if (trust == nullptr || !trust->peer_revoked(ssl)) {
    return false;
  }
  metrics_.overlay_refused.Add({{"reason", "out_revoked"}}).Increment();
  return true;
}

// Overlay connections another node may no longer use end now (see worker.h): spares waiting
// for their preamble, streams either way, pooled HTTP streams and this node's own spares.
void Worker::close_untrusted_overlay(bool revocations) {
  const tls::PeerTrust* trust = revocations && overlay_tls_ ? overlay_tls_->trust.get() : nullptr;
  if (revocations) {
    ++overlay_checks_;
  }
  auto revoked = [trust](const ssl_st* ssl) {
    return trust != nullptr && trust->peer_revoked(ssl);
  };
  for (LiveConn* c = live_head_.next; c != &live_head_; c = c->next) {
    if (c->killed || (c->overlay_peer == nullptr && c->overlay_ssl == nullptr)) {
      continue;
    }
    const char* reason = nullptr;
    // The state's removal reaches the node's trust (at once) and its route table (after a
    // compile): a removed node's connections count as removed whichever notices first.
    const auto refused =
        trust != nullptr ? trust->peer_refused(c->overlay_ssl) : std::optional<std::string_view>{};
    if ((c->overlay_peer != nullptr && table_ && !table_->nodes.contains(*c->overlay_peer)) ||
        refused == "removed") {
      reason = "member_removed";
      spdlog::warn("overlay: closing a connection of node {}: it is no longer a member",
                   c->overlay_peer != nullptr ? *c->overlay_peer : std::string("(unnamed)"));
    } else if (refused) {
      reason = "revoked";
      spdlog::warn("overlay: closing a connection {}: its peer's certificate was revoked",
                   c->overlay_peer != nullptr ? "of node " + *c->overlay_peer : "to a node");
    }
    if (reason == nullptr) {
      continue;
    }
    metrics_.overlay_refused.Add({{"reason", reason}}).Increment();
    c->killed = true;
    c->expired = true;
    c->cancel_io();
  }
  if (trust != nullptr && trust->size() > 0) {
    const std::size_t spares = overlay_spares_->close_untrusted(revoked);
    const std::size_t pooled = pool_->close_untrusted(revoked);
    if (spares + pooled > 0) {
      spdlog::warn(
          "overlay: closed {} idle connection(s) to nodes whose certificate was revoked or "
          "that were removed",
          spares + pooled);
      metrics_.overlay_refused.Add({{"reason", "out_revoked"}})
          .Increment(static_cast<double>(spares + pooled));
    }
  }
}

// Connections attached to an endpoint the new table drains or no longer has get a deadline of
// now + their service's grace; those whose endpoint is back in service lose it.
void Worker::mark_drained_upstreams() {
  std::unordered_map<std::string_view, std::vector<const mesh::Cluster*>> by_service;
  bool indexed = false;
  const auto now = Clock::now();
  for (LiveConn* c = live_head_.next; c != &live_head_; c = c->next) {
    if (c->drain_cluster == nullptr) {
      continue;
    }
    if (!indexed) {
      for (const auto& cl : table_->clusters) {
        by_service[cl.service].push_back(&cl);
      }
      indexed = true;
    }
    const std::string& key = c->drain_cluster->endpoints[c->drain_endpoint].key;
    bool in_service = false;
    if (auto it = by_service.find(c->drain_cluster->service); it != by_service.end()) {
      for (const mesh::Cluster* cl : it->second) {
        for (const auto& e : cl->endpoints) {
          in_service = in_service || (e.key == key && !e.draining);
        }
      }
    }
    if (in_service) {
      c->drain_at = Clock::time_point::max();
    } else if (c->drain_at == Clock::time_point::max()) {
      c->drain_at = now + milliseconds(c->drain_cluster->drain_grace_ms);
    }
  }
}

std::shared_ptr<Listener> Worker::open_listener(std::uint16_t port, ListenerKind kind,
                                                const std::string& address) {
  auto l = std::make_shared<Listener>(*io_);
  l->address = address;
  const tcp::endpoint ep(asio::ip::make_address(address.empty() ? cfg_->node.listen : address),
                         port);
  l->acceptor.open(ep.protocol());
  l->acceptor.set_option(tcp::acceptor::reuse_address(true));
  // Every proxy thread binds the same port; the kernel spreads connections over them.
  int one = 1;
  if (::setsockopt(l->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
  }
  l->acceptor.bind(ep);
  l->acceptor.listen(asio::socket_base::max_listen_connections);
  l->port = l->acceptor.local_endpoint().port();
  l->kind = kind;
  return l;
}

void Worker::open_https(std::uint16_t port) {
  https_listener_ = open_listener(port, ListenerKind::https);
}

void Worker::open_overlay(const tcp::endpoint& at) {
  auto l = std::make_shared<Listener>(*io_);
  l->acceptor.open(at.protocol());
  l->acceptor.set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  if (::setsockopt(l->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
  }
  l->acceptor.bind(at);
  l->acceptor.listen(asio::socket_base::max_listen_connections);
  l->port = l->acceptor.local_endpoint().port();
  l->kind = ListenerKind::overlay;
  overlay_listener_ = std::move(l);
}

std::uint16_t Worker::open_hrm(std::uint16_t port) {
  auto l = open_listener(port, ListenerKind::http);
  hrm_port_ = l->port;
  listeners_[hrm_port_] = l;
  update_open_ports();
  return hrm_port_;
}

namespace {

// The address a published port binds ("" = node.listen), from the table.
std::string bind_address(const mesh::RouteTable* table, bool udp, std::uint16_t port) {
  if (table == nullptr) {
    return {};
  }
  auto it = table->bind_addresses.find({udp, port});
  return it == table->bind_addresses.end() ? std::string() : it->second;
}

}  // namespace

void Worker::reconcile_listeners() {
  std::map<std::uint16_t, ListenerKind> want;
  if (hrm_port_ != 0) {
    want[hrm_port_] = ListenerKind::http;
  }
  if (table_) {
    for (auto p : table_->http_ports) {
      want.emplace(p, ListenerKind::http);
    }
    for (const auto& r : table_->l4) {
      if (r.published != hrm_port_) {
        want[r.published] = ListenerKind::l4;
      }
    }
  }
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    auto w = want.find(it->first);
    // A port whose bind address changed is closed here and opened again below.
    const bool moved = w != want.end() && it->first != hrm_port_ &&
                       it->second->address != bind_address(table_.get(), false, it->first);
    if (w == want.end() || moved) {
      // Closing the acceptor ends its accept loop; established connections carry on.
      boost::system::error_code ignored;
      it->second->acceptor.close(ignored);
      it = listeners_.erase(it);
    } else {
      it->second->kind = w->second;
      ++it;
    }
  }
  for (const auto& [port, kind] : want) {
    if (listeners_.count(port) != 0) {
      continue;
    }
    const std::string address = port == hrm_port_ ? "" : bind_address(table_.get(), false, port);
    try {
      auto l = open_listener(port, kind, address);
      listeners_[port] = l;
      if (started_) {
        spawn_accept(l);
      }
    } catch (const std::exception& e) {
      metrics_.listener_errors.Increment();
      spdlog::warn("proxy: thread {} cannot listen on {}:{}: {}", index_,
                   address.empty() ? cfg_->node.listen : address, port, e.what());
    }
  }
  update_open_ports();
  reconcile_vip_listeners();
  reconcile_vip_udp_ports();
  reconcile_udp_ports();
}

void Worker::reconcile_udp_ports() {
  std::set<std::uint16_t> want;
  if (table_) {
    for (const auto& r : table_->udp) {
      want.insert(r.published);
    }
  }
  for (auto it = udp_ports_.begin(); it != udp_ports_.end();) {
    if (want.count(it->first) == 0 ||
        it->second->address() != bind_address(table_.get(), true, it->first)) {
      it->second->close();
      it = udp_ports_.erase(it);
    } else {
      ++it;
    }
  }
  for (std::uint16_t port : want) {
    if (udp_ports_.count(port) != 0) {
      continue;
    }
    const std::string address = bind_address(table_.get(), true, port);
    try {
      asio::ip::udp::socket s(*io_);
      const asio::ip::udp::endpoint ep(
          asio::ip::make_address(address.empty() ? cfg_->node.listen : address), port);
      s.open(ep.protocol());
      s.set_option(asio::socket_base::reuse_address(true));
      int one = 1;
      if (::setsockopt(s.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
      }
      s.bind(ep);
      s.non_blocking(true);
      auto p = std::make_shared<UdpPort>(*this, std::move(s), port, address);
      udp_ports_[port] = p;
      if (started_) {
        asio::co_spawn(*io_, p->run(),
                       base::log_and_count("proxy: udp port", &metrics_.session_errors));
      }
    } catch (const std::exception& e) {
      metrics_.listener_errors.Increment();
      spdlog::warn("proxy: thread {} cannot listen on {}:{}/udp: {}", index_,
                   address.empty() ? cfg_->node.listen : address, port, e.what());
    }
  }
}

void Worker::close_udp_ports() {
  for (auto& [port, p] : udp_ports_) {
    p->close();
  }
  udp_ports_.clear();
  for (auto& [key, p] : vip_udp_ports_) {
    p->close();
  }
  vip_udp_ports_.clear();
}

// A VIP's UDP ports, bound with IP_FREEBIND like its TCP listeners.
void Worker::reconcile_vip_udp_ports() {
  std::set<std::pair<std::string, std::uint16_t>> want;
  if (table_ && cfg_->node.vips) {
    for (const auto& v : table_->udp_vips) {
      want.emplace(v.vip.text, v.port);
    }
  }
  for (auto it = vip_udp_ports_.begin(); it != vip_udp_ports_.end();) {
    if (want.count(it->first) == 0) {
      it->second->close();
      it = vip_udp_ports_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& key : want) {
    if (vip_udp_ports_.count(key) != 0) {
      continue;
    }
    try {
      asio::ip::udp::socket s(*io_);
      const asio::ip::udp::endpoint ep(asio::ip::make_address(key.first), key.second);
      s.open(ep.protocol());
      s.set_option(asio::socket_base::reuse_address(true));
      int one = 1;
      if (::setsockopt(s.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
          ::setsockopt(s.native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one) != 0) {
        throw std::system_error(errno, std::generic_category(), "setsockopt");
      }
      s.bind(ep);
      s.non_blocking(true);
      auto p = std::make_shared<UdpPort>(*this, std::move(s), key.second, key.first, key.first);
      vip_udp_ports_[key] = p;
      if (started_) {
        asio::co_spawn(*io_, p->run(),
                       base::log_and_count("proxy: udp port", &metrics_.session_errors));
      }
    } catch (const std::exception& e) {
      metrics_.listener_errors.Increment();
      spdlog::warn("proxy: thread {} cannot listen on VIP {}:{}/udp: {}", index_, key.first,
                   key.second, e.what());
    }
  }
}

// VIP listeners bind with IP_FREEBIND: the VIP need not be on an interface yet (the control
// thread adds it to the loopback interface after publishing the table).
void Worker::reconcile_vip_listeners() {
  std::set<std::pair<std::string, std::uint16_t>> want;
  if (table_ && cfg_->node.vips) {
    for (const auto& v : table_->vips) {
      want.emplace(v.vip.text, v.port);
    }
  }
  for (auto it = vip_listeners_.begin(); it != vip_listeners_.end();) {
    if (want.count(it->first) == 0) {
      boost::system::error_code ignored;
      it->second->acceptor.close(ignored);
      it = vip_listeners_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& key : want) {
    if (vip_listeners_.count(key) != 0) {
      continue;
    }
    try {
      auto l = std::make_shared<Listener>(*io_);
      const tcp::endpoint ep(asio::ip::make_address(key.first), key.second);
      l->acceptor.open(ep.protocol());
      l->acceptor.set_option(tcp::acceptor::reuse_address(true));
      int one = 1;
      if (::setsockopt(l->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) !=
              0 ||
          ::setsockopt(l->acceptor.native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one) !=
              0) {
        throw std::system_error(errno, std::generic_category(), "setsockopt");
      }
      l->acceptor.bind(ep);
      l->acceptor.listen(asio::socket_base::max_listen_connections);
      l->port = key.second;
      l->vip = key.first;
      l->kind = ListenerKind::l4;
      vip_listeners_[key] = l;
      if (started_) {
        spawn_accept(l);
      }
    } catch (const std::exception& e) {
      metrics_.listener_errors.Increment();
      spdlog::warn("proxy: thread {} cannot listen on VIP {}:{}: {}", index_, key.first, key.second,
                   e.what());
    }
  }
}

void Worker::update_open_ports() {
  std::lock_guard lock(open_ports_mutex_);
  open_ports_.clear();
  if (hrm_port_ != 0 && listeners_.count(hrm_port_) != 0) {
    open_ports_.push_back(hrm_port_);
  }
  for (const auto& [port, l] : listeners_) {
    if (port != hrm_port_) {
      open_ports_.push_back(port);
    }
  }
}

std::vector<std::uint16_t> Worker::open_ports() const {
  std::lock_guard lock(open_ports_mutex_);
  return open_ports_;
}

namespace {

asio::awaitable<void> accept_loop(Worker& w, std::shared_ptr<Listener> l) {
  const auto tuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, socket] = co_await l->acceptor.async_accept(tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !l->acceptor.is_open()) {
        co_return;
      }
      // EMFILE, ENFILE, ENOBUFS: back off instead of spinning on a full table.
      w.metrics().listener_errors.Increment();
      spdlog::warn("proxy: accept on port {} failed: {}", l->port, ec.message());
      asio::steady_timer pause(w.io(), milliseconds(50));
      co_await pause.async_wait(tuple);
      continue;
    }
    if (w.live() >= w.cfg().limits.max_connections_per_thread) {
      w.metrics().downstream_rejected.Increment();
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    if (l->kind == ListenerKind::http) {
      asio::co_spawn(w.io(), run_http_session(w, std::move(socket)),
                     base::log_and_count("proxy: http session", &w.metrics().session_errors));
    } else if (l->kind == ListenerKind::https) {
      asio::co_spawn(w.io(), run_https_session(w, std::move(socket), l->port),
                     base::log_and_count("proxy: https session", &w.metrics().session_errors));
    } else if (l->kind == ListenerKind::overlay) {
      asio::co_spawn(w.io(), run_overlay_session(w, std::move(socket)),
                     base::log_and_count("proxy: overlay session", &w.metrics().session_errors));
    } else {
      asio::co_spawn(w.io(), run_l4_session(w, std::move(socket), l->port, l->vip),
                     base::log_and_count("proxy: l4 session", &w.metrics().session_errors));
    }
  }
}

}  // namespace

void Worker::spawn_accept(std::shared_ptr<Listener> l) {
  if (l->accepting) {
    return;
  }
  l->accepting = true;
  asio::co_spawn(*io_, accept_loop(*this, std::move(l)),
                 base::log_and_count("proxy: accept loop", &metrics().session_errors));
}

void Worker::start() {
  started_ = true;
  for (auto& [port, l] : listeners_) {
    spawn_accept(l);
  }
  for (auto& [key, l] : vip_listeners_) {
    spawn_accept(l);
  }
  for (auto& [port, p] : udp_ports_) {
    asio::co_spawn(*io_, p->run(),
                   base::log_and_count("proxy: udp port", &metrics_.session_errors));
  }
  for (auto& [key, p] : vip_udp_ports_) {
    asio::co_spawn(*io_, p->run(),
                   base::log_and_count("proxy: udp port", &metrics_.session_errors));
  }
  if (overlay_listener_) {
    spawn_accept(overlay_listener_);
  }
  if (https_listener_) {
    spawn_accept(https_listener_);
  }
  ticker_ = std::make_unique<asio::steady_timer>(*io_);
  asio::co_spawn(
      *io_,
      [this]() -> asio::awaitable<void> {
        const auto tuple = asio::as_tuple(asio::use_awaitable);
        for (;;) {
          ticker_->expires_after(tick_period_);
          auto [ec] = co_await ticker_->async_wait(tuple);
          if (ec) {
            co_return;
          }
          tick();
        }
      },
      base::log_and_count("proxy: ticker", &metrics().session_errors));
}

void Worker::tick() {
  const auto now = Clock::now();
  for (LiveConn* c = live_head_.next; c != &live_head_; c = c->next) {
    if (c->deadline <= now) {
      c->expired = true;
      c->deadline = Clock::time_point::max();
      c->cancel_io();
    }
    if (c->drain_cluster != nullptr && c->drain_at <= now) {
      c->drain_at = Clock::time_point::max();
      c->killed = true;
      c->expired = true;
      c->cancel_io();
      metrics_.drain_closed.Increment();
    }
  }
  pool_->sweep(now);
  overlay_spares_->sweep(now);
  for (auto& [port, p] : udp_ports_) {
    p->sweep(now, timeouts_.udp_idle);
  }
  for (auto& [key, p] : vip_udp_ports_) {
    p->sweep(now, timeouts_.udp_idle);
  }
  flush_metrics();
  if (access_log_) {
    access_log_->flush();
  }
}

void Worker::flush_metrics() {
  for (auto& [name, sm] : service_metrics_) {
    sm->flush();
  }
  if (pending_bytes_in_ != 0) {
    metrics_.bytes_in.Increment(static_cast<double>(pending_bytes_in_));
    pending_bytes_in_ = 0;
  }
  if (pending_bytes_out_ != 0) {
    metrics_.bytes_out.Increment(static_cast<double>(pending_bytes_out_));
    pending_bytes_out_ = 0;
  }
  const auto closed = pool_->take_close_counts();
  for (std::size_t i = 0; i < closed.size(); ++i) {
    if (closed[i] != 0) {
      metrics_.upstream_pool_closed[i]->Increment(static_cast<double>(closed[i]));
    }
  }
}

void Worker::add_live(LiveConn& c) {
  c.next = &live_head_;
  c.prev = live_head_.prev;
  live_head_.prev->next = &c;
  live_head_.prev = &c;
  live_count_.fetch_add(1, std::memory_order_relaxed);
  metrics_.downstream_active.Increment();
}

void Worker::remove_live(LiveConn& c) {
  c.prev->next = c.next;
  c.next->prev = c.prev;
  c.prev = c.next = nullptr;
  live_count_.fetch_sub(1, std::memory_order_relaxed);
  metrics_.downstream_active.Decrement();
}

void Worker::begin_drain() {
  draining_ = true;
  for (auto& [port, l] : listeners_) {
    boost::system::error_code ignored;
    l->acceptor.close(ignored);
  }
  listeners_.clear();
  for (auto& [key, l] : vip_listeners_) {
    boost::system::error_code ignored;
    l->acceptor.close(ignored);
  }
  vip_listeners_.clear();
  if (https_listener_) {
    boost::system::error_code ignored;
    https_listener_->acceptor.close(ignored);
  }
  close_udp_ports();
  // The overlay listener stays open while draining: other nodes still finish requests they
  // started towards this node's tasks (they stop choosing them once it leaves the state).
  overlay_spares_->close_all();
  {
    std::lock_guard lock(open_ports_mutex_);
    open_ports_.clear();
  }
  for (LiveConn* c = live_head_.next; c != &live_head_; c = c->next) {
    if (c->idle) {
      c->cancel_io();
    }
  }
  pool_->close_all();
}

void Worker::kill_all() {
  draining_ = true;
  close_udp_ports();
  for (LiveConn* c = live_head_.next; c != &live_head_; c = c->next) {
    c->killed = true;
    c->expired = true;
    c->cancel_io();
  }
  pool_->close_all();
  overlay_spares_->close_all();
  flush_metrics();
  if (access_log_) {
    access_log_->flush();
  }
  if (ticker_) {
    ticker_->cancel();
  }
}

void Worker::finish(std::uint64_t gen, const mesh::Cluster& cluster, std::uint32_t endpoint,
                    mesh::Outcome outcome, ServiceMetrics& sm) {
  const std::string& key = cluster.endpoints[endpoint].key;
  // The key-based overload finds the endpoint again when the table changed meanwhile.
  if (balancer_.on_finish(gen, cluster.index, endpoint, cluster.service, key, outcome,
                          Clock::now())) {
    sm.ejections->Increment();
    spdlog::warn("proxy: endpoint {} of service {} ejected by passive health (thread {})", key,
                 cluster.service, index_);
  }
}

asio::awaitable<boost::system::error_code> connect_upstream(LiveConn& conn, tcp::socket& s,
                                                            const tcp::endpoint& ep,
                                                            milliseconds timeout) {
  boost::system::error_code ignored;
  if (s.is_open()) {
    s.close(ignored);
  }
  conn.up = &s;
  conn.arm(Clock::now(), timeout);
  auto [ec] = co_await s.async_connect(ep, asio::as_tuple(asio::use_awaitable));
  if (conn.expired && !conn.killed) {
    ec = asio::error::timed_out;
  } else if (conn.killed) {
    ec = asio::error::operation_aborted;
  }
  if (!ec) {
    s.set_option(tcp::no_delay(true), ignored);
  } else {
    s.close(ignored);
  }
  conn.disarm();
  co_return ec;
}

void Worker::apply_settings(std::shared_ptr<const config::NodeConfig> cfg,
                            std::shared_ptr<AccessLog> log) {
  cfg_ = std::move(cfg);
  timeouts_ = timeouts_of(*cfg_);
  http_limits_ = limits_of(*cfg_);
  via_ = cfg_->node.via ? "routemesh" : "";
  tick_period_ = tick_for(timeouts_);
  free_request_parsers_.clear();  // built with the old limits
  free_response_parsers_.clear();
  balancer_.set_health(cfg_->health);
  pool_->set_limits(cfg_->limits.max_idle_upstream_per_endpoint, timeouts_.upstream_idle);
  if (log != log_) {
    if (access_log_) {
      access_log_->flush();
      access_log_.reset();
    }
    log_ = std::move(log);
    if (log_) {
      access_log_.emplace(*log_);
    }
  }
}

std::unique_ptr<http::RequestParser> Worker::take_request_parser() {
  return free_request_parsers_.take(
      [this] { return std::make_unique<http::RequestParser>(http_limits_); });
}

void Worker::give_request_parser(std::unique_ptr<http::RequestParser> p) {
  if (p) {
    free_request_parsers_.give(std::move(p));
  }
}

std::unique_ptr<http::ResponseParser> Worker::take_response_parser() {
  return free_response_parsers_.take(
      [this] { return std::make_unique<http::ResponseParser>(http_limits_); });
}

void Worker::give_response_parser(std::unique_ptr<http::ResponseParser> p) {
  if (p) {
    free_response_parsers_.give(std::move(p));
  }
}

std::string Worker::take_head_buffer() {
  return free_head_buffers_.take([] {
    std::string s;
    s.reserve(kHeadBufferReserve);
    return s;
  });
}

void Worker::give_head_buffer(std::string s) {
  if (s.capacity() >= kHeadBufferReserve) {
    s.clear();
    free_head_buffers_.give(std::move(s));
  }
}

std::unique_ptr<char[]> Worker::take_client_buffer() {
  return free_client_buffers_.take(
      [] { return std::make_unique_for_overwrite<char[]>(kClientBufferSize); });
}

void Worker::give_client_buffer(std::unique_ptr<char[]> b) {
  if (b) {
    free_client_buffers_.give(std::move(b));
  }
}

prometheus::Counter& Worker::bad_requests(std::string_view reason) {
  prometheus::Counter*& slot = bad_request_counters_[reason.data()];
  if (slot == nullptr) {
    slot = &metrics_.bad_requests.Add({{"reason", std::string(reason)}});
  }
  return *slot;
}

bool Worker::policy_allows(const mesh::RouteTable& table, const asio::ip::address& peer,
                           const mesh::policy::Destination& destination, const char* layer) {
  asio::ip::address source = peer;
  if (source.is_v6() && source.to_v6().is_v4_mapped()) {
    source = asio::ip::make_address_v4(asio::ip::v4_mapped, source.to_v6());
  }
  mesh::policy::Decision decision;
  if (source.is_v4()) {
    const auto b = source.to_v4().to_bytes();
    decision = mesh::policy::check(table.policy, b.data(), false, destination);
  } else {
    const auto b = source.to_v6().to_bytes();
    decision = mesh::policy::check(table.policy, b.data(), true, destination);
  }
  if (decision.allowed) {
    return true;
  }
  metrics_.policy_denied.Add({{"service", std::string(destination.service)}, {"layer", layer}})
      .Increment();
  const auto now = Clock::now();
  std::string text = source.to_string();
  if (policy_logged_.size() >= 4096) {
    std::erase_if(policy_logged_,
                  [&](const auto& kv) { return now - kv.second >= std::chrono::minutes(1); });
    if (policy_logged_.size() >= 4096) {
      policy_logged_.clear();
    }
  }
  auto [it, fresh] = policy_logged_.try_emplace(std::move(text), now);
  if (fresh || now - it->second >= std::chrono::minutes(1)) {
    it->second = now;
    spdlog::warn(
        "policy: denied {} -> service {} port {} ({}, {}); further denials from {} are "
        "counted, not logged, for a minute",
        it->first, destination.service, destination.port, layer, mesh::policy::describe(decision),
        it->first);
  }
  return false;
}

namespace {

bool in_ip_ranges(const asio::ip::address& peer, const std::vector<base::IpRange>& ranges) {
  if (ranges.empty()) {
    return false;
  }
  if (peer.is_v4()) {
    const auto b = peer.to_v4().to_bytes();
    return std::any_of(ranges.begin(), ranges.end(),
                       [&](const base::IpRange& r) { return base::in_range(r, b.data(), false); });
  }
  const auto v6 = peer.to_v6();
  if (v6.is_v4_mapped()) {  // an IPv4 client on a dual-stack socket is matched as IPv4
    return in_ip_ranges(asio::ip::make_address_v4(asio::ip::v4_mapped, v6), ranges);
  }
  const auto b = v6.to_bytes();
  return std::any_of(ranges.begin(), ranges.end(),
                     [&](const base::IpRange& r) { return base::in_range(r, b.data(), true); });
}

}  // namespace

bool Worker::proxy_protocol_peer(const asio::ip::address& peer) const {
  return in_ip_ranges(peer, cfg_->node.proxy_protocol_from);
}

bool Worker::trusted_proxy(const asio::ip::address& peer) const {
  return in_ip_ranges(peer, cfg_->node.trusted_proxies);
}

std::unique_ptr<char[]> Worker::take_buffer() {
  return free_buffers_.take(
      [] { return std::make_unique_for_overwrite<char[]>(kUpstreamBufferSize); });
}

void Worker::give_buffer(std::unique_ptr<char[]> b) {
  if (b) {
    free_buffers_.give(std::move(b));
  }
}

std::optional<Pipe> Worker::take_pipe() {
  if (!free_pipes_.empty()) {
    Pipe p = free_pipes_.back();
    free_pipes_.pop_back();
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return std::nullopt;
  }
  // Larger pipes mean fewer splice calls per MiB; the default (64 KiB) still works when
  // fs.pipe-max-size or the per-user pipe quota refuses.
  (void)::fcntl(fds[1], F_SETPIPE_SZ, kPipeSize);
  return Pipe{fds[0], fds[1], 0};
}

void Worker::give_pipe(Pipe p) {
  if (p.pending == 0 && free_pipes_.size() < kMaxFreePipes) {
    free_pipes_.push_back(p);
    return;
  }
  ::close(p.rd);
  ::close(p.wr);
}

}  // namespace routemesh::proxy
