#include "proxy/http_session.h"

#include "proxy/overlay/overlay.h"

#include "base/check.h"
#include "base/spawn.h"
#include "proxy/drain_read.h"
#include "proxy/errc.h"
#include "proxy/http/fields.h"
#include "proxy/http/keep_alive.h"
#include "proxy/http/retry.h"
#include "proxy/http/rewrite.h"
#include "proxy/http/routing_key.h"
#include "proxy/l4/splice.h"
#include "proxy/l4/tunnel.h"
#include "proxy/tls_bridge.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace routemesh::proxy {

namespace {

using boost::system::error_code;

constexpr std::size_t kClientBufferSize = Worker::kClientBufferSize;
// Content-Length bodies at least this large (after the first read) are spliced.
constexpr std::uint64_t kSpliceBodyMin = 64 * 1024;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Reads from the upstream use DrainBuffer (proxy/drain_read.h): right after a request is sent
// the backend has not answered yet, and the speculative recv Asio would try is a wasted
// EAGAIN. Reads from the client use a plain buffer: with DrainBuffer on both sides, p99 at
// 45k req/s paced rose from ~1.2 ms to ~3.5 ms (bench/run.sh's paced case; the cause in the
// reactor's ordering was not pinned down), while either side alone showed no such tail.

// Every failure exchange() reports is one of ours.
errc failure_of(const error_code& ec) {
  RM_ASSERT(ec.category() == proxy_category(), "exchange failures are proxy::errc");
  return static_cast<errc>(ec.value());
}

// Bytes received from one side; the unread ones are [begin, end).
struct ReadBuffer {
  std::unique_ptr<char[]> data;
  std::size_t begin = 0;
  std::size_t end = 0;

  bool empty() const { return begin == end; }
  void clear() { begin = end = 0; }
  const char* unread() const { return data.get() + begin; }
  std::size_t unread_size() const { return end - begin; }
};

// One request, from its first byte to its answer. Reset when the next request starts.
struct RequestState {
  Clock::time_point start;        // the first byte of the request was there
  bool head_parsed = false;       // the request parser's head() is this request's
  bool fully_read = false;        // every byte of the request was read from the client
  bool body_streamed = false;     // body bytes beyond first_body were sent upstream
  asio::const_buffer first_body;  // body bytes read with the head, sent in the same write
  // Routing. `table` keeps `cluster` (a pointer into it) valid until the answer.
  std::shared_ptr<const mesh::RouteTable> table;
  std::uint64_t generation = 0;            // the balancer's table generation at the pick
  const mesh::Cluster* cluster = nullptr;  // null: not routed (yet)
  ServiceMetrics* metrics = nullptr;       // the cluster's metric children; null: no route
  std::string_view sticky_key;             // the affinity cookie's value (an endpoint key)
  // The current attempt's endpoint (index into cluster->endpoints, and its "ip:port" key).
  std::uint32_t endpoint = 0;
  std::string_view endpoint_key;
  bool retried = false;  // the current attempt is the retry on a second endpoint
  // X-Request-Id as the client sent it, or generated into request_id_buf.
  std::string_view request_id;
  char request_id_buf[16] = {};
  // What the access log and the metrics get.
  unsigned status = 0;     // the status sent to the client; 0 while none was
  std::string_view error;  // why a started exchange broke (static text), "" if it did not
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  // The request body's deadlines (timeouts.request_body_ms, body_min_rate_bps), when set: its
  // clock starts when streaming starts and stops while an upstream write is pending (a slow
  // upstream is not the client's fault).
  Clock::time_point body_start{};  // epoch: streaming has not started
  Clock::duration body_paused{};   // spent writing the body upstream
  std::uint64_t body_bytes = 0;    // body bytes received (chunk framing included)
  Clock::time_point body_deadline = Clock::time_point::max();  // armed for the current read
  bool body_deadline_is_rate = false;  // the armed one is the minimum rate's
};

// One exchange over one upstream connection: exchange() resets it for every connection it
// tries. The duplex flags are shared by the two halves of duplex(), on the same thread.
struct AttemptState {
  Clock::time_point start;  // the attempt began (connect or pooled connection taken)
  // Worker::overlay_checks() when it began: an overlay connection goes back to the pool
  // unchecked only if no revocation was applied meanwhile.
  std::uint64_t overlay_checks = 0;
  Clock::time_point request_sent;         // the whole request was written upstream
  bool response_started = false;          // some response byte arrived
  bool in_response_body = false;          // the final head was relayed; body bytes follow
  bool response_done = false;             // the final response was relayed completely
  bool body_spliced = false;              // the response body bypassed the parser (splice_exact)
  bool tunnelled = false;                 // a 101 was relayed and the tunnel ran
  bool close_client = false;              // the client connection closes after this response
  bool upstream_in_step = true;           // no stray bytes, EOF or unseen bytes on the upstream
  bool upstream_stopped_reading = false;  // writing the request body upstream failed
  bool body_read_failed = false;          // duplex: reading the request body failed
  bool stop_body = false;                 // duplex: the response ended first; stop the body

  // Every flag back to its initial value; `start` and `overlay_checks` are kept.
  void reset_flags() { *this = AttemptState{start, overlay_checks, start}; }
};

// An error answer chosen by a synchronous step (set_error), sent by send_error().
struct ErrorAnswer {
  unsigned status = 0;
  std::string_view code;  // X-Routemesh-Error
  std::string detail;     // the body; its capacity is reused
  bool close = false;     // close the client connection even if it could stay open
};

class Session {
 public:
  Session(Worker& w, tcp::socket socket,
          std::optional<mesh::overlay::ProxiedAddresses> proxied = std::nullopt)
      : Session(w, std::move(socket), nullptr, std::move(proxied)) {}

  // The HTTPS port's connection, handshake done: requests are read from and answers written
  // to `tls`; `keep` (its context) lives as long as it. `proxied` names the real client and the
  // HTTPS port, and X-Forwarded-Proto is https.
  Session(Worker& w, std::unique_ptr<TlsStream> tls, std::shared_ptr<const void> keep,
          mesh::overlay::ProxiedAddresses proxied)
      : Session(w, tcp::socket(w.io()), std::move(tls), std::move(proxied)) {
    tls_keep_ = std::move(keep);
  }

  Session(Worker& w, tcp::socket socket, std::unique_ptr<TlsStream> tls,
          std::optional<mesh::overlay::ProxiedAddresses> proxied)
      : worker_(w),
        client_(std::move(socket)),
        tls_(std::move(tls)),
        upstream_(tcp::socket(w.io())),
        live_guard_(w, live_),
        request_parser_(w.take_request_parser()) {
    live_.down = tls_ ? &tls_->next_layer() : &client_;
    if (tls_) {
      tls_->stop_when(&live_.expired);
    }
    client_in_.data = w.take_client_buffer();
    boost::system::error_code ec;
    if (tls_) {  // the TCP options and addresses were taken care of by the HTTPS port
      local_port_ = proxied ? proxied->dst_port : 0;
    } else {
      client_.set_option(tcp::no_delay(true), ec);
      const auto peer = client_.remote_endpoint(ec);
      if (!ec) {
        client_ip_ = peer.address().to_string();
        client_address_ = peer.address();
        trusted_peer_ = worker_.trusted_proxy(peer.address());
      }
      const auto local = client_.local_endpoint(ec);
      if (!ec) {
        local_port_ = local.port();
      }
    }
    if (proxied) {
      origin_ = *proxied;
      // The client a load balancer in front named; its forwarding headers count only if it
      // is itself a trusted proxy.
      client_ip_ = proxied->src_ip;
      boost::system::error_code pec;
      const auto src = asio::ip::make_address(proxied->src_ip, pec);
      trusted_peer_ = !pec && worker_.trusted_proxy(src);
      if (!pec) {
        client_address_ = src;
      }
    }
    worker_.metrics().downstream_total.Increment();
  }

