#include "tls/context.h"

#include "base/http_client.h"
#include "tests/unit/support/run_until.h"
#include "tls/pki.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>

#include <ctime>
#include <optional>
#include <string>

using namespace routemesh;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr const char* kCluster = "c0ffee00c0ffee00";

std::int64_t now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

struct Pair {
  std::string cert;
  std::string key;
};

Pair issue(const tls::CertificateAuthority& ca, tls::Role role, const std::string& id) {
  auto key = tls::generate_key();
  REQUIRE(key.has_value());
  auto csr = tls::make_request(*key, id);
  REQUIRE(csr.has_value());
  auto cert = ca.issue(*csr, {{kCluster, role, id}, {"127.0.0.1"}, {}}, now(), tls::kDay);
  REQUIRE(cert.has_value());
  return {*cert, *key};
}

tls::CertificateAuthority new_ca() {
  auto ca = tls::CertificateAuthority::create(kCluster, now());
  REQUIRE(ca.has_value());
  return std::move(*ca);
}

// A one-request-per-connection TLS server that answers 200 with the client's identity URI
// ("-" without one) and records every handshake's outcome.
struct Server {
  std::optional<std::string> last_caller;
  int handshakes_failed = 0;
};

asio::awaitable<void> serve(tcp::acceptor& acceptor, tls::ContextPtr ctx, Server& out) {
  for (;;) {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *ctx);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server,
                                                asio::as_tuple(asio::use_awaitable));
    if (ec) {
      ++out.handshakes_failed;
      continue;
    }
    auto caller = tls::verified_peer(stream.native_handle());
    out.last_caller = caller ? tls::identity_uri(*caller) : "-";
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    auto [read_ec, n] =
        co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
    if (read_ec) {
      continue;
    }
    http::response<http::string_body> res{http::status::ok, 11};
    res.body() = *out.last_caller;
    res.keep_alive(false);
    res.prepare_payload();
    co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  }
}

struct Fixture {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::string address = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  Server server;

  void start(tls::ContextPtr ctx) {
    asio::co_spawn(io, serve(acceptor, ctx, server), asio::detached);
  }

  base::CallResult call(tls::ContextPtr client) {
    std::optional<base::CallResult> out;
    base::ClientRequest req;
    asio::co_spawn(
        io, base::http_call(io.get_executor(), address, req, std::chrono::seconds(5), client),
        [&](std::exception_ptr e, base::CallResult r) {
          REQUIRE_FALSE(e);
          out = std::move(r);
        });
    REQUIRE(test::run_until(
        io, [&] { return out.has_value(); }, std::chrono::seconds(10)));
    // Let the server finish its side (it records the handshake outcome).
    io.run_for(std::chrono::milliseconds(20));
    return std::move(*out);
  }
};

// `trust`, when given, is consulted at every handshake (revocations).
tls::ContextPtr server_ctx(const tls::CertificateAuthority& ca, const Pair& pair,
                           std::shared_ptr<const tls::PeerTrust> trust = nullptr) {
  auto ctx = tls::server_context({ca.certificate_pem(), pair.cert, pair.key, ""}, trust);
  REQUIRE(ctx.has_value());
  return *ctx;
}

tls::ContextPtr client_ctx(const tls::CertificateAuthority& ca, const Pair* pair) {
  auto ctx = pair == nullptr ? tls::client_context(ca.certificate_pem())
                             : tls::client_context(ca.certificate_pem(), pair->cert, pair->key);
  REQUIRE(ctx.has_value());
  return *ctx;
}

}  // namespace

TEST_CASE("a node's client certificate reaches the server as its identity") {
  auto ca = new_ca();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1")));
  auto worker = issue(ca, tls::Role::worker, "00000000000000b2");
  auto r = f.call(client_ctx(ca, &worker));
  REQUIRE(r.has_value());
  CHECK(r->body == "routemesh://c0ffee00c0ffee00/worker/00000000000000b2");
}

TEST_CASE("a client without a certificate gets through the handshake with no identity") {
  auto ca = new_ca();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1")));
  auto r = f.call(client_ctx(ca, nullptr));
  REQUIRE(r.has_value());
  CHECK(r->body == "-");
}

TEST_CASE("a client certificate from another CA fails the handshake") {
  auto ca = new_ca();
  auto other = new_ca();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1")));
  auto stranger = issue(other, tls::Role::admin, "mallory");
  // The client trusts the real CA (it verifies the server), but presents the stranger's pair.
  auto ctx = tls::client_context(ca.certificate_pem(), stranger.cert, stranger.key);
  REQUIRE(ctx.has_value());
  auto r = f.call(*ctx);
  // TLS 1.3: the client may finish its handshake before the server verified its certificate;
  // then the server's alert arrives on the first read. Either way there is no answer.
  CHECK_FALSE(r.has_value());
  CHECK(f.server.handshakes_failed == 1);
  CHECK_FALSE(f.server.last_caller.has_value());
}

