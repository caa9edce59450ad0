#include "proxy/http/rewrite.h"

#include "proxy/http/parser.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace routemesh::proxy::http;

namespace {

// Parses a request head with the real parser and returns the rewritten head.
std::string rewrite_request(const std::string& raw, const ForwardContext& ctx) {
  RequestParser p(Limits{});
  const FeedResult r = p.feed(raw.data(), raw.size());
  REQUIRE(r.event == Event::head_complete);
  std::string out = "prefix|";  // write_* append
  write_request_head(p.head(), ctx, out);
  REQUIRE(out.rfind("prefix|", 0) == 0);
  return out.substr(7);
}

std::string rewrite_response(const std::string& raw, bool close, std::string_view via,
                             bool head_request = false) {
  ResponseParser p(Limits{});
  p.expect_response(head_request);
  const FeedResult r = p.feed(raw.data(), raw.size());
  REQUIRE(r.event == Event::head_complete);
  std::string out;
  write_response_head(p.head(), close, via, out);
  return out;
}

ForwardContext ctx_with(std::string_view client_ip, std::string_view request_id = "rid-1",
                        std::string_view via = "") {
  ForwardContext ctx;
  ctx.client_ip = client_ip;
  ctx.proto = "https";
  ctx.request_id = request_id;
  ctx.via = via;
  return ctx;
}

}  // namespace

TEST_CASE("request head is rebuilt with forwarding fields", "[rewrite]") {
  const std::string out = rewrite_request(
      "GET /p?q=1 HTTP/1.1\r\nHost: app.example\r\nAccept: */*\r\n\r\n", ctx_with("10.0.0.9"));
  CHECK(out ==
        "GET /p?q=1 HTTP/1.1\r\n"
        "Host: app.example\r\n"
        "Accept: */*\r\n"
        "X-Forwarded-For: 10.0.0.9\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: app.example\r\n"
        "X-Request-Id: rid-1\r\n"
        "\r\n");
}

TEST_CASE("hop-by-hop fields and those named by Connection are removed (RFC 9110 §7.6.1)",
          "[rewrite]") {
  const std::string out = rewrite_request(
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret, x-other\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
      "Trailer: X-T\r\nUpgrade: websocket\r\nX-Secret: s\r\nX-Other: o\r\nX-Kept: k\r\n\r\n",
      ctx_with(""));
  CHECK(out ==
        "GET / HTTP/1.1\r\n"
        "Host: h\r\n"
        "X-Kept: k\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: h\r\n"
        "X-Request-Id: rid-1\r\n"
        "\r\n");
}

TEST_CASE("Connection cannot strip framing or Host fields", "[rewrite]") {
  const std::string out = rewrite_request(
      "POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, Host, Transfer-Encoding\r\n"
      "Content-Length: 3\r\n\r\n",
      ctx_with("", ""));
  CHECK(out ==
        "POST / HTTP/1.1\r\n"
        "Host: h\r\n"
        "Content-Length: 3\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: h\r\n"
        "\r\n");
}

