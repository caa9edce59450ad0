#include "proxy/server.h"

#include "base/address.h"
#include "proxy/access_log.h"
#include "proxy/worker.h"
#include "tls/ingress_context.h"

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <system_error>
#include <thread>

namespace routemesh::proxy {

namespace {

using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

// Counts posted tasks done, so the control thread can wait for every worker.
struct Countdown {
  explicit Countdown(std::size_t n) : left(n) {}
  void done() {
    std::lock_guard lock(m);
    if (--left == 0) {
      cv.notify_all();
    }
  }
  bool wait_for(std::chrono::milliseconds d) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, d, [this] { return left == 0; });
  }
  std::mutex m;
  std::condition_variable cv;
  std::size_t left;
};

class ProxyServerImpl final : public ProxyServer {
 public:
  ProxyServerImpl(const config::NodeConfig& cfg, Metrics& metrics)
      : cfg_(cfg),
        current_(std::make_shared<const config::NodeConfig>(cfg)),
        metrics_(metrics),
        access_log_(AccessLog::make(cfg_.node.access_log)) {
    unsigned n = cfg_.node.threads;
    if (n == 0) {
      n = std::max(1U, std::thread::hardware_concurrency());
    }
    workers_.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      workers_.push_back(std::make_unique<Worker>(i, current_, metrics_, access_log_));
    }
  }

  ~ProxyServerImpl() override { shutdown(); }

  std::uint16_t start() override {
    std::lock_guard lock(control_);
    if (started_ || stopped_) {
      return port_;
    }
    // The first thread binds the configured port (0: any); the others bind the port it got,
    // so all threads share one SO_REUSEPORT group.
    // splice(2) has no MSG_NOSIGNAL: a peer that closed would otherwise kill the process
    // with SIGPIPE. EPIPE comes back as an error instead.
    std::signal(SIGPIPE, SIG_IGN);
    std::uint16_t port = cfg_.node.http_port;
    for (auto& w : workers_) {
      port = w->open_hrm(port);
    }
    if (!cfg_.node.overlay.empty()) {
      const auto hp = base::parse_host_port(cfg_.node.overlay);
      if (!hp) {
        throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                "node.overlay " + cfg_.node.overlay);
      }
      const tcp::endpoint at(asio::ip::make_address(hp->host), hp->port);
      for (auto& w : workers_) {
        w->open_overlay(at);
      }
      spdlog::info("overlay: listening on {}", cfg_.node.overlay);
    }
    if (cfg_.node.https_port != 0) {
      for (auto& w : workers_) {
        w->open_https(cfg_.node.https_port);
      }
      spdlog::info("proxy: https port {} on {}", cfg_.node.https_port, cfg_.node.listen);
    }
    port_ = port;
    for (auto& w : workers_) {
      guards_.emplace_back(asio::make_work_guard(w->io()));
      Worker* wp = w.get();
      asio::post(wp->io(), [wp] { wp->start(); });
      threads_.emplace_back([wp] {
        for (;;) {
          try {
            wp->io().run();
            return;
          } catch (const std::exception& e) {
            // Handlers do not throw by design; keep the thread serving if one does.
            spdlog::error("proxy: thread {}: unexpected exception: {}", wp->index(), e.what());
          }
        }
      });
    }
    started_ = true;
    spdlog::info("proxy: {} thread(s) listening on {}:{}", workers_.size(), cfg_.node.listen,
                 port_);
    return port_;
  }

  void publish(std::shared_ptr<const mesh::RouteTable> table) override {
    std::lock_guard lock(control_);
    if (!table || stopped_) {
      return;
    }
    std::shared_ptr<const tls::IngressContexts> ingress = ingress_for(*table);
    if (!started_) {
      // No thread runs yet: apply directly.
      for (auto& w : workers_) {
        w->apply_table(table, ingress);
      }
      set_table(std::move(table));
      return;
    }
    // Each worker swaps its own pointer on its own thread (no atomic shared_ptr, no lock on
    // the request path); wait so that listeners are reconciled when publish returns.
    auto done = std::make_shared<Countdown>(workers_.size());
    for (auto& w : workers_) {
      Worker* wp = w.get();
      asio::post(wp->io(), [wp, table, ingress, done] {
        wp->apply_table(table, ingress);
        done->done();
      });
    }
    if (!done->wait_for(std::chrono::seconds(10))) {
      spdlog::warn("proxy: a proxy thread did not apply table revision {} within 10 s",
                   table->revision);
    }
    set_table(std::move(table));
  }

  void set_overlay_tls(std::shared_ptr<const OverlayTls> tls) override {
    std::lock_guard lock(control_);
    if (stopped_) {
      return;
    }
    if (!started_) {
      for (auto& w : workers_) {
        w->set_overlay_tls(tls);
      }
      return;
    }
    auto done = std::make_shared<Countdown>(workers_.size());
    for (auto& w : workers_) {
      Worker* wp = w.get();
      asio::post(wp->io(), [wp, tls, done] {
        wp->set_overlay_tls(tls);
        done->done();
      });
    }
    if (!done->wait_for(std::chrono::seconds(10))) {
      spdlog::warn("proxy: a proxy thread did not take the overlay's TLS contexts within 10 s");
    }
  }

  void recheck_overlay_peers() override {
    std::lock_guard lock(control_);
    if (stopped_ || !started_) {
      return;
    }
    for (auto& w : workers_) {
      Worker* wp = w.get();
      asio::post(wp->io(), [wp] { wp->close_untrusted_overlay(true); });
    }
  }

  void apply_settings(const config::NodeConfig& next) override {
    std::lock_guard lock(control_);
    if (stopped_) {
      return;
    }
    auto settings = std::make_shared<const config::NodeConfig>(next);
    std::shared_ptr<AccessLog> log = access_log_;
    const config::AccessLogSettings& a = current_->node.access_log;
    const config::AccessLogSettings& b = next.node.access_log;
    if (a.enabled != b.enabled || a.format != b.format || a.path != b.path) {
      try {
        log = AccessLog::make(b);
      } catch (const std::exception& e) {
        // The old log keeps going; the rest of the settings still apply.
        spdlog::error("proxy: cannot open access log {}: {}; keeping the old one", b.path,
                      e.what());
      }
    }
    current_ = settings;
    access_log_ = log;
    if (!started_) {
      for (auto& w : workers_) {
        w->apply_settings(settings, log);
      }
      return;
    }
    auto done = std::make_shared<Countdown>(workers_.size());
    for (auto& w : workers_) {
      Worker* wp = w.get();
      asio::post(wp->io(), [wp, settings, log, done] {
        wp->apply_settings(settings, log);
        done->done();
      });
    }
    if (!done->wait_for(std::chrono::seconds(10))) {
      spdlog::warn("proxy: a proxy thread did not apply the reloaded settings within 10 s");
    }
  }

  std::shared_ptr<const mesh::RouteTable> table() const override {
    std::lock_guard lock(table_mutex_);
    return table_;
  }

  void shutdown() override {
    std::lock_guard lock(control_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
    if (started_) {
      drain_and_stop();
    }
    workers_.clear();
    access_log_.reset();
  }

  std::vector<std::uint16_t> listening_ports() const override {
    std::lock_guard lock(control_);
    if (workers_.empty()) {
      return {};
    }
    return workers_.front()->open_ports();
  }

 private:
  std::size_t live() const {
    std::size_t n = 0;
    for (const auto& w : workers_) {
      n += w->live();
    }
    return n;
  }

  void set_table(std::shared_ptr<const mesh::RouteTable> table) {
    std::lock_guard lock(table_mutex_);
    table_ = std::move(table);
  }

  void post_all(void (Worker::*fn)()) {
    for (auto& w : workers_) {
      Worker* wp = w.get();
      asio::post(wp->io(), [wp, fn] { (wp->*fn)(); });
    }
  }

  // Stop accepting and close idle connections; let in-flight requests finish within
  // drain_ms; then cancel the rest and stop the threads.
  void drain_and_stop() {
    post_all(&Worker::begin_drain);
    const auto deadline = Clock::now() + milliseconds(current_->timeouts.drain_ms);
    while (Clock::now() < deadline && live() > 0) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    const std::size_t left = live();
    if (left > 0) {
      spdlog::warn("proxy: {} connection(s) still open after drain; cancelling", left);
    }
    post_all(&Worker::kill_all);
    const auto grace = Clock::now() + milliseconds(1000);
    while (Clock::now() < grace && live() > 0) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    guards_.clear();
    for (auto& w : workers_) {
      w->io().stop();
    }
    for (auto& t : threads_) {
      t.join();
    }
    threads_.clear();
  }

  // The HTTPS port's TLS contexts for the table's certificates: rebuilt only when they
  // changed (tables change with every health verdict; certificates rarely).
  std::shared_ptr<const tls::IngressContexts> ingress_for(const mesh::RouteTable& table) {
    if (cfg_.node.https_port == 0) {
      return nullptr;
    }
    if (table.certificates == ingress_certs_) {
      return ingress_;
    }
    std::vector<tls::IngressCertPem> pems;
    pems.reserve(table.certificates.size());
    for (const auto& c : table.certificates) {
      pems.push_back(tls::IngressCertPem{c.host, c.cert, c.key});
    }
    std::vector<std::string> errors;
    ingress_ = tls::IngressContexts::build(pems, errors);
    ingress_certs_ = table.certificates;
    for (const auto& e : errors) {
      metrics_.tls_certificate_errors.Increment();
      spdlog::error("proxy: https certificate left out: {}", e);
    }
    spdlog::info("proxy: https port serves {} certificate(s)", ingress_ ? ingress_->size() : 0);
    return ingress_;
  }

  config::NodeConfig cfg_;  // as started: listen address, HRM port, threads
  std::shared_ptr<const config::NodeConfig> current_;  // the newest settings (reloads)
  Metrics& metrics_;
  std::shared_ptr<AccessLog> access_log_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<WorkGuard> guards_;
  std::vector<std::thread> threads_;
  mutable std::mutex control_;  // publish, apply_settings, shutdown: one at a time
  // The table every proxy thread has adopted. A mutex of its own: table() (the admin API, on
  // the control thread) must not wait for a publish in progress, which holds control_ until
  // every proxy thread adopted the new table.
  mutable std::mutex table_mutex_;
  std::shared_ptr<const mesh::RouteTable> table_;
  std::vector<mesh::IngressCertificate> ingress_certs_;  // what ingress_ was built from
  std::shared_ptr<const tls::IngressContexts> ingress_;
  std::uint16_t port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace

std::unique_ptr<ProxyServer> make_proxy_server(const config::NodeConfig& cfg, Metrics& metrics) {
  return std::make_unique<ProxyServerImpl>(cfg, metrics);
}

}  // namespace routemesh::proxy
