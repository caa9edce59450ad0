#include "admin/admin_server.h"

#include "admin/metrics.h"
#include "base/address.h"
#include "base/spawn.h"
#include "base/tls_failure.h"
#include "tls/context.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <exception>
#include <map>
#include <set>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>

namespace routemesh::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SslStream = beast::ssl_stream<beast::tcp_stream>;

// Every read and write of a session must finish within this time; it doubles as the idle
// keep-alive timeout.
constexpr auto kTimeout = std::chrono::seconds(30);
// The admin API takes small JSON documents; anything larger is refused with 413.
constexpr std::uint64_t kBodyLimit = 1024 * 1024;
// A TLS client must finish its handshake within this time; the close_notify at the end of a
// session waits at most kTlsCloseTimeout for the client's.
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kTlsCloseTimeout = std::chrono::seconds(1);
// Network errors are normal outcomes on a session (docs/style.md, "Errors"): no exceptions.
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
  // Exact paths (any kind of handler) and prefixes (async handlers).
  std::map<std::string, std::variant<Handler, AsyncHandler, StreamHandler>, std::less<>> handlers;
  std::map<std::string, AsyncHandler, std::less<>> prefixes;
  // TLS: required once use_tls() was called; `tls` null = not ready (connections closed).
  bool tls_required = false;
  base::TlsContext tls;
  std::shared_ptr<const tls::PeerTrust> trust;   // recheck_peers(); null = none
  std::set<std::string, std::less<>> anonymous;  // paths served without a client certificate
  // Open sessions, so that stop() and cut_untrusted() can close them. The streams live in the
  // session frames; a session removes itself before its stream dies (SessionEntry).
  struct Open {
    beast::tcp_stream* stream = nullptr;
    const ssl_st* ssl = nullptr;          // TLS, after the handshake
    std::optional<tls::Identity> caller;  // its client certificate's identity, if any
    bool streaming = false;               // a streaming handler (a watch) is writing to it
  };
  std::unordered_map<std::uint64_t, Open> sessions;
  std::uint64_t next_session_id = 0;
  bool stopped = false;
};

// Registers a session's stream for stop() for as long as the session frame lives.
class SessionEntry {
 public:
  SessionEntry(State& state, beast::tcp_stream& stream)
      : state_(state), id_(++state.next_session_id) {
    state_.sessions.emplace(id_, State::Open{&stream, nullptr, std::nullopt, false});
  }
  ~SessionEntry() { state_.sessions.erase(id_); }
  // The TLS connection and who its client certificate names, once the handshake is done.
  void identify(const ssl_st* ssl, const std::optional<tls::Identity>& caller) {
    auto& open = state_.sessions.at(id_);
    open.ssl = ssl;
    open.caller = caller;
  }
  // Set while a streaming handler runs (unordered_map values keep their address).
  bool& streaming() { return state_.sessions.at(id_).streaming; }
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

beast::tcp_stream& lowest(beast::tcp_stream& stream) {
  return stream;
}
beast::tcp_stream& lowest(SslStream& stream) {
  return beast::get_lowest_layer(stream);
}

// Over TLS, whether a request without a client certificate may reach `path`.
bool anonymous_allowed(const State& state, std::string_view path) {
  return path == kMetricsPath || path == kHealthPath || state.anonymous.count(path) != 0;
}

Response unauthenticated() {
  return error_response(401, "unauthenticated",
                        "this path needs a client certificate from the cluster CA (cluster "
                        "init's admin certificate, or one from `routemesh cert issue`)");
}

bool is_get_or_head(http::verb method) {
  return method == http::verb::get || method == http::verb::head;
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// The longest registered prefix of `path`, or prefixes.end().
auto find_prefix(const State& state, std::string_view path) {
  auto best = state.prefixes.end();
  for (auto it = state.prefixes.begin(); it != state.prefixes.end(); ++it) {
    if (path.starts_with(it->first) &&
        (best == state.prefixes.end() || it->first.size() > best->first.size())) {
      best = it;
    }
  }
  return best;
}

// The metric label for a path: only paths the server knows (a prefix handler's label is its
// prefix), so cardinality stays bounded. Labels point into the maps' keys, which live as long
// as the server.
std::string_view path_label(const State& state, std::string_view path) {
  if (path == kMetricsPath || path == kHealthPath) {
    return path == kMetricsPath ? kMetricsPath : kHealthPath;
  }
  auto it = state.handlers.find(path);
  if (it != state.handlers.end()) {
    return it->first;
  }
  auto prefix = find_prefix(state, path);
  return prefix == state.prefixes.end() ? kOtherLabel : std::string_view(prefix->first);
}

// Takes the body out of `req` (its head stays).
Request to_request(HttpRequest& req) {
  Request request;
  request.method = std::string(req.method_string());
  request.target = std::string(req.target());
  request.body = std::move(req.body());
  if (!parse_target(request.target, request.path, request.query)) {
    // A malformed escape: keep the raw path so the 404/400 names what was sent.
    request.path = std::string(path_of(request.target));
    request.query.clear();
  }
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') {
        c = static_cast<char>(c - 'A' + 'a');
      }
    }
    request.headers[std::move(name)] = std::string(field.value());
  }
  return request;
}

