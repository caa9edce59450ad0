#include "cmd/data_plane.h"

#include "mesh/route_table.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <string>

namespace routemesh::cmd {

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
  DataPlane dp;
  dp.proxy = proxy::make_proxy_server(cfg, metrics);
  try {
    dp.http_port = dp.proxy->start();
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on {}:{}: {}", cfg.node.listen, cfg.node.http_port, e.what());
    return std::nullopt;
  }
  dp.proxy->publish(std::make_shared<const mesh::RouteTable>(mesh::compile_route_table(initial)));

  dp.admin = discovery::admin::make_admin_server(std::move(control), std::move(registry));
  // The ProxyServer object outlives the admin server (both live in the caller's DataPlane).
  dp.admin->handle("/v1/routes", [proxy = dp.proxy.get()](const discovery::admin::Request&) {
    return discovery::admin::Response{200, "application/json", mesh::to_json(*proxy->table())};
  });
  try {
    dp.admin_port = dp.admin->start(cfg.node.admin);
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on admin address {}: {}", cfg.node.admin, e.what());
    dp.proxy->shutdown();
    return std::nullopt;
  }
  return dp;
}

}  // namespace routemesh::cmd