TEST_CASE("a revoked client certificate fails the handshake; others still pass") {
  auto ca = new_ca();
  auto revoked = std::make_shared<tls::PeerTrust>();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1"), revoked));
  auto alice = issue(ca, tls::Role::operator_, "alice");
  auto bob = issue(ca, tls::Role::viewer, "bob");
  auto alice_serial = tls::serial_of(alice.cert);
  REQUIRE(alice_serial.has_value());

  auto before = f.call(client_ctx(ca, &alice));
  REQUIRE(before.has_value());
  CHECK(before->body == "routemesh://c0ffee00c0ffee00/operator/alice");

  revoked->set({*alice_serial});
  CHECK(revoked->size() == 1);
  auto after = f.call(client_ctx(ca, &alice));
  CHECK_FALSE(after.has_value());
  CHECK(f.server.handshakes_failed == 1);
  auto other = f.call(client_ctx(ca, &bob));
  REQUIRE(other.has_value());
  CHECK(other->body == "routemesh://c0ffee00c0ffee00/viewer/bob");
  // No certificate at all is still let through (the API answers it 401).
  auto anonymous = f.call(client_ctx(ca, nullptr));
  REQUIRE(anonymous.has_value());
  CHECK(anonymous->body == "-");

  revoked->set({});
  auto again = f.call(client_ctx(ca, &alice));
  CHECK(again.has_value());
}

TEST_CASE("a removed node's certificates fail the handshake; a user of the same name passes") {
  auto ca = new_ca();
  auto trust = std::make_shared<tls::PeerTrust>();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1"), trust));
  auto worker = issue(ca, tls::Role::worker, "00000000000000b2");
  auto renewed = issue(ca, tls::Role::worker, "00000000000000b2");  // another serial
  auto other = issue(ca, tls::Role::worker, "00000000000000c3");
  // A user certificate may carry any name, a node id's spelling too: not a node's.
  auto user = issue(ca, tls::Role::operator_, "00000000000000b2");

  REQUIRE(f.call(client_ctx(ca, &worker)).has_value());
  REQUIRE(trust->set({}, {"00000000000000b2"}));
  CHECK_FALSE(trust->set({}, {"00000000000000b2"}));  // unchanged
  CHECK(trust->size() == 1);
  CHECK_FALSE(f.call(client_ctx(ca, &worker)).has_value());
  CHECK_FALSE(f.call(client_ctx(ca, &renewed)).has_value());
  CHECK(f.server.handshakes_failed == 2);
  auto fine = f.call(client_ctx(ca, &other));
  REQUIRE(fine.has_value());
  CHECK(fine->body == "routemesh://c0ffee00c0ffee00/worker/00000000000000c3");
  auto named = f.call(client_ctx(ca, &user));
  REQUIRE(named.has_value());
  CHECK(named->body == "routemesh://c0ffee00c0ffee00/operator/00000000000000b2");
}

TEST_CASE("clients accept only a node certificate of their CA as the server") {
  auto ca = new_ca();
  auto other = new_ca();
  SECTION("a server with a user certificate") {
    Fixture f;
    f.start(server_ctx(ca, issue(ca, tls::Role::admin, "admin")));
    auto r = f.call(client_ctx(ca, nullptr));
    REQUIRE_FALSE(r.has_value());
    CHECK_FALSE(r.error().sent);
  }
  SECTION("a server of another CA") {
    Fixture f;
    f.start(server_ctx(other, issue(other, tls::Role::manager, "00000000000000a1")));
    auto r = f.call(client_ctx(ca, nullptr));
    REQUIRE_FALSE(r.has_value());
    CHECK_FALSE(r.error().sent);
    // ... which the unverified context (used only to fetch a CA to pin) does not notice.
    auto any = f.call(tls::unverified_client_context());
    CHECK(any.has_value());
  }
}

TEST_CASE("a plain HTTP client gets no answer from a TLS server") {
  auto ca = new_ca();
  Fixture f;
  f.start(server_ctx(ca, issue(ca, tls::Role::manager, "00000000000000a1")));
  auto r = f.call(nullptr);
  CHECK_FALSE(r.has_value());
  CHECK(f.server.handshakes_failed == 1);
}

