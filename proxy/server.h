#pragma once
// The data plane of one node: N proxy threads, each with its own io_context, SO_REUSEPORT
// listeners on every HTTP (HRM) and L4 published port, HTTP/1.1 sessions, per-thread
// upstream pools and balancers, and L4 splice. Created and driven by cmd/ from the control
// thread.

#include "config/types.h"
#include "mesh/route_table.h"
#include "proxy/metrics.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace routemesh::proxy {

struct OverlayTls;

class ProxyServer {
 public:
  virtual ~ProxyServer() = default;
  ProxyServer() = default;
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Starts the proxy threads. Binds the node's HRM port (config node.http_port on
  // node.listen) on every thread before returning; returns the bound port (useful with 0).
  // Throws std::system_error when the HRM port cannot be bound (startup boundary).
  virtual std::uint16_t start() = 0;

  // Publishes a new table to every proxy thread (atomic pointer swap; in-flight requests keep
  // the table they started with) and reconciles listeners: opens listeners for new L4 and
  // HTTP published ports, closes listeners for ports that are gone (connections on them
  // finish). Returns once every proxy thread adopted the table. Called from one thread at a
  // time (a cluster node's route compile thread, the control thread in config-file mode;
  // serialized with apply_settings and shutdown by a lock). A port that cannot be bound is
  // logged, counted (routemesh_proxy_listener_errors_total) and skipped; the rest of the table
  // applies.
  virtual void publish(std::shared_ptr<const mesh::RouteTable> table) = 0;

  // Applies reloaded node settings to every proxy thread (timeouts, limits, passive health,
  // via, trusted proxies, the access log) and waits until each has them. The listen address,
  // HRM port and number of threads stay as started (config::restart_required names them).
  // Called from the control thread.
  virtual void apply_settings(const config::NodeConfig& next) = 0;

  // The overlay's mutual TLS contexts (cluster mode; overlay/overlay.h), given once the node
  // has its certificate and again after each renewal. Streams opened from then on use them;
  // open ones keep theirs. Returns once every proxy thread has them.
  virtual void set_overlay_tls(std::shared_ptr<const OverlayTls> tls) = 0;

  // The revoked certificates changed (the overlay's PeerTrust holds the new set): every proxy
  // thread ends the overlay connections whose peer is now revoked (Worker::
  // close_untrusted_overlay). Does not wait. Called from the control thread.
  virtual void recheck_overlay_peers() = 0;

  // The newest table every proxy thread adopted. Any thread; never waits for a publish in
  // progress.
  virtual std::shared_ptr<const mesh::RouteTable> table() const = 0;

  // Graceful shutdown: stop accepting, let in-flight requests finish up to drain_ms, close
  // idle keep-alive connections at once, then cancel what is left and join the threads.
  // Blocks the caller until done. Safe to call once.
  virtual void shutdown() = 0;

  // Ports actually listening (HRM port first), for logs and tests.
  virtual std::vector<std::uint16_t> listening_ports() const = 0;
};

// `metrics` must outlive the server.
std::unique_ptr<ProxyServer> make_proxy_server(const config::NodeConfig& cfg, Metrics& metrics);

}  // namespace routemesh::proxy