void log_handler_exception(std::string_view method, std::string_view path,
                           std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("admin: handler for {} {} threw: {}", method, path, e.what());
  } catch (...) {
    spdlog::error("admin: handler for {} {} threw a non-standard exception", method, path);
  }
}

// Answers one non-streaming request. Returns the response and the metric label of its path.
// Never throws: a handler's exception becomes a 500 here.
asio::awaitable<std::pair<Response, std::string_view>> answer(State& state, Request request,
                                                              http::verb method,
                                                              std::string& allow) {
  // Copies for the metric label and the log line: the request itself moves into its handler
  // (a copy of it, headers and all, was a few percent of a manager's CPU per write).
  const std::string path = request.path;
  const std::string method_name = request.method;

  if (path == kMetricsPath || path == kHealthPath) {
    const std::string_view label = path == kMetricsPath ? kMetricsPath : kHealthPath;
    if (!is_get_or_head(method)) {
      allow = "GET, HEAD";
      co_return std::pair{
          error_response(405, "method_not_allowed", request.method + " not allowed on " + path),
          label};
    }
    if (path == kHealthPath) {
      co_return std::pair{Response{200, "text/plain", "ok\n"}, label};
    }
    prometheus::TextSerializer serializer;
    co_return std::pair{Response{200, "text/plain; version=0.0.4; charset=utf-8",
                                 serializer.Serialize(state.registry->Collect())},
                        label};
  }

  const Handler* sync = nullptr;
  AsyncHandler async;
  std::string_view label = kOtherLabel;
  if (auto it = state.handlers.find(path); it != state.handlers.end()) {
    label = it->first;
    if (const auto* h = std::get_if<Handler>(&it->second)) {
      sync = h;
    } else if (const auto* a = std::get_if<AsyncHandler>(&it->second)) {
      async = *a;  // a copy: the map may change while the coroutine is suspended
    }
  } else if (auto p = find_prefix(state, path); p != state.prefixes.end()) {
    label = p->first;
    async = p->second;
  }
  if (sync == nullptr && !async) {
    co_return std::pair{error_response(404, "not_found", "no such path " + path), kOtherLabel};
  }
  std::exception_ptr error;
  try {
    if (sync != nullptr) {
      co_return std::pair{(*sync)(request), label};
    }
    // Awaited into a local first: GCC 12 mishandles co_await inside a braced initializer.
    Response response = co_await async(std::move(request));
    co_return std::pair{std::move(response), label};
  } catch (...) {
    error = std::current_exception();
  }
  log_handler_exception(method_name, path, error);
  co_return std::pair{error_response(500, "internal", "internal error"), label};
}

HttpResponse to_http(Response response, const std::string& allow, bool head, unsigned version,
                     bool keep_alive) {
  HttpResponse res{static_cast<http::status>(response.status), version};
  res.set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) {
    res.set(name, value);
  }
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

