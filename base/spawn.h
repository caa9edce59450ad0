#pragma once
// The one co_spawn completion handler. Every coroutine started with asio::co_spawn ends in
// log_and_count(...): an exception that escaped the coroutine (a bug or resource exhaustion;
// expected failures are values) is logged once as "<what> failed: <exception>", the given
// counter is incremented, and the caller's on_failure step runs. A coroutine that returned
// normally passes through without a trace.
//
//   asio::co_spawn(ex, run_session(...), base::log_and_count("admin: session", &errors));
//   asio::co_spawn(ex, start(...), base::log_and_count("cluster: start", nullptr,
//                                                      [&] { stop_everything(); }));
//
// The handler runs on the coroutine's executor, like any completion. `what` is not copied:
// pass a string literal (or other storage that outlives every coroutine spawned with it).
// Neither the handler nor on_failure may throw.

#include <exception>
#include <string_view>
#include <utility>

namespace prometheus {
class Counter;
}

namespace routemesh::base {

// Logs `error` (an exception that ended a coroutine) as "<what> failed: <message>" at error
// level, then increments `errors` when it is not null. Does nothing for a null `error`.
void log_and_count_exception(std::string_view what, prometheus::Counter* errors,
                             const std::exception_ptr& error);

// A completion handler for co_spawn of an awaitable<void>: see the header comment.
template <class OnFailure>
class LogAndCount {
 public:
  LogAndCount(std::string_view what, prometheus::Counter* errors, OnFailure on_failure)
      : what_(what), errors_(errors), on_failure_(std::move(on_failure)) {}

  void operator()(const std::exception_ptr& error) {
    if (!error) {
      return;
    }
    log_and_count_exception(what_, errors_, error);
    on_failure_();
  }

 private:
  std::string_view what_;
  prometheus::Counter* errors_;
  OnFailure on_failure_;
};

struct NothingMore {
  void operator()() const {}
};

// `errors` may be null (nothing to count); `on_failure` runs after the log line, only when the
// coroutine ended with an exception (e.g. cmd/ stops the node).
inline LogAndCount<NothingMore> log_and_count(std::string_view what,
                                              prometheus::Counter* errors = nullptr) {
  return {what, errors, NothingMore{}};
}

template <class OnFailure>
LogAndCount<OnFailure> log_and_count(std::string_view what, prometheus::Counter* errors,
                                     OnFailure on_failure) {
  return {what, errors, std::move(on_failure)};
}

}  // namespace routemesh::base
