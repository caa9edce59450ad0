// Wiring of a node: config -> ClusterState -> RouteTable -> proxy threads, plus the admin
// server and signal handling on the control thread (the main thread).

#include "cmd/node.h"

#include "cmd/data_plane.h"

#include "admin/admin_server.h"
#include "base/file.h"
#include "base/metrics.h"
#include "cmd/cluster.h"
#include "cmd/static_state.h"
#include "config/config.h"
#include "discovery/model/state.h"
#include "mesh/route_table.h"
#include "proxy/metrics.h"
#include "proxy/server.h"
#include "tls/ingress.h"

#include <fmt/ranges.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace routemesh::cmd {

prometheus::Gauge& route_table_revision(prometheus::Registry& registry) {
  return base::gauge(registry, "routemesh_config_route_table_revision",
                     "Revision of the route table in use");
}

namespace {

// Metrics of the node's own wiring (routemesh_config_*).
struct NodeMetrics {
  explicit NodeMetrics(prometheus::Registry& registry)
      : reloads(base::counter_family(registry, "routemesh_config_reloads_total",
                                     "Configuration reloads (SIGHUP) by result")),
        reloads_ok(reloads.Add({{"result", "ok"}})),
        reloads_failed(reloads.Add({{"result", "failed"}})),
        restart_required(base::counter(registry, "routemesh_config_reload_restart_required_total",
                                       "Reloads that changed settings which apply only after a "
                                       "restart (listen address, ports, threads, name)")),
        revision(route_table_revision(registry)) {}

  prometheus::Family<prometheus::Counter>& reloads;
  prometheus::Counter& reloads_ok;
  prometheus::Counter& reloads_failed;
  prometheus::Counter& restart_required;
  prometheus::Gauge& revision;
};

void print_errors(const std::string& path, const std::vector<config::FieldError>& errors) {
  for (const auto& e : errors) {
    std::fprintf(stderr, "routemesh: %s: %s%s%s\n", path.c_str(), e.path.c_str(),
                 e.path.empty() ? "" : ": ", e.message.c_str());
  }
}

// The `certificates:` files into state.ingress_certs, each checked like `routemesh cert add`
// does (the key is the leaf's, the leaf is valid now and names the host). Errors name the entry.
std::vector<config::FieldError> load_certificates(const config::NodeConfig& cfg,
                                                  discovery::ClusterState& state) {
  std::vector<config::FieldError> errors;
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (std::size_t i = 0; i < cfg.certificates.size(); ++i) {
    const auto& c = cfg.certificates[i];
    const std::string at = "certificates[" + std::to_string(i) + "]";
    const auto cert = base::read_file(c.cert);
    const auto key = base::read_file(c.key);
    if (!cert || !key) {
      errors.push_back({at + (cert ? ".key" : ".cert"), "cannot read " + (cert ? c.key : c.cert)});
      continue;
    }
    auto checked = tls::check_ingress_certificate(*cert, *key, c.host, now);
    if (auto* p = std::get_if<tls::IngressCertProblem>(&checked)) {
      errors.push_back({at + "." + p->field, p->message});
      continue;
    }
    const auto& info = std::get<tls::IngressCertInfo>(checked);
    state.ingress_certs[c.host] =
        discovery::IngressCert{c.host, *cert, *key, info.digest, info.not_after, state.revision};
  }
  return errors;
}

// Loads, validates and compiles a config file. Errors are printed and returned as nullopt.
struct Loaded {
  config::NodeConfig config;
  discovery::ClusterState state;
};

std::optional<Loaded> load(const std::string& path, std::uint64_t revision) {
  auto parsed = config::load_file(path);
  if (auto* errors = std::get_if<std::vector<config::FieldError>>(&parsed)) {
    print_errors(path, *errors);
    return std::nullopt;
  }
  Loaded out{std::move(std::get<config::NodeConfig>(parsed)), {}};
  out.state = state_from_config(out.config);
  out.state.revision = revision;
  if (auto cert_errors = load_certificates(out.config, out.state); !cert_errors.empty()) {
    print_errors(path, cert_errors);
    return std::nullopt;
  }
  auto state_errors = discovery::validate_state(out.state, service_paths_from_config(out.config));
  if (!state_errors.empty()) {
    std::vector<config::FieldError> errors;
    for (auto& e : state_errors) {
      errors.push_back({std::move(e.path), std::move(e.message)});
    }
    print_errors(path, errors);
    return std::nullopt;
  }
  return out;
}

}  // namespace

int check_config(const std::string& path) {
  auto loaded = load(path, 1);
  if (!loaded) {
    return 2;
  }
  auto table = mesh::compile_route_table(loaded->state);
  std::printf("%s: ok (%zu services, %zu hosts, %zu L4 ports)\n", path.c_str(),
              loaded->state.services.size(), table.exact_hosts.size() + table.wildcard_hosts.size(),
              table.l4.size());
  return 0;
}

int run_node(const NodeOptions& options) {
  std::uint64_t revision = 1;
  auto loaded = load(options.config_path, revision);
  if (!loaded) {
    spdlog::error("invalid configuration {}; not starting", options.config_path);
    return 2;
  }
  config::NodeConfig cfg = loaded->config;
  if (cfg.cluster_mode) {
    return run_cluster_node(options, cfg);
  }

  auto registry = std::make_shared<prometheus::Registry>();
  proxy::Metrics proxy_metrics(*registry);
  NodeMetrics node_metrics(*registry);

  boost::asio::io_context control(1);
  auto dp = start_data_plane(cfg, proxy_metrics, registry, control.get_executor(), loaded->state);
  if (!dp) {
    return 1;
  }
  auto& proxy = dp->proxy;
  auto& admin = dp->admin;
  node_metrics.revision.Set(static_cast<double>(revision));

  boost::asio::signal_set reload_signal(control, SIGHUP);
  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) {
        return;
      }
      auto next = load(options.config_path, revision + 1);
      if (!next) {
        node_metrics.reloads_failed.Increment();
        spdlog::error("reload of {} failed; keeping revision {}", options.config_path, revision);
      } else {
        const std::vector<std::string> keys = config::restart_required(cfg, next->config);
        if (!keys.empty()) {
          // Everything else applies now; these keep their running values until a restart.
          spdlog::warn("reload of {}: {} changed; restart required for it to apply",
                       options.config_path, fmt::join(keys, ", "));
          node_metrics.restart_required.Increment();
        }
        proxy->apply_settings(next->config);
        ++revision;
        proxy->publish(
            std::make_shared<const mesh::RouteTable>(mesh::compile_route_table(next->state)));
        node_metrics.reloads_ok.Increment();
        node_metrics.revision.Set(static_cast<double>(revision));
        spdlog::info("reloaded {}: revision {}, {} services", options.config_path, revision,
                     next->state.services.size());
      }
      wait_reload();
    });
  };
  wait_reload();

  boost::asio::signal_set stop_signals(control, SIGTERM, SIGINT);
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    spdlog::info("signal {}: draining (up to {} ms)", signo, cfg.timeouts.drain_ms);
    admin->stop();
    if (dp->metrics) {
      dp->metrics->stop();
    }
    reload_signal.cancel();
    proxy->shutdown();
    control.stop();
  });

  dp->log_ready(cfg);
  control.run();
  spdlog::info("node {} stopped", cfg.node.name);
  return 0;
}

}  // namespace routemesh::cmd