  ~Session() {
    if (upstream_in_.data) {
      worker_.give_buffer(std::move(upstream_in_.data));
    }
    if (client_in_.data) {
      worker_.give_client_buffer(std::move(client_in_.data));
    }
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves requests until the client closes, an answer closes the connection, or shutdown
  // (false), or until the connection is idle with nothing buffered (true): the caller then
  // parks it, so that an idle keep-alive connection holds no coroutine frame and no buffer.
  // `woken`: the parked socket became readable.
  asio::awaitable<bool> run(bool woken);

  // Waits for a parked connection's next request without a coroutine: an async_wait whose
  // handler owns the session and, when the socket becomes readable, starts a session
  // coroutine again (wake). The idle deadline, drain and shutdown cancel the wait (the
  // connection is in the worker's registry, marked idle); the handler then destroys the
  // session, which closes the connection.
  static void park(std::unique_ptr<Session> s);
  static void wake(std::unique_ptr<Session> s, const error_code& ec);
  // The end of an HTTPS connection that was not killed: close_notify, then at most 1 s for the
  // client's (what it still sends is discarded), so the last answer is not cut by a reset.
  static asio::awaitable<void> close_tls(std::unique_ptr<Session> s);
  bool closes_tls() const { return tls_ != nullptr && !live_.killed; }

 private:
  // What after_attempt() decided.
  enum class AfterAttempt { keep_open, close, retry, send_error };

  // Coroutines. Each costs a frame per call; see handle_request() on frame size.
  asio::awaitable<bool> handle_request();
  asio::awaitable<bool> send_error();
  asio::awaitable<bool> reply_error(unsigned status, std::string_view code, std::string_view detail,
                                    bool close);
  asio::awaitable<error_code> exchange(UpstreamPool::Bucket& bucket);
  asio::awaitable<error_code> duplex();
  asio::awaitable<error_code> body_task();
  asio::awaitable<error_code> response_task();
  asio::awaitable<error_code> stream_request_body();
  asio::awaitable<error_code> read_response();
  asio::awaitable<error_code> relay_upgrade();
  template <class Buffers>
  asio::awaitable<bool> write_to_client(const Buffers& buffers);

  // The client's byte stream, plain or TLS. Not coroutines: each returns the operation's own
  // awaitable, so a plain connection pays no extra frame.
  asio::awaitable<std::tuple<error_code, std::size_t>> read_client(asio::mutable_buffer b) {
    if (tls_) {
      return tls_->read_some(b);
    }
    return client_.async_read_some(b, kTuple);
  }
  asio::awaitable<std::tuple<error_code, std::size_t>> write_client(asio::const_buffer b) {
    if (tls_) {
      return tls_->write(b, asio::const_buffer());
    }
    return asio::async_write(client_, b, kTuple);
  }
  asio::awaitable<std::tuple<error_code, std::size_t>> write_client(
      const std::array<asio::const_buffer, 2>& b) {
    if (tls_) {
      return tls_->write(b[0], b[1]);
    }
    return asio::async_write(client_, b, kTuple);
  }
  // Reads what the client sent already, without waiting: bytes, 0 for nothing yet, -1 when it
  // closed or failed. HTTPS: what the socket holds is decrypted if it completes a record.
  asio::awaitable<long> read_client_now();
  tcp::socket& client_socket() { return tls_ ? tls_->next_layer() : client_; }

  // The upstream's byte stream, plain or TLS (an encrypted overlay stream, whose keys are
  // updated before a write when due). Not coroutines, as above.
  asio::awaitable<std::tuple<error_code, std::size_t>> write_upstream(asio::const_buffer b) {
    if (upstream_.tls) {
      update_overlay_keys(worker_, *upstream_.tls, upstream_.key_epoch, upstream_.rekey_bytes);
      return upstream_.tls->write(b, asio::const_buffer());
    }
    return asio::async_write(upstream_.socket, b, kTuple);
  }
  asio::awaitable<std::tuple<error_code, std::size_t>> write_upstream(
      const std::array<asio::const_buffer, 2>& b) {
    if (upstream_.tls) {
      update_overlay_keys(worker_, *upstream_.tls, upstream_.key_epoch, upstream_.rekey_bytes);
      return upstream_.tls->write(b[0], b[1]);
    }
    return asio::async_write(upstream_.socket, b, kTuple);
  }

  // Synchronous steps.
  bool begin_request();
  const mesh::Cluster* route_in(const mesh::RouteTable& table, const http::RoutingKey& key,
                                bool& denied);
  bool retarget();
  AfterAttempt after_attempt(const error_code& failure);
  void set_error(unsigned status, std::string_view code, bool close,
                 std::initializer_list<std::string_view> detail);
  http::FeedResult feed_request_body();
  http::FeedResult feed_response_body();
  bool keep_after_error_reply();
  void arm_body_deadline();
  void close_upstream();
  void end_request();

  Worker& worker_;
  tcp::socket client_;                    // a plain connection's; unused (closed) for HTTPS
  std::shared_ptr<const void> tls_keep_;  // tls_'s context: declared first, destroyed after it
  std::unique_ptr<TlsStream> tls_;        // an HTTPS connection's, until an upgrade bridges it
  UpstreamConn upstream_;                 // plain, or TLS to another node's overlay listener
  LiveConn live_;  // this connection in the worker's registry: deadline, cancellation
  LiveGuard live_guard_;
  std::string client_ip_;
  bool trusted_peer_ = false;     // node.trusted_proxies holds the peer: its X-Forwarded-* count
  std::uint16_t local_port_ = 0;  // the published port the client connected to
  asio::ip::address client_address_;  // the client policies judge (peer, or PROXY header's)
  // The client and port named by a PROXY header or the HTTPS port (the socket's own addresses
  // otherwise): what an overlay preamble carries.
  std::optional<mesh::overlay::ProxiedAddresses> origin_;

  ReadBuffer client_in_;  // kClientBufferSize bytes, for the whole connection
  std::unique_ptr<http::RequestParser> request_parser_;  // null while idle (the worker's)
  // Built on first use. After close_upstream() or a splice it may be mid-message, so it is
  // rebuilt before the next exchange unless response_parser_clean_.
  std::unique_ptr<http::ResponseParser> response_parser_;
  bool response_parser_clean_ = true;
  ReadBuffer upstream_in_;  // Worker::kUpstreamBufferSize bytes from the worker, on first use
  std::string head_out_;    // the head being written (either way); capacity reused

  RequestState request_;
  AttemptState attempt_;
  ErrorAnswer error_;
};

asio::awaitable<bool> Session::run(bool woken) {
  for (;;) {
    request_ = RequestState{};
    if (woken) {
      // Parked until the socket became readable: the next request, or EOF.
      woken = false;
      client_in_.data = worker_.take_client_buffer();
      auto [ec, n] = co_await read_client(asio::buffer(client_in_.data.get(), kClientBufferSize));
      if (ec || live_.expired || worker_.draining()) {
        co_return false;  // closed (EOF was what made it readable) or shutdown
      }
      client_in_.end = n;
      request_parser_ = worker_.take_request_parser();
    } else if (client_in_.empty()) {
      // Idle keep-alive: wait for the first byte of the next request.
      if (worker_.draining()) {
        co_return false;
      }
      // An idle connection holds no upstream buffer, parsers or head string: they go back
      // to the worker's free lists until the next request (bench/idle_memory.py).
      if (upstream_in_.data) {
        worker_.give_buffer(std::move(upstream_in_.data));
      }
      worker_.give_request_parser(std::move(request_parser_));
      if (response_parser_ && response_parser_clean_) {
        worker_.give_response_parser(std::move(response_parser_));
      }
      response_parser_.reset();
      worker_.give_head_buffer(std::exchange(head_out_, std::string()));
      client_in_.clear();
      // The next request may be here already (the client pipelines or is quick): read it
      // into the buffer we hold. Otherwise the buffer goes back too while we wait for the
      // socket to become readable (an async_wait, which needs no buffer).
      long got = 0;
      if (tls_) {
        got = co_await read_client_now();
      } else {
        got =
            ::recv(client_.native_handle(), client_in_.data.get(), kClientBufferSize, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          got = -1;
        } else if (got < 0) {
          got = 0;
        }
      }
      if (got < 0) {
        co_return false;  // closed or reset: close quietly
      }
      if (got == 0) {
        worker_.give_client_buffer(std::move(client_in_.data));
        live_.idle = true;
        live_.arm(Clock::now(), worker_.timeouts().idle);
        co_return true;  // park: this frame ends; wake() starts the next one
      }
      client_in_.end = static_cast<std::size_t>(got);
      request_parser_ = worker_.take_request_parser();
    }
    request_.start = Clock::now();
    live_.arm(request_.start, worker_.timeouts().request_head);
    // Parse the head; the parser copies head bytes, so the buffer is free again afterwards.
    for (;;) {
      const auto r = request_parser_->feed(client_in_.unread(), client_in_.unread_size());
      client_in_.begin += r.consumed;
      request_.bytes_in += r.consumed;
      if (r.event == http::Event::error) {
        const auto& e = request_parser_->error();
        worker_.bad_requests(e.reason).Increment();
        co_await reply_error(e.status, "bad_request", e.reason, true);
        co_return false;  // RFC 9112 §11.2: close after a framing error
      }
      if (r.event == http::Event::head_complete) {
        break;
      }
      client_in_.clear();
      auto [ec, n] = co_await read_client(asio::buffer(client_in_.data.get(), kClientBufferSize));
      if (live_.killed) {
        co_return false;
      }
      if (live_.expired) {
        worker_.bad_requests("head timeout").Increment();
        co_await reply_error(408, "request_timeout", "request head not received in time", true);
        co_return false;
      }
      if (ec) {
        co_return false;
      }
      client_in_.end = n;
    }
    request_.head_parsed = true;
    const bool keep = co_await handle_request();
    if (!keep || live_.killed) {
      co_return false;
    }
    request_parser_->next_message();
  }
}

// After head_complete: the body bytes available now. A bodyless message completes without
// input, which the parser can only report once it sees bytes, so it is reported here.
http::FeedResult Session::feed_request_body() {
  if (client_in_.empty() && request_parser_->head().body == http::BodyKind::none) {
    return {http::Event::message_complete, 0};
  }
  return request_parser_->feed(client_in_.unread(), client_in_.unread_size());
}

http::FeedResult Session::feed_response_body() {
  if (upstream_in_.empty() && response_parser_->head().body == http::BodyKind::none) {
    return {http::Event::message_complete, 0};
  }
  return response_parser_->feed(upstream_in_.unread(), upstream_in_.unread_size());
}

// Writes to the client under the idle timeout. False when the client is gone or too slow.
template <class Buffers>
asio::awaitable<bool> Session::write_to_client(const Buffers& buffers) {
  live_.arm(Clock::now(), worker_.timeouts().idle);
  auto [ec, n] = co_await write_client(buffers);
  request_.bytes_out += n;
  co_return !ec && !live_.expired;
}

// Whether the connection can stay open after an error answer. Completes a request whose body
// is already buffered (or absent), so its bytes are not parsed as the next request.
bool Session::keep_after_error_reply() {
  if (!request_.head_parsed) {
    return false;
  }
  const http::RequestHead& h = request_parser_->head();
  if (!request_.fully_read && h.keep_alive && !worker_.draining()) {
    const auto r = feed_request_body();
    if (r.event == http::Event::message_complete) {
      client_in_.begin += r.consumed;
      request_.fully_read = true;
    }
  }
  return http::keep_client_after_error(h, request_.fully_read, worker_.draining());
}

// Sends an error answer and ends the request. True when the connection stays open.
asio::awaitable<bool> Session::reply_error(unsigned status, std::string_view code,
                                           std::string_view detail, bool close) {
  if (!close) {
    close = !keep_after_error_reply();
  }
  const bool head_request = request_.head_parsed && request_parser_->head().is_head;
  const std::string resp = http::error_response(status, code, detail, close, head_request);
  request_.status = status;
  const bool ok = co_await write_to_client(asio::buffer(resp));
  end_request();
  co_return ok && !close;
}

// Closes the upstream connection; its parser may be mid-message now.
void Session::close_upstream() {
  upstream_.close();
  if (live_.up != nullptr) {
    live_.up = &upstream_.socket;  // a TLS stream's socket is gone with it
  }
  response_parser_clean_ = false;
}

// Metrics and the access-log line of the request; drops its routing state.
void Session::end_request() {
  ServiceMetrics& sm = request_.metrics != nullptr ? *request_.metrics : worker_.no_route_metrics();
  const auto now = Clock::now();
  const double secs = std::chrono::duration<double>(now - request_.start).count();
  sm.count(request_.status, secs);
  worker_.count_bytes(request_.bytes_in, request_.bytes_out);
  if (AccessLogBuffer* log = worker_.access_log()) {
    AccessRecord rec;
    rec.client = client_ip_;
    if (request_.head_parsed) {
      const auto& h = request_parser_->head();
      rec.method = h.method;
      rec.host = h.host;
      rec.target = h.target;
      rec.version_minor = h.version_minor;
      if (worker_.cfg().node.access_log.format == config::AccessLogFormat::combined) {
        rec.user_agent = http::find_header(h.headers, "user-agent");
        rec.referer = http::find_header(h.headers, "referer");
      }
    }
    rec.service = sm.service;
    rec.upstream = request_.endpoint_key;
    rec.request_id = request_.request_id;
    rec.error = request_.error;
    rec.status = request_.status;
    rec.bytes_in = request_.bytes_in;
    rec.bytes_out = request_.bytes_out;
    rec.duration_ms = secs * 1000.0;
    log->append(rec);
  }
  request_.metrics = nullptr;
  request_.cluster = nullptr;
  request_.endpoint_key = {};
  request_.request_id = {};
  request_.table.reset();
}

void Session::set_error(unsigned status, std::string_view code, bool close,
                        std::initializer_list<std::string_view> detail) {
  error_.status = status;
  error_.code = code;
  error_.close = close;
  error_.detail.clear();
  for (std::string_view piece : detail) {
    error_.detail.append(piece);
  }
}

asio::awaitable<bool> Session::send_error() {
  const unsigned status = error_.status;
  error_.status = 0;
  co_return co_await reply_error(status, error_.code, error_.detail, error_.close);
}

// The cluster `table` routes the request's `key` to (nullptr: none), and whether the policy
// denies it: published ports are open to every source unless a policy names the port
// (mesh/policy).
const mesh::Cluster* Session::route_in(const mesh::RouteTable& table, const http::RoutingKey& key,
                                       bool& denied) {
  const mesh::RouteMatch match = mesh::route(key.host, key.path, table);
  if (match.cluster != nullptr) {
    denied = !worker_.policy_allows(
        table, client_address_,
        {match.cluster->service, local_port_, mesh::policy::Entry::published, {}}, "l7");
  }
  return match.cluster;
}

// Synchronous start of a request: routing, the first body bytes, the upstream head, the first
// pick. Returns false after set_error().
bool Session::begin_request() {
  const http::RequestHead& h = request_parser_->head();
  request_.table = worker_.table();
  request_.generation = worker_.generation();
  request_.request_id = http::find_header(h.headers, "x-request-id");
  if (request_.request_id.empty()) {
    worker_.make_request_id(request_.request_id_buf);
    request_.request_id = std::string_view(request_.request_id_buf, sizeof request_.request_id_buf);
  }

  // RFC 9110 §9.3.6: tunnelling via CONNECT is not offered.
  if (h.is_connect) {
    set_error(405, "method_not_allowed", true, {"CONNECT is not supported"});
    return false;
  }
  const http::RoutingKey key = http::routing_key(h);
  bool denied = false;
  const mesh::Cluster* routed = request_.table ? route_in(*request_.table, key, denied) : nullptr;
  if (routed == nullptr) {
    set_error(404, "no_route", false, {"no route for host ", key.host});
    return false;
  }
  const mesh::Cluster& cluster = *routed;
  if (denied) {
    set_error(403, "policy", false, {"denied by policy for service ", cluster.service});
    return false;
  }
  request_.cluster = &cluster;
  request_.metrics = &worker_.service_metrics(cluster.index);
  request_.sticky_key =
      cluster.sticky_cookie ? http::find_cookie(h, *cluster.sticky_cookie) : std::string_view{};

  // The first body bytes (all of a small body) go out with the head in one write.
  const auto first = feed_request_body();
  if (first.event == http::Event::error) {
    const http::ParseError& e = request_parser_->error();
    worker_.bad_requests(e.reason).Increment();
    set_error(e.status, "bad_request", true, {e.reason});
    return false;
  }
  request_.first_body = asio::const_buffer(client_in_.unread(), first.consumed);
  client_in_.begin += first.consumed;
  request_.bytes_in += first.consumed;
  request_.body_bytes = first.consumed;
  request_.fully_read = first.event == http::Event::message_complete;

  if (head_out_.capacity() < 1024) {  // given back while idle (an empty string's SSO capacity)
    head_out_ = worker_.take_head_buffer();
  }
  head_out_.clear();
  http::ForwardContext ctx;
  ctx.client_ip = client_ip_;
  // An upgrade bridges tls_ away, but its connection serves no more requests.
  ctx.proto = tls_ ? "https" : "http";
  ctx.request_id = request_.request_id;
  ctx.via = worker_.via();
  ctx.port = local_port_;
  ctx.trusted_peer = trusted_peer_;
  http::write_request_head(h, ctx, head_out_);
  if (h.version_major == 1 && h.version_minor == 0) {
    http::downgrade_to_http10(head_out_);
  }

  if (!upstream_in_.data) {
    upstream_in_.data = worker_.take_buffer();
  }
  const std::optional<mesh::Pick> pick = worker_.balancer().pick(
      cluster.index, worker_.next_random(), request_.start, request_.sticky_key);
  if (!pick) {
    set_error(503, "no_healthy_endpoint", false, {"no healthy endpoint for ", cluster.service});
    return false;
  }
  request_.endpoint = pick->endpoint;
  return true;
}

// The endpoint of a retry, another than the one that failed: picked in the request's table, or,
// when the table changed during the attempt (its endpoint indices are not the balancer's any
// more: a rolling update writes health and drain states all the time), in the newest one,
// where the request is routed again (same host and path, the policy checked again) and the
// failed endpoint is left out by its key. False when there is none; the request then keeps
// its table (request_.endpoint_key points into it).
bool Session::retarget() {
  const mesh::Cluster* cluster = request_.cluster;
  std::optional<std::uint32_t> failed = request_.endpoint;
  std::shared_ptr<const mesh::RouteTable> table;  // set: the request moves to this table
  if (request_.generation != worker_.generation()) {
    table = worker_.table();
    bool denied = false;
    cluster =
        table ? route_in(*table, http::routing_key(request_parser_->head()), denied) : nullptr;
    if (cluster == nullptr || denied) {
      return false;
    }
    failed.reset();
    for (std::uint32_t i = 0; i < cluster->endpoints.size() && !failed; ++i) {
      if (cluster->endpoints[i].key == request_.endpoint_key) {
        failed = i;
      }
    }
  }
  const auto pick =
      worker_.balancer().pick(cluster->index, worker_.next_random(), Clock::now(), {}, failed);
  if (!pick) {
    return false;
  }
  if (table) {
    request_.table = std::move(table);
    request_.generation = worker_.generation();
    request_.cluster = cluster;
    request_.metrics = &worker_.service_metrics(cluster->index);
  }
  request_.endpoint = pick->endpoint;
  return true;
}

// After one attempt on request_.endpoint: passive health, the retry decision and the answer.
Session::AfterAttempt Session::after_attempt(const error_code& failure) {
  const http::RequestHead& h = request_parser_->head();
  const mesh::Cluster& cluster = *request_.cluster;
  ServiceMetrics& sm = *request_.metrics;

  if (!failure) {
    // A relayed response (or a tunnel, whose status is 101).
    worker_.finish(request_.generation, cluster, request_.endpoint,
                   request_.status >= 500 ? mesh::Outcome::server_error : mesh::Outcome::success,
                   sm);
    end_request();
    return attempt_.close_client ? AfterAttempt::close : AfterAttempt::keep_open;
  }

  const errc e = failure_of(failure);
  mesh::Outcome outcome = mesh::Outcome::success;
  switch (e) {
    case errc::upstream_connect_failed:
    case errc::upstream_connect_timeout:
      sm.connect_errors->Increment();
      outcome = mesh::Outcome::connect_failed;
      break;
    case errc::upstream_reset:
      outcome = mesh::Outcome::connect_failed;
      break;
    case errc::upstream_timeout:
    case errc::upstream_malformed:
    case errc::upstream_aborted:
      outcome = mesh::Outcome::server_error;
      break;
    case errc::client_gone:
    case errc::bad_request_body:
    case errc::request_body_timeout:
    case errc::killed:
    case errc::local_resources:  // this node's fault, not the endpoint's: never ejects
      outcome = mesh::Outcome::local_abort;
      break;
  }
  if (e == errc::request_body_timeout) {
    const char* reason =
        request_.body_deadline_is_rate ? "request body too slow" : "request body timeout";
    worker_.bad_requests(reason).Increment();
    if (worker_.may_log_body_timeout(Clock::now())) {
      spdlog::info(
          "proxy: {} from {} for service {}: {} after {} bytes; connection closed (further "
          "ones this second are in the access log and routemesh_proxy_bad_requests_total)",
          reason, client_ip_, cluster.service,
          request_.body_deadline_is_rate ? "under timeouts.body_min_rate_bps"
                                         : "over timeouts.request_body_ms",
          request_.body_bytes);
    }
  }
  if (e == errc::upstream_reset || e == errc::upstream_timeout || e == errc::upstream_malformed ||
      e == errc::upstream_aborted) {
    sm.upstream_errors->Increment();
  }
  worker_.finish(request_.generation, cluster, request_.endpoint, outcome, sm);

  if (http::may_retry_elsewhere(h, failure, request_.retried, live_.killed) && retarget()) {
    request_.retried = true;
    request_.metrics->retries->Increment();
    close_upstream();
    return AfterAttempt::retry;
  }

  // The answer. After a failure the client connection closes unless the request was read
  // completely and none of its body was streamed (then nothing of it is left unread). Once a
  // response head went to the client nothing more may be written: the connection closes.
  close_upstream();
  if (attempt_.in_response_body && e != errc::killed) {
    request_.error = e == errc::upstream_aborted ? "upstream_aborted" : "";
    if (e == errc::request_body_timeout) {
      request_.error = "request_body_timeout";
    }
    if (e == errc::bad_request_body) {
      const http::ParseError& pe = request_parser_->error();
      worker_.bad_requests(pe.reason).Increment();
      request_.error = "bad_request_body";
    }
    end_request();
    return AfterAttempt::close;
  }
  const std::string_view upstream = request_.endpoint_key;
  switch (e) {
    case errc::upstream_connect_failed:
      set_error(502, "upstream_connect_failed", !request_.fully_read || request_.body_streamed,
                {"cannot connect to ", upstream});
      return AfterAttempt::send_error;
    case errc::upstream_connect_timeout:
      set_error(502, "upstream_connect_timeout", !request_.fully_read || request_.body_streamed,
                {"connect to ", upstream, " timed out"});
      return AfterAttempt::send_error;
    case errc::upstream_reset:
      set_error(502, "upstream_reset", !request_.fully_read,
                {"upstream ", upstream, " closed the connection"});
      return AfterAttempt::send_error;
    case errc::upstream_timeout:
      set_error(504, "upstream_timeout", !request_.fully_read, {"no response from ", upstream});
      return AfterAttempt::send_error;
    case errc::upstream_malformed:
      set_error(502, "upstream_malformed", !request_.fully_read,
                {"invalid response from ", upstream});
      return AfterAttempt::send_error;
    case errc::local_resources:
      worker_.metrics().local_resource_errors.Increment();
      set_error(503, "local_resources", !request_.fully_read || request_.body_streamed,
                {"this node is out of descriptors or memory; try again"});
      return AfterAttempt::send_error;
    case errc::bad_request_body: {
      const http::ParseError& pe = request_parser_->error();
      worker_.bad_requests(pe.reason).Increment();
      set_error(pe.status, "bad_request", true, {pe.reason});
      return AfterAttempt::send_error;
    }
    case errc::request_body_timeout:
      set_error(408, "request_body_timeout", true,
                {request_.body_deadline_is_rate ? "request body arrived too slowly"
                                                : "request body not received in time"});
      return AfterAttempt::send_error;
    case errc::killed:
      if (!attempt_.in_response_body && request_.status == 0) {
        // drain_ms is over and no response started: say so rather than just closing.
        set_error(503, "shutting_down", true, {"the node is shutting down"});
        return AfterAttempt::send_error;
      }
      [[fallthrough]];
    case errc::upstream_aborted:
    case errc::client_gone:
      if (request_.status == 0) {
        request_.status = 499;  // nginx's convention: the client went away before the response
      }
      end_request();
      return AfterAttempt::close;
  }
  return AfterAttempt::close;
}

// The request's coroutine. Everything that needs no I/O lives in the synchronous steps above,
// and every error answer goes through the one co_await in send_error(): GCC gives each
// co_await expression its own frame slots, and a frame over 1020 bytes bypasses Asio's frame
// recycling (a malloc and a free per request).
asio::awaitable<bool> Session::handle_request() {
  if (!begin_request()) {
    co_return co_await send_error();
  }
  for (;;) {
    const mesh::Cluster& cluster = *request_.cluster;
    request_.endpoint_key = cluster.endpoints[request_.endpoint].key;
    // The bucket stays valid while `users` is non-zero, even if a new table arrives.
    UpstreamPool::Bucket& bucket = *worker_.pool().at(cluster.index, request_.endpoint);
    ++bucket.users;
    worker_.balancer().on_start(cluster.index, request_.endpoint);
    live_.attach(cluster, request_.endpoint);
    const error_code failure = co_await exchange(bucket);
    live_.detach();
    --bucket.users;
    const AfterAttempt next = after_attempt(failure);
    if (next == AfterAttempt::retry) {
      continue;
    }
    if (next == AfterAttempt::send_error) {
      co_return co_await send_error();
    }
    co_return next == AfterAttempt::keep_open;
  }
}

// One endpoint: take a pooled connection or connect, send the request, relay the response.
// A pooled connection found dead before any response byte is replaced by a new connection
// to the same endpoint when the request can be sent again from our buffers.
asio::awaitable<error_code> Session::exchange(UpstreamPool::Bucket& bucket) {
  for (int fresh = 0;; ++fresh) {
    // Deadlines of this attempt start now, not when the request began: a slow client (head
    // or upload) is not the upstream's fault.
    attempt_.start = Clock::now();
    attempt_.overlay_checks = worker_.overlay_checks();
    // A fresh attempt: after_attempt() judges a failed connect by these flags too, so none
    // may be left over from the previous request on this client connection.
    attempt_.reset_flags();
    bool pooled = false;
    if (fresh == 0) {
      // take() hands out only connections with nothing to read: bytes or EOF on an idle
      // connection are never a response to this request (a late body, a backend's 408 before
      // it closed), and relaying them would hand one client's bytes to another.
      if (auto s = worker_.pool().take(bucket)) {
        upstream_ = std::move(*s);
        live_.up = &upstream_.raw();
        if (upstream_.tls) {
          upstream_.tls->stop_when(&live_.expired);
        }
        pooled = true;
      }
    }
    if (!pooled) {
      error_code ec;
      if (bucket.via) {
        const auto preamble = make_preamble(mesh::overlay::StreamProtocol::http, bucket.task_id,
                                            bucket.endpoint.port(), client_, origin_);
        // (A TLS stream comes back watching live_'s deadline.)
        ec = co_await open_overlay_stream(worker_, live_, upstream_, *bucket.via, preamble);
      } else {
        upstream_.close();
        ec = co_await connect_upstream(live_, upstream_.socket, bucket.endpoint,
                                       worker_.timeouts().upstream_connect);
      }
      if (live_.killed) {
        co_return errc::killed;
      }
      if (ec) {
        if (is_local_resource_error(ec)) {
          co_return errc::local_resources;
        }
        co_return ec == asio::error::timed_out ? errc::upstream_connect_timeout
                                               : errc::upstream_connect_failed;
      }
    }
    if (!response_parser_clean_ || !response_parser_) {
      response_parser_ = worker_.take_response_parser();  // always between messages
      response_parser_clean_ = true;
    }
    response_parser_->expect_response(request_parser_->head().is_head);
    upstream_in_.clear();

    // Head and first body bytes (all of a small body) in one gathered write. Written inline:
    // each nested coroutine costs a frame allocation on the hot path.
    error_code r;
    {
      const std::array<asio::const_buffer, 2> bufs{asio::buffer(head_out_), request_.first_body};
      live_.arm(attempt_.start, worker_.timeouts().upstream_response);
      auto [ec, n] = co_await write_upstream(bufs);
      attempt_.request_sent = Clock::now();
      if (live_.killed) {
        r = errc::killed;
      } else if (ec || live_.expired) {
        r = errc::upstream_reset;
      }
    }
    if (!r) {
      // Not `?:`: GCC 12 miscompiles a conditional operator whose operands co_await a class
      // type (the coroutine never resumes).
      if (request_.fully_read) {
        r = co_await read_response();
      } else {
        r = co_await duplex();
      }
    }
    if (http::may_resend_on_new_connection(request_parser_->head(), r, pooled, live_.killed)) {
      // The upstream closed this idle connection (keep-alive timeout, restart); its siblings
      // are likely stale too.
      close_upstream();
      worker_.pool().drop_stale(bucket);
      continue;
    }
    if (r) {
      close_upstream();
    } else if (!attempt_.tunnelled) {
      if (attempt_.body_spliced && !idle_connection_alive(upstream_.socket)) {
        attempt_.upstream_in_step = false;  // bytes beyond Content-Length, or EOF
      }
      if (http::upstream_reusable(response_parser_->head(), attempt_.upstream_in_step,
                                  request_.fully_read && !attempt_.upstream_stopped_reading,
                                  worker_.draining())) {
        if (!attempt_.body_spliced) {
          response_parser_->next_message();
        }
        if (upstream_.tls && attempt_.overlay_checks != worker_.overlay_checks() &&
            worker_.overlay_peer_revoked(upstream_.tls->native_handle())) {
          close_upstream();  // its node's certificate was revoked during the exchange
        } else {
          worker_.pool().put(bucket, std::move(upstream_), attempt_.start);
        }
      } else {
        close_upstream();
      }
    }
    live_.up = nullptr;
    co_return r;
  }
}

// The request body is streamed while the response is read (full duplex): an upstream may
// answer before it has read the whole body (an early 413, an echo service, 100 Continue for
// a client waiting on Expect, RFC 9110 §10.1.1), and reading one side only would deadlock
// once the kernel buffers of the other fill up.
asio::awaitable<error_code> Session::duplex() {
  using namespace asio::experimental::awaitable_operators;
  auto [body, response] = co_await (body_task() && response_task());
  if (body == errc::killed || response == errc::killed) {
    co_return errc::killed;
  }
  if (attempt_.body_read_failed && !attempt_.response_done) {
    co_return body;
  }
  co_return response;
}

asio::awaitable<error_code> Session::body_task() {
  const error_code r = co_await stream_request_body();
  if (attempt_.stop_body) {
    co_return error_code{};  // the response ended first; the connection closes
  }
  if (r) {
    attempt_.body_read_failed = true;
    if (!attempt_.response_done) {
      live_.cancel_io();
    }
  }
  co_return r;
}

asio::awaitable<error_code> Session::response_task() {
  const error_code r = co_await read_response();
  if (!request_.fully_read && !attempt_.body_read_failed) {
    // Stop reading the rest of the body; close_client is already set (the request was not
    // fully read when the final head was relayed).
    attempt_.stop_body = true;
    live_.cancel_io();
  }
  co_return r;
}

// Brings the connection's deadline forward to the request body's when that one is earlier:
// the whole body within timeouts.request_body_ms, and after body_min_rate_grace_ms an average
// of at least body_min_rate_bps bytes a second (the bytes received so far are owed by
// start + bytes / rate). Both clocks stop while the body is being written upstream.
void Session::arm_body_deadline() {
  const Timeouts& t = worker_.timeouts();
  const Clock::time_point start = request_.body_start + request_.body_paused;
  Clock::time_point total = Clock::time_point::max();
  Clock::time_point rate = Clock::time_point::max();
  if (t.request_body.count() > 0) {
    total = start + t.request_body;
  }
  if (t.body_min_rate_bps > 0) {
    const auto owed = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
        static_cast<double>(request_.body_bytes) / t.body_min_rate_bps));
    rate = start + std::max<Clock::duration>(t.body_min_rate_grace, owed);
  }
  request_.body_deadline_is_rate = rate < total;
  request_.body_deadline = std::min(total, rate);
  if (request_.body_deadline < live_.deadline) {
    live_.deadline = request_.body_deadline;
  }
}

