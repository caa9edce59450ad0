#include "base/http_client.h"

#include "base/address.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <optional>
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

// Connects `stream` to `address`: directly to an IP literal, else to what the resolver finds.
asio::awaitable<boost::system::error_code> connect(beast::tcp_stream& stream,
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
asio::awaitable<boost::system::error_code> connect_and_send(beast::tcp_stream& stream,
                                                            const std::string& address,
                                                            const ClientRequest& request) {
  const auto connect_ec = co_await connect(stream, address);
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

asio::awaitable<boost::system::result<Reply>> read_reply(beast::tcp_stream& stream) {
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

}  // namespace

asio::awaitable<CallResult> http_call(asio::any_io_executor executor, std::string address,
                                      ClientRequest request, std::chrono::milliseconds timeout) {
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);
  const auto send_ec = co_await connect_and_send(stream, address, request);
  if (send_ec) {
    co_return CallError{send_ec, false};
  }
  auto reply = co_await read_reply(stream);
  if (!reply) {
    co_return CallError{reply.error(), true};
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return std::move(reply->response);
}

KeepAliveClient::KeepAliveClient(asio::any_io_executor executor) : executor_(std::move(executor)) {}

asio::awaitable<CallResult> KeepAliveClient::call(std::string address, ClientRequest request,
                                                  std::chrono::milliseconds timeout) {
  auto endpoint = parse_address(address);
  if (!endpoint) {
    co_return CallError{endpoint.error(), false};
  }
  const auto req = make_request(address, request, true);
  // Each pass takes an idle connection or opens one; only a reused one can send us round
  // again, so this ends after at most kMaxIdle + 1 passes.
  for (;;) {
    std::optional<beast::tcp_stream> stream;
    auto& idle = idle_[address];
    while (!stream && !idle.empty()) {
      Idle& last = idle.back();
      if (std::chrono::steady_clock::now() - last.since < kMaxIdleAge) {
        stream.emplace(std::move(last.stream));
      }
      idle.pop_back();  // an expired one is closed here
    }
    const bool reused = stream.has_value();
    if (!reused) {
      stream.emplace(executor_);
      stream->expires_after(timeout);
      ++connects_;
      auto [connect_ec] = co_await stream->async_connect(*endpoint, kNoThrow);
      if (connect_ec) {
        co_return CallError{connect_ec, false};
      }
    }
    stream->expires_after(timeout);
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
    auto& back = idle_[address];  // other calls may have run while this one waited
    if (reply->reusable && back.size() < kMaxIdle) {
      stream->expires_never();
      back.push_back(Idle{std::move(*stream), std::chrono::steady_clock::now()});
    }
    co_return std::move(reply->response);
  }
}

asio::awaitable<boost::system::error_code> http_stream(
    asio::any_io_executor executor, std::string address, std::string target,
    std::chrono::milliseconds connect_timeout, std::chrono::milliseconds idle_timeout,
    std::function<bool(std::string_view)> on_data,
    std::function<void(unsigned, std::string)> on_error_body) {
  beast::tcp_stream stream(executor);
  stream.expires_after(connect_timeout);
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
    stream.expires_after(connect_timeout);
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
    stream.expires_after(idle_timeout);
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

}  // namespace routemesh::base