TEST_CASE("a chunked body is announced by one canonical Transfer-Encoding field", "[rewrite]") {
  const std::string out = rewrite_request(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", ctx_with("", ""));
  CHECK(out.find("\r\nTransfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(out.find("ChUnKeD") == std::string::npos);
}

TEST_CASE("a trusted proxy's X-Forwarded-For values are merged and the client appended",
          "[rewrite]") {
  ForwardContext ctx = ctx_with("10.0.0.1");
  ctx.trusted_peer = true;
  const std::string out = rewrite_request(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nA: b\r\n"
      "x-forwarded-for: 3.3.3.3\r\nForwarded: for=1.1.1.1\r\nX-Real-IP: 1.1.1.1\r\n"
      "X-Forwarded-Port: 443\r\n\r\n",
      ctx);
  CHECK(out.find("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1\r\n") != std::string::npos);
  CHECK(out.find("x-forwarded-for") == std::string::npos);
  CHECK(out.find("3.3.3.3\r\n") == std::string::npos);
  CHECK(out.find("Forwarded: for=1.1.1.1\r\n") != std::string::npos);
  CHECK(out.find("X-Real-IP: 1.1.1.1\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Port: 443\r\n") != std::string::npos);
}

TEST_CASE("an untrusted peer's forwarding fields are replaced or dropped", "[rewrite]") {
  ForwardContext ctx = ctx_with("10.0.0.1");
  ctx.port = 8080;
  const std::string out = rewrite_request(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
      "X-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 1\r\n\r\n",
      ctx);
  CHECK(out.find("6.6.6.6") == std::string::npos);
  CHECK(out.find("X-Forwarded-For: 10.0.0.1\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Port: 8080\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Port: 1\r\n") == std::string::npos);
}

TEST_CASE("an absolute-form target goes upstream in origin-form with its authority as Host",
          "[rewrite]") {
  // RFC 9112 §3.2.2.
  std::string out =
      rewrite_request("GET http://a.test:81/x?y=1 HTTP/1.1\r\nHost: b.test\r\n\r\n", ctx_with(""));
  CHECK(out.rfind("GET /x?y=1 HTTP/1.1\r\nHost: a.test:81\r\n", 0) == 0);
  CHECK(out.find("b.test") == std::string::npos);
  CHECK(out.find("X-Forwarded-Host: a.test:81\r\n") != std::string::npos);
  out = rewrite_request("GET http://a.test HTTP/1.1\r\nHost: b.test\r\n\r\n", ctx_with(""));
  CHECK(out.rfind("GET / HTTP/1.1\r\n", 0) == 0);
  out = rewrite_request("GET http://a.test?q HTTP/1.1\r\nHost: b.test\r\n\r\n", ctx_with(""));
  CHECK(out.rfind("GET /?q HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("spoofed X-Forwarded-Proto and -Host are replaced", "[rewrite]") {
  const std::string out = rewrite_request(
      "GET / HTTP/1.1\r\nX-Forwarded-Proto: http\r\nHost: real.example\r\n"
      "X-Forwarded-Host: evil.example\r\n\r\n",
      ctx_with("10.0.0.1"));
  CHECK(out.find("evil.example") == std::string::npos);
  CHECK(out.find("X-Forwarded-Proto: http\r\n") == std::string::npos);
  CHECK(out.find("X-Forwarded-Proto: https\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Host: real.example\r\n") != std::string::npos);
}

TEST_CASE("an incoming X-Request-Id is kept, otherwise ours is added", "[rewrite]") {
  const std::string kept = rewrite_request(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: theirs\r\n\r\n", ctx_with("", "ours"));
  CHECK(kept.find("X-Request-Id: theirs\r\n") != std::string::npos);
  CHECK(kept.find("ours") == std::string::npos);
  const std::string added =
      rewrite_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", ctx_with("", "ours"));
  CHECK(added.find("X-Request-Id: ours\r\n") != std::string::npos);
}

TEST_CASE("Via is appended to the existing chain (RFC 9110 §7.6.3)", "[rewrite]") {
  const std::string out =
      rewrite_request("GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred, 1.1 p.example\r\n\r\n",
                      ctx_with("", "", "node-a"));
  CHECK(out.find("Via: 1.0 fred, 1.1 p.example, 1.1 node-a\r\n") != std::string::npos);
  CHECK(out.find("Via: 1.0 fred, 1.1 p.example\r\n") == std::string::npos);
  const std::string untouched =
      rewrite_request("GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred\r\n\r\n", ctx_with("", "", ""));
  CHECK(untouched.find("Via: 1.0 fred\r\n") != std::string::npos);
}

TEST_CASE("websocket upgrade keeps Upgrade and sends Connection: upgrade", "[rewrite]") {
  const std::string out = rewrite_request(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Key: k\r\n\r\n",
      ctx_with("", ""));
  CHECK(out ==
        "GET /ws HTTP/1.1\r\n"
        "Host: h\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Key: k\r\n"
        "Connection: upgrade\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: h\r\n"
        "\r\n");
}

TEST_CASE("HTTP/1.0 requests are forwarded as HTTP/1.1", "[rewrite]") {
  const std::string with_host = rewrite_request(
      "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", ctx_with("", "", "n1"));
  CHECK(with_host.rfind("GET / HTTP/1.1\r\nHost: h\r\n", 0) == 0);
  CHECK(with_host.find("Connection") == std::string::npos);
  CHECK(with_host.find("Via: 1.0 n1\r\n") != std::string::npos);
  const std::string no_host = rewrite_request("GET / HTTP/1.0\r\n\r\n", ctx_with("", ""));
  CHECK(no_host.find("Host: \r\n") != std::string::npos);
  CHECK(no_host.find("X-Forwarded-Host") == std::string::npos);
}

TEST_CASE("Expect: 100-continue is forwarded", "[rewrite]") {
  const std::string out = rewrite_request(
      "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
      ctx_with("", ""));
  CHECK(out.find("Expect: 100-continue\r\n") != std::string::npos);
}

TEST_CASE("response head drops hop-by-hop fields and can force close", "[rewrite]") {
  const std::string out = rewrite_response(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n"
      "X-Internal: secret\r\nContent-Length: 2\r\nUpgrade: h2\r\n\r\n",
      true, "");
  CHECK(out ==
        "HTTP/1.1 200 OK\r\n"
        "Content-Length: 2\r\n"
        "Connection: close\r\n"
        "\r\n");
}

TEST_CASE("response head keeps framing and adds Via", "[rewrite]") {
  const std::string out = rewrite_response(
      "HTTP/1.0 404 Not Found\r\nTransfer-Encoding: chunked\r\nVia: 1.1 up\r\n\r\n", false,
      "node-a");
  CHECK(out ==
        "HTTP/1.1 404 Not Found\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Via: 1.1 up, 1.0 node-a\r\n"
        "\r\n");
}

TEST_CASE("101 response keeps Upgrade and Connection: upgrade", "[rewrite]") {
  const std::string out = rewrite_response(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: a\r\n\r\n",
      true, "");
  CHECK(out ==
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Accept: a\r\n"
        "Connection: upgrade\r\n"
        "\r\n");
}

TEST_CASE("an empty upstream reason phrase is replaced by the standard one", "[rewrite]") {
  const std::string out = rewrite_response("HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n", false, "");
  CHECK(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
}

TEST_CASE("error_response has exact bytes", "[rewrite]") {
  CHECK(error_response(503, "no_healthy_endpoint", "no healthy endpoint for web", true) ==
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 28\r\n"
        "X-Routemesh-Error: no_healthy_endpoint\r\n"
        "Connection: close\r\n"
        "\r\n"
        "no healthy endpoint for web\n");
  CHECK(error_response(404, "no_route", "", false) ==
        "HTTP/1.1 404 Not Found\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 1\r\n"
        "X-Routemesh-Error: no_route\r\n"
        "\r\n"
        "\n");
}

TEST_CASE("reason phrases for the codes the proxy sends", "[rewrite]") {
  struct Case {
    unsigned status;
    std::string_view reason;
  };
  for (const Case& c : std::vector<Case>{{100, "Continue"},
                                         {101, "Switching Protocols"},
                                         {200, "OK"},
                                         {204, "No Content"},
                                         {304, "Not Modified"},
                                         {400, "Bad Request"},
                                         {404, "Not Found"},
                                         {405, "Method Not Allowed"},
                                         {408, "Request Timeout"},
                                         {413, "Content Too Large"},
                                         {414, "URI Too Long"},
                                         {431, "Request Header Fields Too Large"},
                                         {501, "Not Implemented"},
                                         {502, "Bad Gateway"},
                                         {503, "Service Unavailable"},
                                         {504, "Gateway Timeout"},
                                         {505, "HTTP Version Not Supported"}}) {
    CHECK(reason_phrase(c.status) == c.reason);
  }
}

TEST_CASE("downgrade_to_http10 sends a 1.0 client's request as 1.0 keep-alive (RFC 9112 §7.1)",
          "[rewrite]") {
  struct Row {
    std::string head;
    std::string want;
  };
  const Row rows[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
       "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"},
      {"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
      // Only the request line's version is touched.
      {"GET /HTTP/1.1 HTTP/1.1\r\nX: HTTP/1.1\r\n\r\n",
       "GET /HTTP/1.1 HTTP/1.0\r\nX: HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"},
      // Anything that is not a 1.1 request line stays as it is.
      {"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"},
      {"GET / HTTP/1.1", "GET / HTTP/1.1"},
      {"", ""},
  };
  for (const Row& r : rows) {
    std::string head = r.head;
    INFO(r.head);
    downgrade_to_http10(head);
    CHECK(head == r.want);
  }
}

TEST_CASE("a rewritten 1.0 request goes upstream as 1.0 keep-alive", "[rewrite]") {
  std::string out = rewrite_request("GET /x HTTP/1.0\r\nHost: a\r\n\r\n", ForwardContext{});
  downgrade_to_http10(out);
  CHECK(out.rfind("GET /x HTTP/1.0\r\n", 0) == 0);
  CHECK(out.size() >= 26);
  CHECK(out.substr(out.size() - 26) == "Connection: keep-alive\r\n\r\n");
}
