#pragma once
// What every node starts the same way, in config-file and cluster mode: the proxy threads
// with an initial route table, the admin server with /v1/routes, and the "ready" log line.
// Called from the control thread at startup.

#include "admin/admin_server.h"
#include "config/types.h"
#include "discovery/model/types.h"
#include "proxy/metrics.h"
#include "proxy/server.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>
#include <optional>

namespace routemesh::cmd {

struct DataPlane {
  std::unique_ptr<proxy::ProxyServer> proxy;
  std::unique_ptr<admin::AdminServer> admin;
  // node.metrics: plain HTTP, /metrics and /healthz only (null when not configured).
  std::unique_ptr<admin::AdminServer> metrics;
  std::uint16_t http_port = 0;
  std::uint16_t admin_port = 0;

  // Logs `node NAME ready: http=IP:PORT admin_port=N ports=...` (tests and scripts wait for it).
  void log_ready(const config::NodeConfig& cfg) const;
};

// A proxy holds two descriptors per proxied connection, and the usual soft open-file limit
// (1024) would cap a node near 500 connections: like HAProxy (and Go programs since 1.19),
// raise the soft limit to the hard one. Logs the change, and warns (naming the settings) when
// the limit stays below what node.threads x limits.max_connections_per_thread can use.
void raise_open_file_limit(const config::NodeConfig& cfg);

// Raises the open-file limit, starts the proxy (publishing `initial` compiled), then the
// admin server on `control`, and the plain metrics server when node.metrics is set.
// A port that cannot be bound is logged and gives nullopt (the proxy is shut down again);
// the caller exits with 1. `metrics` and `registry` must outlive the result.
std::optional<DataPlane> start_data_plane(const config::NodeConfig& cfg, proxy::Metrics& metrics,
                                          std::shared_ptr<prometheus::Registry> registry,
                                          boost::asio::any_io_executor control,
                                          const discovery::ClusterState& initial);

}  // namespace routemesh::cmd
