// base/spawn.h, tested here rather than in tests/unit/base/: test_base links only the pure
// rm_base_core, and the co_spawn handler lives in the driver rm_base (spdlog, prometheus-cpp),
// which the agent links.
#include "base/spawn.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <stdexcept>

using namespace routemesh;
namespace asio = boost::asio;

namespace {

asio::awaitable<void> succeed() {
  co_return;
}

asio::awaitable<void> fail() {
  throw std::runtime_error("boom");
  co_return;
}

}  // namespace

TEST_CASE("log_and_count counts and runs on_failure only for a coroutine that threw") {
  prometheus::Counter errors;
  int failures = 0;
  asio::io_context io;
  asio::co_spawn(io, succeed(), base::log_and_count("test: ok", &errors, [&] { ++failures; }));
  asio::co_spawn(io, fail(), base::log_and_count("test: throws", &errors, [&] { ++failures; }));
  asio::co_spawn(io, fail(), base::log_and_count("test: uncounted"));
  io.run();
  CHECK(errors.Value() == 1);
  CHECK(failures == 1);
}

TEST_CASE("log_and_count_exception ignores a null exception") {
  prometheus::Counter errors;
  base::log_and_count_exception("test", &errors, nullptr);
  CHECK(errors.Value() == 0);
  base::log_and_count_exception("test", &errors, std::make_exception_ptr(42));
  CHECK(errors.Value() == 1);
}
