#pragma once
// The admin HTTP server (Beast) of a node: /metrics (Prometheus text format from the
// process registry), /healthz, and JSON handlers added by cmd/ (e.g. /v1/routes). Runs on
// the control thread's io_context.

#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace routemesh::discovery::admin {

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};

struct Request {
  std::string method;
  std::string target;  // path and query
  std::string body;
};

// Called on the control thread for a request whose path equals the registered path.
using Handler = std::function<Response(const Request&)>;

class AdminServer {
 public:
  virtual ~AdminServer() = default;
  AdminServer() = default;
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Registers a handler for an exact path. Call before start().
  virtual void handle(std::string path, Handler handler) = 0;

  // Binds "HOST:PORT" (port 0 = any) and starts accepting; returns the bound port.
  // Throws std::system_error when it cannot bind (startup boundary).
  virtual std::uint16_t start(const std::string& address) = 0;

  // Stops accepting and closes open connections (their sessions end with operation_aborted
  // on the next turn of the io_context). Idempotent; the destructor calls it. Like handle()
  // and start(), call it on the control thread or while its io_context is not running.
  virtual void stop() = 0;
};

// `registry` must outlive the server. Unknown paths answer 404 JSON
// {"error":{"code":"not_found","message":...}}; wrong methods 405.
std::unique_ptr<AdminServer> make_admin_server(boost::asio::any_io_executor executor,
                                               std::shared_ptr<prometheus::Registry> registry);

}  // namespace routemesh::discovery::admin
