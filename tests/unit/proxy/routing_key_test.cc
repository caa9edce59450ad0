#include "proxy/http/routing_key.h"

#include <catch2/catch.hpp>

#include <string_view>

using namespace routemesh::proxy::http;

TEST_CASE("routing_key takes host and path by the request-target's form (RFC 9112 §3.2)") {
  struct Row {
    std::string_view target;
    std::string_view host_field;
    std::string_view host;
    std::string_view path;
  };
  const Row rows[] = {
      // origin-form: the Host field and the path without the query
      {"/", "web.local", "web.local", "/"},
      {"/a/b?x=1", "web.local", "web.local", "/a/b"},
      {"/?", "web.local:8080", "web.local:8080", "/"},
      {"/a", "", "", "/a"},
      // absolute-form: the target's authority replaces Host (§3.2.2)
      {"http://api.local/v1?q", "web.local", "api.local", "/v1"},
      {"http://api.local:81/v1", "web.local", "api.local:81", "/v1"},
      {"http://api.local", "web.local", "api.local", "/"},
      {"http://api.local?q=1", "web.local", "api.local", "/"},
      {"https://api.local/", "", "api.local", "/"},
      {"http:///x", "web.local", "", "/x"},  // empty authority: no Host at all
      // asterisk-form and other non-origin targets route to "/" with the Host field
      {"*", "web.local", "web.local", "/"},
      {"web.local:443", "web.local", "web.local", "/"},  // authority-form
  };
  for (const Row& r : rows) {
    RequestHead h;
    h.target = r.target;
    h.host = r.host_field;
    INFO(r.target);
    const RoutingKey k = routing_key(h);
    CHECK(k.host == r.host);
    CHECK(k.path == r.path);
  }
}