// Reads the rest of the request body from the client and writes it upstream, chunk framing
// included, as the parser validates it. Succeeds also when the upstream stopped reading (it may
// have answered early) or the response ended first.
asio::awaitable<error_code> Session::stream_request_body() {
  const bool body_deadlines = worker_.timeouts().body_deadlines();
  if (body_deadlines && request_.body_start == Clock::time_point{}) {
    request_.body_start = Clock::now();
  }
  while (!request_.fully_read) {
    client_in_.clear();
    live_.arm(Clock::now(), worker_.timeouts().idle);
    if (body_deadlines) {
      arm_body_deadline();
    }
    auto [ec, n] = co_await read_client(asio::buffer(client_in_.data.get(), kClientBufferSize));
    if (live_.killed) {
      co_return errc::killed;
    }
    if (attempt_.stop_body) {
      co_return error_code{};
    }
    if (live_.expired && body_deadlines && Clock::now() >= request_.body_deadline) {
      co_return errc::request_body_timeout;
    }
    if (ec || live_.expired) {
      co_return errc::client_gone;
    }
    client_in_.end = n;
    const auto r = request_parser_->feed(client_in_.data.get(), n);
    if (r.event == http::Event::error) {
      co_return errc::bad_request_body;
    }
    client_in_.begin = r.consumed;
    request_.bytes_in += r.consumed;
    request_.body_bytes += r.consumed;
    request_.body_streamed = true;
    request_.fully_read = r.event == http::Event::message_complete;
    // The last body bytes were read from the client. (Not past the write below: when the
    // upstream stops reading early it may already be answering.)
    if (r.consumed > 0) {
      const Clock::time_point write_start = Clock::now();
      live_.arm(write_start, worker_.timeouts().idle);
      auto [wec, wn] = co_await write_upstream(asio::buffer(client_in_.data.get(), r.consumed));
      if (body_deadlines) {
        request_.body_paused += Clock::now() - write_start;
      }
      if (live_.killed) {
        co_return errc::killed;
      }
      if (attempt_.stop_body) {
        co_return error_code{};
      }
      if (wec || live_.expired) {
        // The upstream stopped reading; it may have answered early (e.g. 413). The client's
        // remaining body is not read: the downstream connection closes after the response.
        attempt_.upstream_stopped_reading = true;
        co_return error_code{};
      }
    }
  }
  // The whole request is upstream: from now on the upstream has upstream_response_ms to
  // start answering.
  attempt_.request_sent = Clock::now();
  if (!attempt_.response_started) {
    live_.arm(attempt_.request_sent, worker_.timeouts().upstream_response);
  }
  co_return error_code{};
}

