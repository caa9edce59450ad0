#include "discovery/manager/bootstrap.h"

#include "base/file.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <filesystem>
#include <system_error>
#include <vector>

namespace routemesh::discovery::manager {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr const char* kBootstrapFile = "bootstrap.json";

std::string string_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string{};
}

}  // namespace

std::string bootstrap_marker_path(const std::string& data_dir) {
  return data_dir + "/" + kBootstrapFile;
}

boost::system::result<void> write_bootstrap_marker(const std::string& data_dir,
                                                   const BootstrapMarker& marker) {
  json::object o{{"cluster_id", marker.cluster_id},
                 {"subnet_pool", marker.subnet_pool},
                 {"worker_token_hash", marker.worker_token_hash},
                 {"manager_token_hash", marker.manager_token_hash},
                 {"ca_root", marker.ca_root},
                 {"sealed_ca_key", marker.sealed_ca_key}};
  if (!marker.unlock_key_wrapped.empty()) {
    o["unlock_key_wrapped"] = marker.unlock_key_wrapped;
  }
  return base::write_file_atomic(data_dir, kBootstrapFile, json::serialize(o) + "\n");
}

std::optional<BootstrapMarker> read_bootstrap_marker(const std::string& data_dir) {
  auto text = base::read_file(bootstrap_marker_path(data_dir));
  if (!text) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  const json::object& o = v.as_object();
  return BootstrapMarker{
      string_field(o, "cluster_id"),        string_field(o, "subnet_pool"),
      string_field(o, "worker_token_hash"), string_field(o, "manager_token_hash"),
      string_field(o, "ca_root"),           string_field(o, "sealed_ca_key"),
      string_field(o, "unlock_key_wrapped")};
}

asio::awaitable<void> bootstrap_cluster(store::Store& store, BootstrapOptions options) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  store::ClusterSettingsUpdate settings;
  settings.cluster_id = options.cluster_id;
  settings.subnet_pool = options.subnet_pool;
  if (!options.worker_token_hash.empty()) {
    settings.worker_token_hash = options.worker_token_hash;
  }
  if (!options.manager_token_hash.empty()) {
    settings.manager_token_hash = options.manager_token_hash;
  }
  std::vector<store::Command> commands{settings};
  if (!options.ca_root.empty()) {
    // The root and its sealed key (version 0: only the first time; an interrupted bootstrap
    // that runs again finds it there).
    store::CaSet ca;
    ca.ca.roots = {options.ca_root};
    ca.ca.sealed_key = options.sealed_ca_key;
    ca.ca.unlock_key_wrapped = options.unlock_key_wrapped;
    commands.emplace_back(std::move(ca));
  }
  commands.emplace_back(store::NodeAdd{options.self});
  std::size_t done = 0;
  while (!store.stopped() && done < commands.size()) {
    std::chrono::milliseconds wait{0};
    if (!store.is_leader()) {
      wait = std::chrono::milliseconds(20);
    } else {
      auto r = co_await store.propose(commands[done]);
      if (!r) {
        spdlog::warn("cluster: bootstrap write not applied ({}); retrying", r.error().message());
        wait = std::chrono::milliseconds(200);
      } else {
        if (!r->ok && r->error.code != store::errc::conflict &&
            r->error.code != store::errc::version_mismatch) {
          spdlog::error("cluster: bootstrap write rejected: {} {}", r->error.field,
                        r->error.message);
        }
        ++done;
      }
    }
    if (wait.count() != 0) {
      pause.expires_after(wait);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  if (done == commands.size()) {
    std::error_code ec;
    std::filesystem::remove(bootstrap_marker_path(options.data_dir), ec);
    spdlog::info("cluster: bootstrapped cluster {} with {} ({}) as its first manager",
                 options.cluster_id, options.self.name, options.self.id);
  }
}

}  // namespace routemesh::discovery::manager
