// base/http_client.h's KeepAliveClient, tested here rather than in tests/unit/base/: test_base
// links only the pure rm_base_core, and the client lives in the driver rm_base, which the agent
// links. The server is a bare asio loop that counts the connections it accepts.
#include "base/http_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

using namespace routemesh;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Answers every request on a connection with a small 200, keeping the connection open.
asio::awaitable<void> serve(tcp::socket socket) {
  std::string buf;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(socket, asio::dynamic_buffer(buf), "\r\n\r\n", kTuple);
    if (ec) {
      co_return;
    }
    buf.erase(0, n);
    static const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    auto [wec, w] = co_await asio::async_write(socket, asio::buffer(reply), kTuple);
    if (wec) {
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, int& accepted) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      co_return;
    }
    ++accepted;
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

// `n` calls started together, so none finds an idle connection the others left.
void concurrent_calls(asio::io_context& io, base::KeepAliveClient& client,
                      const std::string& address, int n, int& ok) {
  int pending = n;
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          // Locals, not temporaries, in the co_await (GCC 12 destroys those twice).
          base::ClientRequest request;
          std::string to = address;
          auto r = co_await client.call(std::move(to), std::move(request),
                                        std::chrono::milliseconds(5000));
          if (r && r->status == 200) {
            ++ok;
          }
          if (--pending == 0) {
            io.stop();
          }
        },
        asio::detached);
  }
  io.restart();
  io.run_for(std::chrono::seconds(10));
}

}  // namespace

TEST_CASE("KeepAliveClient keeps every connection of a burst of concurrent calls for the next") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  int accepted = 0;
  asio::co_spawn(io, accept_loop(acceptor, accepted), asio::detached);
  const std::string address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  base::KeepAliveClient client(io.get_executor());
  // A follower forwarding many writes at once to its leader: with too few connections kept,
  // every burst opened (and, with TLS, handshook) most of them again.
  constexpr int kBurst = 40;
  int ok = 0;
  concurrent_calls(io, client, address, kBurst, ok);
  REQUIRE(ok == kBurst);
  CHECK(client.connects() == kBurst);
  concurrent_calls(io, client, address, kBurst, ok);
  CHECK(ok == 2 * kBurst);
  CHECK(client.connects() == kBurst);  // the second burst reused all of them
  CHECK(accepted == kBurst);
  acceptor.close();
}