// Relays the response: interim 1xx heads, the final head (rewritten), the body verbatim.
asio::awaitable<error_code> Session::read_response() {
  const http::RequestHead& h = request_parser_->head();
  http::ResponseParser& parser = *response_parser_;
  for (;;) {
    if (upstream_in_.empty()) {
      upstream_in_.clear();
      // Before the head: upstream_response_ms from the moment the whole request was sent (a
      // request body still streaming keeps the body's idle deadline, set by
      // stream_request_body); in the body: the same span without a byte.
      if (attempt_.in_response_body) {
        live_.arm(Clock::now(), worker_.timeouts().upstream_response);
      } else if (request_.fully_read) {
        live_.arm(attempt_.request_sent, worker_.timeouts().upstream_response);
      }
      error_code ec;
      std::size_t n = 0;
      // Once part of the response is here, a short read marked the socket drained
      // (proxy/drain_read.h), but a FIN that came with those bytes raised no edge of its own:
      // try a recv before waiting, or a response cut short would wait for upstream_response_ms.
      // (TLS: read_some tries the socket before it waits.)
      bool have = false;
      if (attempt_.response_started && !upstream_.tls) {
        const ssize_t got = ::recv(upstream_.socket.native_handle(), upstream_in_.data.get(),
                                   Worker::kUpstreamBufferSize, MSG_DONTWAIT);
        if (got > 0) {
          n = static_cast<std::size_t>(got);
          have = true;
        } else if (got == 0) {
          ec = asio::error::eof;
          have = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          ec = error_code(errno, boost::system::system_category());
          have = true;
        }
      }
      if (!have && upstream_.tls) {
        auto [read_ec, read_n] = co_await upstream_.tls->read_some(
            asio::buffer(upstream_in_.data.get(), Worker::kUpstreamBufferSize));
        ec = read_ec;
        n = read_n;
      } else if (!have) {
        auto [read_ec, read_n] = co_await upstream_.socket.async_read_some(
            DrainBuffer(upstream_in_.data.get(), Worker::kUpstreamBufferSize), kTuple);
        ec = read_ec;
        n = read_n;
      }
      if (live_.killed) {
        co_return errc::killed;
      }
      if (attempt_.body_read_failed) {
        co_return errc::client_gone;  // duplex: the client side failed and cancelled us
      }
      if (live_.expired) {
        co_return attempt_.in_response_body ? errc::upstream_aborted : errc::upstream_timeout;
      }
      if (ec) {
        if (ec == asio::error::eof && attempt_.in_response_body) {
          // RFC 9112 §6.3 rule 8: a body without framing ends with the connection.
          const auto r = parser.finish();
          if (r.event == http::Event::message_complete) {
            attempt_.upstream_in_step = false;
            attempt_.response_done = true;
            co_return error_code{};
          }
        }
        if (!attempt_.response_started) {
          co_return errc::upstream_reset;
        }
        co_return attempt_.in_response_body ? errc::upstream_aborted : errc::upstream_malformed;
      }
      attempt_.response_started = true;
      upstream_in_.end = n;
    }
    while (!upstream_in_.empty()) {
      if (attempt_.in_response_body) {
        const auto r = parser.feed(upstream_in_.unread(), upstream_in_.unread_size());
        if (r.event == http::Event::error) {
          co_return errc::upstream_aborted;
        }
        if (r.consumed > 0) {
          live_.arm(Clock::now(), worker_.timeouts().idle);
          auto [ec, n] = co_await write_client(asio::buffer(upstream_in_.unread(), r.consumed));
          request_.bytes_out += n;
          if (ec || live_.expired) {
            co_return errc::client_gone;
          }
        }
        upstream_in_.begin += r.consumed;
        if (r.event == http::Event::message_complete) {
          if (!upstream_in_.empty()) {
            attempt_.upstream_in_step = false;  // bytes after the response: out of step
          }
          attempt_.response_done = true;
          co_return error_code{};
        }
        continue;
      }
      const auto r = parser.feed(upstream_in_.unread(), upstream_in_.unread_size());
      upstream_in_.begin += r.consumed;
      if (r.event == http::Event::error) {
        co_return errc::upstream_malformed;
      }
      if (r.event != http::Event::head_complete) {
        continue;  // need_more: everything was consumed into the head buffer
      }
      const http::ResponseHead& rh = parser.head();
      if (rh.status == 101) {
        // RFC 9110 §15.2.2: only in answer to Upgrade, and only to a protocol it asked for.
        if (!h.upgrade || !http::upgrade_accepted(h, rh)) {
          co_return errc::upstream_malformed;
        }
        co_return co_await relay_upgrade();
      }
      if (rh.status >= 100 && rh.status < 200) {
        // RFC 9110 §15.2: relay interim responses, then keep reading for the final one.
        head_out_.clear();
        http::write_response_head(rh, false, worker_.via(), head_out_);
        if (!co_await write_to_client(asio::buffer(head_out_))) {
          co_return errc::client_gone;
        }
        const auto done = feed_response_body();
        upstream_in_.begin += done.consumed;
        parser.next_message();
        parser.expect_response(h.is_head);
        continue;
      }
      // The final response.
      request_.status = rh.status;
      attempt_.close_client = !http::keep_client_after_response(
          h, rh, request_.fully_read, attempt_.upstream_stopped_reading, worker_.draining());
      head_out_.clear();
      http::write_response_head(rh, attempt_.close_client, worker_.via(), head_out_);
      if (h.version_minor == 0 && !attempt_.close_client) {
        // RFC 9112 §9.3: an HTTP/1.0 connection persists only when the response says so.
        head_out_.insert(head_out_.size() - 2, "Connection: keep-alive\r\n");
      }
      const mesh::Cluster& cluster = *request_.cluster;
      if (cluster.sticky_cookie && request_.sticky_key != request_.endpoint_key) {
        // Affinity (docs/architecture.md, "Labels", mesh.http.sticky): name the endpoint that
        // served.
        std::string cookie = "Set-Cookie: ";
        cookie.append(*cluster.sticky_cookie).append("=").append(request_.endpoint_key);
        cookie.append("; Path=/; HttpOnly\r\n");
        head_out_.insert(head_out_.size() - 2, cookie);
      }
      const auto b = feed_response_body();
      if (b.event == http::Event::error) {
        co_return errc::upstream_malformed;
      }
      attempt_.in_response_body = true;
      const std::array<asio::const_buffer, 2> bufs{asio::buffer(head_out_),
                                                   asio::buffer(upstream_in_.unread(), b.consumed)};
      upstream_in_.begin += b.consumed;
      live_.arm(Clock::now(), worker_.timeouts().idle);
      auto [ec, n] = co_await write_client(bufs);
      request_.bytes_out += n;
      if (ec || live_.expired) {
        co_return errc::client_gone;
      }
      if (b.event == http::Event::message_complete) {
        if (!upstream_in_.empty()) {
          attempt_.upstream_in_step = false;
        }
        attempt_.response_done = true;
        co_return error_code{};
      }
      // A large Content-Length body needs no parsing: splice the rest socket to socket.
      const auto& fh = parser.head();
      // (Not into or out of TLS, which must see every byte.)
      if (!tls_ && !upstream_.tls && fh.body == http::BodyKind::content_length &&
          upstream_in_.empty() && fh.content_length - b.consumed >= kSpliceBodyMin) {
        const std::uint64_t rest = fh.content_length - b.consumed;
        const SpliceExactResult sr = co_await splice_exact(
            worker_, live_, upstream_.socket, client_, rest, worker_.timeouts().upstream_response);
        request_.bytes_out += sr.moved;
        if (sr.ec != asio::error::operation_not_supported) {
          response_parser_clean_ = false;  // the parser did not see the spliced bytes
          attempt_.body_spliced = true;
          if (live_.killed) {
            co_return errc::killed;
          }
          if (sr.ec) {
            co_return sr.read_side ? errc::upstream_aborted : errc::client_gone;
          }
          attempt_.response_done = true;
          co_return error_code{};
        }
      }
    }
  }
}

