#include "discovery/agent/join_client.h"

#include "tests/unit/support/run_until.h"
#include "tests/unit/support/temp_dir.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

using namespace routemesh;
using namespace routemesh::discovery;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

struct Answer {
  unsigned status;
  std::string body;
};

// A one-connection-at-a-time HTTP server that records each request body and answers the next
// of `answers` (the last one repeats).
asio::awaitable<void> serve(tcp::acceptor& acceptor, std::vector<Answer> answers,
                            std::vector<std::string>& bodies) {
  for (std::size_t i = 0;; ++i) {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    co_await http::async_read(socket, buffer, req, asio::use_awaitable);
    bodies.push_back(req.body());
    const Answer& a = answers[std::min(i, answers.size() - 1)];
    http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
    res.set(http::field::content_type, "application/json");
    res.body() = a.body;
    res.keep_alive(false);
    res.prepare_payload();
    co_await http::async_write(socket, res, asio::use_awaitable);
  }
}

agent::JoinOptions fast() {
  agent::JoinOptions o;
  o.deadline = std::chrono::milliseconds(2000);
  o.call_timeout = std::chrono::milliseconds(1000);
  o.retry_pause = std::chrono::milliseconds(10);
  return o;
}

std::optional<JoinReply> join(asio::io_context& io, std::string address, JoinRequest request,
                              agent::JoinOptions options) {
  bool done = false;
  std::optional<JoinReply> out;
  asio::co_spawn(io, agent::join_cluster(io.get_executor(), address, request, options),
                 [&](std::exception_ptr e, std::optional<JoinReply> r) {
                   REQUIRE_FALSE(e);
                   out = std::move(r);
                   done = true;
                 });
  REQUIRE(test::run_until(
      io, [&] { return done; }, std::chrono::seconds(10)));
  return out;
}

}  // namespace

TEST_CASE("join client retries while the manager answers 503, then takes the reply") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  std::vector<std::string> bodies;
  JoinReply reply{"c1", "00000000000000b2", {{"00000000000000a1", "n1", "127.0.0.11:9901", "p"}}};
  asio::co_spawn(
      io, serve(acceptor, {{503, R"({"error":{}})"}, {200, encode_join_reply(reply)}}, bodies),
      asio::detached);

  JoinRequest request{"n2", NodeRole::worker, "127.0.0.12:9901", "", ""};
  auto got = join(io, address, request, fast());
  REQUIRE(got.has_value());
  CHECK(*got == reply);
  REQUIRE(bodies.size() == 2);
  CHECK(bodies[1] == encode_join_request(request));
}

TEST_CASE("join client gives up on a refusal and on a malformed reply") {
  for (const Answer& answer : {Answer{409, R"({"error":{"code":"conflict"}})"},
                               Answer{200, R"({"cluster_id":"c1","node_id":"nope"})"}}) {
    CAPTURE(answer.status, answer.body);
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const std::string address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
    std::vector<std::string> bodies;
    asio::co_spawn(io, serve(acceptor, {answer}, bodies), asio::detached);
    JoinRequest request{"n2", NodeRole::worker, "127.0.0.12:9901", "", ""};
    CHECK_FALSE(join(io, address, request, fast()).has_value());
    CHECK(bodies.size() == 1);
  }
}

TEST_CASE("join client gives up at the deadline when no manager answers") {
  asio::io_context io;
  // A port that was just free: connections are refused.
  std::string address;
  {
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    address = "127.0.0.1:" + std::to_string(probe.local_endpoint().port());
  }
  auto options = fast();
  options.deadline = std::chrono::milliseconds(100);
  JoinRequest request{"n2", NodeRole::worker, "127.0.0.12:9901", "", ""};
  CHECK_FALSE(join(io, address, request, options).has_value());
}

TEST_CASE("a new worker remembers the reply's managers and the address it joined through") {
  JoinReply reply{"c1", "00000000000000b2", {{"a1", "n1", "127.0.0.11:9901", "p1"}}};
  CHECK(agent::managers_after_join(reply, "127.0.0.13:9901") ==
        std::vector<std::string>{"127.0.0.11:9901", "127.0.0.13:9901"});
  CHECK(agent::managers_after_join(reply, "127.0.0.11:9901") ==
        std::vector<std::string>{"127.0.0.11:9901"});
}

TEST_CASE("manager addresses come from the state's managers that have one") {
  ClusterState state;
  state.nodes["a1"] = Node{"a1", "n1", NodeRole::manager, "127.0.0.11:9901", "p"};
  state.nodes["a2"] = Node{"a2", "n2", NodeRole::manager, "", "p"};
  state.nodes["b1"] = Node{"b1", "n3", NodeRole::worker, "127.0.0.13:9901", ""};
  CHECK(agent::manager_addresses(state) == std::vector<std::string>{"127.0.0.11:9901"});
}

TEST_CASE("the managers file round-trips and reads as empty when missing or malformed") {
  test::TempDir dir("rm-managers");
  CHECK(agent::read_managers(dir.path).empty());
  agent::write_managers(dir.path, {"127.0.0.11:9901", "127.0.0.12:9901"});
  CHECK(agent::read_managers(dir.path) ==
        std::vector<std::string>{"127.0.0.11:9901", "127.0.0.12:9901"});
  std::ofstream(dir.path + "/managers.json") << "{not json";
  CHECK(agent::read_managers(dir.path).empty());
}
