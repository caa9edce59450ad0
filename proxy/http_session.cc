#include "proxy/http_session.h"

#include "proxy/drain_read.h"
#include "proxy/http/ascii.h"
#include "proxy/http/rewrite.h"
#include "proxy/l4/splice.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::proxy {

namespace {

constexpr std::size_t kDownBufferSize = 16 * 1024;
// Content-Length bodies at least this large (after the first read) are spliced.
constexpr std::uint64_t kSpliceBodyMin = 64 * 1024;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Reads from the upstream use DrainBuffer (proxy/drain_read.h): right after a request is sent
// the backend has not answered yet, and the speculative recv Asio would try is a wasted
// EAGAIN. Reads from the client use a plain buffer: with DrainBuffer on both sides, p99 at
// 45k req/s paced rose from ~1.2 ms to ~3.5 ms (bench/run.sh's paced case; the cause in the
// reactor's ordering was not pinned down), while either side alone showed no such tail.

using http::detail::iequals;

// The first field named `name` (lower-case), or empty.
template <class Head>
std::string_view find_header(const Head& h, std::string_view name) {
  for (const auto& f : h.headers) {
    if (iequals(f.name, name)) {
      return f.value;
    }
  }
  return {};
}

// The value of cookie `name` in any Cookie header (RFC 6265 §5.4: "a=b; c=d").
std::string_view find_cookie(const http::RequestHead& h, std::string_view name) {
  for (const auto& f : h.headers) {
    if (!iequals(f.name, "cookie")) {
      continue;
    }
    std::string_view rest = f.value;
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      std::string_view pair = http::detail::trim_ows(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      const auto eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        std::string_view v = pair.substr(eq + 1);
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
          v = v.substr(1, v.size() - 2);
        }
        return v;
      }
    }
  }
  return {};
}

// Host and path for routing. RFC 9112 §3.2.2: with an absolute-form target the target's
// authority replaces the Host header; the path excludes the query.
void routing_key(const http::RequestHead& h, std::string_view& host, std::string_view& path) {
  host = h.host;
  std::string_view t = h.target;
  if (!t.empty() && t.front() != '/') {
    const auto scheme = t.find("://");
    if (scheme != std::string_view::npos) {
      t.remove_prefix(scheme + 3);
      const auto end = t.find_first_of("/?");
      host = t.substr(0, end);
      t = end == std::string_view::npos ? std::string_view("/") : t.substr(end);
    } else {
      t = "/";  // asterisk-form (OPTIONS *)
    }
  }
  if (t.empty() || t.front() != '/') {
    t = "/";
  }
  path = t.substr(0, t.find('?'));
}

