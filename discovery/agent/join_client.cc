#include "discovery/agent/join_client.h"

#include "base/file.h"
#include "base/http_client.h"
#include "tls/context.h"
#include "tls/pki.h"
#include "tls/token.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <ctime>
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

// GET /v1/ca without verification, retried like the join: the CA certificate as the manager
// presents it (to be checked against the token's digest), or "" on a failure (logged).
asio::awaitable<std::string> fetch_ca(asio::any_io_executor executor, std::string address,
                                      JoinOptions options) {
  const auto deadline = std::chrono::steady_clock::now() + options.deadline;
  asio::steady_timer pause(executor);
  const auto unverified = tls::unverified_client_context();
  for (;;) {
    base::ClientRequest req;
    req.target = "/v1/ca";
    auto res = co_await base::http_call(executor, address, std::move(req), options.call_timeout,
                                        unverified);
    if (res && res->status == 200) {
      boost::system::error_code ec;
      json::value v = json::parse(res->body, ec);
      const json::value* cert = nullptr;
      if (!ec && v.is_object()) {
        cert = v.as_object().if_contains("certificate");
      }
      if (cert == nullptr || !cert->is_string()) {
        spdlog::error("cluster: malformed CA answer from {}: {}", address, res->body);
        co_return std::string{};
      }
      co_return std::string(cert->get_string());
    }
    if (res && res->status != 503) {
      spdlog::error("cluster: {} did not give its CA: HTTP {} {}", address, res->status,
                    without_trailing_newlines(res->body));
      co_return std::string{};
    }
    const std::string why =
        without_trailing_newlines(res ? "HTTP 503 " + res->body : res.error().message());
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::error("cluster: cannot fetch the CA from {}: {}", address, why);
      co_return std::string{};
    }
    spdlog::info("cluster: CA from {} not available yet ({}); retrying", address, why);
    pause.expires_after(options.retry_pause);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

asio::awaitable<std::optional<JoinReply>> join_cluster(asio::any_io_executor executor,
                                                       std::string address, JoinRequest request,
                                                       JoinOptions options, base::TlsContext tls) {
  const auto deadline = std::chrono::steady_clock::now() + options.deadline;
  const std::string body = encode_join_request(request);
  asio::steady_timer pause(executor);
  for (;;) {
    base::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/nodes/join";
    req.body = body;
    auto res =
        co_await base::http_call(executor, address, std::move(req), options.call_timeout, tls);
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

asio::awaitable<std::optional<Joined>> secure_join(asio::any_io_executor executor,
                                                   std::string address, tls::JoinToken token,
                                                   JoinRequest request, JoinOptions options) {
  const std::string ca_pem = co_await fetch_ca(executor, address, options);
  if (ca_pem.empty()) {
    co_return std::nullopt;
  }
  auto digest = tls::certificate_digest(ca_pem);
  if (!digest || *digest != token.ca_digest) {
    spdlog::error(
        "cluster: refusing to join via {}: it presents CA {}, the join token pins {} (a token "
        "of another cluster, or someone in the middle); the token's secret was not sent",
        address, digest ? *digest : "(not a certificate)", token.ca_digest);
    co_return std::nullopt;
  }
  auto key = tls::generate_key();
  auto csr =
      key ? tls::make_request(*key, request.name) : boost::system::result<std::string>(key.error());
  if (!csr) {
    spdlog::error("cluster: cannot make a key and certificate request: {}", csr.error().message());
    co_return std::nullopt;
  }
  auto tls_context = tls::client_context(ca_pem);
  if (!tls_context) {
    spdlog::error("cluster: the pinned CA does not load: {}", tls_context.error().message());
    co_return std::nullopt;
  }
  const NodeRole role = request.role;
  request.token = tls::format_token(token);
  request.csr = *csr;
  auto reply = co_await join_cluster(executor, address, std::move(request), options, *tls_context);
  if (!reply) {
    co_return std::nullopt;
  }
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto checked = tls::check_certificate(reply->certificate, ca_pem, *key, now);
  auto identity = tls::identity_of(reply->certificate);
  const tls::Role want = role == NodeRole::manager ? tls::Role::manager : tls::Role::worker;
  if (!checked || !identity || identity->id != reply->node_id || identity->role != want) {
    spdlog::error("cluster: the join reply from {} carries no valid certificate for node {} ({})",
                  address, reply->node_id,
                  !checked ? checked.error().message() : "it names another node or role");
    co_return std::nullopt;
  }
  // No manager key with an external CA (its key stays in files); a malformed one is refused.
  if (role == NodeRole::manager && !reply->manager_key.empty() &&
      !tls::is_manager_key(reply->manager_key)) {
    spdlog::error("cluster: the join reply from {} carries a malformed manager key", address);
    co_return std::nullopt;
  }
  Joined joined;
  joined.credentials = tls::NodeCredentials{
      ca_pem, reply->certificate, *key, role == NodeRole::manager ? reply->manager_key : "", ""};
  joined.reply = std::move(*reply);
  co_return joined;
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
