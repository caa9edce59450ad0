// tls::TlsSocket over real loopback sockets: handshakes in both roles, against itself and
// against asio's TLS stream, large transfers both ways at once, close_notify, and the ways a
// connection fails (a stranger's certificate, plaintext, a TCP end without close_notify).

#include "tls/socket.h"

#include "tests/unit/support/run_until.h"
#include "tls/context.h"
#include "tls/pki.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <ctime>
#include <optional>
#include <string>

using namespace routemesh;
namespace asio = boost::asio;
using asio::ip::tcp;
using error_code = boost::system::error_code;

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

// Bytes whose every position is checkable: byte i is (i * 7 + seed) mod 251.
std::string pattern(std::size_t n, int seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 7 + static_cast<std::size_t>(seed)) % 251);
  }
  return s;
}

// A connected TCP pair on 127.0.0.1.
std::pair<tcp::socket, tcp::socket> connected(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket a(io);
  a.connect(acceptor.local_endpoint());
  tcp::socket b = acceptor.accept();
  return {std::move(a), std::move(b)};
}

struct Contexts {
  tls::CertificateAuthority ca = new_ca();
  Pair server_pair = issue(ca, tls::Role::manager, "00000000000000a1");
  Pair client_pair = issue(ca, tls::Role::worker, "00000000000000b2");
  tls::ContextPtr server =
      *tls::server_context({ca.certificate_pem(), server_pair.cert, server_pair.key, ""});
  tls::ContextPtr client =
      *tls::client_context(ca.certificate_pem(), client_pair.cert, client_pair.key);
};

// Reads until `want` bytes or an error; the error (none when all arrived) and what was read.
asio::awaitable<std::pair<error_code, std::string>> read_all(tls::TlsSocket& s, std::size_t want) {
  std::string got;
  std::string buf(40000, '\0');
  while (got.size() < want) {
    auto [ec, n] = co_await s.read_some(asio::buffer(buf));
    if (ec) {
      co_return std::pair{ec, got};
    }
    got.append(buf.data(), n);
  }
  co_return std::pair{error_code{}, got};
}

}  // namespace

TEST_CASE("two TLS sockets handshake, move megabytes both ways at once and close cleanly",
          "[tls][socket]") {
  Contexts ctx;
  asio::io_context io;
  auto [a, b] = connected(io);
  // A small ring for one side: records then take many rounds of filling and flushing.
  tls::TlsSocket client(std::move(a), *ctx.client, tls::kTlsRecordRing);
  tls::TlsSocket server(std::move(b), *ctx.server, tls::kTlsBulkRing);
  const std::string up = pattern(3 << 20, 1);
  const std::string down = pattern((2 << 20) + 12345, 2);
  std::optional<error_code> client_hs, server_hs, client_end, server_end;
  std::optional<std::pair<error_code, std::string>> at_server, at_client;
  std::optional<std::string> peer;

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        server_hs = co_await server.handshake(true);
        if (*server_hs) {
          co_return;
        }
        auto who = tls::verified_peer(server.native_handle());
        peer = who ? tls::identity_uri(*who) : "-";
        // Write `down` while reading `up`: both directions at once on one connection.
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              const error_code ec = co_await server.write(asio::buffer(down));
              REQUIRE_FALSE(ec);
            },
            asio::detached);
        at_server = co_await read_all(server, up.size());
        // Then the client's close_notify reads as the end.
        char scratch[16];
        auto [eof, n] = co_await server.read_some(asio::buffer(scratch));
        server_end = eof;
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        client_hs = co_await client.handshake(false);
        if (*client_hs) {
          co_return;
        }
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> { at_client = co_await read_all(client, down.size()); },
            asio::detached);
        const error_code ec = co_await client.write(asio::buffer(up));
        REQUIRE_FALSE(ec);
        while (!at_client) {  // the server's bytes first, then close_notify both ways
          asio::steady_timer t(io, std::chrono::milliseconds(1));
          co_await t.async_wait(asio::use_awaitable);
        }
        client_end = co_await client.shutdown();
      },
      asio::detached);
  // The server answers the client's close_notify with its own once it has read everything.
  REQUIRE(test::run_until(
      io, [&] { return server_end.has_value(); }, std::chrono::seconds(20)));
  std::optional<error_code> server_close;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { server_close = co_await server.shutdown(); },
      asio::detached);
  REQUIRE(test::run_until(
      io, [&] { return client_end && server_close; }, std::chrono::seconds(10)));
  CHECK_FALSE(*client_hs);
  CHECK_FALSE(*server_hs);
  CHECK(peer == "routemesh://c0ffee00c0ffee00/worker/00000000000000b2");
  REQUIRE(at_server);
  CHECK_FALSE(at_server->first);
  CHECK(at_server->second == up);
  REQUIRE(at_client);
  CHECK_FALSE(at_client->first);
  CHECK(at_client->second == down);
  CHECK(*server_end == asio::error::eof);
  CHECK_FALSE(*client_end);
  CHECK_FALSE(*server_close);
}