// A pooled connection is usable when reading would block (no EOF, no error, no stray bytes).
bool alive(tcp::socket& s) {
  char c;
  const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// RFC 9112 §7.1: an HTTP/1.0 client cannot read chunked coding, and a server must not send
// it in answer to an HTTP/1.0 request. So a 1.0 client's request goes upstream as 1.0 (as
// nginx does by default), asking to keep the upstream connection open.
void downgrade_to_http10(std::string& head) {
  const auto eol = head.find("\r\n");
  if (eol == std::string::npos || eol < 8 || head.compare(eol - 8, 8, "HTTP/1.1") != 0) {
    return;
  }
  head[eol - 1] = '0';
  if (head.size() >= 4) {
    head.insert(head.size() - 2, "Connection: keep-alive\r\n");
  }
}

// What one attempt to exchange a request with an endpoint ended in.
enum class Up {
  ok,                     // the response was relayed completely
  upgraded,               // a 101 was relayed and the tunnel ran
  connect_failed,         // refused / unreachable
  connect_timeout,        // upstream_connect_ms passed
  reset_before_response,  // EOF/reset before any response byte
  response_timeout,       // no response head within upstream_response_ms
  malformed,              // the response head was invalid
  aborted_after_head,     // the upstream failed mid-body: the client gets a truncated response
  client_gone,            // the client closed or timed out
  bad_request_body,       // invalid chunk framing in the request body
  killed,                 // shutdown after drain_ms
};

class Session {
 public:
  Session(Worker& w, tcp::socket socket)
      : w_(w),
        down_(std::move(socket)),
        up_(w.io()),
        guard_(w, conn_),
        dbuf_(std::make_unique_for_overwrite<char[]>(kDownBufferSize)),
        req_(w.http_limits()) {
    conn_.down = &down_;
    boost::system::error_code ec;
    down_.set_option(tcp::no_delay(true), ec);
    const auto peer = down_.remote_endpoint(ec);
    if (!ec) {
      client_ip_ = peer.address().to_string();
    }
    out_.reserve(2048);
    w_.metrics().downstream_total.Increment();
  }

  ~Session() {
    if (ubuf_) {
      w_.give_buffer(std::move(ubuf_));
    }
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  asio::awaitable<void> run();

 private:
  // What after_attempt() decided.
  enum class Next { keep, close, retry, reply_error };

  asio::awaitable<bool> handle_request();
  bool begin_request();
  Next after_attempt(Up up);
  void set_error(unsigned status, std::string_view code, bool close,
                 std::initializer_list<std::string_view> detail);
  asio::awaitable<bool> send_error();
  asio::awaitable<Up> exchange(UpstreamPool::Bucket& bucket);
  asio::awaitable<Up> duplex();
  asio::awaitable<Up> body_task();
  asio::awaitable<Up> response_task();
  asio::awaitable<Up> stream_request_body();
  asio::awaitable<Up> read_response();
  asio::awaitable<Up> tunnel();
  asio::awaitable<bool> reply_error(unsigned status, std::string_view code, std::string_view detail,
                                    bool close);
  template <class Buffers>
  asio::awaitable<bool> write_down(const Buffers& buffers);

  http::FeedResult feed_request_body();
  http::FeedResult feed_response_body();
  bool keep_after_error_reply();
  void close_up();
  void end_request();

  Worker& w_;
  tcp::socket down_;
  tcp::socket up_;
  LiveConn conn_;
  LiveGuard guard_;
  std::string client_ip_;

  std::unique_ptr<char[]> dbuf_;
  std::size_t dbeg_ = 0;
  std::size_t dend_ = 0;
  http::RequestParser req_;
  std::optional<http::ResponseParser> resp_;
  bool resp_clean_ = true;  // resp_ is between messages (else rebuilt before the next use)
  std::unique_ptr<char[]> ubuf_;
  std::size_t ub_p_ = 0;
  std::size_t ub_n_ = 0;
  std::string out_;

  // Per request.
  std::shared_ptr<const mesh::RouteTable> table_;
  std::uint64_t gen_ = 0;
  const mesh::Cluster* cluster_ = nullptr;
  ServiceMetrics* sm_ = nullptr;
  std::uint32_t ep_ = 0;
  std::string_view sticky_;
  std::string_view request_id_;
  char rid_buf_[16] = {};
  bool head_valid_ = false;
  Clock::time_point t0_{};
  Clock::time_point attempt_t_{};
  bool retried_ = false;  // this request is on its second endpoint
  unsigned status_ = 0;
  std::string_view upstream_key_;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  asio::const_buffer first_body_;
  bool req_done_ = false;       // every request byte was read from the client
  bool body_streamed_ = false;  // request bytes beyond first_body_ were sent upstream
  bool up_write_failed_ = false;
  bool body_failed_ = false;  // duplex: reading the request body failed
  bool stop_body_ = false;    // duplex: the response ended first; stop streaming the body
  bool got_resp_byte_ = false;
  bool resp_in_body_ = false;
  bool resp_done_ = false;
  bool spliced_ = false;  // the response body bypassed resp_ (splice_exact)  // the final response
                          // was relayed (maybe before the body was sent)
  bool close_down_ = false;
  bool up_reusable_ = true;

  // The error answer chosen by a synchronous step (set_error), sent by send_error().
  unsigned err_status_ = 0;
  std::string_view err_code_;
  std::string err_detail_;
  bool err_close_ = false;
};

asio::awaitable<void> Session::run() {
  for (;;) {
    head_valid_ = false;
    req_done_ = false;
    status_ = 0;
    bytes_in_ = 0;
    bytes_out_ = 0;
    // Idle keep-alive: wait for the first byte of the next request.
    if (dbeg_ == dend_) {
      if (w_.draining()) {
        co_return;
      }
      dbeg_ = dend_ = 0;
      conn_.idle = true;
      conn_.arm(Clock::now(), w_.timeouts().idle);
      auto [ec, n] =
          co_await down_.async_read_some(asio::buffer(dbuf_.get(), kDownBufferSize), kTuple);
      conn_.idle = false;
      if (ec || conn_.expired || w_.draining()) {
        co_return;  // closed, idle timeout or shutdown: close quietly
      }
      dend_ = n;
    }
    t0_ = Clock::now();
    conn_.arm(t0_, w_.timeouts().request_head);
    // Parse the head; the parser copies head bytes, so the buffer is free again afterwards.
    for (;;) {
      const auto r = req_.feed(dbuf_.get() + dbeg_, dend_ - dbeg_);
      dbeg_ += r.consumed;
      bytes_in_ += r.consumed;
      if (r.event == http::Event::error) {
        const auto& e = req_.error();
        w_.metrics().bad_requests.Add({{"reason", std::string(e.reason)}}).Increment();
        co_await reply_error(e.status, "bad_request", e.reason, true);
        co_return;  // RFC 9112 §11.2: close after a framing error
      }
      if (r.event == http::Event::head_complete) {
        break;
      }
      dbeg_ = dend_ = 0;
      auto [ec, n] =
          co_await down_.async_read_some(asio::buffer(dbuf_.get(), kDownBufferSize), kTuple);
      if (conn_.killed) {
        co_return;
      }
      if (conn_.expired) {
        w_.metrics().bad_requests.Add({{"reason", "head timeout"}}).Increment();
        co_await reply_error(408, "request_timeout", "request head not received in time", true);
        co_return;
      }
      if (ec) {
        co_return;
      }
      dend_ = n;
    }
    head_valid_ = true;
    const bool keep = co_await handle_request();
    if (!keep || conn_.killed) {
      co_return;
    }
    req_.next_message();
  }
}

// After head_complete: the body bytes available now. A bodyless message completes without
// input, which the parser can only report once it sees bytes, so it is reported here.
http::FeedResult Session::feed_request_body() {
  if (dbeg_ == dend_ && req_.head().body == http::BodyKind::none) {
    return {http::Event::message_complete, 0};
  }
  return req_.feed(dbuf_.get() + dbeg_, dend_ - dbeg_);
}

http::FeedResult Session::feed_response_body() {
  if (ub_p_ == ub_n_ && resp_->head().body == http::BodyKind::none) {
    return {http::Event::message_complete, 0};
  }
  return resp_->feed(ubuf_.get() + ub_p_, ub_n_ - ub_p_);
}

template <class Buffers>
asio::awaitable<bool> Session::write_down(const Buffers& buffers) {
  conn_.arm(Clock::now(), w_.timeouts().idle);
  auto [ec, n] = co_await asio::async_write(down_, buffers, kTuple);
  bytes_out_ += n;
  co_return !ec && !conn_.expired;
}

// Whether the connection can stay open after an error answer: only when the request had no
// body (else its unread bytes would be parsed as the next request).
bool Session::keep_after_error_reply() {
  if (!head_valid_ || !req_.head().keep_alive || w_.draining()) {
    return false;
  }
  if (req_done_) {
    return true;
  }
  const auto r = feed_request_body();
  if (r.event != http::Event::message_complete) {
    return false;
  }
  dbeg_ += r.consumed;
  req_done_ = true;
  return true;
}

asio::awaitable<bool> Session::reply_error(unsigned status, std::string_view code,
                                           std::string_view detail, bool close) {
  if (!close) {
    close = !keep_after_error_reply();
  }
  const std::string resp = http::error_response(status, code, detail, close);
  status_ = status;
  const bool ok = co_await write_down(asio::buffer(resp));
  end_request();
  co_return ok && !close;
}

void Session::close_up() {
  boost::system::error_code ignored;
  up_.close(ignored);
  resp_clean_ = false;
}

void Session::end_request() {
  ServiceMetrics& sm = sm_ != nullptr ? *sm_ : w_.no_route_metrics();
  const auto now = Clock::now();
  const double secs = std::chrono::duration<double>(now - t0_).count();
  sm.count(status_, secs);
  w_.count_bytes(bytes_in_, bytes_out_);
  if (AccessLogBuffer* log = w_.access_log()) {
    AccessRecord rec;
    rec.client = client_ip_;
    if (head_valid_) {
      const auto& h = req_.head();
      rec.method = h.method;
      rec.host = h.host;
      rec.target = h.target;
      rec.version_minor = h.version_minor;
      if (w_.cfg().node.access_log.format == config::AccessLogFormat::combined) {
        rec.user_agent = find_header(h, "user-agent");
        rec.referer = find_header(h, "referer");
      }
    }
    rec.service = sm.service;
    rec.upstream = upstream_key_;
    rec.request_id = request_id_;
    rec.status = status_;
    rec.bytes_in = bytes_in_;
    rec.bytes_out = bytes_out_;
    rec.duration_ms = secs * 1000.0;
    log->append(rec);
  }
  sm_ = nullptr;
  cluster_ = nullptr;
  upstream_key_ = {};
  request_id_ = {};
  table_.reset();
}

void Session::set_error(unsigned status, std::string_view code, bool close,
                        std::initializer_list<std::string_view> detail) {
  err_status_ = status;
  err_code_ = code;
  err_close_ = close;
  err_detail_.clear();
  for (std::string_view piece : detail) {
    err_detail_.append(piece);
  }
}

asio::awaitable<bool> Session::send_error() {
  const unsigned status = err_status_;
  err_status_ = 0;
  co_return co_await reply_error(status, err_code_, err_detail_, err_close_);
}

// Synchronous start of a request: routing, the first body bytes, the upstream head, the first
// pick. Returns false after set_error().
bool Session::begin_request() {
  const http::RequestHead& h = req_.head();
  table_ = w_.table();
  gen_ = w_.generation();
  cluster_ = nullptr;
  sm_ = nullptr;
  upstream_key_ = {};
  request_id_ = find_header(h, "x-request-id");
  if (request_id_.empty()) {
    w_.make_request_id(rid_buf_);
    request_id_ = std::string_view(rid_buf_, sizeof rid_buf_);
  }

  // RFC 9110 §9.3.6: tunnelling via CONNECT is not offered.
  if (h.is_connect) {
    set_error(405, "method_not_allowed", true, {"CONNECT is not supported"});
    return false;
  }
  std::string_view host;
  std::string_view path;
  routing_key(h, host, path);
  const mesh::RouteMatch match = table_ ? mesh::route(host, path, *table_) : mesh::RouteMatch{};
  if (match.cluster == nullptr) {
    set_error(404, "no_route", false, {"no route for host ", host});
    return false;
  }
  cluster_ = match.cluster;
  sm_ = &w_.service_metrics(cluster_->index);
  sticky_ = cluster_->sticky_cookie ? find_cookie(h, *cluster_->sticky_cookie) : std::string_view{};

  // The first body bytes (all of a small body) go out with the head in one write.
  const auto first = feed_request_body();
  if (first.event == http::Event::error) {
    w_.metrics().bad_requests.Add({{"reason", std::string(req_.error().reason)}}).Increment();
    set_error(req_.error().status, "bad_request", true, {req_.error().reason});
    return false;
  }
  first_body_ = asio::const_buffer(dbuf_.get() + dbeg_, first.consumed);
  dbeg_ += first.consumed;
  bytes_in_ += first.consumed;
  req_done_ = first.event == http::Event::message_complete;
  body_streamed_ = false;

  out_.clear();
  http::ForwardContext ctx;
  ctx.client_ip = client_ip_;
  ctx.proto = "http";
  ctx.request_id = request_id_;
  ctx.via = w_.via();
  http::write_request_head(h, ctx, out_);
  if (h.version_major == 1 && h.version_minor == 0) {
    downgrade_to_http10(out_);
  }

  if (!ubuf_) {
    ubuf_ = w_.take_buffer();
  }
  retried_ = false;
  const std::optional<mesh::Pick> pick =
      w_.balancer().pick(cluster_->index, w_.next_random(), t0_, sticky_);
  if (!pick) {
    set_error(503, "no_healthy_endpoint", false, {"no healthy endpoint for ", cluster_->service});
    return false;
  }
  ep_ = pick->endpoint;
  return true;
}

// After one attempt on endpoint ep_: passive health, the retry decision and the answer.
Session::Next Session::after_attempt(Up up) {
  const http::RequestHead& h = req_.head();
  mesh::Outcome outcome = mesh::Outcome::success;
  switch (up) {
    case Up::ok:
      outcome = status_ >= 500 ? mesh::Outcome::server_error : mesh::Outcome::success;
      break;
    case Up::upgraded:
      break;
    case Up::connect_failed:
    case Up::connect_timeout:
      sm_->connect_errors->Increment();
      outcome = mesh::Outcome::connect_failed;
      break;
    case Up::reset_before_response:
      outcome = mesh::Outcome::connect_failed;
      break;
    case Up::response_timeout:
    case Up::malformed:
    case Up::aborted_after_head:
      outcome = mesh::Outcome::server_error;
      break;
    case Up::client_gone:
    case Up::bad_request_body:
    case Up::killed:
      outcome = mesh::Outcome::local_abort;
      break;
  }
  w_.finish(gen_, *cluster_, ep_, outcome, *sm_);

  const bool retryable =
      (up == Up::connect_failed || up == Up::connect_timeout || up == Up::reset_before_response) &&
      h.idempotent && h.body == http::BodyKind::none && !retried_ && gen_ == w_.generation() &&
      !conn_.killed;
  if (retryable) {
    // One retry on another endpoint for an idempotent request nothing of which reached a
    // server application (RFC 9110 §9.2.2). Without another endpoint the first failure
    // is what the client hears.
    const std::optional<mesh::Pick> pick =
        w_.balancer().pick(cluster_->index, w_.next_random(), Clock::now(), {}, ep_);
    if (pick) {
      ep_ = pick->endpoint;
      retried_ = true;
      sm_->retries->Increment();
      close_up();
      return Next::retry;
    }
  }

  switch (up) {
    case Up::ok:
      end_request();
      return close_down_ ? Next::close : Next::keep;
    case Up::upgraded:
      end_request();
      return Next::close;
    case Up::connect_failed:
      close_up();
      set_error(502, "upstream_connect_failed", !req_done_ || body_streamed_,
                {"cannot connect to ", upstream_key_});
      return Next::reply_error;
    case Up::connect_timeout:
      close_up();
      set_error(502, "upstream_connect_timeout", !req_done_ || body_streamed_,
                {"connect to ", upstream_key_, " timed out"});
      return Next::reply_error;
    case Up::reset_before_response:
      close_up();
      set_error(502, "upstream_reset", !req_done_,
                {"upstream ", upstream_key_, " closed the connection"});
      return Next::reply_error;
    case Up::response_timeout:
      close_up();
      set_error(504, "upstream_timeout", !req_done_, {"no response from ", upstream_key_});
      return Next::reply_error;
    case Up::malformed:
      close_up();
      set_error(502, "upstream_malformed", !req_done_, {"invalid response from ", upstream_key_});
      return Next::reply_error;
    case Up::bad_request_body:
      close_up();
      w_.metrics().bad_requests.Add({{"reason", std::string(req_.error().reason)}}).Increment();
      set_error(req_.error().status, "bad_request", true, {req_.error().reason});
      return Next::reply_error;
    case Up::killed:
      if (!resp_in_body_ && status_ == 0) {
        // drain_ms is over and no response started: say so rather than just closing.
        close_up();
        set_error(503, "shutting_down", true, {"the node is shutting down"});
        return Next::reply_error;
      }
      [[fallthrough]];
    case Up::aborted_after_head:
    case Up::client_gone:
      close_up();
      if (status_ == 0) {
        status_ = 499;  // nginx's convention: the client went away before the response
      }
      end_request();
      return Next::close;
  }
  return Next::close;
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
    upstream_key_ = cluster_->endpoints[ep_].key;
    UpstreamPool::Bucket& bucket = *w_.pool().at(cluster_->index, ep_);
    ++bucket.users;
    w_.balancer().on_start(cluster_->index, ep_);
    const Up up = co_await exchange(bucket);
    --bucket.users;
    const Next next = after_attempt(up);
    if (next == Next::retry) {
      continue;
    }
    if (next == Next::reply_error) {
      co_return co_await send_error();
    }
    co_return next == Next::keep;
  }
}

// One endpoint: take a pooled connection or connect, send the request, relay the response.
// A pooled connection found dead before any response byte is replaced by a new connection
// to the same endpoint when the request can be sent again from our buffers.
asio::awaitable<Up> Session::exchange(UpstreamPool::Bucket& bucket) {
  for (int fresh = 0;; ++fresh) {
    // The request's start time serves the first attempt's deadlines (one clock read less).
    attempt_t_ = (fresh == 0 && !retried_) ? t0_ : Clock::now();
    bool reused = false;
    if (fresh == 0) {
      while (auto s = w_.pool().take(bucket)) {
        up_ = std::move(*s);
        conn_.up = &up_;
        reused = true;
        // A request whose body is streamed cannot be replayed, so check first that the
        // upstream has not closed this idle connection (EOF or error pending).
        if (req_done_ || alive(up_)) {
          break;
        }
        close_up();
        reused = false;
      }
    }
    if (!reused) {
      const auto ec =
          co_await connect_upstream(conn_, up_, bucket.endpoint, w_.timeouts().upstream_connect);
      if (conn_.killed) {
        co_return Up::killed;
      }
      if (ec) {
        co_return ec == asio::error::timed_out ? Up::connect_timeout : Up::connect_failed;
      }
    }
    if (!resp_clean_ || !resp_) {
      resp_.emplace(w_.http_limits());
      resp_clean_ = true;
    }
    resp_->expect_response(req_.head().is_head);
    ub_p_ = ub_n_ = 0;
    resp_done_ = false;
    spliced_ = false;
    got_resp_byte_ = false;
    resp_in_body_ = false;
    close_down_ = false;
    up_reusable_ = true;
    up_write_failed_ = false;

    // Replayable while every request byte sent is still in our buffers.
    const bool replayable = req_done_;
    body_failed_ = false;
    stop_body_ = false;
    // Head and first body bytes (all of a small body) in one gathered write. Written inline:
    // each nested coroutine costs a frame allocation on the hot path.
    Up r = Up::ok;
    {
      const std::array<asio::const_buffer, 2> bufs{asio::buffer(out_), first_body_};
      conn_.arm(attempt_t_, w_.timeouts().upstream_response);
      auto [ec, n] = co_await asio::async_write(up_, bufs, kTuple);
      if (conn_.killed) {
        r = Up::killed;
      } else if (ec || conn_.expired) {
        r = Up::reset_before_response;
      }
    }
    if (r == Up::ok) {
      r = req_done_ ? co_await read_response() : co_await duplex();
    }
    if (r == Up::reset_before_response && reused && replayable && !conn_.killed) {
      // The upstream closed this idle connection (keep-alive timeout, restart); its siblings
      // are likely stale too.
      close_up();
      w_.pool().drop_idle(bucket);
      continue;
    }
    if (r == Up::ok) {
      if (spliced_ && !alive(up_)) {
        up_reusable_ = false;  // bytes beyond Content-Length, or EOF: not reusable
      }
      if (up_reusable_ && req_done_ && !up_write_failed_ && !w_.draining() &&
          resp_->head().keep_alive) {
        if (!spliced_) {
          resp_->next_message();
        }
        w_.pool().put(bucket, std::move(up_), attempt_t_);
      } else {
        close_up();
      }
    } else if (r != Up::upgraded) {
      close_up();
    }
    conn_.up = nullptr;
    co_return r;
  }
}

// The request body is streamed while the response is read (full duplex): an upstream may
// answer before it has read the whole body (an early 413, an echo service, 100 Continue for
// a client waiting on Expect, RFC 9110 §10.1.1), and reading one side only would deadlock
// once the kernel buffers of the other fill up.
asio::awaitable<Up> Session::duplex() {
  using namespace asio::experimental::awaitable_operators;
  auto [body, response] = co_await (body_task() && response_task());
  if (body == Up::killed || response == Up::killed) {
    co_return Up::killed;
  }
  if (body_failed_ && !resp_done_) {
    co_return body;
  }
  co_return response;
}

asio::awaitable<Up> Session::body_task() {
  const Up r = co_await stream_request_body();
  if (stop_body_) {
    co_return Up::ok;  // the response ended first; the connection closes
  }
  if (r != Up::ok) {
    body_failed_ = true;
    if (!resp_done_) {
      conn_.cancel_io();
    }
  }
  co_return r;
}

asio::awaitable<Up> Session::response_task() {
  const Up r = co_await read_response();
  if (!req_done_ && !body_failed_) {
    // Stop reading the rest of the body; close_down_ is already set (!req_done_ at the head).
    stop_body_ = true;
    conn_.cancel_io();
  }
  co_return r;
}

asio::awaitable<Up> Session::stream_request_body() {
  while (!req_done_) {
    dbeg_ = dend_ = 0;
    conn_.arm(Clock::now(), w_.timeouts().idle);
    auto [ec, n] =
        co_await down_.async_read_some(asio::buffer(dbuf_.get(), kDownBufferSize), kTuple);
    if (conn_.killed) {
      co_return Up::killed;
    }
    if (stop_body_) {
      co_return Up::ok;
    }
    if (ec || conn_.expired) {
      co_return Up::client_gone;
    }
    dend_ = n;
    const auto r = req_.feed(dbuf_.get(), n);
    if (r.event == http::Event::error) {
      co_return Up::bad_request_body;
    }
    dbeg_ = r.consumed;
    bytes_in_ += r.consumed;
    body_streamed_ = true;
    req_done_ = r.event == http::Event::message_complete;
    if (r.consumed > 0) {
      conn_.arm(Clock::now(), w_.timeouts().idle);
      auto [wec, wn] =
          co_await asio::async_write(up_, asio::buffer(dbuf_.get(), r.consumed), kTuple);
      if (conn_.killed) {
        co_return Up::killed;
      }
      if (stop_body_) {
        co_return Up::ok;
      }
      if (wec || conn_.expired) {
        // The upstream stopped reading; it may have answered early (e.g. 413). The client's
        // remaining body is not read: the downstream connection closes after the response.
        up_write_failed_ = true;
        co_return Up::ok;
      }
    }
  }
  co_return Up::ok;
}

// Relays the response: interim 1xx heads, the final head (rewritten), the body verbatim.
asio::awaitable<Up> Session::read_response() {
  const http::RequestHead& h = req_.head();
  for (;;) {
    if (ub_p_ == ub_n_) {
      ub_p_ = ub_n_ = 0;
      // Before the head: upstream_response_ms from sending the request; in the body: the
      // same span without a byte.
      conn_.arm(resp_in_body_ ? Clock::now() : attempt_t_, w_.timeouts().upstream_response);
      auto [ec, n] = co_await up_.async_read_some(
          DrainBuffer(ubuf_.get(), Worker::kUpstreamBufferSize), kTuple);
      if (conn_.killed) {
        co_return Up::killed;
      }
      if (body_failed_) {
        co_return Up::client_gone;  // duplex: the client side failed and cancelled us
      }
      if (conn_.expired) {
        co_return resp_in_body_ ? Up::aborted_after_head : Up::response_timeout;
      }
      if (ec) {
        if (ec == asio::error::eof && resp_in_body_) {
          // RFC 9112 §6.3 rule 8: a body without framing ends with the connection.
          const auto r = resp_->finish();
          if (r.event == http::Event::message_complete) {
            up_reusable_ = false;
            resp_done_ = true;
            co_return Up::ok;
          }
        }
        if (!got_resp_byte_) {
          co_return Up::reset_before_response;
        }
        co_return resp_in_body_ ? Up::aborted_after_head : Up::malformed;
      }
      got_resp_byte_ = true;
      ub_n_ = n;
    }
    while (ub_p_ < ub_n_) {
      if (resp_in_body_) {
        const auto r = resp_->feed(ubuf_.get() + ub_p_, ub_n_ - ub_p_);
        if (r.event == http::Event::error) {
          co_return Up::aborted_after_head;
        }
        if (r.consumed > 0) {
          conn_.arm(Clock::now(), w_.timeouts().idle);
          auto [ec, n] = co_await asio::async_write(
              down_, asio::buffer(ubuf_.get() + ub_p_, r.consumed), kTuple);
          bytes_out_ += n;
          if (ec || conn_.expired) {
            co_return Up::client_gone;
          }
        }
        ub_p_ += r.consumed;
        if (r.event == http::Event::message_complete) {
          if (ub_p_ < ub_n_) {
            up_reusable_ = false;  // bytes after the response: the stream is out of sync
          }
          resp_done_ = true;
          co_return Up::ok;
        }
        continue;
      }
      const auto r = resp_->feed(ubuf_.get() + ub_p_, ub_n_ - ub_p_);
      ub_p_ += r.consumed;
      if (r.event == http::Event::error) {
        co_return Up::malformed;
      }
      if (r.event != http::Event::head_complete) {
        continue;  // need_more: everything was consumed into the head buffer
      }
      const http::ResponseHead& rh = resp_->head();
      if (rh.status == 101) {
        if (!h.upgrade) {
          co_return Up::malformed;  // RFC 9110 §15.2.2: only in answer to Upgrade
        }
        co_return co_await tunnel();
      }
      if (rh.status >= 100 && rh.status < 200) {
        // RFC 9110 §15.2: relay interim responses, then keep reading for the final one.
        out_.clear();
        http::write_response_head(rh, false, w_.via(), out_);
        if (!co_await write_down(asio::buffer(out_))) {
          co_return Up::client_gone;
        }
        const auto done = feed_response_body();
        ub_p_ += done.consumed;
        resp_->next_message();
        resp_->expect_response(h.is_head);
        continue;
      }
      // The final response.
      status_ = rh.status;
      close_down_ = !h.keep_alive || w_.draining() || !req_done_ || up_write_failed_ ||
                    rh.body == http::BodyKind::until_close;
      out_.clear();
      http::write_response_head(rh, close_down_, w_.via(), out_);
      if (cluster_->sticky_cookie && sticky_ != upstream_key_) {
        // Affinity (docs/architecture.md, "Labels", mesh.http.sticky): name the endpoint that
        // served.
        std::string cookie = "Set-Cookie: ";
        cookie.append(*cluster_->sticky_cookie).append("=").append(upstream_key_);
        cookie.append("; Path=/; HttpOnly\r\n");
        out_.insert(out_.size() - 2, cookie);
      }
      const auto b = feed_response_body();
      if (b.event == http::Event::error) {
        co_return Up::malformed;
      }
      resp_in_body_ = true;
      const std::array<asio::const_buffer, 2> bufs{asio::buffer(out_),
                                                   asio::buffer(ubuf_.get() + ub_p_, b.consumed)};
      ub_p_ += b.consumed;
      conn_.arm(attempt_t_, w_.timeouts().idle);
      auto [ec, n] = co_await asio::async_write(down_, bufs, kTuple);
      bytes_out_ += n;
      if (ec || conn_.expired) {
        co_return Up::client_gone;
      }
      if (b.event == http::Event::message_complete) {
        if (ub_p_ < ub_n_) {
          up_reusable_ = false;
        }
        resp_done_ = true;
        co_return Up::ok;
      }
      // A large Content-Length body needs no parsing: splice the rest socket to socket.
      const auto& fh = resp_->head();
      if (fh.body == http::BodyKind::content_length && ub_p_ == ub_n_ &&
          fh.content_length - b.consumed >= kSpliceBodyMin) {
        const std::uint64_t rest = fh.content_length - b.consumed;
        const SpliceExactResult sr =
            co_await splice_exact(w_, conn_, up_, down_, rest, w_.timeouts().upstream_response);
        bytes_out_ += sr.moved;
        if (sr.ec != asio::error::operation_not_supported) {
          resp_clean_ = false;  // the parser did not see the spliced bytes: rebuild it
          spliced_ = true;
          if (conn_.killed) {
            co_return Up::killed;
          }
          if (sr.ec) {
            co_return sr.read_side ? Up::aborted_after_head : Up::client_gone;
          }
          resp_done_ = true;
          co_return Up::ok;
        }
      }
    }
  }
}

// 101 Switching Protocols: relay the head, flush what each side already sent, then move
// bytes both ways until both ends close (RFC 9110 §7.8).
asio::awaitable<Up> Session::tunnel() {
  const http::ResponseHead& rh = resp_->head();
  status_ = 101;
  out_.clear();
  http::write_response_head(rh, false, w_.via(), out_);
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(out_),
                                               asio::buffer(ubuf_.get() + ub_p_, ub_n_ - ub_p_)};
  ub_p_ = ub_n_;
  if (!co_await write_down(bufs)) {
    close_up();
    co_return Up::client_gone;
  }
  if (dbeg_ < dend_) {
    conn_.arm(Clock::now(), w_.timeouts().idle);
    auto [ec, n] =
        co_await asio::async_write(up_, asio::buffer(dbuf_.get() + dbeg_, dend_ - dbeg_), kTuple);
    bytes_in_ += n;
    dbeg_ = dend_;
    if (ec || conn_.expired) {
      close_up();
      co_return Up::upgraded;
    }
  }
  const auto r = co_await splice_both(w_, conn_, down_, up_, w_.timeouts().l4_idle, nullptr);
  bytes_in_ += r.a_to_b;
  bytes_out_ += r.b_to_a;
  close_up();
  boost::system::error_code ignored;
  down_.close(ignored);
  close_down_ = true;
  co_return Up::upgraded;
}

}  // namespace

asio::awaitable<void> run_http_session(Worker& w, tcp::socket socket) {
  Session s(w, std::move(socket));
  co_await s.run();
}

}  // namespace routemesh::proxy