// The streaming response of one request. HTTP/1.1 gets chunked transfer coding (RFC 9112
// §7.1); an HTTP/1.0 client gets the raw bytes delimited by closing the connection (§6.3).
template <class Stream>
class ChunkWriterImpl final : public ChunkWriter {
 public:
  ChunkWriterImpl(Stream& stream, unsigned version, std::string content_type)
      : stream_(stream), version_(version), content_type_(std::move(content_type)) {}

  asio::awaitable<bool> write(std::string data) override {
    if (failed_) {
      co_return false;
    }
    if (data.empty() && started_) {
      co_return true;
    }
    if (!started_) {
      started_ = true;
      status_ = 200;
      http::response<http::empty_body> head{http::status::ok, version_};
      head.set(http::field::content_type, content_type_);
      head.set(http::field::cache_control, "no-store");
      head.keep_alive(false);
      if (chunked()) {
        head.chunked(true);
      }
      http::response_serializer<http::empty_body> serializer{head};
      lowest(stream_).expires_after(kTimeout);
      auto [ec, n] = co_await http::async_write_header(stream_, serializer, kNoThrow);
      if (ec) {
        failed_ = true;
        co_return false;
      }
      if (data.empty()) {
        co_return true;
      }
    }
    lowest(stream_).expires_after(kTimeout);
    boost::system::error_code ec;
    if (chunked()) {
      std::tie(ec, std::ignore) =
          co_await asio::async_write(stream_, http::make_chunk(asio::buffer(data)), kNoThrow);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(stream_, asio::buffer(data), kNoThrow);
    }
    if (ec) {
      failed_ = true;
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<bool> respond(Response response) override {
    if (started_ || failed_) {
      co_return false;
    }
    started_ = true;
    status_ = response.status;
    HttpResponse res = to_http(std::move(response), {}, false, version_, false);
    lowest(stream_).expires_after(kTimeout);
    auto [ec, n] = co_await http::async_write(stream_, res, kNoThrow);
    failed_ = static_cast<bool>(ec);
    plain_ = true;
    co_return !ec;
  }

  bool started() const override { return started_; }

  // Ends a streamed body (the last chunk); nothing to do after respond().
  asio::awaitable<void> finish() {
    if (!started_ || failed_ || plain_ || !chunked()) {
      co_return;
    }
    lowest(stream_).expires_after(kTimeout);
    co_await asio::async_write(stream_, http::make_chunk_last(), kNoThrow);
  }

  unsigned status() const { return status_; }

 private:
  bool chunked() const { return version_ >= 11; }

  Stream& stream_;
  unsigned version_;
  std::string content_type_;
  bool started_ = false;
  bool failed_ = false;
  bool plain_ = false;
  unsigned status_ = 500;
};

// Runs a streaming handler on its own request; the connection closes afterwards.
template <class Stream>
asio::awaitable<void> run_stream(State& state, StreamHandler handler, std::string_view label,
                                 Request request, Stream& stream, unsigned version) {
  ChunkWriterImpl<Stream> writer(stream, version, "application/x-ndjson");
  const std::string method = request.method;
  const std::string path = request.path;
  std::exception_ptr error;
  try {
    co_await handler(std::move(request), writer);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    log_handler_exception(method, path, error);
  }
  if (!writer.started()) {
    Response internal = error_response(500, "internal", "internal error");
    co_await writer.respond(std::move(internal));
  } else {
    co_await writer.finish();
  }
  count(state, label, writer.status());
}

// Wall-clock seconds since the epoch (certificates' notBefore/notAfter are in these).
std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why the client certificate of a connection made earlier is no longer good (nullopt while it
// is): PeerTrust::recheck, strict for users.
// Per request, `memo` (the connection's) spares the requests after the first the reading of
// the certificate while nothing changed.
std::optional<std::string_view> recheck(const State& state, const ssl_st* ssl,
                                        const tls::Identity& caller,
                                        tls::PeerTrust::Memo* memo = nullptr) {
  if (!state.trust || ssl == nullptr) {
    return std::nullopt;
  }
  const bool strict = !tls::is_node_role(caller.role);
  return memo != nullptr ? state.trust->recheck(ssl, unix_seconds(), strict, *memo)
                         : state.trust->recheck(ssl, unix_seconds(), strict);
}

// The co_spawn completion of every coroutine the server starts. It holds `state`, and with it
// the registry the error counter lives in, until the coroutine has ended.
auto log_failure(std::shared_ptr<State> state, std::string_view what) {
  prometheus::Counter* errors = &state->metrics.admin_session_errors;
  return base::log_and_count(what, errors, [state = std::move(state)] {});
}

// What PeerTrust::recheck's reason says of a certificate, for logs and answers.
std::string_view certificate_is(std::string_view why) {
  if (why == "removed") {
    return "of a node removed from the cluster";
  }
  return why;  // "revoked", "expired", "retired_root" (tests and scripts match these words)
}

// Ends a connection whose client certificate is `why` (PeerTrust::recheck) while a response
// streams: counted and logged. Its pending operation ends with an error, a streaming
// handler's next write() completes false, and the session removes itself later.
void cut(State& state, beast::tcp_stream& stream, const tls::Identity& caller,
         std::string_view why) {
  state.metrics.connections_cut.Add({{"reason", std::string(why)}}).Increment();
  spdlog::warn("admin: closing a connection of {}: its client certificate is {}",
               tls::identity_uri(caller), certificate_is(why));
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.close();
}

// A user's certificate that expires while its response streams (a watch) ends the stream
// then: nothing else would, as there is no next request to refuse. Runs until `done` (the
// stream ended first) or the cut; re-checks a second later when the clock says "not yet".
struct ExpiryWatch {
  explicit ExpiryWatch(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  bool done = false;
};

asio::awaitable<void> cut_at_expiry(std::shared_ptr<State> state,
                                    std::shared_ptr<ExpiryWatch> watch, beast::tcp_stream* stream,
                                    const ssl_st* ssl, tls::Identity caller,
                                    std::int64_t not_after) {
  // Waits of at most an hour, in whole seconds: a far notAfter (year 9999) never overflows a
  // clock, and the clock is read again after each wait.
  constexpr std::int64_t kLongestWait = 3600;
  for (;;) {
    const std::int64_t now = unix_seconds();
    std::int64_t wait = 1;  // past notAfter and still good by recheck(): look again soon
    if (not_after >= now) {
      // Until a second past notAfter: X509's check says "expired" only once now is beyond it.
      wait = std::min(not_after - now + 1, kLongestWait);
    } else if (auto why = recheck(*state, ssl, caller)) {
      cut(*state, *stream, caller, *why);
      co_return;
    }
    watch->timer.expires_after(std::chrono::seconds(wait));
    co_await watch->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    // `done` (not the wait's error) says whether the stream, and so `stream` and `ssl`, are
    // still there: a cancel that comes after the timer fired does not abort the wait.
    if (watch->done || state->stopped) {
      co_return;
    }
  }
}

// The requests of one connection, plain or TLS (`caller`: the verified client certificate's
// identity; `ssl`: the TLS connection, null for plain). Returns when the client closes, on an
// error, or when a response closes.
template <class Stream>
asio::awaitable<void> serve(std::shared_ptr<State> state, Stream& stream,
                            std::optional<tls::Identity> caller, const ssl_st* ssl,
                            bool& streaming) {
  const bool tls = ssl != nullptr;
  beast::flat_buffer buffer;
  tls::PeerTrust::Memo trusted;  // recheck() of this connection's certificate

  while (!state->stopped) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    lowest(stream).expires_after(kTimeout);
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
      lowest(stream).expires_after(kTimeout);
      co_await http::async_write(stream, res, kNoThrow);
      break;
    }

    HttpRequest req = parser.release();
    Request request = to_request(req);
    request.caller = caller;

    if (caller) {
      if (auto why = recheck(*state, ssl, *caller, &trusted)) {
        // The certificate was good at the handshake and is not now: this connection ends.
        state->metrics.connections_cut.Add({{"reason", std::string(*why)}}).Increment();
        spdlog::warn(
            "admin: closing a connection of {}: its client certificate is {} since the "
            "connection was made",
            tls::identity_uri(*caller), certificate_is(*why));
        count(*state, path_label(*state, request.path), 401);
        Response refusal =
            error_response(401, "unauthenticated",
                           "the client certificate is " + std::string(certificate_is(*why)) +
                               " since this connection was made; connect again with a valid one");
        HttpResponse res =
            to_http(std::move(refusal), {}, req.method() == http::verb::head, req.version(), false);
        lowest(stream).expires_after(kTimeout);
        co_await http::async_write(stream, res, kNoThrow);
        break;
      }
    }

    if (tls && !caller && !anonymous_allowed(*state, request.path)) {
      count(*state, path_label(*state, request.path), 401);
      HttpResponse res = to_http(unauthenticated(), {}, req.method() == http::verb::head,
                                 req.version(), req.keep_alive());
      lowest(stream).expires_after(kTimeout);
      auto [write_ec, write_n] = co_await http::async_write(stream, res, kNoThrow);
      if (write_ec || !res.keep_alive()) {
        break;
      }
      continue;
    }

    if (auto it = state->handlers.find(request.path);
        it != state->handlers.end() && std::holds_alternative<StreamHandler>(it->second)) {
      StreamHandler handler = std::get<StreamHandler>(it->second);
      streaming = true;
      std::shared_ptr<ExpiryWatch> expiry;
      if (caller && !tls::is_node_role(caller->role) && state->trust) {
        if (auto until = tls::peer_not_after(ssl)) {
          expiry = std::make_shared<ExpiryWatch>(state->executor);
          asio::co_spawn(state->executor,
                         cut_at_expiry(state, expiry, &lowest(stream), ssl, *caller, *until),
                         log_failure(state, "admin: certificate expiry of a stream"));
        }
      }
      co_await run_stream(*state, std::move(handler), it->first, std::move(request), stream,
                          req.version());
      streaming = false;
      if (expiry) {
        expiry->done = true;
        expiry->timer.cancel();
      }
      break;
    }

    std::string allow;
    auto [response, label] = co_await answer(*state, std::move(request), req.method(), allow);
    count(*state, label, response.status);
    HttpResponse res = to_http(std::move(response), allow, req.method() == http::verb::head,
                               req.version(), req.keep_alive());
    lowest(stream).expires_after(kTimeout);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, kNoThrow);
    if (write_ec || !res.keep_alive()) {
      break;
    }
  }
}

std::string peer_of(beast::tcp_stream& stream) {
  beast::error_code ec;
  const auto endpoint = stream.socket().remote_endpoint(ec);
  return ec ? std::string("?")
            : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

asio::awaitable<void> run_tls_session(std::shared_ptr<State> state, tcp::socket socket) {
  const base::TlsContext context = state->tls;  // kept alive by this frame
  if (!context) {
    state->metrics.tls_handshakes.Add({{"result", "not_ready"}}).Increment();
    beast::error_code ignored;
    socket.close(ignored);
    co_return;
  }
  SslStream stream(std::move(socket), *context);
  SessionEntry entry(*state, lowest(stream));
  lowest(stream).expires_after(kHandshakeTimeout);
  auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kNoThrow);
  if (handshake_ec) {
    state->metrics.tls_handshakes.Add({{"result", "failed"}}).Increment();
    if (!state->stopped) {
      spdlog::warn("admin: TLS handshake with {} failed: {}", peer_of(lowest(stream)),
                   base::tls_handshake_failure(stream.native_handle(), handshake_ec));
    }
    beast::error_code ignored;
    lowest(stream).socket().close(ignored);
    co_return;
  }
  state->metrics.tls_handshakes.Add({{"result", "ok"}}).Increment();
  auto caller = tls::verified_peer(stream.native_handle());
  entry.identify(stream.native_handle(), caller);
  co_await serve(state, stream, std::move(caller), stream.native_handle(), entry.streaming());
  if (!state->stopped) {
    lowest(stream).expires_after(kTlsCloseTimeout);
    co_await stream.async_shutdown(kNoThrow);
  }
  beast::error_code ignored;
  lowest(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> run_session(std::shared_ptr<State> state, tcp::socket socket) {
  if (state->tls_required) {
    co_await run_tls_session(std::move(state), std::move(socket));
    co_return;
  }
  beast::tcp_stream stream(std::move(socket));
  SessionEntry entry(*state, stream);
  co_await serve(state, stream, std::nullopt, nullptr, entry.streaming());
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
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
                   log_failure(state, "admin: session"));
  }
}

// "IP:PORT", "[V6]:PORT" or ":PORT" (all interfaces); port 0 = any free port.
tcp::endpoint parse_endpoint(const std::string& address) {
  const auto hp = base::parse_host_port(address, {.empty_host = true, .port_zero = true});
  if (!hp) {
    throw std::system_error(
        std::make_error_code(std::errc::invalid_argument),
        "admin: bad listen address (want IP:PORT, [IPv6]:PORT or :PORT): " + address);
  }
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) {
    throw std::system_error(ec, "admin: bad host in listen address: " + address);
  }
  return {ip, hp->port};
}

