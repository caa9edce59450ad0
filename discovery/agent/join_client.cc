#include "discovery/agent/join_client.h"

#include "base/file.h"
#include "base/http_client.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <utility>

namespace routemesh::discovery::agent {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr const char* kManagersFile = "managers.json";

std::string without_trailing_newlines(std::string text) {
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return text;
}

}  // namespace

asio::awaitable<std::optional<JoinReply>> join_cluster(asio::any_io_executor executor,
                                                       std::string address, JoinRequest request,
                                                       JoinOptions options) {
  const auto deadline = std::chrono::steady_clock::now() + options.deadline;
  const std::string body = encode_join_request(request);
  asio::steady_timer pause(executor);
  for (;;) {
    base::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/nodes/join";
    req.body = body;
    auto res = co_await base::http_call(executor, address, std::move(req), options.call_timeout);
    if (res && res->status == 200) {
      auto reply = decode_join_reply(res->body);
      if (reply) {
        co_return std::move(*reply);
      }
      spdlog::error("cluster: malformed join reply from {}: {}", address, res->body);
      co_return std::nullopt;
    }
    if (res && res->status != 503) {
      spdlog::error("cluster: join refused by {}: HTTP {} {}", address, res->status,
                    without_trailing_newlines(res->body));
      co_return std::nullopt;
    }
    const std::string why =
        without_trailing_newlines(res ? "HTTP 503 " + res->body : res.error().message());
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::error("cluster: cannot join via {}: {}", address, why);
      co_return std::nullopt;
    }
    spdlog::info("cluster: join via {} not possible yet ({}); retrying", address, why);
    pause.expires_after(options.retry_pause);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

std::vector<std::string> managers_after_join(const JoinReply& reply,
                                             const std::string& join_address) {
  std::vector<std::string> out;
  for (const auto& m : reply.managers) {
    out.push_back(m.api);
  }
  if (std::find(out.begin(), out.end(), join_address) == out.end()) {
    out.push_back(join_address);
  }
  return out;
}

std::vector<std::string> manager_addresses(const ClusterState& state) {
  std::vector<std::string> out;
  for (const auto& [id, n] : state.nodes) {
    if (n.role == NodeRole::manager && !n.address.empty()) {
      out.push_back(n.address);
    }
  }
  return out;
}

std::vector<std::string> read_managers(const std::string& data_dir) {
  std::vector<std::string> out;
  auto text = base::read_file(data_dir + "/" + kManagersFile);
  if (!text) {
    return out;
  }
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) {
    return out;
  }
  const json::value* list = v.as_object().if_contains("managers");
  if (list != nullptr && list->is_array()) {
    for (const auto& m : list->get_array()) {
      if (m.is_string()) {
        out.emplace_back(m.get_string());
      }
    }
  }
  return out;
}

void write_managers(const std::string& data_dir, const std::vector<std::string>& managers) {
  json::array list;
  for (const auto& m : managers) {
    list.emplace_back(m);
  }
  const std::string text = json::serialize(json::object{{"managers", std::move(list)}}) + "\n";
  if (auto w = base::write_file_atomic(data_dir, kManagersFile, text); !w) {
    spdlog::warn("cluster: cannot write {}/{}: {}", data_dir, kManagersFile, w.error().message());
  }
}

}  // namespace routemesh::discovery::agent
