#include "tools/whoami/whoami.h"

#include "base/address.h"
#include "base/spawn.h"

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <ctime>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

namespace routemesh::tools {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// Each thread runs its own io_context, so every I/O object and coroutine uses that
// context's concrete executor type: no type-erased executor copies on the hot path
// (they showed up in profiles under wrk).
using Executor = asio::io_context::executor_type;
template <typename T>
using Awaitable = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Stream = beast::basic_stream<tcp, Executor, beast::unlimited_rate_policy>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
// Network errors are normal outcomes for a test backend (docs/style.md, "Errors"): no exceptions.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable_t<Executor>{});
// Every single read or write must finish within this time (also the keep-alive idle timeout).
constexpr auto kIoTimeout = std::chrono::seconds(120);
constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kPieceSize = 64 * 1024;  // /bytes write size, body read size
constexpr std::size_t kChunkSize = 16 * 1024;  // /chunked chunk size
constexpr std::uint64_t kMaxBytes = std::uint64_t{4} << 30;
constexpr std::uint64_t kMaxDelayMs = 60000;
constexpr std::size_t kAlphabet = 26;

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Process-wide and read-only after startup, except the counters.
struct Shared {
  std::string name;
  std::string hostname;
  // 'a'..'z' repeating, kPieceSize + kAlphabet long: any body offset maps to a slice of it,
  // so /bytes and /chunked stream without copying.
  std::string pattern;
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> session_errors{0};
};

// RFC 9110 §6.6.1: an origin server with a clock sends Date. Formatted at most once a second
// per thread.
std::string_view http_date() {
  thread_local std::time_t cached_second = 0;
  thread_local char text[64] = {};
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    cached_second = now;
    std::tm tm{};
    gmtime_r(&now, &tm);
    length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return {text, length};
}

void append_number(std::string& out, std::uint64_t value) {
  char digits[24];
  auto [end, err] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

void append_hex(std::string& out, std::uint64_t value) {
  char digits[24];
  auto [end, err] = std::to_chars(digits, digits + sizeof digits, value, 16);
  out.append(digits, end);
}

// Parses a decimal path segment; nullopt unless it is all digits and fits.
std::optional<std::uint64_t> parse_number(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || err != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

std::string format_endpoint(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string out = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  out += ':';
  append_number(out, endpoint.port());
  return out;
}

bool is_framing_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

// How a response body is delimited (RFC 9112 §6).
enum class Framing { length, chunked, close };

// One connection. Lives in the frame of run_session; the helpers below are awaited directly
// by run_session (never spawned), so their Session& cannot outlive it.
struct Session {
  Session(std::shared_ptr<const Shared> s, Socket socket, std::uint64_t serial_number)
      : shared(std::move(s)), stream(std::move(socket)), serial(serial_number) {}

  std::shared_ptr<const Shared> shared;
  Stream stream;
  beast::flat_buffer buffer;
  std::uint64_t serial;
  std::string remote;
  std::string out;                  // response head (and small body), reused
  std::unique_ptr<char[]> scratch;  // request body pieces, allocated on first use
  std::optional<http::request_parser<http::buffer_body>> parser;

  char* scratch_buffer() {
    if (!scratch) {
      scratch = std::make_unique<char[]>(kPieceSize);
    }
    return scratch.get();
  }
};

// Appends the status line and headers. `content_length` is used only for Framing::length.
void append_head(Session& session, unsigned status, std::string_view content_type, Framing framing,
                 std::uint64_t content_length, bool keep_alive, unsigned version) {
  std::string& out = session.out;
  out += "HTTP/1.1 ";
  append_number(out, status);
  out += ' ';
  std::string_view reason = http::obsolete_reason(static_cast<http::status>(status));
  if (!reason.starts_with('<')) {  // Beast's placeholder for codes it does not know
    out += reason;
  }
  out += "\r\nDate: ";
  out += http_date();
  out += "\r\nContent-Type: ";
  out += content_type;
  // RFC 9110 §8.6: no Content-Length in a 204; a 304 describes the selected representation,
  // which this server does not have.
  const bool no_content = status == 204 || status == 304;
  if (!no_content) {
    if (framing == Framing::length) {
      out += "\r\nContent-Length: ";
      append_number(out, content_length);
    } else if (framing == Framing::chunked) {
      out += "\r\nTransfer-Encoding: chunked";
    }
  }
  out += "\r\nX-Whoami-Name: ";
  out += session.shared->name;
  out += "\r\nX-Whoami-Conn: ";
  append_number(out, session.serial);
  if (!keep_alive) {
    out += "\r\nConnection: close";
  } else if (version < 11) {
    out += "\r\nConnection: keep-alive";  // RFC 9112 §9.3: a 1.0 client must be told
  }
  out += "\r\n\r\n";
}

void append_whoami_body(Session& session, std::string& body,
                        const http::request<http::buffer_body>& req) {
  const Shared& shared = *session.shared;
  body += "Name: ";
  body += shared.name;
  body += "\nHostname: ";
  body += shared.hostname;
  body += "\nRemoteAddr: ";
  body += session.remote;
  body += '\n';
  body += req.method_string();
  body += ' ';
  body += req.target();
  body += req.version() == 10 ? " HTTP/1.0\n" : " HTTP/1.1\n";
  // basic_fields iterates in arrival order and keeps the name's spelling.
  for (const auto& field : req) {
    body += field.name_string();
    body += ": ";
    body += field.value();
    body += '\n';
  }
  // A blank line ends the header list, as in traefik/whoami (tests/integration/harness.py
  // parses it that way).
  body += "\nConns: ";
  append_number(body, shared.connections.load(std::memory_order_relaxed));
  body += '\n';
}

Awaitable<beast::error_code> write_out(Session& session) {
  session.stream.expires_after(kIoTimeout);
  auto [ec, n] = co_await asio::async_write(session.stream, asio::buffer(session.out), kNoThrow);
  session.out.clear();
  co_return ec;
}

// Reads the rest of the request body into scratch pieces. With `echo`, each piece is sent
// back right away in `framing` (chunked or close-delimited). Returns the byte count.
Awaitable<std::pair<beast::error_code, std::uint64_t>> read_body(Session& session, bool echo,
                                                                 Framing framing) {
  auto& parser = *session.parser;
  std::uint64_t total = 0;
  while (!parser.is_done()) {
    char* scratch = session.scratch_buffer();
    parser.get().body().data = scratch;
    parser.get().body().size = kPieceSize;
    session.stream.expires_after(kIoTimeout);
    auto [ec, n] = co_await http::async_read(session.stream, session.buffer, parser, kNoThrow);
    if (ec && ec != http::error::need_buffer) {
      co_return std::pair{ec, total};
    }
    const std::size_t got = kPieceSize - parser.get().body().size;
    total += got;
    if (echo && got > 0) {
      // RFC 9112 §7.1: chunk-size in hex, CRLF, data, CRLF.
      std::string size_line;
      if (framing == Framing::chunked) {
        append_hex(size_line, got);
        size_line += "\r\n";
      }
      const std::array<asio::const_buffer, 3> pieces{
          asio::buffer(size_line), asio::buffer(scratch, got),
          asio::buffer(framing == Framing::chunked ? std::string_view("\r\n")
                                                   : std::string_view())};
      session.stream.expires_after(kIoTimeout);
      auto [wec, wn] = co_await asio::async_write(session.stream, pieces, kNoThrow);
      if (wec) {
        co_return std::pair{wec, total};
      }
    }
  }
  co_return std::pair{beast::error_code{}, total};
}

// Streams `size` pattern bytes; in chunked framing as chunks of kChunkSize (RFC 9112 §7.1).
Awaitable<beast::error_code> write_pattern(Session& session, std::uint64_t size, Framing framing) {
  const std::string& pattern = session.shared->pattern;
  const std::size_t piece_size = framing == Framing::chunked ? kChunkSize : kPieceSize;
  std::string size_line;
  for (std::uint64_t offset = 0; offset < size;) {
    const std::size_t piece =
        static_cast<std::size_t>(std::min<std::uint64_t>(piece_size, size - offset));
    const asio::const_buffer data(pattern.data() + offset % kAlphabet, piece);
    session.stream.expires_after(kIoTimeout);
    beast::error_code ec;
    if (framing == Framing::chunked) {
      size_line.clear();
      append_hex(size_line, piece);
      size_line += "\r\n";
      const std::array<asio::const_buffer, 3> pieces{asio::buffer(size_line), data,
                                                     asio::buffer("\r\n", 2)};
      std::tie(ec, std::ignore) = co_await asio::async_write(session.stream, pieces, kNoThrow);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(session.stream, data, kNoThrow);
    }
    if (ec) {
      co_return ec;
    }
    offset += piece;
  }
  co_return beast::error_code{};
}

Awaitable<void> run_websocket(Session& session) {
  // Beast's websocket stream keeps its own timeouts; the tcp_stream's must be off.
  session.stream.expires_never();
  websocket::stream<Stream> ws(std::move(session.stream));
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  // One frame per echoed message keeps test clients simple.
  ws.auto_fragment(false);
  ws.set_option(websocket::stream_base::decorator(
      [name = session.shared->name](websocket::response_type& res) {
        res.set("X-Whoami-Name", name);
      }));
  // A client sends frames only after the 101 (RFC 6455 §4.1), so nothing that belongs to
  // the websocket is left in session.buffer.
  auto [accept_ec] = co_await ws.async_accept(session.parser->get(), kNoThrow);
  if (accept_ec) {
    co_return;
  }
  beast::flat_buffer message;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(message, kNoThrow);
    if (ec) {
      co_return;  // websocket::error::closed after a close handshake, or a network error
    }
    ws.text(ws.got_text());
    auto [wec, wn] = co_await ws.async_write(message.data(), kNoThrow);
    if (wec) {
      co_return;
    }
    message.consume(message.size());
  }
}

// Serves one request whose header is in session.parser. Returns false when the connection
// must end.
Awaitable<bool> serve(Session& session) {
  const auto& req = session.parser->get();
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const bool head = req.method() == http::verb::head;
  const unsigned version = req.version();
  bool keep_alive = req.keep_alive();
  // RFC 9112 §6.1: no chunked coding towards an HTTP/1.0 client; delimit by closing.
  const Framing streamed = version >= 11 ? Framing::chunked : Framing::close;

  if (path == "/ws" && websocket::is_upgrade(req)) {
    co_await run_websocket(session);
    co_return false;
  }

  // RFC 9110 §10.1.1: answer 100-continue before reading a body the client holds back.
  if (!session.parser->is_done()) {
    const auto expect = req[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      session.out = "HTTP/1.1 100 Continue\r\n\r\n";
      if (co_await write_out(session)) {
        co_return false;
      }
    }
  }

  if (path == "/echo") {
    append_head(session, 200, "application/octet-stream", streamed, 0,
                keep_alive && streamed == Framing::chunked, version);
    if (co_await write_out(session)) {
      co_return false;
    }
    auto [ec, total] = co_await read_body(session, !head, streamed);
    if (ec) {
      co_return false;
    }
    if (streamed == Framing::close) {
      co_return false;
    }
    if (!head) {
      session.out = "0\r\n\r\n";
      if (co_await write_out(session)) {
        co_return false;
      }
    }
    co_return keep_alive;
  }

  // Every other path reads (and discards) the body before answering.
  auto [body_ec, body_bytes] = co_await read_body(session, false, Framing::length);
  if (body_ec) {
    co_return false;
  }

  unsigned status = 200;
  std::string body;
  std::optional<std::uint64_t> pattern_bytes;
  Framing pattern_framing = Framing::length;

  if (path == "/health") {
    body = "ok";
  } else if (path == "/count") {
    body = "bytes: ";
    append_number(body, body_bytes);
    body += '\n';
  } else if (path == "/ws") {
    status = 400;
    body = "expected a websocket upgrade\n";
  } else if (path.starts_with("/status/")) {
    const auto code = parse_number(path.substr(8));
    if (code && *code >= 200 && *code <= 599) {
      status = static_cast<unsigned>(*code);
      body = "status ";
      append_number(body, *code);
      body += '\n';
    } else {
      // 1xx would be interim responses (RFC 9110 §15.2), not answers.
      status = 400;
      body = "bad status: want 200..599\n";
    }
  } else if (path.starts_with("/bytes/") || path.starts_with("/chunked/")) {
    const bool chunked = path[1] == 'c';
    const auto size = parse_number(path.substr(chunked ? 9 : 7));
    if (size && *size <= kMaxBytes) {
      pattern_bytes = *size;
      pattern_framing = chunked ? streamed : Framing::length;
    } else {
      status = 400;
      body = "bad size: want 0..4294967296\n";
    }
  } else if (path.starts_with("/delay/")) {
    const auto ms = parse_number(path.substr(7));
    if (ms) {
      Timer timer(session.stream.get_executor());
      timer.expires_after(std::chrono::milliseconds(std::min(*ms, kMaxDelayMs)));
      co_await timer.async_wait(kNoThrow);
      append_whoami_body(session, body, req);
    } else {
      status = 400;
      body = "bad delay\n";
    }
  } else {
    if (path == "/close") {
      keep_alive = false;
    }
    append_whoami_body(session, body, req);
  }

  if (pattern_bytes) {
    if (pattern_framing == Framing::close) {
      keep_alive = false;
    }
    append_head(session, 200, "application/octet-stream", pattern_framing, *pattern_bytes,
                keep_alive, version);
    if (co_await write_out(session)) {
      co_return false;
    }
    if (head) {
      co_return keep_alive;
    }
    if (co_await write_pattern(session, *pattern_bytes, pattern_framing)) {
      co_return false;
    }
    if (pattern_framing == Framing::chunked) {
      session.out = "0\r\n\r\n";
      if (co_await write_out(session)) {
        co_return false;
      }
    }
    co_return keep_alive;
  }

  append_head(session, status, "text/plain; charset=utf-8", Framing::length, body.size(),
              keep_alive, version);
  // RFC 9110 §9.3.2 (HEAD) and §15.3.5/§15.4.5 (204, 304): no content.
  if (!head && status != 204 && status != 304) {
    session.out += body;
  }
  if (co_await write_out(session)) {
    co_return false;
  }
  co_return keep_alive;
}

Awaitable<void> run_session(std::shared_ptr<const Shared> shared, Socket socket,
                            std::uint64_t serial) {
  beast::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  const auto peer = socket.remote_endpoint(ec);
  Session session(std::move(shared), std::move(socket), serial);
  session.remote = ec ? "unknown" : format_endpoint(peer);

  for (;;) {
    session.parser.emplace();
    session.parser->header_limit(kHeaderLimit);
    session.parser->body_limit(boost::none);  // /count and /echo take any size, streamed
    session.stream.expires_after(kIoTimeout);
    auto [read_ec, n] =
        co_await http::async_read_header(session.stream, session.buffer, *session.parser, kNoThrow);
    if (read_ec) {
      if (is_framing_error(read_ec)) {
        const unsigned status = read_ec == http::error::header_limit ? 431 : 400;
        std::string body = "bad request: " + read_ec.message() + "\n";
        append_head(session, status, "text/plain; charset=utf-8", Framing::length, body.size(),
                    false, 11);
        session.out += body;
        co_await write_out(session);
      }
      break;
    }
    if (!co_await serve(session)) {
      break;
    }
  }
  if (session.stream.socket().is_open()) {
    session.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
}

Awaitable<void> accept_loop(std::shared_ptr<Shared> shared, Acceptor acceptor) {
  Timer backoff(acceptor.get_executor());
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted) {
      co_return;
    }
    if (ec) {
      // EMFILE and friends: retrying at once would spin.
      spdlog::warn("whoami: accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(kNoThrow);
      continue;
    }
    const std::uint64_t serial = shared->connections.fetch_add(1, std::memory_order_relaxed) + 1;
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_session(shared, std::move(socket), serial),
                   base::log_and_count("whoami: session", nullptr, [shared] {
                     shared->session_errors.fetch_add(1, std::memory_order_relaxed);
                   }));
  }
}

// "IP:PORT", "[V6]:PORT" or ":PORT" (all interfaces); port 0 = any. nullopt when malformed.
std::optional<tcp::endpoint> parse_listen(const std::string& listen) {
  const auto hp = base::parse_host_port(listen, {.empty_host = true, .port_zero = true});
  if (!hp) {
    return std::nullopt;
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) {
    return std::nullopt;
  }
  return tcp::endpoint(address, hp->port);
}

}  // namespace

