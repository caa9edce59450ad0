// The Raft transport over mutual TLS: certificates from a test CA, real sockets on loopback.
#include "discovery/raft/identity.h"
#include "discovery/raft/metrics.h"
#include "discovery/raft/transport.h"
#include "tests/unit/support/run_until.h"
#include "tls/context.h"
#include "tls/pki.h"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <functional>
#include <optional>
#include <string>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace routemesh;
using namespace routemesh::discovery::raft;
using namespace std::chrono_literals;

namespace {

constexpr const char* kCluster = "c0ffee00c0ffee00";

std::int64_t now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

tls::CertificateAuthority& test_ca() {
  static auto ca = [] {
    auto made = tls::CertificateAuthority::create(kCluster, now());
    REQUIRE(made.has_value());
    return std::move(*made);
  }();
  return ca;
}

// Credentials of `role` for node `cert_id` (or a user of that name).
TransportTls credentials(tls::Role role, const std::string& cert_id) {
  auto key = tls::generate_key();
  REQUIRE(key.has_value());
  auto csr = tls::make_request(*key, cert_id);
  REQUIRE(csr.has_value());
  auto cert =
      test_ca().issue(*csr, {{kCluster, role, cert_id}, {"127.0.0.1"}, {}}, now(), tls::kDay);
  REQUIRE(cert.has_value());
  tls::NodeCredentials node{test_ca().certificate_pem(), *cert, *key, ""};
  auto server = tls::server_context(node);
  REQUIRE(server.has_value());
  auto client = tls::client_context(node.ca_pem, *cert, *key);
  REQUIRE(client.has_value());
  TransportTls t;
  t.server = *server;
  t.client = *client;
  // What a node does: a verified manager certificate of this cluster speaks for its node id.
  t.authenticate = [](const ssl_st* ssl) -> std::optional<NodeId> {
    auto who = tls::verified_peer(ssl);
    if (!who || who->cluster_id != kCluster || who->role != tls::Role::manager) {
      return std::nullopt;
    }
    return parse_node_id(who->id);
  };
  return t;
}

Message heartbeat(NodeId from, NodeId to) {
  Message m;
  m.type = MessageType::heartbeat;
  m.from = from;
  m.to = to;
  m.term = 7;
  return m;
}

struct Endpoint {
  Endpoint(asio::io_context& io, NodeId self, TransportTls tls, Metrics& metrics,
           std::function<bool(NodeId)> admit = {}) {
    TransportOptions o;
    o.self = self;
    o.listen_address = "127.0.0.1:0";
    o.metrics = &metrics;
    o.tls = std::move(tls);
    o.admit = std::move(admit);
    o.backoff_min = 20ms;
    o.backoff_max = 100ms;
    auto r = make_tcp_transport(io.get_executor(), o, [this](Message m) { got.push_back(m); });
    REQUIRE(r.has_value());
    t = std::move(*r);
  }
  std::unique_ptr<Transport> t;
  std::vector<Message> got;
};

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 5s) {
  return routemesh::test::run_until(io, done, limit);
}

}  // namespace

TEST_CASE("raft transport over mutual TLS: managers of the cluster talk both ways") {
  spdlog::set_level(spdlog::level::off);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  Endpoint a(io, 1, credentials(tls::Role::manager, format_node_id(1)), metrics);
  Endpoint b(io, 2, credentials(tls::Role::manager, format_node_id(2)), metrics);
  a.t->set_peer(2, b.t->local_address());
  a.t->send(heartbeat(1, 2));
  REQUIRE(run_until(io, [&] { return b.got.size() == 1; }));
  CHECK(b.got[0] == heartbeat(1, 2));
  b.t->send(heartbeat(2, 1));  // b learned a's address from the (authenticated) hello
  REQUIRE(run_until(io, [&] { return a.got.size() == 1; }));
  CHECK(metrics.peers_refused.Value() == 0);
}

