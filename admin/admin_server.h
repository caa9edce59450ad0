#pragma once
// The admin HTTP server (Beast) of a node: /metrics (Prometheus text format from the
// process registry), /healthz, and handlers added by cmd/ and the REST API (discovery/manager/):
// synchronous exact-path handlers (/v1/routes), asynchronous exact-path and prefix handlers
// (/v1/services/NAME ...), and streaming handlers that write a chunked body (/v1/watch).
// Runs on the control thread's io_context.
//
// TLS (cluster mode): after use_tls() every connection must shake hands in TLS first (the
// context, tls/context.h, verifies a client certificate against the cluster CA when one is
// sent). A request without a verified client certificate is answered 401 unless its path is
// /healthz, /metrics or one registered with allow_anonymous(); every handler sees the verified
// identity in Request::caller and decides what that role may do.

#include "base/http_client.h"
#include "tls/types.h"

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace routemesh::tls {
class PeerTrust;
}  // namespace routemesh::tls

namespace routemesh::admin {

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra header fields (name, value), sent as given after Content-Type (e.g. the REST API's
  // X-Routemesh-Stale on a read of this node's own copy).
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as received
  std::string body;
  std::string path;                            // target without the query, percent-decoded
  std::map<std::string, std::string> query;    // decoded; a repeated key keeps its last value
  std::map<std::string, std::string> headers;  // lower-case names; a repeated field keeps the last
  // Over TLS: the identity in the client certificate the cluster CA issued (nullopt: none sent,
  // or not a TLS server). Never taken from a header.
  std::optional<tls::Identity> caller;
};

// Called on the control thread for a request whose path equals the registered path.
using Handler = std::function<Response(const Request&)>;

// Called on the control thread; the coroutine runs there too and owns its Request. It may
// suspend (forward to another node, wait for a Raft commit). An exception becomes a 500.
using AsyncHandler = std::function<boost::asio::awaitable<Response>(Request)>;

// The body writer a streaming handler gets. Control thread only; lives while the handler runs.
class ChunkWriter {
 public:
  ChunkWriter() = default;
  ChunkWriter(const ChunkWriter&) = delete;
  ChunkWriter& operator=(const ChunkWriter&) = delete;
  virtual ~ChunkWriter() = default;

  // Sends one chunk of a `200` response with Transfer-Encoding: chunked (RFC 9112 §7.1); the
  // first call sends the head with `content_type`. Empty data sends just the head (if not
  // sent yet; an empty chunk would end the body). Completes false when the client is gone or
  // the write timed out; the handler should then return.
  virtual boost::asio::awaitable<bool> write(std::string data) = 0;
  // Answers with a plain (non-streamed) response instead; only before the first write().
  virtual boost::asio::awaitable<bool> respond(Response response) = 0;
  // Whether the head went out (write() or respond() was called).
  virtual bool started() const = 0;
};

// Streams a response: the handler calls writer.write() as often as it likes and returns when
// done (the server then sends the last chunk and closes the connection). If it returns
// without writing, the client gets a 500. Exceptions are logged and end the connection.
using StreamHandler = std::function<boost::asio::awaitable<void>(Request, ChunkWriter&)>;

class AdminServer {
 public:
  virtual ~AdminServer() = default;
  AdminServer() = default;
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Registers a handler for an exact path, on the control thread (before or after start():
  // requests look handlers up when they arrive). One table for all kinds of handlers:
  // registering a path again replaces its handler.
  virtual void handle(std::string path, Handler handler) = 0;
  virtual void handle_async(std::string path, AsyncHandler handler) = 0;
  virtual void handle_stream(std::string path, StreamHandler handler) = 0;
  // Handles every path that starts with `prefix` (e.g. "/v1/services/") and has no exact
  // handler; the longest matching prefix wins.
  virtual void handle_prefix(std::string prefix, AsyncHandler handler) = 0;

  // From now on every new connection is TLS with `context` (see the header comment). A null
  // context means TLS is required but not ready (a node still joining has no certificate):
  // connections are closed unanswered until use_tls() is called again with a context. Call
  // with null before the io_context first runs for a server that must never answer in plain
  // text. Connections already open keep what they had.
  virtual void use_tls(base::TlsContext context) = 0;
  // Over TLS, requests for the exact `path` are served without a client certificate too (the
  // handler still sees Request::caller, nullopt for them). /healthz and /metrics always are.
  virtual void allow_anonymous(std::string path) = 0;
  // From now on, before each request on a TLS connection whose client sent a certificate,
  // `trust` says whether that certificate is still good (tls::PeerTrust::recheck: revoked or its
  // node removed since the handshake, or, for users, expired or of a retired root). When it is not,
  // the request is answered 401 and the connection closed (logged,
  // routemesh_admin_connections_cut_total).
  virtual void recheck_peers(std::shared_ptr<const tls::PeerTrust> trust) = 0;
  // The trust changed (a revocation, a retired root): closes at once every response stream (a
  // watch) whose client certificate it now refuses; a stream has no next request to be
  // refused at. Other connections keep the per-request check (401, then closed). Counted and
  // logged as above; returns how many. Control thread.
  virtual std::size_t cut_untrusted() = 0;

  // Binds "HOST:PORT" (port 0 = any) and starts accepting; returns the bound port.
  // Throws std::system_error when it cannot bind (startup boundary).
  virtual std::uint16_t start(const std::string& address) = 0;

  // Stops accepting and closes open connections (their sessions end with operation_aborted
  // on the next turn of the io_context; a streaming handler sees write() complete false).
  // Idempotent; the destructor calls it. Like handle() and start(), call it on the control
  // thread or while its io_context is not running.
  virtual void stop() = 0;
};

// `registry` must outlive the server. Unknown paths answer 404 JSON
// {"error":{"code":"not_found","message":...}}; wrong methods 405; over TLS, a request without a
// client certificate for a path that needs one 401 {"error":{"code":"unauthenticated",...}}.
std::unique_ptr<AdminServer> make_admin_server(boost::asio::any_io_executor executor,
                                               std::shared_ptr<prometheus::Registry> registry);

// Splits a request target into its percent-decoded path and query parameters ("+" in the
// query is a space, as HTML forms send it). Pure; false for a malformed escape.
bool parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query);

}  // namespace routemesh::admin
