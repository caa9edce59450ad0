#include "proxy/http/fields.h"

#include <catch2/catch.hpp>

#include <string_view>
#include <vector>

using namespace routemesh::proxy::http;

TEST_CASE("find_header returns the first field of that name, any case (RFC 9110 §5.1)") {
  const std::vector<Header> headers{{"Host", "a"},
                                    {"User-Agent", "curl"},
                                    {"X-Request-Id", "one"},
                                    {"x-request-id", "two"},
                                    {"Empty", ""}};
  struct Row {
    std::string_view name;
    std::string_view want;
  };
  const Row rows[] = {
      {"user-agent", "curl"},                                   // stored in mixed case
      {"x-request-id", "one"},                                  // first of two
      {"host", "a"},           {"empty", ""}, {"referer", ""},  // absent
      {"user-agen", ""},                                        // a prefix is not a match
  };
  for (const Row& r : rows) {
    INFO(r.name);
    CHECK(find_header(headers, r.name) == r.want);
  }
  CHECK(find_header({}, "host").empty());
}

TEST_CASE("find_cookie reads name=value pairs of every Cookie field (RFC 6265 §5.4)") {
  struct Row {
    std::vector<Header> headers;
    std::string_view name;
    std::string_view want;
  };
  const Row rows[] = {
      {{{"Cookie", "sid=abc"}}, "sid", "abc"},
      {{{"Cookie", "a=1; sid=abc; b=2"}}, "sid", "abc"},
      {{{"cookie", "a=1;sid=abc"}}, "sid", "abc"},      // field name in any case, no OWS
      {{{"Cookie", "  sid=abc  ;b=2"}}, "sid", "abc"},  // OWS around a pair
      {{{"Cookie", "sid=\"abc\""}}, "sid", "abc"},      // DQUOTEs are removed
      {{{"Cookie", "sid=\""}}, "sid", "\""},            // a lone quote is kept
      {{{"Cookie", "sid="}}, "sid", ""},                // empty value
      {{{"Cookie", "SID=abc"}}, "sid", ""},             // cookie names are case-sensitive
      {{{"Cookie", "xsid=abc; sidx=def"}}, "sid", ""},  // whole names only
      {{{"Cookie", "sid"}}, "sid", ""},                 // no '='
      {{{"Cookie", "a=1"}, {"Cookie", "sid=abc"}}, "sid", "abc"},      // a second field
      {{{"Cookie", "sid=one"}, {"Cookie", "sid=two"}}, "sid", "one"},  // first wins
      {{{"Set-Cookie", "sid=abc"}}, "sid", ""},                        // only Cookie fields
      {{{"Cookie", "a=b=c"}}, "a", "b=c"},                             // value up to ';'
      {{}, "sid", ""},
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead h;
    h.headers = r.headers;
    INFO("row " << row++);
    CHECK(find_cookie(h, r.name) == r.want);
  }
}

TEST_CASE("a 101 must switch to a protocol the request asked for (RFC 9110 section 7.8)") {
  struct Row {
    std::vector<Header> request;
    std::vector<Header> response;
    bool accepted;
  };
  const std::vector<Row> rows = {
      {{{"Upgrade", "websocket"}}, {{"Upgrade", "websocket"}}, true},
      {{{"Upgrade", "WebSocket"}}, {{"upgrade", "websocket"}}, true},
      {{{"Upgrade", "foo/2, websocket"}}, {{"Upgrade", "websocket"}}, true},
      {{{"Upgrade", "foo"}, {"Upgrade", "websocket"}}, {{"Upgrade", "websocket"}}, true},
      {{{"Upgrade", "websocket"}}, {{"Upgrade", "h2c"}}, false},
      {{{"Upgrade", "websocket"}}, {{"Upgrade", "websocket, h2c"}}, false},
      {{{"Upgrade", "websocket"}}, {}, false},  // a 101 that names nothing
      {{}, {{"Upgrade", "websocket"}}, false},
  };
  int i = 0;
  for (const Row& r : rows) {
    INFO("row " << i++);
    RequestHead req;
    req.headers = r.request;
    ResponseHead resp;
    resp.headers = r.response;
    CHECK(upgrade_accepted(req, resp) == r.accepted);
  }
}
