#pragma once
// One proxy thread's world: its io_context, its listeners (SO_REUSEPORT), its copy of the
// published RouteTable, its Balancer, upstream pool, metric children, access log batch and
// the registry of its live connections. Everything here is used from the worker's own thread
// only; the control thread reaches a Worker solely through asio::post (ProxyServer), so the
// request path takes no locks. Exceptions: open_hrm() and apply_table() may also be called
// by the control thread before the thread runs, and live()/open_ports() are safe anywhere.

#include "config/types.h"
#include "mesh/balancer.h"
#include "mesh/route_table.h"
#include "proxy/access_log.h"
#include "proxy/free_list.h"
#include "proxy/http/parser.h"
#include "proxy/metrics.h"
#include "proxy/upstream_pool.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

struct ssl_st;

namespace routemesh::tls {
class IngressContexts;
}

namespace routemesh::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Metric children of one service, resolved once when a table arrives so the request path
// does no label lookups. Objects are stable for the worker's lifetime. Per-request counts
// are kept thread-locally and added to the shared children on every tick (flush()), so the
// request path touches no atomics, no histogram mutex and no cache line shared between
// threads; /metrics lags by at most one tick.
struct ServiceMetrics {
  std::string service;
  std::array<prometheus::Counter*, 6> requests{};  // [0] other, [1..5] = 1xx..5xx
  prometheus::Histogram* duration = nullptr;
  prometheus::Counter* connect_errors = nullptr;
  prometheus::Counter* upstream_errors = nullptr;
  prometheus::Counter* retries = nullptr;
  prometheus::Counter* ejections = nullptr;
  prometheus::Counter* l4_connections = nullptr;
  prometheus::Counter* l4_bytes = nullptr;

  void count(unsigned status, double seconds);
  void flush();

  std::array<std::uint64_t, 6> pending_requests{};
  std::vector<double> pending_buckets;  // one per bucket boundary, plus +Inf
  double pending_sum = 0;
  bool dirty = false;
};

// A live connection (HTTP session or L4 splice), in the worker's intrusive registry. The
// worker's ticker enforces `deadline` by cancelling the sockets' pending operations (and
// setting `expired`), which keeps per-operation timers off the hot path: a deadline is a
// store, not a timer-queue insertion (see README, "Timeouts"). Sessions check `expired`
// after every await.
struct LiveConn {
  LiveConn* prev = nullptr;
  LiveConn* next = nullptr;
  Clock::time_point deadline = Clock::time_point::max();
  tcp::socket* down = nullptr;
  tcp::socket* up = nullptr;
  bool idle = false;     // an HTTP session waiting for the next request (closed on drain)
  bool expired = false;  // the current deadline passed; pending I/O was cancelled
  bool killed = false;   // terminal cancel (shutdown after drain_ms)
  // An accepted overlay connection: the node id its certificate names (owned by the session),
  // so a new table without that node ends it. Null otherwise.
  const std::string* overlay_peer = nullptr;
  // An encrypted overlay connection, either way: its TLS connection (owned by whoever owns the
  // LiveConn), so one whose peer certificate is revoked meanwhile ends. Null otherwise.
  const ssl_st* overlay_ssl = nullptr;
  // The upstream endpoint an L4 splice, a tunnel or an HTTP exchange is using (its table stays
  // alive meanwhile), so a new table that drains or removes the task can close the connection
  // after the service's drain grace. Null when not attached to an endpoint.
  const mesh::Cluster* drain_cluster = nullptr;
  std::uint32_t drain_endpoint = 0;
  Clock::time_point drain_at = Clock::time_point::max();

  void attach(const mesh::Cluster& cluster, std::uint32_t endpoint) {
    drain_cluster = &cluster;
    drain_endpoint = endpoint;
    drain_at = Clock::time_point::max();
  }
  void detach() {
    drain_cluster = nullptr;
    drain_at = Clock::time_point::max();
  }

  void arm(Clock::time_point now, milliseconds d) {
    deadline = now + d;
    expired = false;
  }
  void disarm() {
    deadline = Clock::time_point::max();
    expired = false;
  }
  void cancel_io();
};

// A pipe for splice(2), pooled per worker (creating one costs 2-3 syscalls).
struct Pipe {
  int rd = -1;
  int wr = -1;
  std::size_t pending = 0;  // bytes inside the pipe
};

enum class ListenerKind { http, l4, overlay, https };

class OverlaySpares;
class UdpPort;
struct OverlayTls;

struct Listener;