// 101 Switching Protocols: relay the head and whatever each side already sent, then move bytes
// both ways until both ends close (RFC 9110 §7.8). Both connections end with it.
asio::awaitable<error_code> Session::relay_upgrade() {
  request_.status = 101;
  attempt_.tunnelled = true;
  attempt_.close_client = true;  // the connection belongs to the tunnel now
  head_out_.clear();
  http::write_response_head(response_parser_->head(), false, worker_.via(), head_out_);
  const std::array<asio::const_buffer, 2> to_client{
      asio::buffer(head_out_), asio::buffer(upstream_in_.unread(), upstream_in_.unread_size())};
  upstream_in_.begin = upstream_in_.end;
  const asio::const_buffer to_upstream(client_in_.unread(), client_in_.unread_size());
  client_in_.begin = client_in_.end;
  if (tls_) {
    // The tunnel moves bytes socket to socket: an HTTPS connection is bridged to a socketpair
    // (proxy/tls_bridge.h) from here on, which decrypts what the client sends after the head
    // too. The bridge closes the TLS connection when the tunnel ends.
    auto inner = bridge_tls(worker_, std::move(tls_), std::move(tls_keep_));
    if (!inner) {
      close_upstream();
      co_return errc::local_resources;
    }
    client_ = std::move(*inner);
    live_.down = &client_;
  }
  if (upstream_.tls) {
    // The same for a stream to another node's overlay listener.
    update_overlay_keys(worker_, *upstream_.tls, upstream_.key_epoch, upstream_.rekey_bytes);
    auto inner = bridge_tls(worker_, std::move(upstream_.tls), std::move(upstream_.keep), true,
                            upstream_.rekey_bytes);
    if (!inner) {
      close_upstream();
      co_return errc::local_resources;
    }
    upstream_.socket = std::move(*inner);
    live_.up = &upstream_.socket;
  }
  const TunnelResult t =
      co_await run_tunnel(worker_, live_, client_, upstream_.socket, to_client, to_upstream);
  request_.bytes_in += t.to_upstream;
  request_.bytes_out += t.to_client;
  close_upstream();
  if (t.spliced) {
    boost::system::error_code ignored;
    client_.close(ignored);
  }
  co_return t.ec;
}