TEST_CASE("a TLS socket talks to asio's TLS stream in both roles", "[tls][socket]") {
  Contexts ctx;
  for (bool ours_is_server : {true, false}) {
    INFO("ours is the " << (ours_is_server ? "server" : "client"));
    asio::io_context io;
    auto [a, b] = connected(io);
    tls::TlsSocket ours(std::move(a), ours_is_server ? *ctx.server : *ctx.client,
                        tls::kTlsRecordRing);
    asio::ssl::stream<tcp::socket> theirs(std::move(b), ours_is_server ? *ctx.client : *ctx.server);
    const std::string hello = pattern(100000, 3);
    std::optional<std::pair<error_code, std::string>> got;
    std::optional<error_code> ours_hs, theirs_end;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          ours_hs = co_await ours.handshake(ours_is_server);
          if (!*ours_hs) {
            got = co_await read_all(ours, hello.size());
            static const std::string bye = "bye";
            const error_code wec = co_await ours.write(asio::buffer(bye));
            CHECK_FALSE(wec);
          }
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          const auto tuple = asio::as_tuple(asio::use_awaitable);
          auto [hec] = co_await theirs.async_handshake(
              ours_is_server ? asio::ssl::stream_base::client : asio::ssl::stream_base::server,
              tuple);
          REQUIRE_FALSE(hec);
          auto [wec, wn] = co_await asio::async_write(theirs, asio::buffer(hello), tuple);
          REQUIRE_FALSE(wec);
          std::string bye(3, '\0');
          auto [rec, rn] = co_await asio::async_read(theirs, asio::buffer(bye), tuple);
          CHECK_FALSE(rec);
          CHECK(bye == "bye");
          auto [sec] = co_await theirs.async_shutdown(tuple);
          theirs_end = sec;
        },
        asio::detached);
    // asio's shutdown waits for our close_notify: read to the end, then send ours.
    std::optional<error_code> ours_end;
    REQUIRE(test::run_until(
        io, [&] { return got.has_value(); }, std::chrono::seconds(10)));
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          char scratch[16];
          auto [eof, n] = co_await ours.read_some(asio::buffer(scratch));
          CHECK(eof == asio::error::eof);
          ours_end = co_await ours.shutdown();
        },
        asio::detached);
    REQUIRE(test::run_until(
        io, [&] { return ours_end && theirs_end; }, std::chrono::seconds(10)));
    CHECK_FALSE(*ours_hs);
    CHECK_FALSE(got->first);
    CHECK(got->second == hello);
    CHECK_FALSE(*ours_end);
    CHECK_FALSE(*theirs_end);
  }
}

