#include "proxy/http/parser.h"

#include <llhttp.h>
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using namespace routemesh::proxy::http;
using namespace std::string_literals;

namespace {

std::string body_name(BodyKind k) {
  switch (k) {
    case BodyKind::none:
      return "none";
    case BodyKind::content_length:
      return "cl";
    case BodyKind::chunked:
      return "chunked";
    case BodyKind::until_close:
      return "close";
  }
  return "?";
}

std::string summary(const RequestHead& h) {
  std::string s = std::string(h.method) + " " + std::string(h.target) + " " +
                  std::to_string(h.version_major) + "." + std::to_string(h.version_minor) +
                  " host=" + std::string(h.host) + " body=" + body_name(h.body) +
                  " cl=" + std::to_string(h.content_length) +
                  " ka=" + std::to_string(h.keep_alive) + " up=" + std::to_string(h.upgrade);
  for (const Header& hd : h.headers) {
    s += " [" + std::string(hd.name) + "=" + std::string(hd.value) + "]";
  }
  return s;
}

std::string summary(const ResponseHead& h) {
  std::string s = std::to_string(h.status) + " " + std::string(h.reason) +
                  " body=" + body_name(h.body) + " cl=" + std::to_string(h.content_length) +
                  " ka=" + std::to_string(h.keep_alive) + " up=" + std::to_string(h.upgrade);
  for (const Header& hd : h.headers) {
    s += " [" + std::string(hd.name) + "=" + std::string(hd.value) + "]";
  }
  return s;
}

struct Transcript {
  std::vector<std::string> events;  // "head <summary> @offset", "complete @offset", ...
  bool failed = false;
  ParseError error;
  std::size_t stopped_at = 0;  // absolute offset where the driver stopped (tunnel / error / end)
};

bool tunnels(const RequestParser& p) {
  return p.head().upgrade || p.head().is_connect;
}
bool tunnels(const ResponseParser& p) {
  return p.head().upgrade;
}

// Drives a parser the way the proxy session does: feeds `input` in pieces of `chunk` bytes,
// re-feeds the unconsumed rest after each event, calls next_message() after each message and
// stops at an upgrade/CONNECT (the rest would be tunnelled) or an error.
template <typename Parser>
Transcript drive(Parser& p, std::string_view input, std::size_t chunk) {
  Transcript t;
  std::size_t pos = 0;
  while (pos < input.size() || input.empty()) {
    const std::size_t end = std::min(input.size(), pos + chunk);
    while (true) {
      const FeedResult r = p.feed(input.data() + pos, end - pos);
      REQUIRE(r.consumed <= end - pos);
      pos += r.consumed;
      if (r.event == Event::need_more) {
        REQUIRE(pos == end);
        break;
      }
      if (r.event == Event::error) {
        t.failed = true;
        t.error = p.error();
        t.stopped_at = pos;
        return t;
      }
      if (r.event == Event::head_complete) {
        t.events.push_back("head " + summary(p.head()) + " @" + std::to_string(pos));
        continue;
      }
      t.events.push_back("complete @" + std::to_string(pos));
      if (tunnels(p)) {
        t.stopped_at = pos;
        return t;
      }
      p.next_message();
    }
    if (input.empty()) {
      break;
    }
  }
  t.stopped_at = pos;
  return t;
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

Transcript drive_request(std::string_view input, std::size_t chunk = 1u << 20,
                         const Limits& limits = Limits{}) {
  RequestParser p(limits);
  return drive(p, input, chunk);
}

}  // namespace

TEST_CASE("simple GET yields head then message at exact offsets", "[parser]") {
  const std::string req = "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n";
  RequestParser p(Limits{});
  FeedResult r = p.feed(req.data(), req.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(r.consumed == req.size());
  const RequestHead& h = p.head();
  CHECK(h.method == "GET");
  CHECK(h.target == "/a?b=c");
  CHECK(h.version_major == 1);
  CHECK(h.version_minor == 1);
  CHECK(h.host == "example.com");
  CHECK(h.body == BodyKind::none);
  CHECK(h.keep_alive);
  CHECK_FALSE(h.upgrade);
  CHECK_FALSE(h.expect_continue);
  CHECK_FALSE(h.is_head);
  CHECK_FALSE(h.is_connect);
  CHECK(h.idempotent);
  REQUIRE(h.headers.size() == 2);
  CHECK(h.headers[0].name == "Host");
  CHECK(h.headers[1].name == "User-Agent");
  CHECK(h.headers[1].value == "x");
  r = p.feed(req.data() + req.size(), 0);
  CHECK(r.event == Event::message_complete);
  CHECK(r.consumed == 0);
}

TEST_CASE("header values lose surrounding whitespace and keep case and order", "[parser]") {
  const std::string req =
      "GET / HTTP/1.1\r\nHost:   a.example \t\r\nX-Mixed-Case:  v  w \r\nEmpty:\r\n\r\n";
  RequestParser p(Limits{});
  REQUIRE(p.feed(req.data(), req.size()).event == Event::head_complete);
  REQUIRE(p.head().headers.size() == 3);
  CHECK(p.head().host == "a.example");
  CHECK(p.head().headers[1].name == "X-Mixed-Case");
  CHECK(p.head().headers[1].value == "v  w");
  CHECK(p.head().headers[2].value.empty());
}

TEST_CASE("POST body split across feeds reports exact consumed counts", "[parser]") {
  const std::string head = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
  const std::string first = head + "01234";
  RequestParser p(Limits{});
  FeedResult r = p.feed(first.data(), first.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(r.consumed == head.size());
  CHECK(p.head().body == BodyKind::content_length);
  CHECK(p.head().content_length == 10);
  CHECK_FALSE(p.head().idempotent);
  r = p.feed(first.data() + head.size(), 5);
  CHECK(r.event == Event::need_more);
  CHECK(r.consumed == 5);
  const std::string second = "56789GET";
  r = p.feed(second.data(), second.size());
  CHECK(r.event == Event::message_complete);
  CHECK(r.consumed == 5);
  CHECK(p.body_bytes() == 10);
}

TEST_CASE("chunked body with extensions and trailers is consumed verbatim", "[parser]") {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
  const std::string body =
      "5;flag;name=\"quoted value\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
  const std::string next = "GET / HTTP/1.1\r\n";
  const std::string all = head + body + next;
  RequestParser p(Limits{});
  FeedResult r = p.feed(all.data(), all.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(r.consumed == head.size());
  CHECK(p.head().body == BodyKind::chunked);
  r = p.feed(all.data() + head.size(), all.size() - head.size());
  REQUIRE(r.event == Event::message_complete);
  CHECK(r.consumed == body.size());
  CHECK(p.body_bytes() == 11);
  CHECK(p.head().headers.size() == 2);  // the trailer is not a head field
  CHECK(p.head().headers[1].value == "Chunked");
}

TEST_CASE("three pipelined requests in one buffer split at exact offsets", "[parser]") {
  const std::string a = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string b_head = "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
  const std::string b = b_head + "abc";
  const std::string c = "DELETE /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const std::string all = a + b + c;
  const Transcript t = drive_request(all);
  REQUIRE_FALSE(t.failed);
  REQUIRE(t.events.size() == 6);
  CHECK(t.events[0].find("GET /1") != std::string::npos);
  CHECK(t.events[0].substr(t.events[0].rfind('@')) == "@" + std::to_string(a.size()));
  CHECK(t.events[1] == "complete @" + std::to_string(a.size()));
  CHECK(t.events[2].substr(t.events[2].rfind('@')) ==
        "@" + std::to_string(a.size() + b_head.size()));
  CHECK(t.events[3] == "complete @" + std::to_string(a.size() + b.size()));
  CHECK(t.events[4].find("DELETE /3") != std::string::npos);
  CHECK(t.events[4].find("ka=0") != std::string::npos);
  CHECK(t.events[5] == "complete @" + std::to_string(all.size()));
}

TEST_CASE("byte-at-a-time feeding gives the same transcript as one feed", "[parser]") {
  const std::vector<std::string> inputs = {
      "GET /1 HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\n"
      "Content-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
      "\r\n3;e=1\r\nxyz\r\n0\r\nT: v\r\n\r\nGET /4 HTTP/1.0\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
  };
  for (const std::string& in : inputs) {
    const Transcript whole = drive_request(in);
    for (std::size_t chunk : {1u, 2u, 7u}) {
      const Transcript pieces = drive_request(in, chunk);
      CHECK(pieces.events == whole.events);
      CHECK(pieces.stopped_at == whole.stopped_at);
      CHECK(pieces.failed == whole.failed);
    }
  }
}

TEST_CASE("websocket upgrade completes after the head and leaves the tunnel bytes", "[parser]") {
  const std::string head =
      "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
      "Sec-WebSocket-Key: k\r\n\r\n";
  const std::string all = head + "\x81\x05hello";
  RequestParser p(Limits{});
  FeedResult r = p.feed(all.data(), all.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(r.consumed == head.size());
  CHECK(p.head().upgrade);
  r = p.feed(all.data() + head.size(), all.size() - head.size());
  CHECK(r.event == Event::message_complete);
  CHECK(r.consumed == 0);
}

TEST_CASE("h2c upgrade and HTTP/1.0 upgrade are not tunnelled", "[parser]") {
  for (const std::string& req :
       {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "HTTP2-Settings: x\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n"s,
        "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"s}) {
    const Transcript t = drive_request(req);
    REQUIRE_FALSE(t.failed);
    REQUIRE(t.events.size() == 4);  // the second request is parsed, not tunnelled
    CHECK(t.events[0].find("up=0") != std::string::npos);
    CHECK(t.events[2].find("GET /next") != std::string::npos);
  }
}

TEST_CASE("CONNECT is reported and the message ends after the head", "[parser]") {
  const std::string head = "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n";
  const Transcript t = drive_request(head + "raw bytes");
  REQUIRE_FALSE(t.failed);
  REQUIRE(t.events.size() == 2);
  CHECK(t.stopped_at == head.size());
  RequestParser p(Limits{});
  REQUIRE(p.feed(head.data(), head.size()).event == Event::head_complete);
  CHECK(p.head().is_connect);
  CHECK_FALSE(p.head().upgrade);
  CHECK(p.head().target == "db:5432");
}

TEST_CASE("Expect: 100-continue is flagged for HTTP/1.1 only", "[parser]") {
  struct Case {
    std::string req;
    bool expect;
  };
  const std::vector<Case> cases = {
      {"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", true},
      {"PUT / HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 1\r\n\r\n", false},
      {"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    RequestParser p(Limits{});
    REQUIRE(p.feed(c.req.data(), c.req.size()).event == Event::head_complete);
    CHECK(p.head().expect_continue == c.expect);
  }
}

TEST_CASE("keep-alive follows version defaults and Connection (RFC 9112 §9.3)", "[parser]") {
  struct Case {
    std::string req;
    bool keep_alive;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
  };
  for (const Case& c : cases) {
    RequestParser p(Limits{});
    REQUIRE(p.feed(c.req.data(), c.req.size()).event == Event::head_complete);
    CHECK(p.head().keep_alive == c.keep_alive);
  }
}

TEST_CASE("methods set is_head and idempotent", "[parser]") {
  struct Case {
    std::string method;
    bool idempotent;
  };
  for (const Case& c : std::vector<Case>{{"GET", true},
                                         {"HEAD", true},
                                         {"OPTIONS", true},
                                         {"PUT", true},
                                         {"DELETE", true},
                                         {"TRACE", true},
                                         {"POST", false},
                                         {"PATCH", false}}) {
    const std::string req = c.method + " / HTTP/1.1\r\nHost: h\r\n\r\n";
    RequestParser p(Limits{});
    REQUIRE(p.feed(req.data(), req.size()).event == Event::head_complete);
    CHECK(p.head().method == c.method);
    CHECK(p.head().idempotent == c.idempotent);
    CHECK(p.head().is_head == (c.method == "HEAD"));
  }
}

TEST_CASE("next_message reuses the header storage", "[parser]") {
  const std::string req = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
  RequestParser p(Limits{});
  REQUIRE(p.feed(req.data(), req.size()).event == Event::head_complete);
  REQUIRE(p.feed(req.data(), 0).event == Event::message_complete);
  const Header* first = p.head().headers.data();
  p.next_message();
  REQUIRE(p.feed(req.data(), req.size()).event == Event::head_complete);
  CHECK(p.head().headers.data() == first);
  CHECK(p.head().headers[2].value == "2");
}

TEST_CASE("an error is sticky until the parser is dropped", "[parser]") {
  const std::string bad = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
  const std::string good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestParser p(Limits{});
  CHECK(p.feed(bad.data(), bad.size()).event == Event::error);
  CHECK(p.feed(good.data(), good.size()).event == Event::error);
  CHECK(p.error().status == 400);
  CHECK_FALSE(p.error().reason.empty());
}

TEST_CASE("a missing Host is fine for HTTP/1.0", "[parser]") {
  const Transcript t = drive_request("GET / HTTP/1.0\r\n\r\n");
  REQUIRE_FALSE(t.failed);
  CHECK(t.events.size() == 2);
}

TEST_CASE("leading empty lines before the request line are ignored (RFC 9112 §2.2)", "[parser]") {
  const Transcript t = drive_request("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE_FALSE(t.failed);
  CHECK(t.events.size() == 2);
}

TEST_CASE("a head at exactly the size limit is accepted", "[parser]") {
  Limits limits;
  limits.max_header_bytes = 64;
  std::string req = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  req += std::string(64 - req.size() - 4, 'a') + "\r\n\r\n";
  REQUIRE(req.size() == 64);
  CHECK_FALSE(drive_request(req, 1u << 20, limits).failed);
  CHECK_FALSE(drive_request(req, 1, limits).failed);
  req.insert(req.size() - 4, "a");
  CHECK(drive_request(req, 1u << 20, limits).error.status == 431);
  CHECK(drive_request(req, 1, limits).error.status == 431);
}

// RFC 9112 §6.1, §6.3, §11.2 and RFC 9110 §5.5: each of these is rejected, whole or fed
// byte by byte, with the given status.
TEST_CASE("request smuggling vectors are rejected", "[parser][smuggling]") {
  struct Vector {
    std::string name;
    std::string input;
    unsigned status;
  };
  const std::string post = "POST / HTTP/1.1\r\nHost: h\r\n";
  const std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n";
  std::string many_headers = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 100; ++i) {
    many_headers += "X-" + std::to_string(i) + ": v\r\n";
  }
  many_headers += "\r\n";
  const std::vector<Vector> vectors = {
      {"CL with TE", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      {"TE with CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
       400},
      {"CL twice same", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
      {"CL twice different", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
      {"CL list", post + "Content-Length: 5, 5\r\n\r\nhello", 400},
      {"CL sign", post + "Content-Length: +5\r\n\r\nhello", 400},
      {"CL inner space", post + "Content-Length:  5 5\r\n\r\nhello", 400},
      {"CL hex", post + "Content-Length: 0x10\r\n\r\n", 400},
      {"CL 20 digits", post + "Content-Length: 10000000000000000000\r\n\r\n", 400},
      {"CL empty", post + "Content-Length: \r\n\r\n", 400},
      {"TE chunked then identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n", 400},
      {"TE identity", post + "Transfer-Encoding: identity\r\n\r\n", 501},
      {"TE gzip alone", post + "Transfer-Encoding: gzip\r\n\r\n", 501},
      {"TE chunked twice in one field", post + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"TE chunked in two fields",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE chunked then gzip in two fields",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"bad chunk size", chunked + "zz\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size overflow", chunked + "ffffffffffffffffff\r\n", 400},
      {"chunk size with space", chunked + "5 \r\nhello\r\n0\r\n\r\n", 400},
      {"bare LF after chunk data", chunked + "5\r\nhello\n0\r\n\r\n", 400},
      {"chunk data not followed by CRLF",
       chunked + "5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bare LF ends chunked body", chunked + "0\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bare CR ends chunked body", chunked + "0\r\n\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bare LF ends trailers", chunked + "0\r\nT: v\r\n\nGET / HTTP/1.1\r\n\r\n", 400},
      {"obs-fold in trailers", chunked + "0\r\nT: a\r\n b\r\n\r\n", 400},
      {"obs-fold with tab in trailers", chunked + "0\r\nT: a\r\n\tb\r\n\r\n", 400},
      {"bare CR in a trailer value", chunked + "0\r\nT: a\rb\r\n\r\n", 400},
      {"CTL in a trailer value", chunked + "0\r\nT: a\x01z\r\n\r\n", 400},
      {"space before colon in trailers", chunked + "0\r\nT : v\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
      {"obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400},
      {"line starts with whitespace", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
      {"bare LF after request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400},
      {"bare LF after header", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
      {"bare LF ends head", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400},
      {"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
      {"bare CR ends head", "GET / HTTP/1.1\r\nHost: h\r\n\rX", 400},
      {"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"s, 400},
      {"DEL in value",
       "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f"
       "b\r\n\r\n",
       400},
      {"CTL in value",
       "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
       "b\r\n\r\n",
       400},
      {"non-token header name", "GET / HTTP/1.1\r\nHost: h\r\nHo(st: x\r\n\r\n", 400},
      {"empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400},
      {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
      {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
      {"HTTP/0.9 request line", "GET /x\r\nHost: h\r\n\r\n", 400},
      {"no space before version", "GET /xHTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"RTSP protocol", "GET / RTSP/1.0\r\nHost: h\r\n\r\n", 400},
      {"space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
      {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505},
      {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
      {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505},
      {"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"URI too long", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n", 414},
      {"too many headers", many_headers, 431},
      {"head too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(17000, 'v') + "\r\n\r\n",
       431},
      {"endless head", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(40000, 'v'), 431},
      {"endless empty lines", repeat("\r\n", 10000) + "GET", 431},
      {"bare CRs before request line", std::string(100, '\r') + "GET", 400},
      {"invalid method", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
  };
  for (const Vector& v : vectors) {
    for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{1}, std::size_t{3}}) {
      INFO(v.name << " chunk=" << chunk);
      const Transcript t = drive_request(v.input, chunk);
      CHECK(t.failed);
      CHECK(t.error.status == v.status);
      CHECK_FALSE(t.error.reason.empty());
    }
  }
}

TEST_CASE("a valid CL: 0 request and a chunked request are accepted", "[parser]") {
  CHECK_FALSE(drive_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").failed);
  const Transcript t =
      drive_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n");
  REQUIRE_FALSE(t.failed);
  CHECK(t.events[0].find("body=chunked") != std::string::npos);
}

TEST_CASE("a request's Transfer-Encoding must be exactly one chunked (else 501)", "[parser]") {
  // RFC 9112 §6.1: a coding we do not implement is 501; a list, a second field or an empty
  // element would let the next hop frame the body differently.
  for (const char* te : {"gzip, chunked", "gzip\r\nTransfer-Encoding: chunked", ",chunked",
                         "identity", "gzip", "x-chunked"}) {
    INFO(te);
    const Transcript t =
        drive_request(std::string("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ") + te +
                      "\r\n\r\n0\r\n\r\n");
    CHECK(t.failed);
    CHECK(t.error.status == 501);
  }
  // chunked applied twice or a trailing empty element: llhttp already rejects the framing.
  for (const char* te : {"chunked\r\nTransfer-Encoding: chunked", "chunked,", "chunked, chunked"}) {
    INFO(te);
    const Transcript t =
        drive_request(std::string("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ") + te +
                      "\r\n\r\n0\r\n\r\n");
    CHECK(t.failed);
    CHECK((t.error.status == 400 || t.error.status == 501));
  }
}

TEST_CASE("Host and an absolute-form authority must be host[:port] (RFC 9112 section 3.2)",
          "[parser]") {
  for (const char* host :
       {"a.test:@evil.example", "user@a.test", "a.test/x", "a.test:abc", "a.test:", "a.test:99999",
        "a.test?x", "a test", ":80", "[::1", "[zz]:80", "a.test:80:80"}) {
    INFO(host);
    const Transcript t = drive_request(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n");
    CHECK(t.failed);
    CHECK(t.error.status == 400);
  }
  for (const char* host :
       {"a.test", "a.test:8080", "A-B.c_d.test", "127.0.0.1:1", "[::1]:80", "[::1]", ""}) {
    INFO(host);
    CHECK_FALSE(drive_request(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n").failed);
  }
  CHECK(drive_request("GET http://u@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n").error.status == 400);
  CHECK(drive_request("GET http:///x HTTP/1.1\r\nHost: a.test\r\n\r\n").failed);
  CHECK_FALSE(drive_request("GET http://a.test:81/x?y HTTP/1.1\r\nHost: b\r\n\r\n").failed);
  CHECK_FALSE(drive_request("OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n").failed);
}

// ---- responses ----

namespace {

Transcript drive_response(std::string_view input, bool head_request = false,
                          std::size_t chunk = 1u << 20) {
  ResponseParser p(Limits{});
  p.expect_response(head_request);
  return drive(p, input, chunk);
}

}  // namespace

TEST_CASE("response with Content-Length", "[parser][response]") {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\n";
  const std::string all = head + "helloHTTP/1.1";
  ResponseParser p(Limits{});
  p.expect_response(false);
  FeedResult r = p.feed(all.data(), all.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(r.consumed == head.size());
  CHECK(p.head().status == 200);
  CHECK(p.head().reason == "OK");
  CHECK(p.head().body == BodyKind::content_length);
  CHECK(p.head().content_length == 5);
  CHECK(p.head().keep_alive);
  r = p.feed(all.data() + head.size(), all.size() - head.size());
  CHECK(r.event == Event::message_complete);
  CHECK(r.consumed == 5);
}

TEST_CASE("chunked response", "[parser][response]") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string body = "4\r\nwiki\r\n0\r\n\r\n";
  for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{1}}) {
    const Transcript t = drive_response(head + body, false, chunk);
    REQUIRE_FALSE(t.failed);
    REQUIRE(t.events.size() == 2);
    CHECK(t.events[0].find("body=chunked") != std::string::npos);
    CHECK(t.events[1] == "complete @" + std::to_string(head.size() + body.size()));
  }
}

TEST_CASE("response without framing reads until close and finish() ends it", "[parser][response]") {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
  ResponseParser p(Limits{});
  p.expect_response(false);
  FeedResult r = p.feed(head.data(), head.size());
  REQUIRE(r.event == Event::head_complete);
  CHECK(p.head().body == BodyKind::until_close);
  CHECK_FALSE(p.head().keep_alive);
  const std::string body = "some bytes";
  r = p.feed(body.data(), body.size());
  CHECK(r.event == Event::need_more);
  CHECK(r.consumed == body.size());
  r = p.finish();
  CHECK(r.event == Event::message_complete);
}

TEST_CASE("finish() right after an until-close head completes an empty body",
          "[parser][response]") {
  const std::string head = "HTTP/1.0 200 OK\r\n\r\n";
  ResponseParser p(Limits{});
  p.expect_response(false);
  REQUIRE(p.feed(head.data(), head.size()).event == Event::head_complete);
  CHECK(p.finish().event == Event::message_complete);
}

TEST_CASE("finish() inside a Content-Length body is an error", "[parser][response]") {
  const std::string part = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
  ResponseParser p(Limits{});
  p.expect_response(false);
  REQUIRE(p.feed(part.data(), part.size()).event == Event::head_complete);
  REQUIRE(p.feed(part.data() + part.size() - 3, 3).event == Event::need_more);
  CHECK(p.finish().event == Event::error);
  CHECK(p.error().status == 502);
}

TEST_CASE("bodiless responses end with the head (RFC 9112 §6.3 rule 1)", "[parser][response]") {
  struct Case {
    std::string name;
    std::string head;
    bool head_request;
  };
  // The follow-up response is bodiless whatever the request was, so the same
  // expect_response() setting is right for both messages.
  const std::vector<Case> cases = {
      {"HEAD with CL", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true},
      {"HEAD with chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true},
      {"204", "HTTP/1.1 204 No Content\r\n\r\n", false},
      {"204 with CL", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false},
      {"304 with CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const std::string next = "HTTP/1.1 304 Not Modified\r\n\r\n";
    const Transcript t = drive_response(c.head + next, c.head_request);
    REQUIRE_FALSE(t.failed);
    REQUIRE(t.events.size() == 4);
    CHECK(t.events[0].find("body=none") != std::string::npos);
    CHECK(t.events[1] == "complete @" + std::to_string(c.head.size()));
  }
}

TEST_CASE("100 Continue is its own message before the final response", "[parser][response]") {
  const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
  const std::string final_resp = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
  const Transcript t = drive_response(cont + final_resp);
  REQUIRE_FALSE(t.failed);
  REQUIRE(t.events.size() == 4);
  CHECK(t.events[0].find("head 100 Continue") == 0);
  CHECK(t.events[1] == "complete @" + std::to_string(cont.size()));
  CHECK(t.events[2].find("head 201 Created") == 0);
  CHECK(t.events[3] == "complete @" + std::to_string(cont.size() + final_resp.size()));
}

TEST_CASE("101 Switching Protocols completes after the head", "[parser][response]") {
  for (const std::string& head :
       {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"s,
        "HTTP/1.1 101 Switching Protocols\r\n\r\n"s}) {
    const Transcript t = drive_response(head + "\x81\x02hi");
    REQUIRE_FALSE(t.failed);
    REQUIRE(t.events.size() == 2);
    CHECK(t.events[0].find("up=1") != std::string::npos);
    CHECK(t.stopped_at == head.size());
  }
}

TEST_CASE("response framing conflicts are rejected with 502", "[parser][response]") {
  struct Vector {
    std::string name;
    std::string input;
  };
  const std::vector<Vector> vectors = {
      {"CL with TE", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"CL twice", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
      {"chunked twice",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"bad chunk end", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n"},
      {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
      {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
      {"not HTTP", "RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {"HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {"status 000", "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n"},
      {"status 600", "HTTP/1.1 600 Big\r\nContent-Length: 0\r\n\r\n"},
  };
  for (const Vector& v : vectors) {
    for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{1}}) {
      INFO(v.name << " chunk=" << chunk);
      const Transcript t = drive_response(v.input, false, chunk);
      CHECK(t.failed);
      CHECK(t.error.status == 502);
    }
  }
}

TEST_CASE("response TE without final chunked is read until close (RFC 9112 §6.3 rule 4)",
          "[parser][response]") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
  ResponseParser p(Limits{});
  p.expect_response(false);
  REQUIRE(p.feed(head.data(), head.size()).event == Event::head_complete);
  CHECK(p.head().body == BodyKind::until_close);
  CHECK_FALSE(p.head().keep_alive);
}

TEST_CASE("HTTP/1.0 response keep-alive needs the keep-alive token", "[parser][response]") {
  const std::string a = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
  const std::string b = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
  ResponseParser p(Limits{});
  p.expect_response(false);
  REQUIRE(p.feed(a.data(), a.size()).event == Event::head_complete);
  CHECK_FALSE(p.head().keep_alive);
  REQUIRE(p.feed(a.data() + a.size(), 0).event == Event::message_complete);
  p.next_message();
  REQUIRE(p.feed(b.data(), b.size()).event == Event::head_complete);
  CHECK(p.head().keep_alive);
}

// ---- what llhttp's strict mode checks on its own ----
//
// parser.cc leaves these checks to llhttp (LLHTTP_STRICT_MODE=1 in the top-level CMakeLists) and
// scans only the start line and line boundaries itself. If this test fails, llhttp's mode or
// version changed: restore the per-byte checks in Core::scan_head and the per-field checks.

namespace {

int accept_head(llhttp_t*) {
  return HPE_PAUSED;
}

// True when llhttp alone, fed `input` whole, reaches the end of the head without an error.
bool llhttp_accepts(std::string_view input, llhttp_type_t type = HTTP_REQUEST) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_headers_complete = accept_head;
  llhttp_t p;
  llhttp_init(&p, type, &settings);
  return llhttp_execute(&p, input.data(), input.size()) == HPE_PAUSED;
}

// RFC 9110 §5.6.2 tchar.
bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != 0 &&
          std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos);
}

}  // namespace

TEST_CASE("llhttp strict mode alone rejects bad bytes inside field lines and targets",
          "[parser][smuggling]") {
  REQUIRE(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\r\nXY: ab\r\n\r\n"));
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<unsigned char>(b);
    const std::string byte(1, static_cast<char>(c));
    INFO("byte " << b);
    // RFC 9110 §5.1: field names are tokens (this also covers whitespace before ':').
    if (c != ':') {
      CHECK(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\r\nX" + byte + "Y: ab\r\n\r\n") ==
            is_tchar(c));
    }
    // RFC 9110 §5.5: no CTL but HTAB, no DEL in a value; obs-text is allowed. CR and LF
    // inside a value are bare (not a CRLF pair) and must be rejected too.
    const bool value_ok = c == '\t' || (c >= 0x20 && c != 0x7f);
    CHECK(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\r\nXY: a" + byte + "b\r\n\r\n") == value_ok);
    CHECK(llhttp_accepts("HTTP/1.1 200 OK\r\nXY: a" + byte + "b\r\nContent-Length: 0\r\n\r\n",
                         HTTP_RESPONSE) == value_ok);
    // RFC 9112 §3.2: the request target has no CTLs, DEL, whitespace or raw non-ASCII.
    if (c < 0x21 || c >= 0x7f) {
      CHECK_FALSE(llhttp_accepts("GET /a" + byte + "b HTTP/1.1\r\nHost: h\r\n\r\n"));
    }
  }
  // Bare CR and bare LF inside the field section (RFC 9112 §2.2).
  CHECK_FALSE(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\rY: b\r\n\r\n"));
  CHECK_FALSE(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"));
  CHECK_FALSE(llhttp_accepts("GET / HTTP/1.1\r\nHost: h\r\n\rX"));
  CHECK_FALSE(llhttp_accepts("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", HTTP_RESPONSE));
}

TEST_CASE("llhttp strict mode alone accepts what the raw scan must reject", "[parser][smuggling]") {
  // Each of these passes llhttp and is rejected by RequestParser / ResponseParser only because of
  // parser.cc's own checks (see the smuggling table above).
  const std::vector<std::string> requests = {
      "GET / HTTP/1.1\nHost: h\r\n\r\n",                  // bare LF ends the request line
      "GET / HTTP/1.1\r\nHost: h\r\n\n",                  // bare LF ends the head
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",  // obs-fold
      "\r\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",          // bare CRs before the request line
      "GET / RTSP/1.0\r\nHost: h\r\n\r\n",                // not HTTP
      "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n",         // empty field name
  };
  for (const std::string& r : requests) {
    INFO(r);
    CHECK(llhttp_accepts(r));
    const Transcript t = drive_request(r);
    CHECK(t.failed);
    CHECK(t.error.status == 400);
  }
  const std::vector<std::string> responses = {
      "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",                  // bare LF ends the status line
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",                  // bare LF ends the head
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",  // obs-fold
      "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",            // CTL in the reason phrase
      "HTTP/1.1 200 O\x7fK\r\nContent-Length: 0\r\n\r\n",            // DEL in the reason phrase
  };
  for (const std::string& r : responses) {
    INFO(r);
    CHECK(llhttp_accepts(r, HTTP_RESPONSE));
    for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{1}}) {
      const Transcript t = drive_response(r, false, chunk);
      CHECK(t.failed);
      CHECK(t.error.status == 502);
    }
  }
}

TEST_CASE("a request body over max_body_bytes is refused with 413", "[parser]") {
  Limits limits;
  limits.max_body_bytes = 10;
  {
    RequestParser p(limits);
    const std::string req = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    const FeedResult r = p.feed(req.data(), req.size());
    REQUIRE(r.event == Event::error);
    CHECK(p.error().status == 413);
  }
  {
    RequestParser p(limits);
    const std::string req = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
    FeedResult r = p.feed(req.data(), req.size());
    REQUIRE(r.event == Event::head_complete);
    r = p.feed(req.data() + r.consumed, req.size() - r.consumed);
    CHECK(r.event == Event::message_complete);
  }
  {
    RequestParser p(limits);
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string body = "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    const std::string req = head + body;
    FeedResult r = p.feed(req.data(), req.size());
    REQUIRE(r.event == Event::head_complete);
    r = p.feed(req.data() + r.consumed, req.size() - r.consumed);
    REQUIRE(r.event == Event::error);
    CHECK(p.error().status == 413);
  }
}