struct Timeouts {
  milliseconds request_head;
  milliseconds idle;
  milliseconds upstream_connect;
  milliseconds upstream_response;
  milliseconds upstream_idle;
  milliseconds l4_idle;
  milliseconds drain;
  milliseconds udp_idle;
  milliseconds request_body;            // 0: no total deadline for a request body
  std::uint32_t body_min_rate_bps = 0;  // 0: no minimum rate
  milliseconds body_min_rate_grace;

  bool body_deadlines() const { return request_body.count() > 0 || body_min_rate_bps > 0; }
};

class Worker {
 public:
  Worker(unsigned index, std::shared_ptr<const config::NodeConfig> cfg, Metrics& metrics,
         std::shared_ptr<AccessLog> log);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  asio::io_context& io() { return *io_; }
  unsigned index() const { return index_; }

  // Binds the HRM listener (port 0: any). Control thread, before the thread runs. Throws
  // std::system_error (startup boundary). Returns the bound port.
  std::uint16_t open_hrm(std::uint16_t port);
  // Binds the overlay listener (node.overlay "IP:PORT"). Control thread, before the thread
  // runs; throws std::system_error like open_hrm.
  void open_overlay(const tcp::endpoint& at);
  // Binds the HTTPS listener (node.https_port on node.listen). Control thread, before the
  // thread runs; throws std::system_error like open_hrm.
  void open_https(std::uint16_t port);
  // Starts the ticker and the accept loops of listeners opened so far (worker thread).
  void start();
  // Installs a new table: balancer, pool index, metric children, listener reconciliation.
  // `ingress`: the HTTPS port's TLS contexts built from the table's certificates (nullptr when
  // it has none).
  void apply_table(std::shared_ptr<const mesh::RouteTable> table,
                   std::shared_ptr<const tls::IngressContexts> ingress = nullptr);
  // Installs reloaded settings (worker thread): timeouts, limits, passive health, via,
  // trusted proxies and the access log. Requests in flight finish under the values they
  // started with where they copied them (a session's parser limits); everything else applies
  // from the next step on. Listen address, ports and threads are not changed here.
  void apply_settings(std::shared_ptr<const config::NodeConfig> cfg,
                      std::shared_ptr<AccessLog> log);
  // Shutdown, step 1: close listeners, close idle keep-alive connections, make sessions
  // answer their in-flight request with "Connection: close".
  void begin_drain();
  // Shutdown, step 2: cancel and close whatever is left; flush the access log.
  void kill_all();

  std::size_t live() const { return live_count_.load(std::memory_order_relaxed); }
  std::vector<std::uint16_t> open_ports() const;

  // ---- For sessions (worker thread) ----
  const config::NodeConfig& cfg() const { return *cfg_; }
  // Whether `peer` is in node.trusted_proxies (its forwarding headers are believed).
  bool trusted_proxy(const asio::ip::address& peer) const;
  // Whether `peer` is in node.proxy_protocol_from (it sends a PROXY header first).
  bool proxy_protocol_peer(const asio::ip::address& peer) const;
  const Timeouts& timeouts() const { return timeouts_; }
  const http::Limits& http_limits() const { return http_limits_; }
  Metrics& metrics() { return metrics_; }
  const std::shared_ptr<const mesh::RouteTable>& table() const { return table_; }
  const std::shared_ptr<const tls::IngressContexts>& ingress_tls() const { return ingress_tls_; }
  // The overlay's mutual TLS contexts (overlay/overlay.h), once the node has its certificate.
  const std::shared_ptr<const OverlayTls>& overlay_tls() const { return overlay_tls_; }
  void set_overlay_tls(std::shared_ptr<const OverlayTls> t) { overlay_tls_ = std::move(t); }
  // Ends the overlay connections another node may no longer use: accepted ones of a node the
  // table no longer has, and, with `revocations` (they changed: Server::recheck_overlay_peers),
  // those either way whose peer certificate the overlay's trust now refuses, spares and pooled
  // streams included. Membership and revocation are checked at the handshake; this covers
  // connections made before. Run without `revocations` for each new table.
  void close_untrusted_overlay(bool revocations);
  // How many times close_untrusted_overlay ran for revocations: a connection out of its reach
  // meanwhile (an HTTP exchange's) is checked with overlay_peer_revoked before it is pooled
  // again.
  std::uint64_t overlay_checks() const { return overlay_checks_; }
  // Whether the overlay's trust refuses the peer certificate of `ssl` now (counted in
  // routemesh_overlay_refused_total{reason="out_revoked"} when it does).
  bool overlay_peer_revoked(const ssl_st* ssl);
  // Cluster mode with cluster.overlay_encryption: no plain overlay stream either way, even
  // before the contexts arrive.
  bool overlay_tls_required() const {
    return cfg_->cluster_mode && cfg_->cluster.overlay_encryption;
  }
  // The balancer's table generation (mesh::Balancer::generation()).
  std::uint64_t generation() const { return balancer_.generation(); }
  mesh::Balancer& balancer() { return balancer_; }
  UpstreamPool& pool() { return *pool_; }
  OverlaySpares& overlay_spares() { return *overlay_spares_; }
  AccessLogBuffer* access_log() { return access_log_ ? &*access_log_ : nullptr; }
  bool draining() const { return draining_; }
  std::string_view via() const { return via_; }
  ServiceMetrics& service_metrics(std::uint32_t cluster) { return *cluster_metrics_[cluster]; }
  ServiceMetrics& no_route_metrics() { return *no_route_metrics_; }
  // routemesh_proxy_bad_requests_total{reason}. `reason` is one of the parser's static texts
  // (or another string literal): its child is looked up in the family (a lock) once per
  // worker and reason, then cached by address.
  prometheus::Counter& bad_requests(std::string_view reason);
  // The policy decision (mesh/policy) for traffic from `peer` to `destination` under `table`.
  // A denial is counted in routemesh_policy_denied_total{service, layer} and logged at most
  // once a minute per source address on this thread. `layer`: "l4", "l7" or "overlay".
  bool policy_allows(const mesh::RouteTable& table, const asio::ip::address& peer,
                     const mesh::policy::Destination& destination, const char* layer);
  std::uint64_t next_random();
  // 16 lower-case hex digits.
  void make_request_id(char (&out)[16]);