// A session coroutine: from the accept (or a wake-up) until the connection closes or parks.
asio::awaitable<void> serve(std::unique_ptr<Session> s, bool woken) {
  const bool park = co_await s->run(woken);
  if (park) {
    Session::park(std::move(s));
  } else if (s->closes_tls()) {
    co_await Session::close_tls(std::move(s));
  }
}

asio::awaitable<long> Session::read_client_now() {
  if (!tls_->has_input()) {
    const long got = tls_->fill_now();
    if (got <= 0) {
      co_return got;
    }
  }
  // Ciphertext is here; a record that is not complete yet waits for the rest, within idle_ms.
  live_.arm(Clock::now(), worker_.timeouts().idle);
  auto [ec, n] = co_await tls_->read_some(asio::buffer(client_in_.data.get(), kClientBufferSize));
  co_return ec ? -1 : static_cast<long>(n);
}

asio::awaitable<void> Session::close_tls(std::unique_ptr<Session> s) {
  s->live_.idle = false;
  s->live_.arm(Clock::now(), std::chrono::seconds(1));
  co_await s->tls_->shutdown();
}

void Session::park(std::unique_ptr<Session> s) {
  tcp::socket& socket = s->client_socket();
  socket.async_wait(tcp::socket::wait_read, [s = std::move(s)](const error_code& ec) mutable {
    Session::wake(std::move(s), ec);
  });
}

