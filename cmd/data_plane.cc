#include "cmd/data_plane.h"

#include "mesh/route_table.h"

#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <thread>

namespace routemesh::cmd {

namespace {

// The most a NOFILE limit may be set to when the hard limit is "unlimited" (Linux refuses more
// than fs.nr_open, whose default is 2^20).
constexpr rlim_t kUnlimitedFiles = 1 << 20;

}  // namespace

void raise_open_file_limit(const config::NodeConfig& cfg) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    spdlog::warn("cannot read the open-file limit: {}", std::strerror(errno));
    return;
  }
  const rlim_t before = rl.rlim_cur;
  const rlim_t target = rl.rlim_max == RLIM_INFINITY ? kUnlimitedFiles : rl.rlim_max;
  if (rl.rlim_cur < target) {
    rl.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      spdlog::info("open-file limit raised from {} to {}", before, target);
    } else {
      spdlog::warn("cannot raise the open-file limit from {} to {}: {}", before, target,
                   std::strerror(errno));
      rl.rlim_cur = before;
    }
  }
  // Two descriptors per proxied connection (client and upstream), plus listeners, pipes and
  // the control plane.
  const unsigned threads =
      cfg.node.threads != 0 ? cfg.node.threads : std::max(1U, std::thread::hardware_concurrency());
  const std::uint64_t needed = 2ULL * threads * cfg.limits.max_connections_per_thread + 256;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed) {
    spdlog::warn(
        "open-file limit {} is below the {} that node.threads ({}) x "
        "limits.max_connections_per_thread ({}) can use; beyond it new connections are refused "
        "(raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn, or lower "
        "limits.max_connections_per_thread)",
        rl.rlim_cur, needed, threads, cfg.limits.max_connections_per_thread);
  }
}

void DataPlane::log_ready(const config::NodeConfig& cfg) const {
  std::string ports;
  for (auto p : proxy->listening_ports()) {
    ports += (ports.empty() ? "" : ",") + std::to_string(p);
  }
  spdlog::info("node {} ready: http={}:{} admin_port={} ports={}", cfg.node.name, cfg.node.listen,
               http_port, admin_port, ports);
}

std::optional<DataPlane> start_data_plane(const config::NodeConfig& cfg, proxy::Metrics& metrics,
                                          std::shared_ptr<prometheus::Registry> registry,
                                          boost::asio::any_io_executor control,
                                          const discovery::ClusterState& initial) {
  raise_open_file_limit(cfg);
  DataPlane dp;
  dp.proxy = proxy::make_proxy_server(cfg, metrics);
  try {
    dp.http_port = dp.proxy->start();
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on {}:{}: {}", cfg.node.listen, cfg.node.http_port, e.what());
    return std::nullopt;
  }
  dp.proxy->publish(std::make_shared<const mesh::RouteTable>(mesh::compile_route_table(initial)));

  dp.admin = admin::make_admin_server(control, registry);
  // The ProxyServer object outlives the admin server (both live in the caller's DataPlane).
  // `?summary`: the revision and sizes only, which costs nothing at any table size (the whole
  // table is megabytes at 10,000 services; bench/scale.py polls this for propagation).
  dp.admin->handle("/v1/routes", [proxy = dp.proxy.get()](const admin::Request& req) {
    auto table = proxy->table();
    if (req.query.count("summary") != 0) {
      const std::string body =
          "{\"revision\":" + std::to_string(table->revision) +
          ",\"clusters\":" + std::to_string(table->clusters.size()) +
          ",\"hosts\":" + std::to_string(table->exact_hosts.size() + table->wildcard_hosts.size()) +
          ",\"l4\":" + std::to_string(table->l4.size()) +
          ",\"vips\":" + std::to_string(table->vips.size()) + "}";
      return admin::Response{200, "application/json", body};
    }
    return admin::Response{200, "application/json", mesh::to_json(*table)};
  });
  try {
    dp.admin_port = dp.admin->start(cfg.node.admin);
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on admin address {}: {}", cfg.node.admin, e.what());
    dp.proxy->shutdown();
    return std::nullopt;
  }
  if (!cfg.node.metrics.empty()) {
    // No handlers of its own: the admin server's built-in /metrics and /healthz, plain HTTP
    // whatever the admin port does (use_tls is never called on it); every other path is 404.
    dp.metrics = admin::make_admin_server(std::move(control), std::move(registry));
    try {
      const std::uint16_t port = dp.metrics->start(cfg.node.metrics);
      spdlog::info("metrics: plain HTTP /metrics and /healthz on {} (port {})", cfg.node.metrics,
                   port);
    } catch (const std::exception& e) {
      spdlog::error("cannot listen on metrics address {}: {}", cfg.node.metrics, e.what());
      dp.admin->stop();
      dp.proxy->shutdown();
      return std::nullopt;
    }
  }
  return dp;
}

}  // namespace routemesh::cmd
