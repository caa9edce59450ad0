#pragma once
// Access log of the data plane: one line per request, JSON or combined format, written by an
// spdlog async logger on its own thread. Each proxy thread formats its lines into its own
// AccessLogBuffer and hands a batch of lines to the logger at most every tick or every 32 KiB,
// so the request path costs one formatting pass and no lock per request.

#include "config/types.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace spdlog {
class logger;
namespace details {
class thread_pool;
}
}  // namespace spdlog

namespace routemesh::proxy {

// What one access log line says. Views point into the session's frame; the record is
// formatted before the call returns.
struct AccessRecord {
  std::string_view client;
  std::string_view method;
  std::string_view host;
  std::string_view target;
  std::string_view service;   // "" when no route matched
  std::string_view upstream;  // endpoint key, "" when none was used
  std::string_view request_id;
  // Why the exchange failed after it started ("upstream_aborted": the upstream closed in the
  // middle of the body, the client got a truncated response), "" when it did not.
  std::string_view error;
  std::string_view user_agent;  // combined format only
  std::string_view referer;     // combined format only
  unsigned version_minor = 1;
  unsigned status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double duration_ms = 0;
};

// The process-wide sink (one async logger and its thread). Created by make_proxy_server;
// submit() is thread-safe.
class AccessLog {
 public:
  // Returns nullptr when the log is disabled. Throws spdlog::spdlog_ex when the file cannot
  // be opened (startup boundary).
  static std::unique_ptr<AccessLog> make(const config::AccessLogSettings& settings);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  config::AccessLogFormat format() const { return format_; }
  // Hands over newline-separated lines (without the final newline).
  void submit(std::string_view lines);
  void flush();

 private:
  AccessLog(config::AccessLogFormat format, std::shared_ptr<spdlog::details::thread_pool> pool,
            std::shared_ptr<spdlog::logger> logger);
  config::AccessLogFormat format_;
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::shared_ptr<spdlog::logger> logger_;
};

// Per proxy thread: formats records and batches them. Used from one thread only.
class AccessLogBuffer {
 public:
  explicit AccessLogBuffer(AccessLog& log);
  void append(const AccessRecord& record);
  // Hands the batch to the logger (called on every tick and at shutdown).
  void flush();

 private:
  void append_json(const AccessRecord& r);
  void append_combined(const AccessRecord& r);
  void refresh_time(std::chrono::system_clock::time_point now);

  AccessLog& log_;
  fmt::memory_buffer buf_;
  std::int64_t cached_second_ = -1;
  char iso_[32] = {};  // "2024-01-02T03:04:05" for JSON
  char clf_[40] = {};  // "02/Jan/2024:03:04:05 +0000" for combined
  std::size_t iso_len_ = 0;
  std::size_t clf_len_ = 0;
};

}  // namespace routemesh::proxy