void Session::wake(std::unique_ptr<Session> s, const error_code& ec) {
  s->live_.idle = false;
  Worker& w = s->worker_;
  if (ec || s->live_.expired || w.draining()) {
    // Idle timeout, drain or an error: `s` closes the connection (HTTPS: after close_notify).
    if (s->closes_tls()) {
      asio::co_spawn(w.io(), Session::close_tls(std::move(s)),
                     base::log_and_count("proxy: https close", &w.metrics().session_errors));
    }
    return;
  }
  asio::co_spawn(w.io(), serve(std::move(s), true),
                 base::log_and_count("proxy: http session", &w.metrics().session_errors));
}

}  // namespace

namespace {

struct ProxyPreface {
  bool ok = true;
  std::optional<mesh::overlay::ProxiedAddresses> proxied;
};

// A connection from a node.proxy_protocol_from peer starts with a PROXY header naming the
// client. Its own coroutine, so the session's frame does not carry this step's locals.
asio::awaitable<ProxyPreface> read_preface(Worker& w, tcp::socket& socket) {
  ProxyPreface p;
  LiveConn conn;
  LiveGuard guard(w, conn);
  conn.down = &socket;
  p.ok = co_await read_proxy_header(w, conn, socket, p.proxied);
  co_return p;
}

}  // namespace

