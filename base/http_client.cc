#include "base/http_client.h"

#include "base/address.h"

#include <openssl/ssl.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>
#include <type_traits>
#include <utility>

// GCC 12 reports a false -Wmismatched-new-delete on Asio's coroutine frame allocator for
// http_call (GCC bug 109224: the frame's operator new/delete pair is not seen as matched).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace routemesh::base {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SslStream = beast::ssl_stream<beast::tcp_stream>;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// Responses of the admin API are small JSON documents; the watch stream is read piecewise.
constexpr std::uint64_t kBodyLimit = 64 * 1024 * 1024;

// Admin addresses: "HOST:PORT" / "[IPv6]:PORT"; the CLI may name a host (localhost).
constexpr HostPortRules kAddressRules{.host_names = true};

// "IP:PORT" only: node addresses in the state are IP literals (validate_node), so no resolver.
boost::system::result<tcp::endpoint> parse_address(const std::string& address) {
  const auto hp = parse_host_port(address);
  if (!hp) {
    return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(hp->host, ec);
  if (ec) {
    return ec;
  }
  return tcp::endpoint(ip, hp->port);
}

beast::tcp_stream& lowest(beast::tcp_stream& stream) {
  return stream;
}
beast::tcp_stream& lowest(SslStream& stream) {
  return beast::get_lowest_layer(stream);
}

// A new stream of the kind `tls` asks for, in `out`.
template <class Stream>
void emplace_stream(std::optional<Stream>& out, asio::any_io_executor executor,
                    const TlsContext& tls) {
  if constexpr (std::is_same_v<Stream, SslStream>) {
    out.emplace(std::move(executor), *tls);
  } else {
    out.emplace(std::move(executor));
  }
}

// Connects `stream` to `address`: directly to an IP literal, else to what the resolver finds.
asio::awaitable<boost::system::error_code> connect_tcp(beast::tcp_stream& stream,
                                                       const std::string& address) {
  const auto hp = parse_host_port(address, kAddressRules);
  if (!hp) {
    co_return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  boost::system::error_code not_ip;
  const auto ip = asio::ip::make_address(hp->host, not_ip);
  if (!not_ip) {
    auto [ec] = co_await stream.async_connect(tcp::endpoint(ip, hp->port), kNoThrow);
    co_return ec;
  }
  tcp::resolver resolver(stream.get_executor());
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(hp->host, std::to_string(hp->port), kNoThrow);
  if (resolve_ec) {
    co_return resolve_ec;
  }
  auto [ec, endpoint] = co_await stream.async_connect(endpoints, kNoThrow);
  co_return ec;
}

// Connects; over TLS also shakes hands (within the stream's current deadline).
asio::awaitable<boost::system::error_code> open(beast::tcp_stream& stream,
                                                const std::string& address) {
  co_return co_await connect_tcp(stream, address);
}

asio::awaitable<boost::system::error_code> open(SslStream& stream, const std::string& address) {
  const auto connect_ec = co_await connect_tcp(lowest(stream), address);
  if (connect_ec) {
    co_return connect_ec;
  }
  const auto hp = parse_host_port(address, kAddressRules);
  // RFC 6066 §3: SNI carries host names only, never IP literals.
  if (hp && !is_ip_literal(hp->host) &&
      SSL_set_tlsext_host_name(stream.native_handle(), hp->host.c_str()) != 1) {
    co_return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::client, kNoThrow);
  co_return ec;
}

http::request<http::string_body> make_request(const std::string& address,
                                              const ClientRequest& request,
                                              bool keep_alive = false) {
  http::request<http::string_body> req;
  req.method_string(request.method);
  req.target(request.target);
  req.version(11);
  req.set(http::field::host, address);
  req.set(http::field::user_agent, "routemesh");
  req.keep_alive(keep_alive);
  for (const auto& [name, value] : request.headers) {
    req.set(name, value);
  }
  if (!request.body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = request.body;
  }
  req.prepare_payload();
  return req;
}

// Connects `stream` to `address` and writes `request`, within the stream's current deadline
// (name resolution aside).
template <class Stream>
asio::awaitable<boost::system::error_code> connect_and_send(Stream& stream,
                                                            const std::string& address,
                                                            const ClientRequest& request) {
  const auto connect_ec = co_await open(stream, address);
  if (connect_ec) {
    co_return connect_ec;
  }
  auto req = make_request(address, request);
  auto [write_ec, written] = co_await http::async_write(stream, req, kNoThrow);
  co_return write_ec;
}

// A whole response read from `stream`, and whether the connection can carry another request
// (the server keeps it open and sent nothing beyond this response).
struct Reply {
  ClientResponse response;
  bool reusable = false;
};

template <class Stream>
asio::awaitable<boost::system::result<Reply>> read_reply(Stream& stream) {
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, kNoThrow);
  if (read_ec) {
    co_return read_ec;
  }
  auto res = parser.release();
  Reply reply;
  reply.response.status = res.result_int();
  reply.response.content_type = std::string(res[http::field::content_type]);
  reply.response.body = std::move(res.body());
  reply.reusable = res.keep_alive() && buffer.size() == 0;
  co_return reply;
}

// One exchange on a new connection ("Connection: close"). Over TLS the connection is simply
// closed afterwards: the response was complete, so a close_notify would tell the server
// nothing.
template <class Stream>
asio::awaitable<CallResult> call_once(Stream& stream, const std::string& address,
                                      const ClientRequest& request,
                                      std::chrono::milliseconds timeout) {
  lowest(stream).expires_after(timeout);
  const auto send_ec = co_await connect_and_send(stream, address, request);
  if (send_ec) {
    co_return CallError{send_ec, false};
  }
  auto reply = co_await read_reply(stream);
  if (!reply) {
    co_return CallError{reply.error(), true};
  }
  beast::error_code ignored;
  lowest(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return std::move(reply->response);
}

}  // namespace

asio::awaitable<CallResult> http_call(asio::any_io_executor executor, std::string address,
                                      ClientRequest request, std::chrono::milliseconds timeout,
                                      TlsContext tls) {
  if (tls) {
    SslStream stream(executor, *tls);
    co_return co_await call_once(stream, address, request, timeout);
  }
  beast::tcp_stream stream(executor);
  co_return co_await call_once(stream, address, request, timeout);
}

KeepAliveClient::KeepAliveClient(asio::any_io_executor executor, TlsContext tls)
    : executor_(std::move(executor)), tls_(std::move(tls)) {}

asio::awaitable<CallResult> KeepAliveClient::call(std::string address, ClientRequest request,
                                                  std::chrono::milliseconds timeout) {
  if (tls_) {
    co_return co_await call_on(idle_tls_, std::move(address), std::move(request), timeout);
  }
  co_return co_await call_on(idle_, std::move(address), std::move(request), timeout);
}

template <class Stream>
asio::awaitable<CallResult> KeepAliveClient::call_on(
    std::map<std::string, std::vector<Idle<Stream>>>& pool, std::string address,
    ClientRequest request, std::chrono::milliseconds timeout) {
  auto endpoint = parse_address(address);
  if (!endpoint) {
    co_return CallError{endpoint.error(), false};
  }
  const auto req = make_request(address, request, true);
  // Each pass takes an idle connection or opens one; only a reused one can send us round
  // again, so this ends after at most kMaxIdle + 1 passes.
  for (;;) {
    std::optional<Stream> stream;
    auto& idle = pool[address];
    while (!stream && !idle.empty()) {
      auto& last = idle.back();
      if (std::chrono::steady_clock::now() - last.since < kMaxIdleAge) {
        stream.emplace(std::move(last.stream));
      }
      idle.pop_back();  // an expired one is closed here
    }
    const bool reused = stream.has_value();
    if (!reused) {
      emplace_stream(stream, executor_, tls_);
      lowest(*stream).expires_after(timeout);
      ++connects_;
      const auto connect_ec = co_await open(*stream, address);
      if (connect_ec) {
        co_return CallError{connect_ec, false};
      }
    }
    lowest(*stream).expires_after(timeout);
    auto [write_ec, written] = co_await http::async_write(*stream, req, kNoThrow);
    if (write_ec) {
      if (reused) {
        continue;  // the server dropped this idle connection
      }
      co_return CallError{write_ec, false};
    }
    auto reply = co_await read_reply(*stream);
    if (!reply) {
      if (reused && reply.error() == http::error::end_of_stream) {
        continue;  // closed before any response byte: the request was not read
      }
      co_return CallError{reply.error(), true};
    }
    auto& back = pool[address];  // other calls may have run while this one waited
    if (reply->reusable && back.size() < kMaxIdle) {
      lowest(*stream).expires_never();
      back.push_back(Idle<Stream>{std::move(*stream), std::chrono::steady_clock::now()});
    }
    co_return std::move(reply->response);
  }
}

namespace {

template <class Stream>
asio::awaitable<boost::system::error_code> stream_body(
    Stream& stream, const std::string& address, std::string target,
    std::chrono::milliseconds connect_timeout, std::chrono::milliseconds idle_timeout,
    const std::function<bool(std::string_view)>& on_data,
    const std::function<void(unsigned, std::string)>& on_error_body) {
  lowest(stream).expires_after(connect_timeout);
  ClientRequest request;
  request.target = std::move(target);
  const auto sent = co_await connect_and_send(stream, address, request);
  if (sent) {
    co_return sent;
  }

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);  // a watch stream has no end; pieces are consumed as they come
  auto [head_ec, head_n] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
  if (head_ec) {
    co_return head_ec;
  }
  const unsigned status = parser.get().result_int();
  if (status != 200) {
    parser.body_limit(kBodyLimit);
    lowest(stream).expires_after(connect_timeout);
    auto [body_ec, body_n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    on_error_body(status, body_ec ? std::string{} : parser.get().body());
    co_return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
  }

  // A chunked body (RFC 9112 §7.1) goes to on_data chunk by chunk; a body delimited by the
  // connection's end (HTTP/1.0 style) accumulates in the string body and is drained below.
  bool aborted = false;
  auto on_chunk = [&](std::uint64_t, std::string_view body, beast::error_code& ec) {
    if (!aborted && !on_data(body)) {
      aborted = true;
      ec = asio::error::operation_aborted;
    }
    return body.size();
  };
  parser.on_chunk_body(on_chunk);
  while (!parser.is_done()) {
    lowest(stream).expires_after(idle_timeout);
    auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, kNoThrow);
    if (!parser.chunked() && !parser.get().body().empty()) {
      std::string piece = std::move(parser.get().body());
      parser.get().body().clear();
      if (!aborted && !on_data(piece)) {
        aborted = true;
      }
    }
    if (aborted) {
      co_return asio::error::operation_aborted;
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      co_return asio::error::eof;
    }
    if (ec) {
      co_return ec;
    }
  }
  co_return asio::error::eof;
}

}  // namespace

asio::awaitable<boost::system::error_code> http_stream(
    asio::any_io_executor executor, std::string address, std::string target,
    std::chrono::milliseconds connect_timeout, std::chrono::milliseconds idle_timeout,
    std::function<bool(std::string_view)> on_data,
    std::function<void(unsigned, std::string)> on_error_body, TlsContext tls) {
  if (tls) {
    SslStream stream(executor, *tls);
    co_return co_await stream_body(stream, address, std::move(target), connect_timeout,
                                   idle_timeout, on_data, on_error_body);
  }
  beast::tcp_stream stream(executor);
  co_return co_await stream_body(stream, address, std::move(target), connect_timeout, idle_timeout,
                                 on_data, on_error_body);
}

}  // namespace routemesh::base
