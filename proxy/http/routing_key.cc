#include "proxy/http/routing_key.h"

namespace routemesh::proxy::http {

RoutingKey routing_key(const RequestHead& head) {
  std::string_view host = head.host;
  std::string_view target = head.target;
  std::string_view origin_target = head.target;
  bool absolute_form = false;
  if (!target.empty() && target.front() != '/') {
    const auto scheme = target.find("://");
    if (scheme != std::string_view::npos) {
      absolute_form = true;
      target.remove_prefix(scheme + 3);
      const auto end = target.find_first_of("/?");
      host = target.substr(0, end);
      target = end == std::string_view::npos ? std::string_view("/") : target.substr(end);
      // "http://h" -> "/"; "http://h?q" -> "?q", which has no path: sent as "/?q" would need a
      // copy, so the request line gets "/" plus the query in write_request_head.
      origin_target = target;
    } else {
      target = "/";  // asterisk-form (OPTIONS *)
    }
  }
  if (target.empty() || target.front() != '/') {
    target = "/";  // absolute-form whose authority is followed by a query: "http://h?q"
  }
  return {host, target.substr(0, target.find('?')), origin_target, absolute_form};
}

}  // namespace routemesh::proxy::http