  // Cluster of the L4 route on `port` in the current table, if any.
  std::optional<std::uint32_t> l4_cluster(std::uint16_t port) const;
  // Cluster of the published UDP port `port` in the current table, if any.
  std::optional<std::uint32_t> udp_cluster(std::uint16_t port) const;
  // The cluster behind vip:port (a UDP port with `udp`) in the current table.
  std::optional<std::uint32_t> vip_cluster(std::string_view vip, std::uint16_t port,
                                           bool udp = false) const;

  // Passive health outcome for an endpoint picked under generation `gen`; counts and logs an
  // ejection. Ignored when the table changed since and the endpoint is gone.
  void finish(std::uint64_t gen, const mesh::Cluster& cluster, std::uint32_t endpoint,
              mesh::Outcome outcome, ServiceMetrics& sm);

  // Whether a request body cut for its deadline or rate may be logged now (at most one line a
  // second per thread; the rest are in the access log and the metrics).
  bool may_log_body_timeout(Clock::time_point now) {
    if (now - body_timeout_logged_ < std::chrono::seconds(1)) {
      return false;
    }
    body_timeout_logged_ = now;
    return true;
  }

  // Downstream byte counts, flushed with the service metrics on every tick.
  void count_bytes(std::uint64_t in, std::uint64_t out) {
    pending_bytes_in_ += in;
    pending_bytes_out_ += out;
  }

  void add_live(LiveConn& c);
  void remove_live(LiveConn& c);

  std::unique_ptr<char[]> take_buffer();  // kUpstreamBufferSize bytes
  void give_buffer(std::unique_ptr<char[]> b);
  // Free lists of what a request needs and an idle connection does not: parsers (between
  // messages) and the string a head is written into. An idle keep-alive connection gives
  // them back, so it costs little more than its socket (bench/idle_memory.py).
  std::unique_ptr<http::RequestParser> take_request_parser();
  void give_request_parser(std::unique_ptr<http::RequestParser> p);
  std::unique_ptr<http::ResponseParser> take_response_parser();
  void give_response_parser(std::unique_ptr<http::ResponseParser> p);
  std::string take_head_buffer();
  void give_head_buffer(std::string s);
  std::unique_ptr<char[]> take_client_buffer();  // kClientBufferSize bytes
  void give_client_buffer(std::unique_ptr<char[]> b);
  // A pipe for splice, or nullopt when pipes cannot be created (EMFILE).
  std::optional<Pipe> take_pipe();
  void give_pipe(Pipe p);

  static constexpr std::size_t kUpstreamBufferSize = 64 * 1024;
  static constexpr std::size_t kClientBufferSize = 16 * 1024;

