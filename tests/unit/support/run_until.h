#pragma once
// Drives an io_context until `done()` holds or `limit` passes; true when `done()` held. For
// unit tests of the Asio drivers (real sockets on 127.0.0.x), so every wait is bounded.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>

namespace routemesh::test {

inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace routemesh::test
