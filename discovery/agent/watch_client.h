#pragma once
// The worker's watch client (driver, Asio): keeps a GET /v1/watch?from=REV stream open to one
// manager's admin address and applies its snapshot/delta lines to a local replica
// (watch_stream.h). On any error — connection refused or reset, no line for `idle_timeout`
// (managers ping every 5 s), a gap or a rejected delta — it reconnects to the NEXT manager
// (the configured ones plus every manager in the replica's state.nodes), resuming from its
// revision (from=0 after a divergence), with exponential backoff between failed attempts.
//
// Threading: the control thread only. Metrics: routemesh_watch_reconnects_total,
// routemesh_watch_revision.

#include "base/http_client.h"
#include "discovery/model/types.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace routemesh::discovery::agent {

struct WatchOptions {
  std::vector<std::string> managers;  // admin addresses "IP:PORT" to start with
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds idle_timeout{12000};  // > 2 pings
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{3000};
  prometheus::Registry* registry = nullptr;  // optional
  // The node's client TLS (its certificate, the cluster CA); null = plain HTTP (unit tests).
  base::TlsContext tls;
};

class WatchClient {
 public:
  WatchClient(const WatchClient&) = delete;
  WatchClient& operator=(const WatchClient&) = delete;
  virtual ~WatchClient() = default;

  // Called after each batch of lines that changed the replica (at most once per read).
  virtual void on_state(std::function<void(const ClusterState&)> callback) = 0;
  virtual void start() = 0;
  // Cancels the stream and the backoff timer. Idempotent.
  virtual void stop() = 0;
  virtual const ClusterState& state() const = 0;
  // True once a snapshot was applied.
  virtual bool synced() const = 0;
  // The manager currently streamed from ("" while connecting).
  virtual std::string manager() const = 0;

 protected:
  WatchClient() = default;
};

std::unique_ptr<WatchClient> make_watch_client(boost::asio::any_io_executor executor,
                                               WatchOptions options);

}  // namespace routemesh::discovery::agent
