#pragma once
// Active health checks of this node's tasks (the driver; the decisions are mesh/health's).
// Runs on the control thread: one probe loop per task (TCP connect, or HTTP GET with an
// expected status), and a write of each verdict change to the store through a manager's admin
// API (PUT /v1/tasks/ID {"health":...} with the task's version, so a concurrent `task drain`
// wins), trying the next manager on 503 or a connection error. Every node's balancer then
// reads the same verdict from its route table. A task the store says is draining is checked
// but never written back to healthy.

#include "base/http_client.h"
#include "mesh/health/tracker.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace routemesh::proxy {

class HealthChecker {
 public:
  HealthChecker(boost::asio::any_io_executor executor, prometheus::Registry& registry);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // The tasks to check (mesh::health::targets of the newest state) and the admin API addresses
  // of the managers to write verdicts through. New tasks start probing, gone ones stop; a task
  // whose address, port or check changed starts over.
  void update(std::vector<mesh::health::Target> targets, std::vector<std::string> managers);
  // The TLS of the verdict writes to the managers (this node's certificate: a node may report
  // the health of its own tasks only); null = plain HTTP. Probes of tasks stay plain.
  void use_tls(base::TlsContext tls) { tls_ = std::move(tls); }
  void stop();

  std::size_t probing() const { return probes_.size(); }

 private:
  struct Probe;
  boost::asio::awaitable<void> probe_loop(std::shared_ptr<Probe> p);
  boost::asio::awaitable<bool> check_once(const mesh::health::Target& t);
  boost::asio::awaitable<void> write(std::shared_ptr<Probe> p, discovery::TaskHealth value);
  void maybe_write(const std::shared_ptr<Probe>& p);

  boost::asio::any_io_executor executor_;
  std::map<std::string, std::shared_ptr<Probe>> probes_;  // by task id
  std::vector<std::string> managers_;
  std::size_t next_manager_ = 0;
  base::TlsContext tls_;
  bool stopped_ = false;
  prometheus::Family<prometheus::Counter>& checks_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Family<prometheus::Counter>& writes_;
};

}  // namespace routemesh::proxy
