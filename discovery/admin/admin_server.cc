#include "discovery/admin/admin_server.h"

#include "discovery/metrics.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <chrono>
#include <exception>
#include <map>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace routemesh::discovery::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Every read and write of a session must finish within this time; it doubles as the idle
// keep-alive timeout.
constexpr auto kTimeout = std::chrono::seconds(30);
// The admin API takes small JSON documents; anything larger is refused with 413.
constexpr std::uint64_t kBodyLimit = 1024 * 1024;
// Network errors are normal outcomes on a session (STYLE.md §6): no exceptions.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view kMetricsPath = "/metrics";
constexpr std::string_view kHealthPath = "/healthz";
constexpr std::string_view kOtherLabel = "other";

using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// Shared by the server object and every coroutine it starts, so that a coroutine still
// queued on the io_context after the AdminServer is destroyed touches valid memory.
// Only touched on the control thread.
struct State {
  State(asio::any_io_executor ex, std::shared_ptr<prometheus::Registry> reg)
      : executor(std::move(ex)), registry(std::move(reg)), metrics(*registry), acceptor(executor) {}

  asio::any_io_executor executor;
  std::shared_ptr<prometheus::Registry> registry;
  Metrics metrics;
  tcp::acceptor acceptor;
  std::map<std::string, Handler, std::less<>> handlers;
  // Open sessions, so that stop() can close them. The streams live in the session frames;
  // a session removes itself before its stream dies (SessionEntry).
  std::unordered_map<std::uint64_t, beast::tcp_stream*> sessions;
  std::uint64_t next_session_id = 0;
  bool stopped = false;
};

// Registers a session's stream for stop() for as long as the session frame lives.
class SessionEntry {
 public:
  SessionEntry(State& state, beast::tcp_stream& stream)
      : state_(state), id_(++state.next_session_id) {
    state_.sessions.emplace(id_, &stream);
  }
  ~SessionEntry() { state_.sessions.erase(id_); }
  SessionEntry(const SessionEntry&) = delete;
  SessionEntry& operator=(const SessionEntry&) = delete;

 private:
  State& state_;
  std::uint64_t id_;
};

std::string error_json(std::string_view code, std::string_view message) {
  boost::json::object error;
  error["code"] = code;
  error["message"] = message;
  boost::json::object root;
  root["error"] = std::move(error);
  std::string body = boost::json::serialize(root);
  body += '\n';
  return body;
}

Response error_response(unsigned status, std::string_view code, std::string_view message) {
  return Response{status, "application/json", error_json(code, message)};
}