TEST_CASE("raft transport over mutual TLS: a peer that is not what it claims is refused") {
  spdlog::set_level(spdlog::level::off);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  prometheus::Registry other_reg;
  Metrics other(other_reg);  // the refusing side's count, kept apart from the sender's
  Endpoint b(io, 2, credentials(tls::Role::manager, format_node_id(2)), other,
             [](NodeId id) { return id != 5; });

  SECTION("a certificate of node 3 saying hello as node 1") {
    Endpoint a(io, 1, credentials(tls::Role::manager, format_node_id(3)), metrics);
    a.t->set_peer(2, b.t->local_address());
    a.t->send(heartbeat(1, 2));
    REQUIRE(run_until(io, [&] { return other.peers_refused.Value() >= 1; }));
  }
  SECTION("a worker certificate") {
    Endpoint a(io, 1, credentials(tls::Role::worker, format_node_id(1)), metrics);
    a.t->set_peer(2, b.t->local_address());
    a.t->send(heartbeat(1, 2));
    REQUIRE(run_until(io, [&] { return other.peers_refused.Value() >= 1; }));
  }
  SECTION("an admin (user) certificate") {
    Endpoint a(io, 1, credentials(tls::Role::admin, "root"), metrics);
    a.t->set_peer(2, b.t->local_address());
    a.t->send(heartbeat(1, 2));
    REQUIRE(run_until(io, [&] { return other.peers_refused.Value() >= 1; }));
  }
  SECTION("a manager that is not a member (admit says no)") {
    Endpoint a(io, 5, credentials(tls::Role::manager, format_node_id(5)), metrics);
    a.t->set_peer(2, b.t->local_address());
    a.t->send(heartbeat(5, 2));
    REQUIRE(run_until(io, [&] { return other.peers_refused.Value() >= 1; }));
  }
  SECTION("the dialled address answers with another node's certificate") {
    Endpoint a(io, 1, credentials(tls::Role::manager, format_node_id(1)), metrics);
    a.t->set_peer(4, b.t->local_address());  // b is node 2
    a.t->send(heartbeat(1, 4));
    REQUIRE(run_until(io, [&] { return metrics.peers_refused.Value() >= 1; }));
  }
  SECTION("plain TCP with a well-formed frame") {
    tcp::socket s(io);
    auto hp = b.t->local_address();
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                            static_cast<unsigned short>(std::stoi(hp.substr(hp.rfind(':') + 1)))));
    const std::uint8_t frame[] = {8, 0, 0, 0, 'R', 'M', 'R', 'A', 'F', 'T', '1', 0};
    asio::write(s, asio::buffer(frame));
    REQUIRE(run_until(io, [&] { return other.peers_refused.Value() >= 1; }));
  }
  // Whatever was refused delivered nothing.
  io.run_for(100ms);
  CHECK(b.got.empty());
}

TEST_CASE(
    "raft transport over mutual TLS: recheck_peers ends the connections of a peer that "
    "is not trusted any more") {
  spdlog::set_level(spdlog::level::off);
  asio::io_context io;
  prometheus::Registry reg;
  Metrics metrics(reg);
  prometheus::Registry other_reg;
  Metrics other(other_reg);
  // b stops trusting node 1 when `distrusted` is set (as a node does when 1's certificate is
  // revoked); a trusts b throughout.
  bool distrusted = false;
  TransportTls b_tls = credentials(tls::Role::manager, format_node_id(2));
  b_tls.authenticate = [plain = b_tls.authenticate, &distrusted](const ssl_st* ssl) {
    auto id = plain(ssl);
    return id && *id == 1 && distrusted ? std::nullopt : id;
  };
  Endpoint a(io, 1, credentials(tls::Role::manager, format_node_id(1)), metrics);
  Endpoint b(io, 2, b_tls, other);
  a.t->set_peer(2, b.t->local_address());
  b.t->set_peer(1, a.t->local_address());
  a.t->send(heartbeat(1, 2));
  b.t->send(heartbeat(2, 1));
  REQUIRE(run_until(io, [&] { return a.got.size() == 1 && b.got.size() == 1; }));
  CHECK(b.t->recheck_peers() == 0);  // nothing changed: nothing cut

  distrusted = true;
  // b's inbound connection from a and its outbound connection to a.
  CHECK(b.t->recheck_peers() == 2);
  CHECK(other.peers_refused.Value() == 2);
  // Neither direction carries anything from now on: a's reconnects are refused by b after
  // the handshake, and b's own reconnects to a are refused by b's check of a's certificate.
  for (int i = 0; i < 5; ++i) {
    a.t->send(heartbeat(1, 2));
    b.t->send(heartbeat(2, 1));
    io.run_for(60ms);
  }
  CHECK(b.got.size() == 1);
  CHECK(a.got.size() == 1);
  CHECK(other.peers_refused.Value() > 2);
}