namespace {

// Behind a load balancer: the session starts after the PROXY header. A coroutine of its own,
// so the common path's frame carries none of this.
asio::awaitable<void> run_http_session_after_preface(Worker& w, tcp::socket socket) {
  ProxyPreface preface = co_await read_preface(w, socket);
  if (!preface.ok) {
    boost::system::error_code ignored;
    socket.close(ignored);
    co_return;
  }
  auto s = std::make_unique<Session>(w, std::move(socket), std::move(preface.proxied));
  co_await serve(std::move(s), false);
}

}  // namespace

asio::awaitable<void> run_https_http_session(Worker& w, std::unique_ptr<TlsStream> tls,
                                             std::shared_ptr<const void> keep,
                                             mesh::overlay::ProxiedAddresses client) {
  auto s = std::make_unique<Session>(w, std::move(tls), std::move(keep), std::move(client));
  co_await serve(std::move(s), false);
}

asio::awaitable<void> run_http_session(Worker& w, tcp::socket socket) {
  boost::system::error_code ec;
  if (const auto peer = socket.remote_endpoint(ec); !ec && w.proxy_protocol_peer(peer.address())) {
    co_await run_http_session_after_preface(w, std::move(socket));
    co_return;
  }
  auto s = std::make_unique<Session>(w, std::move(socket));
  co_await serve(std::move(s), false);
}

}  // namespace routemesh::proxy