 private:
  ServiceMetrics& metrics_for(const std::string& service);
  void reconcile_listeners();
  void mark_drained_upstreams();
  void reconcile_vip_listeners();
  void reconcile_vip_udp_ports();
  void reconcile_udp_ports();
  void close_udp_ports();
  void update_open_ports();
  std::shared_ptr<Listener> open_listener(std::uint16_t port, ListenerKind kind,
                                          const std::string& address = {});
  void spawn_accept(std::shared_ptr<Listener> l);
  void tick();
  void flush_metrics();

  std::unique_ptr<asio::io_context> io_;
  unsigned index_;
  std::shared_ptr<const config::NodeConfig> cfg_;
  Metrics& metrics_;
  Timeouts timeouts_;
  http::Limits http_limits_;
  std::string via_;
  milliseconds tick_period_;

  std::shared_ptr<const mesh::RouteTable> table_;
  std::shared_ptr<const tls::IngressContexts> ingress_tls_;
  std::shared_ptr<const OverlayTls> overlay_tls_;
  std::uint64_t overlay_checks_ = 0;
  mesh::Balancer balancer_;
  std::unique_ptr<UpstreamPool> pool_;
  std::unique_ptr<OverlaySpares> overlay_spares_;
  std::shared_ptr<Listener> overlay_listener_;
  std::shared_ptr<Listener> https_listener_;
  std::unordered_map<std::string, std::unique_ptr<ServiceMetrics>> service_metrics_;
  std::vector<ServiceMetrics*> cluster_metrics_;
  ServiceMetrics* no_route_metrics_ = nullptr;
  std::unordered_map<const char*, prometheus::Counter*> bad_request_counters_;
  // When a policy denial from each source address was last logged (bounded: pruned at 4096).
  std::unordered_map<std::string, Clock::time_point> policy_logged_;
  std::shared_ptr<AccessLog> log_;  // keeps the sink of access_log_ alive across reloads
  std::optional<AccessLogBuffer> access_log_;

  std::map<std::uint16_t, std::shared_ptr<Listener>> listeners_;
  // Published UDP ports.
  std::map<std::uint16_t, std::shared_ptr<UdpPort>> udp_ports_;
  // VIP listeners by (VIP, port), when node.vips is on; and the VIPs' UDP sockets.
  std::map<std::pair<std::string, std::uint16_t>, std::shared_ptr<Listener>> vip_listeners_;
  std::map<std::pair<std::string, std::uint16_t>, std::shared_ptr<UdpPort>> vip_udp_ports_;
  mutable std::mutex open_ports_mutex_;  // control-thread reads only; never on request path
  std::vector<std::uint16_t> open_ports_;
  std::uint16_t hrm_port_ = 0;
  bool started_ = false;
  bool draining_ = false;

  std::unique_ptr<asio::steady_timer> ticker_;
  LiveConn live_head_;  // sentinel of the circular intrusive list
  std::atomic<std::size_t> live_count_{0};

  FreeList<std::unique_ptr<char[]>> free_buffers_;
  FreeList<std::unique_ptr<http::RequestParser>> free_request_parsers_;
  FreeList<std::unique_ptr<http::ResponseParser>> free_response_parsers_;
  FreeList<std::string> free_head_buffers_;
  FreeList<std::unique_ptr<char[]>> free_client_buffers_;
  std::vector<Pipe> free_pipes_;
  std::uint64_t rng_state_;
  std::uint64_t pending_bytes_in_ = 0;
  std::uint64_t pending_bytes_out_ = 0;
  Clock::time_point body_timeout_logged_{};
};

// Connects `s` (opened on demand) to `ep` within `timeout`, under `conn`'s deadline (conn.up
// is set to &s). Returns asio::error::timed_out when the deadline passed. Sets TCP_NODELAY.
asio::awaitable<boost::system::error_code> connect_upstream(LiveConn& conn, tcp::socket& s,
                                                            const tcp::endpoint& ep,
                                                            milliseconds timeout);

// Registers a LiveConn for the lifetime of a session frame.
class LiveGuard {
 public:
  LiveGuard(Worker& w, LiveConn& c) : w_(w), c_(c) { w_.add_live(c_); }
  ~LiveGuard() { w_.remove_live(c_); }
  LiveGuard(const LiveGuard&) = delete;
  LiveGuard& operator=(const LiveGuard&) = delete;

 private:
  Worker& w_;
  LiveConn& c_;
};

}  // namespace routemesh::proxy