TEST_CASE("contexts refuse credentials that do not load or do not pair") {
  auto ca = new_ca();
  auto a = issue(ca, tls::Role::worker, "00000000000000b2");
  auto b = issue(ca, tls::Role::worker, "00000000000000b3");
  auto mismatch = tls::server_context({ca.certificate_pem(), a.cert, b.key, ""});
  REQUIRE_FALSE(mismatch.has_value());
  CHECK(mismatch.error() == tls::errc::key_mismatch);
  auto garbage = tls::client_context("not a certificate");
  REQUIRE_FALSE(garbage.has_value());
  CHECK(garbage.error() == tls::errc::malformed_pem);
}

TEST_CASE("root rotation over real handshakes: cross certificates, then the old root retired") {
  auto old_root = new_ca();
  auto new_root = new_ca();
  auto cross_new = old_root.cross_sign(new_root.certificate_pem(), now());
  auto cross_old = new_root.cross_sign(old_root.certificate_pem(), now());
  REQUIRE(cross_new.has_value());
  REQUIRE(cross_old.has_value());
  // A server still on the old root, sending the cross certificate to the new one.
  auto server = issue(old_root, tls::Role::manager, "00000000000000a1");
  auto server_ctx = tls::server_context({old_root.certificate_pem() + new_root.certificate_pem(),
                                         server.cert + *cross_old, server.key, ""});
  REQUIRE(server_ctx.has_value());
  Fixture f;
  f.start(*server_ctx);
  // A client that knows only the new root, with a certificate of the new root.
  auto fresh = issue(new_root, tls::Role::worker, "00000000000000b2");
  auto client = tls::client_context(new_root.certificate_pem(), fresh.cert + *cross_new, fresh.key);
  REQUIRE(client.has_value());
  auto r = f.call(*client);
  REQUIRE(r.has_value());
  CHECK(r->body == "routemesh://c0ffee00c0ffee00/worker/00000000000000b2");
  // The server retires the old root: a client of the old root is refused from then on.
  auto stale = issue(old_root, tls::Role::worker, "00000000000000b3");
  auto stale_client = tls::client_context(new_root.certificate_pem(), stale.cert, stale.key);
  REQUIRE(stale_client.has_value());
  CHECK(f.call(*stale_client).has_value());
  REQUIRE(tls::replace_trusted_roots(**server_ctx, new_root.certificate_pem()));
  CHECK_FALSE(f.call(*stale_client).has_value());
  CHECK(f.call(*client).has_value());
  CHECK(tls::replace_trusted_roots(**server_ctx, "garbage").error() == tls::errc::malformed_pem);
  CHECK(f.call(*client).has_value());
}

namespace {

// One connection, both ends in this process: the server's stream, once both handshakes ended.
struct Connected {
  asio::io_context io;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> server;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> client;
  bool server_ok = false;
  bool client_ok = false;
};

void connect(Connected& c, tls::ContextPtr server_ctx, tls::ContextPtr client_ctx) {
  tcp::acceptor acceptor(c.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket s(c.io);
  s.connect(acceptor.local_endpoint());
  tcp::socket accepted = acceptor.accept();
  c.server =
      std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(accepted), *server_ctx);
  c.client = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(s), *client_ctx);
  int done = 0;
  c.server->async_handshake(asio::ssl::stream_base::server, [&](boost::system::error_code ec) {
    c.server_ok = !ec;
    ++done;
  });
  c.client->async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code ec) {
    c.client_ok = !ec;
    ++done;
  });
  REQUIRE(test::run_until(
      c.io, [&] { return done == 2; }, std::chrono::seconds(10)));
}

// Carol, an operator with a day's certificate from `old_root`, connected to a manager that
// trusts both roots and checks with `trust`.
struct CarolConnected {
  tls::CertificateAuthority old_root = new_ca();
  tls::CertificateAuthority new_root = new_ca();
  std::shared_ptr<tls::PeerTrust> trust = std::make_shared<tls::PeerTrust>();
  Pair carol;
  Connected c;
  const ssl_st* ssl = nullptr;

  CarolConnected() {
    auto node = issue(old_root, tls::Role::manager, "00000000000000a1");
    auto sctx = tls::server_context(
        {old_root.certificate_pem() + new_root.certificate_pem(), node.cert, node.key, ""}, trust);
    REQUIRE(sctx.has_value());
    carol = issue(old_root, tls::Role::operator_, "carol");
    auto cctx = tls::client_context(old_root.certificate_pem(), carol.cert, carol.key);
    REQUIRE(cctx.has_value());
    connect(c, *sctx, *cctx);
    REQUIRE(c.server_ok);
    ssl = c.server->native_handle();
  }
};

}  // namespace

