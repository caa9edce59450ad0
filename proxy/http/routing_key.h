#pragma once
// What a request is routed by: its host and its path. Pure.

#include "proxy/http/types.h"

#include <string_view>

namespace routemesh::proxy::http {

struct RoutingKey {
  std::string_view host;  // as sent (port included, if any); empty when there is none
  std::string_view path;  // starts with '/', query excluded
  // What the upstream request line carries: the target itself, except that an absolute-form
  // target becomes origin-form (its path and query; "/" when it has no path, "?q" kept). The
  // next hop is an origin server, which expects origin-form (RFC 9112 §3.2.1).
  std::string_view origin_target;
  bool absolute_form = false;  // `host` came from the target, not from the Host field
};

// RFC 9112 §3.2: origin-form ("/p?q") routes by the Host field and the path. Absolute-form
// ("http://h:1/p?q", §3.2.2) routes by the target's authority, which replaces Host, and its
// path ("/" when it has none). Asterisk-form ("OPTIONS *") and anything else that does not
// start with '/' routes to path "/". The views point into `head`.
RoutingKey routing_key(const RequestHead& head);

}  // namespace routemesh::proxy::http
