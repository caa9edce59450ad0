#pragma once
// The one HTTP/1.1 client (Beast): node-to-node calls on the control thread (forwarding writes
// to the leader, joining a cluster, the workers' watch stream) and the CLI's calls to the admin
// API. http_call and http_stream use one connection per call ("Connection: close");
// KeepAliveClient keeps connections open for the one caller that makes many calls to one
// address (a follower forwarding writes to the leader).
//
// Addresses are "HOST:PORT" or "[V6]:PORT". An IP literal is connected to directly (node
// addresses in the state are IP literals); http_call and http_stream resolve any other host
// name first (the CLI's --api localhost:9901), KeepAliveClient does not.
//
// TLS: every call takes an optional TLS context (TlsContext). Null is plain HTTP; otherwise
// the connection does a TLS handshake after connecting (SNI set for a host name, not for an IP
// literal), and the context decides what is verified and which client certificate is
// presented (tls/context.h builds the cluster's). A failed handshake is a CallError with
// sent = false: nothing was written.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace routemesh::base {

// The TLS of a call: null = plain HTTP. Shared by the calls of one thread.
using TlsContext = std::shared_ptr<boost::asio::ssl::context>;

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";
  std::string body;                            // sent as application/json when not empty
  std::map<std::string, std::string> headers;  // extra fields
};

struct ClientResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// Why a call got no response (connect refused, timeout, reset, malformed response), and whether
// the request had been written completely by then: after that the server may have acted on it
// (a write may have been applied), before that it cannot have.
struct CallError {
  boost::system::error_code code;
  bool sent = false;
  std::string message() const { return code.message(); }
};

using CallResult = boost::system::result<ClientResponse, CallError>;

// Sends `request` to `address` and reads the whole response. The deadline starts before name
// resolution and ends connect, write and read; the resolver itself is not interrupted (a caller
// that must bound it runs its io_context for a limited time, as the CLI does). Errors are values.
boost::asio::awaitable<CallResult> http_call(boost::asio::any_io_executor executor,
                                             std::string address, ClientRequest request,
                                             std::chrono::milliseconds timeout,
                                             TlsContext tls = nullptr);

// Calls over kept-alive connections, at most kMaxIdle idle per address, each reused for at
// most kMaxIdleAge. A reused connection that the server closed before answering (EOF before
// any response byte, or a failed write: the server dropped an idle connection and never saw
// the request) is replaced by a fresh one and the request sent once more; any other failure
// is returned as http_call returns it. Single-threaded: use it on one executor only.
class KeepAliveClient {
 public:
  // As many as a busy follower has writes in flight to its leader: a call that finds no idle
  // connection opens one and pays a TLS handshake. With 8 kept, 64 writers through a follower
  // cost the managers 1.8 ms of CPU per write; with 128, 0.46 ms (bench/cluster.sh).
  static constexpr std::size_t kMaxIdle = 128;
  static constexpr std::chrono::seconds kMaxIdleAge{10};

  // Every connection uses `tls` (null = plain HTTP).
  explicit KeepAliveClient(boost::asio::any_io_executor executor, TlsContext tls = nullptr);

  boost::asio::awaitable<CallResult> call(std::string address, ClientRequest request,
                                          std::chrono::milliseconds timeout);

  // Connections opened so far (for tests and metrics).
  std::uint64_t connects() const { return connects_; }

 private:
  template <class Stream>
  struct Idle {
    Stream stream;
    std::chrono::steady_clock::time_point since;
  };
  using SslStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  template <class Stream>
  boost::asio::awaitable<CallResult> call_on(std::map<std::string, std::vector<Idle<Stream>>>& idle,
                                             std::string address, ClientRequest request,
                                             std::chrono::milliseconds timeout);

  boost::asio::any_io_executor executor_;
  TlsContext tls_;
  std::map<std::string, std::vector<Idle<boost::beast::tcp_stream>>> idle_;
  std::map<std::string, std::vector<Idle<SslStream>>> idle_tls_;
  std::uint64_t connects_ = 0;
};

// Streams a response body: connects, sends a GET for `target` and calls `on_data` with each
// piece of the body as it arrives (any split). Returns when the server ends the body, a read
// takes longer than `idle_timeout`, `on_data` returns false (then: operation_aborted), or on a
// non-200 status (then: errc::protocol_error, with the response body passed to `on_error_body`).
// Connect and the response head must arrive within `connect_timeout`.
boost::asio::awaitable<boost::system::error_code> http_stream(
    boost::asio::any_io_executor executor, std::string address, std::string target,
    std::chrono::milliseconds connect_timeout, std::chrono::milliseconds idle_timeout,
    std::function<bool(std::string_view)> on_data,
    std::function<void(unsigned, std::string)> on_error_body, TlsContext tls = nullptr);

}  // namespace routemesh::base
