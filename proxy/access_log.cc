#include "proxy/access_log.h"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <iterator>

namespace routemesh::proxy {

namespace {

constexpr std::size_t kBatchBytes = 32 * 1024;
constexpr std::size_t kQueueSlots = 8192;

// JSON string escaping (RFC 8259 §7) for fields that come from the client.
void append_escaped(fmt::memory_buffer& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == '"' || u == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      const char esc[] = {'\\', 'u', '0', '0', kHex[u >> 4], kHex[u & 15]};
      out.append(esc, esc + sizeof esc);
    } else {
      out.push_back(c);
    }
  }
}

void append_str(fmt::memory_buffer& out, std::string_view s) {
  out.append(s.data(), s.data() + s.size());
}

// Combined format fields are quoted: keep quotes and control bytes out of them.
void append_clf_quoted(fmt::memory_buffer& out, std::string_view s) {
  if (s.empty()) {
    out.push_back('-');
    return;
  }
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out.push_back((u < 0x20 || u == 0x7f || u == '"') ? '_' : c);
  }
}

}  // namespace

std::unique_ptr<AccessLog> AccessLog::make(const config::AccessLogSettings& settings) {
  if (!settings.enabled) {
    return nullptr;
  }
  spdlog::sink_ptr sink;
  if (settings.path.empty() || settings.path == "-") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.path);
  }
  sink->set_pattern("%v");
  // Own queue and thread (not spdlog's global pool), so the access log never competes with
  // the process log. A full queue drops the oldest batch rather than blocking a proxy thread.
  auto pool = std::make_shared<spdlog::details::thread_pool>(kQueueSlots, 1);
  auto logger = std::make_shared<spdlog::async_logger>(
      "access", sink, pool, spdlog::async_overflow_policy::overrun_oldest);
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::info);
  // Batches arrive at most every tick; flush each so lines reach pipes/files promptly.
  logger->flush_on(spdlog::level::info);
  return std::unique_ptr<AccessLog>(
      new AccessLog(settings.format, std::move(pool), std::move(logger)));
}

AccessLog::AccessLog(config::AccessLogFormat format,
                     std::shared_ptr<spdlog::details::thread_pool> pool,
                     std::shared_ptr<spdlog::logger> logger)
    : format_(format), pool_(std::move(pool)), logger_(std::move(logger)) {}

AccessLog::~AccessLog() {
  logger_->flush();
  // The logger must go before its thread pool: the pool's destructor joins the thread after
  // draining the queue.
  logger_.reset();
  pool_.reset();
}

void AccessLog::submit(std::string_view lines) {
  logger_->info("{}", lines);
}

void AccessLog::flush() {
  logger_->flush();
}

AccessLogBuffer::AccessLogBuffer(AccessLog& log) : log_(log) {
  buf_.reserve(kBatchBytes + 4096);
}

void AccessLogBuffer::refresh_time(std::chrono::system_clock::time_point now) {
  const auto secs =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (secs == cached_second_) {
    return;
  }
  cached_second_ = secs;
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  iso_len_ = std::strftime(iso_, sizeof iso_, "%Y-%m-%dT%H:%M:%S", &tm);
  clf_len_ = std::strftime(clf_, sizeof clf_, "%d/%b/%Y:%H:%M:%S +0000", &tm);
}

void AccessLogBuffer::append(const AccessRecord& r) {
  if (buf_.size() != 0) {
    buf_.push_back('\n');
  }
  if (log_.format() == config::AccessLogFormat::json) {
    append_json(r);
  } else {
    append_combined(r);
  }
  if (buf_.size() >= kBatchBytes) {
    flush();
  }
}

void AccessLogBuffer::append_json(const AccessRecord& r) {
  const auto now = std::chrono::system_clock::now();
  refresh_time(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  auto out = std::back_inserter(buf_);
  append_str(buf_, R"({"ts":")");
  buf_.append(iso_, iso_ + iso_len_);
  fmt::format_to(out, ".{:03}Z\",\"client\":\"", ms);
  append_escaped(buf_, r.client);
  append_str(buf_, R"(","method":")");
  append_escaped(buf_, r.method);
  append_str(buf_, R"(","host":")");
  append_escaped(buf_, r.host);
  append_str(buf_, R"(","path":")");
  append_escaped(buf_, r.target);
  fmt::format_to(out, R"(","status":{},"service":")", r.status);
  append_escaped(buf_, r.service);
  append_str(buf_, R"(","upstream":")");
  append_escaped(buf_, r.upstream);
  fmt::format_to(out, R"(","bytes_in":{},"bytes_out":{},"duration_ms":{:.3f},"request_id":")",
                 r.bytes_in, r.bytes_out, r.duration_ms);
  append_escaped(buf_, r.request_id);
  if (!r.error.empty()) {
    append_str(buf_, R"(","error":")");
    append_escaped(buf_, r.error);
  }
  append_str(buf_, "\"}");
}

// NCSA combined log format (Apache's), as nginx writes it.
void AccessLogBuffer::append_combined(const AccessRecord& r) {
  refresh_time(std::chrono::system_clock::now());
  auto out = std::back_inserter(buf_);
  append_str(buf_, r.client.empty() ? std::string_view("-") : r.client);
  append_str(buf_, " - - [");
  buf_.append(clf_, clf_ + clf_len_);
  append_str(buf_, "] \"");
  append_clf_quoted(buf_, r.method);
  buf_.push_back(' ');
  append_clf_quoted(buf_, r.target);
  fmt::format_to(out, " HTTP/1.{}\" {} {} \"", r.version_minor, r.status, r.bytes_out);
  append_clf_quoted(buf_, r.referer);
  append_str(buf_, "\" \"");
  append_clf_quoted(buf_, r.user_agent);
  buf_.push_back('"');
}

void AccessLogBuffer::flush() {
  if (buf_.size() == 0) {
    return;
  }
  log_.submit(std::string_view(buf_.data(), buf_.size()));
  buf_.clear();
}

}  // namespace routemesh::proxy