class AdminServerImpl final : public AdminServer {
 public:
  AdminServerImpl(asio::any_io_executor executor, std::shared_ptr<prometheus::Registry> registry)
      : state_(std::make_shared<State>(std::move(executor), std::move(registry))) {}

  ~AdminServerImpl() override { stop(); }

  void handle(std::string path, Handler handler) override {
    state_->handlers.insert_or_assign(std::move(path), std::move(handler));
  }
  void handle_async(std::string path, AsyncHandler handler) override {
    state_->handlers.insert_or_assign(std::move(path), std::move(handler));
  }
  void handle_stream(std::string path, StreamHandler handler) override {
    state_->handlers.insert_or_assign(std::move(path), std::move(handler));
  }
  void handle_prefix(std::string prefix, AsyncHandler handler) override {
    state_->prefixes.insert_or_assign(std::move(prefix), std::move(handler));
  }
  void use_tls(base::TlsContext context) override {
    state_->tls_required = true;
    state_->tls = std::move(context);
  }
  void allow_anonymous(std::string path) override { state_->anonymous.insert(std::move(path)); }
  void recheck_peers(std::shared_ptr<const tls::PeerTrust> trust) override {
    state_->trust = std::move(trust);
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
    asio::co_spawn(state_->executor, accept_loop(state_), log_failure(state_, "admin: acceptor"));
    spdlog::info("admin: listening on {}:{}", bound.address().to_string(), bound.port());
    return bound.port();
  }