bool is_get_or_head(http::verb method) {
  return method == http::verb::get || method == http::verb::head;
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// The metric label for a path: only paths the server knows, so cardinality stays bounded.
std::string_view path_label(const State& state, std::string_view path) {
  if (path == kMetricsPath || path == kHealthPath) {
    return path == kMetricsPath ? kMetricsPath : kHealthPath;
  }
  auto it = state.handlers.find(path);
  // The label points into the map's key, which lives as long as the server.
  return it == state.handlers.end() ? kOtherLabel : std::string_view(it->first);
}

// Answers one request. Returns the response and the metric label of its path. Never throws:
// a handler's exception becomes a 500 here.
std::pair<Response, std::string_view> answer(State& state, const HttpRequest& req,
                                             std::string& allow) {
  const std::string_view target = req.target();
  const std::string_view path = path_of(target);

  if (path == kMetricsPath || path == kHealthPath) {
    const std::string_view label = path == kMetricsPath ? kMetricsPath : kHealthPath;
    if (!is_get_or_head(req.method())) {
      allow = "GET, HEAD";
      return {
          error_response(405, "method_not_allowed",
                         std::string(req.method_string()) + " not allowed on " + std::string(path)),
          label};
    }
    if (path == kHealthPath) {
      return {Response{200, "text/plain", "ok\n"}, label};
    }
    prometheus::TextSerializer serializer;
    return {Response{200, "text/plain; version=0.0.4; charset=utf-8",
                     serializer.Serialize(state.registry->Collect())},
            label};
  }

  auto it = state.handlers.find(path);
  if (it == state.handlers.end()) {
    return {error_response(404, "not_found", "no such path " + std::string(path)), kOtherLabel};
  }
  // The label points into the map's key, which lives as long as the server.
  const std::string_view label = it->first;
  Request request{std::string(req.method_string()), std::string(target), req.body()};
  try {
    return {it->second(request), label};
  } catch (const std::exception& e) {
    spdlog::error("admin: handler for {} {} threw: {}", request.method, path, e.what());
  } catch (...) {
    spdlog::error("admin: handler for {} {} threw a non-standard exception", request.method, path);
  }
  return {error_response(500, "internal", "internal error"), label};
}

HttpResponse to_http(Response response, const std::string& allow, bool head, unsigned version,
                     bool keep_alive) {
  HttpResponse res{static_cast<http::status>(response.status), version};
  res.set(http::field::content_type, response.content_type);
  if (!allow.empty()) {
    res.set(http::field::allow, allow);
  }
  res.keep_alive(keep_alive);
  if (head) {
    // RFC 9110 §9.3.2: HEAD gets the headers GET would get, without content.
    res.content_length(response.body.size());
  } else {
    res.body() = std::move(response.body);
    res.prepare_payload();
  }
  return res;
}

void count(State& state, std::string_view label, unsigned status) {
  state.metrics.admin_requests.Add({{"path", std::string(label)}, {"code", std::to_string(status)}})
      .Increment();
}

asio::awaitable<void> run_session(std::shared_ptr<State> state, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  SessionEntry entry(*state, stream);
  beast::flat_buffer buffer;

  while (!state->stopped) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    stream.expires_after(kTimeout);
    auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (read_ec) {
      // Framing errors get an answer; connection errors, timeouts and a clean close do not.
      Response refusal;
      if (read_ec == http::error::body_limit) {
        refusal = error_response(413, "payload_too_large", "request body exceeds 1 MiB");
      } else if (read_ec == http::error::header_limit) {
        refusal = error_response(431, "header_too_large", "request header too large");
      } else if (read_ec.category() == http::make_error_code(http::error::bad_target).category() &&
                 read_ec != http::error::end_of_stream && read_ec != http::error::partial_message) {
        refusal = error_response(400, "bad_request", read_ec.message());
      } else {
        break;
      }
      // The request line is parsed before the limit checks, so the path is known even when
      // the header is refused (Beast rejects an oversized Content-Length within the header).
      const std::string_view label = path_label(*state, path_of(parser.get().target()));
      count(*state, label, refusal.status);
      HttpResponse res = to_http(std::move(refusal), {}, false, 11, false);
      stream.expires_after(kTimeout);
      co_await http::async_write(stream, res, kNoThrow);
      break;
    }

    HttpRequest req = parser.release();
    std::string allow;
    auto [response, label] = answer(*state, req, allow);
    count(*state, label, response.status);
    HttpResponse res = to_http(std::move(response), allow, req.method() == http::verb::head,
                               req.version(), req.keep_alive());
    stream.expires_after(kTimeout);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, kNoThrow);
    if (write_ec || !res.keep_alive()) {
      break;
    }
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

// The co_spawn completion of every coroutine the server starts (STYLE.md §5).
auto log_failure(std::shared_ptr<State> state, const char* what) {
  return [state = std::move(state), what](std::exception_ptr error) {
    if (!error) {
      return;
    }
    state->metrics.admin_session_errors.Increment();
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("admin: {} failed: {}", what, e.what());
    } catch (...) {
      spdlog::error("admin: {} failed with a non-standard exception", what);
    }
  };
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> state) {
  asio::steady_timer backoff(state->executor);
  for (;;) {
    auto [ec, socket] = co_await state->acceptor.async_accept(kNoThrow);
    if (state->stopped || ec == asio::error::operation_aborted) {
      co_return;
    }
    if (ec) {
      // EMFILE and friends: retrying at once would spin; the pause lets sessions finish.
      spdlog::warn("admin: accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kNoThrow);
      continue;
    }
    asio::co_spawn(state->executor, run_session(state, std::move(socket)),
                   log_failure(state, "session"));
  }
}

// "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces).
tcp::endpoint parse_endpoint(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "admin: listen address has no port: " + address);
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    host = "0.0.0.0";
  }
  std::uint16_t port = 0;
  const char* first = address.data() + colon + 1;
  const char* last = address.data() + address.size();
  auto [end, err] = std::from_chars(first, last, port);
  if (err != std::errc() || end != last || first == last) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "admin: bad port in listen address: " + address);
  }
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec) {
    throw std::system_error(ec, "admin: bad host in listen address: " + address);
  }
  return {ip, port};
}

class AdminServerImpl final : public AdminServer {
 public:
  AdminServerImpl(asio::any_io_executor executor, std::shared_ptr<prometheus::Registry> registry)
      : state_(std::make_shared<State>(std::move(executor), std::move(registry))) {}

  ~AdminServerImpl() override { stop(); }

  void handle(std::string path, Handler handler) override {
    state_->handlers.insert_or_assign(std::move(path), std::move(handler));
  }

  std::uint16_t start(const std::string& address) override {
    const tcp::endpoint endpoint = parse_endpoint(address);
    tcp::acceptor& acceptor = state_->acceptor;
    boost::system::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      acceptor.bind(endpoint, ec);
    }
    if (!ec) {
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    tcp::endpoint bound;
    if (!ec) {
      bound = acceptor.local_endpoint(ec);
    }
    if (ec) {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      throw std::system_error(ec, "admin: cannot listen on " + address);
    }
    state_->stopped = false;
    asio::co_spawn(state_->executor, accept_loop(state_), log_failure(state_, "acceptor"));
    spdlog::info("admin: listening on {}:{}", bound.address().to_string(), bound.port());
    return bound.port();
  }

  void stop() override {
    state_->stopped = true;
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
    // Closing cancels each session's pending operation; the session then ends and removes
    // itself from the map (in a later handler, never during this loop).
    for (auto& [id, stream] : state_->sessions) {
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream->close();
    }
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

std::unique_ptr<AdminServer> make_admin_server(boost::asio::any_io_executor executor,
                                               std::shared_ptr<prometheus::Registry> registry) {
  return std::make_unique<AdminServerImpl>(std::move(executor), std::move(registry));
}

}  // namespace routemesh::discovery::admin