TEST_CASE("a TLS socket's handshake fails, without hanging, on a stranger or on plaintext",
          "[tls][socket]") {
  Contexts ctx;
  auto other = new_ca();
  auto stranger = issue(other, tls::Role::worker, "00000000000000c3");
  auto stranger_ctx = *tls::client_context(ctx.ca.certificate_pem(), stranger.cert, stranger.key);
  {
    asio::io_context io;
    auto [a, b] = connected(io);
    tls::TlsSocket client(std::move(a), *stranger_ctx, tls::kTlsRecordRing);
    tls::TlsSocket server(std::move(b), *ctx.server, tls::kTlsRecordRing);
    std::optional<error_code> server_hs, client_read;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { server_hs = co_await server.handshake(true); },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          // TLS 1.3: the client may finish before the server has checked its certificate; the
          // server's alert then arrives on the first read.
          if (const error_code hs = co_await client.handshake(false); hs) {
            client_read = hs;
            co_return;
          }
          char scratch[16];
          auto [ec, n] = co_await client.read_some(asio::buffer(scratch));
          client_read = ec;
        },
        asio::detached);
    REQUIRE(test::run_until(
        io, [&] { return server_hs && client_read; }, std::chrono::seconds(10)));
    CHECK(*server_hs);
    CHECK(*client_read);
    CHECK(server_hs->category() == asio::error::get_ssl_category());
  }
  {
    asio::io_context io;
    auto [a, b] = connected(io);
    tls::TlsSocket server(std::move(b), *ctx.server, tls::kTlsRecordRing);
    std::optional<error_code> server_hs;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { server_hs = co_await server.handshake(true); },
        asio::detached);
    asio::write(a, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
    REQUIRE(test::run_until(
        io, [&] { return server_hs.has_value(); }, std::chrono::seconds(10)));
    CHECK(*server_hs);
    // Whatever the server sent (an alert, or nothing for a request that is not TLS at all), the
    // plaintext client sees no HTTP answer, only the end once the owner closes the socket.
    error_code ignored;
    server.next_layer().close(ignored);
    std::string rest(64, '\0');
    error_code ec;
    const std::size_t n = a.read_some(asio::buffer(rest), ec);
    CHECK((ec || (n > 0 && rest[0] == '\x15')));  // 0x15: a TLS alert record
  }
}

TEST_CASE("a TCP end without close_notify reads as a truncated stream", "[tls][socket]") {
  Contexts ctx;
  asio::io_context io;
  auto [a, b] = connected(io);
  auto client = std::make_unique<tls::TlsSocket>(std::move(a), *ctx.client, tls::kTlsRecordRing);
  tls::TlsSocket server(std::move(b), *ctx.server, tls::kTlsRecordRing);
  std::optional<error_code> client_hs, server_hs;
  std::optional<std::pair<error_code, std::string>> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        server_hs = co_await server.handshake(true);
        got = co_await read_all(server, 1 << 20);
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        client_hs = co_await client->handshake(false);
        static const std::string partial = "partial";
        const error_code ec = co_await client->write(asio::buffer(partial));
        CHECK_FALSE(ec);
        error_code ignored;
        // A TCP FIN and no close_notify. (A close would be a reset here: the client has not
        // read the server's session tickets.)
        client->next_layer().shutdown(tcp::socket::shutdown_send, ignored);
      },
      asio::detached);
  REQUIRE(test::run_until(
      io, [&] { return got.has_value(); }, std::chrono::seconds(10)));
  CHECK_FALSE(*client_hs);
  CHECK_FALSE(*server_hs);
  CHECK(got->first == asio::ssl::error::stream_truncated);
  CHECK(got->second == "partial");
}

TEST_CASE("a TLS socket updates its keys mid-stream and the peer reads on", "[tls][socket]") {
  Contexts ctx;
  asio::io_context io;
  auto [a, b] = connected(io);
  tls::TlsSocket client(std::move(a), *ctx.client, tls::kTlsBulkRing);
  tls::TlsSocket server(std::move(b), *ctx.server, tls::kTlsBulkRing);
  const std::string first = pattern(300000, 4);
  const std::string second = pattern(200000, 5);
  std::optional<std::pair<error_code, std::string>> got, echoed;
  std::optional<bool> updated;
  std::uint64_t written_before = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const error_code hs = co_await server.handshake(true);
        REQUIRE_FALSE(hs);
        got = co_await read_all(server, first.size() + second.size());
        // The client asked us to update ours too: our answer goes out under new keys.
        const error_code wec = co_await server.write(asio::buffer(second));
        CHECK_FALSE(wec);
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const error_code hs = co_await client.handshake(false);
        REQUIRE_FALSE(hs);
        error_code ec = co_await client.write(asio::buffer(first));
        CHECK_FALSE(ec);
        written_before = client.written_since_update();
        updated = client.update_keys();
        ec = co_await client.write(asio::buffer(second));
        CHECK_FALSE(ec);
        echoed = co_await read_all(client, second.size());
      },
      asio::detached);
  REQUIRE(test::run_until(
      io, [&] { return echoed.has_value(); }, std::chrono::seconds(10)));
  CHECK(written_before == first.size());
  CHECK(*updated);
  CHECK(client.written_since_update() == second.size());
  REQUIRE(got);
  CHECK_FALSE(got->first);
  CHECK(got->second == first + second);
  CHECK_FALSE(echoed->first);
  CHECK(echoed->second == second);
}