  void stop() override {
    state_->stopped = true;
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
    // Closing cancels each session's pending operation; the session then ends and removes
    // itself from the map (in a later handler, never during this loop).
    for (auto& [id, open] : state_->sessions) {
      open.stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      open.stream->close();
    }
  }

  std::size_t cut_untrusted() override {
    std::size_t closed = 0;
    for (auto& [id, open] : state_->sessions) {
      // Idle and request-answering connections meet the same check at their next request,
      // which answers 401 before it closes; a stream has no next request.
      if (!open.streaming || !open.caller || !open.stream->socket().is_open()) {
        continue;
      }
      const auto why = recheck(*state_, open.ssl, *open.caller);
      if (!why) {
        continue;
      }
      cut(*state_, *open.stream, *open.caller, *why);
      ++closed;
    }
    return closed;
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// RFC 3986 §2.1 percent-decoding; `plus_is_space` for query components (HTML forms).
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) {
        return false;
      }
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

}  // namespace

bool parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query) {
  query.clear();
  const auto q = target.find('?');
  if (!percent_decode(target.substr(0, q), false, path)) {
    return false;
  }
  if (q == std::string_view::npos) {
    return true;
  }
  std::string_view rest = target.substr(q + 1);
  const auto hash = rest.find('#');
  rest = rest.substr(0, hash);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const auto eq = pair.find('=');
    std::string key;
    std::string value;
    if (!percent_decode(pair.substr(0, eq), true, key) ||
        !percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                        true, value)) {
      return false;
    }
    query[std::move(key)] = std::move(value);
  }
  return true;
}

std::unique_ptr<AdminServer> make_admin_server(boost::asio::any_io_executor executor,
                                               std::shared_ptr<prometheus::Registry> registry) {
  return std::make_unique<AdminServerImpl>(std::move(executor), std::move(registry));
}

}  // namespace routemesh::admin
