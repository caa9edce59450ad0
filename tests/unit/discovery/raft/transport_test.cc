#include "discovery/raft/transport.h"

#include "discovery/raft/codec.h"
#include "discovery/raft/metrics.h"
#include "tests/unit/support/run_until.h"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace routemesh::discovery::raft;
using namespace std::chrono_literals;

namespace {

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 5s) {
  return routemesh::test::run_until(io, done, limit);
}

Bytes frame(const Bytes& payload) {
  Bytes f;
  f.reserve(4 + payload.size());
  auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) {
    f.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  }
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

Bytes hello(NodeId id, const std::string& addr) {
  Bytes p = {'R', 'M', 'R', 'A', 'F', 'T', '1', '\0'};
  Bytes book = codec::wrap_peers({{id, addr}});
  p.insert(p.end(), book.begin(), book.end());
  return p;
}

Message heartbeat(NodeId from, NodeId to, Term term) {
  Message m;
  m.type = MessageType::heartbeat;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

struct Endpoint {
  Endpoint(asio::io_context& io, NodeId id, Metrics* metrics, std::string listen) {
    TransportOptions o;
    o.self = id;
    o.listen_address = std::move(listen);
    o.metrics = metrics;
    o.queue_limit = 8;
    auto r = make_tcp_transport(io.get_executor(), o, [this](Message m) { got.push_back(m); });
    REQUIRE(r.has_value());
    t = std::move(*r);
  }
  std::unique_ptr<Transport> t;
  std::vector<Message> got;
};

}  // namespace

TEST_CASE("transport: messages flow both ways and a hello teaches the return address") {
  spdlog::set_level(spdlog::level::warn);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  Endpoint a(io, 1, &metrics, "127.0.0.31:0");
  Endpoint b(io, 2, &metrics, "127.0.0.32:0");
  // Only a knows b: b learns a's address from a's hello and can answer.
  a.t->set_peer(2, b.t->local_address());
  a.t->send(heartbeat(1, 2, 3));
  REQUIRE(run_until(io, [&] { return b.got.size() == 1; }));
  CHECK(b.got[0] == heartbeat(1, 2, 3));
  CHECK(b.t->has_peer(1));
  b.t->send(heartbeat(2, 1, 3));
  REQUIRE(run_until(io, [&] { return a.got.size() == 1; }));
  CHECK(a.got[0] == heartbeat(2, 1, 3));
  CHECK(metrics.messages_sent.Value() == 2);
  // Unknown destination: dropped and counted, never blocks.
  a.t->send(heartbeat(1, 99, 3));
  CHECK(metrics.messages_dropped.Value() == 1);
}

TEST_CASE("transport: a full peer queue drops the oldest messages") {
  spdlog::set_level(spdlog::level::off);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  Endpoint a(io, 1, &metrics, "127.0.0.31:0");
  // Nothing listens there (a bound but not listening port would refuse; use a closed one).
  tcp::acceptor closed(io, tcp::endpoint(asio::ip::make_address("127.0.0.33"), 0));
  std::string dead = "127.0.0.33:" + std::to_string(closed.local_endpoint().port());
  closed.close();
  a.t->set_peer(2, dead);
  for (int i = 0; i < 20; ++i) {
    a.t->send(heartbeat(1, 2, static_cast<Term>(i)));  // queued synchronously, limit 8
  }
  CHECK(metrics.messages_dropped.Value() >= 12);
  a.t->stop();
  io.poll();
}

TEST_CASE("transport: malformed frames close the connection and are counted") {
  spdlog::set_level(spdlog::level::off);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  Endpoint b(io, 2, &metrics, "127.0.0.32:0");
  auto hp = routemesh::base::parse_host_port(b.t->local_address(), kPeerAddressRules);
  REQUIRE(hp);
  tcp::endpoint ep(asio::ip::make_address(hp->host), hp->port);

  auto expect_closed = [&](const Bytes& bytes, double malformed_after) {
    tcp::socket s(io);
    s.connect(ep);
    asio::write(s, asio::buffer(bytes));
    REQUIRE(run_until(io, [&] { return metrics.malformed_frames.Value() >= malformed_after; }));
    // The server closed its side: a read sees EOF (or a reset).
    std::array<char, 1> one{};
    boost::system::error_code ec;
    s.read_some(asio::buffer(one), ec);
    CHECK(ec);
  };
  expect_closed(frame(Bytes{1, 2, 3}), 1);  // not a hello
  Bytes garbage = frame(hello(7, "127.0.0.9:1"));
  Bytes bad_msg = frame(Bytes{codec::kMessageVersion, 250});  // unknown type
  garbage.insert(garbage.end(), bad_msg.begin(), bad_msg.end());
  expect_closed(garbage, 2);
  Bytes oversize = frame(hello(7, "127.0.0.9:1"));
  Bytes huge_len = {0xff, 0xff, 0xff, 0x7f};  // > 64 MiB
  oversize.insert(oversize.end(), huge_len.begin(), huge_len.end());
  expect_closed(oversize, 3);
  CHECK(b.got.empty());

  // A well-formed stream after all that is still accepted.
  tcp::socket s(io);
  s.connect(ep);
  Bytes ok = frame(hello(7, "127.0.0.9:1"));
  Bytes m = frame(codec::encode_message(heartbeat(7, 2, 1)));
  ok.insert(ok.end(), m.begin(), m.end());
  asio::write(s, asio::buffer(ok));
  REQUIRE(run_until(io, [&] { return b.got.size() == 1; }));
  CHECK(b.got[0].from == 7);  // unknown ids are delivered: the core decides
}