int run_whoami(const WhoamiOptions& options) {
  const auto endpoint = parse_listen(options.listen);
  if (!endpoint) {
    std::cerr << "whoami: bad listen address " << options.listen << " (want HOST:PORT)\n";
    return 2;
  }
  auto shared = std::make_shared<Shared>();
  shared->name = options.name;
  char hostname[256] = {};
  if (gethostname(hostname, sizeof hostname - 1) == 0) {
    shared->hostname = hostname;
  }
  shared->pattern.resize(kPieceSize + kAlphabet);
  for (std::size_t i = 0; i < shared->pattern.size(); ++i) {
    shared->pattern[i] = static_cast<char>('a' + i % kAlphabet);
  }

  // One io_context and one SO_REUSEPORT listener per thread (docs/architecture.md, "Threads"); the
  // kernel spreads connections over the listeners.
  const unsigned threads = std::max(1u, options.threads);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<Acceptor> acceptors;
  tcp::endpoint bound = *endpoint;
  for (unsigned i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    Acceptor acceptor(contexts.back()->get_executor());
    beast::error_code ec;
    acceptor.open(bound.protocol(), ec);
    if (!ec) {
      acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      acceptor.set_option(ReusePort(true), ec);
    }
    if (!ec) {
      acceptor.bind(bound, ec);  // after the first, `bound` carries the real port
    }
    if (!ec) {
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (!ec) {
      bound = acceptor.local_endpoint(ec);
    }
    if (ec) {
      std::cerr << "whoami: cannot listen on " << options.listen << ": " << ec.message() << "\n";
      return 1;
    }
    acceptors.push_back(std::move(acceptor));
  }
  std::cout << "whoami " << options.name << " listening on " << format_endpoint(bound) << std::endl;

  for (unsigned i = 0; i < threads; ++i) {
    asio::co_spawn(*contexts[i], accept_loop(shared, std::move(acceptors[i])),
                   base::log_and_count("whoami: acceptor"));
  }

  asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
  signals.async_wait([&contexts](const beast::error_code& ec, int) {
    if (ec) {
      return;
    }
    for (auto& context : contexts) {
      context->stop();
    }
  });

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) {
    workers.emplace_back([context = contexts[i].get()] { context->run(); });
  }
  contexts[0]->run();
  for (auto& worker : workers) {
    worker.join();
  }
  return 0;
}

}  // namespace routemesh::tools