TEST_CASE("a connection's client certificate is checked again: revoked, expired, retired root") {
  CarolConnected cc;
  auto& [old_root, new_root, trust, carol, c, ssl] = cc;
  CHECK_FALSE(trust->recheck(ssl, now(), true).has_value());

  // Expired: only for users (strict).
  CHECK(trust->recheck(ssl, now() + 2 * tls::kDay, true) == "expired");
  CHECK_FALSE(trust->recheck(ssl, now() + 2 * tls::kDay, false).has_value());
  // Its root retired: for users; another root retired changes nothing.
  trust->add_retired_roots({new_root.certificate_pem()});
  CHECK_FALSE(trust->recheck(ssl, now(), true).has_value());
  trust->add_retired_roots({old_root.certificate_pem(), old_root.certificate_pem()});
  CHECK(trust->recheck(ssl, now(), true) == "retired_root");
  CHECK_FALSE(trust->recheck(ssl, now(), false).has_value());
  CHECK_FALSE(trust->peer_revoked(ssl));  // nodes: revocation only
  // Revoked: for everyone.
  auto serial = tls::serial_of(carol.cert);
  REQUIRE(serial.has_value());
  trust->set({*serial});
  CHECK(trust->recheck(ssl, now(), false) == "revoked");
  CHECK(trust->recheck(ssl, now(), true) == "revoked");
  CHECK(trust->peer_revoked(ssl));
  // Removed: a node certificate naming the node; carol is a user, whatever her name.
  trust->set({}, {"carol"});
  CHECK_FALSE(trust->peer_refused(ssl).has_value());
  trust->set({}, {"00000000000000a1"});
  CHECK_FALSE(trust->peer_refused(ssl).has_value());
  CHECK_FALSE(trust->recheck(nullptr, now(), true).has_value());
  CHECK_FALSE(trust->peer_revoked(nullptr));
}

TEST_CASE("a connection's memo of a good certificate lasts until the trust changes or it expires") {
  CarolConnected cc;
  auto& [old_root, new_root, trust, carol, c, ssl] = cc;
  tls::PeerTrust::Memo memo;
  CHECK_FALSE(trust->recheck(ssl, now(), true, memo).has_value());
  CHECK(memo.generation != 0);
  CHECK(memo.good_until > now());
  CHECK(memo.good_until <= now() + tls::kDay + 60);
  // Past notAfter the memo does not hold.
  CHECK(trust->recheck(ssl, now() + 2 * tls::kDay, true, memo) == "expired");
  CHECK_FALSE(trust->recheck(ssl, now(), true, memo).has_value());
  // Each change of the trust ends it: a revocation, a retired root, a removed node.
  auto serial = tls::serial_of(carol.cert);
  REQUIRE(serial.has_value());
  trust->set({*serial});
  CHECK(trust->recheck(ssl, now(), true, memo) == "revoked");
  CHECK(trust->recheck(ssl, now(), false, memo) == "revoked");
  trust->set({});
  CHECK_FALSE(trust->recheck(ssl, now(), true, memo).has_value());
  trust->add_retired_roots({old_root.certificate_pem()});
  CHECK(trust->recheck(ssl, now(), true, memo) == "retired_root");
  // A memo of another trust never holds here, nor a lenient memo for a strict check.
  auto other = std::make_shared<tls::PeerTrust>();
  tls::PeerTrust::Memo lenient;
  CHECK_FALSE(other->recheck(ssl, now(), false, lenient).has_value());
  CHECK(trust->recheck(ssl, now(), true, lenient) == "retired_root");
  tls::PeerTrust::Memo fresh;
  CHECK_FALSE(trust->recheck(ssl, now(), false, fresh).has_value());
  CHECK(trust->recheck(ssl, now(), true, fresh) == "retired_root");
}

TEST_CASE("a revoked cross certificate ends the old root's way to the new one") {
  auto old_root = new_ca();
  auto new_root = new_ca();
  auto cross_old = new_root.cross_sign(old_root.certificate_pem(), now());
  REQUIRE(cross_old.has_value());
  // The old root retired: the server trusts the new root alone.
  auto trust = std::make_shared<tls::PeerTrust>();
  Fixture f;
  f.start(server_ctx(new_root, issue(new_root, tls::Role::manager, "00000000000000a1"), trust));
  // A certificate of the old root with the cross certificate still verifies...
  auto stale = issue(old_root, tls::Role::admin, "mallory");
  auto client = tls::client_context(new_root.certificate_pem(), stale.cert + *cross_old, stale.key);
  REQUIRE(client.has_value());
  CHECK(f.call(*client).has_value());
  // ...until the cross certificate is revoked, as retiring the old root does.
  auto serial = tls::serial_of(*cross_old);
  REQUIRE(serial.has_value());
  trust->set({*serial});
  CHECK_FALSE(f.call(*client).has_value());
  // A certificate of the new root is unaffected.
  auto fresh = issue(new_root, tls::Role::admin, "alice");
  CHECK(f.call(client_ctx(new_root, &fresh)).has_value());
}
