#include "proxy/http/rewrite.h"

#include "proxy/http/ascii.h"
#include "proxy/http/routing_key.h"

#include <charconv>

// Everything appends to a caller-owned string so a session can reuse one buffer per connection;
// nothing here allocates beyond that string's growth.

namespace routemesh::proxy::http {
namespace {

using detail::iequals;
using detail::lower;
using detail::trim_ows;

bool iequals_any_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

// Calls f(token) for each non-empty element of a comma-separated list (RFC 9110 §5.6.1).
template <typename F>
void for_each_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim_ows(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (!element.empty()) {
      f(element);
    }
  }
}

// Fixed hop-by-hop fields (RFC 9110 §7.6.1; Proxy-Connection and Keep-Alive by practice).
bool is_fixed_hop_by_hop(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "te") || iequals(name, "trailer") ||
         iequals(name, "upgrade");
}

// Fields a Connection option may never remove: dropping the framing fields would change how the
// next hop delimits the body we forward verbatim (a smuggling vector), and Host is needed to
// route. The X-Forwarded-* and request id fields are rewritten by us anyway.
bool is_protected(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
         iequals(name, "host") || iequals(name, "x-forwarded-for") || iequals(name, "x-request-id");
}

// True when any Connection field of `headers` lists `name` as an option.
bool named_by_connection(const std::vector<Header>& headers, std::string_view name) {
  bool found = false;
  for (const Header& h : headers) {
    if (found) {
      break;
    }
    if (iequals(h.name, "connection")) {
      for_each_element(h.value, [&](std::string_view token) {
        if (iequals_any_case(token, name)) {
          found = true;
        }
      });
    }
  }
  return found;
}

// Whether any Connection field names something other than the standard options; lets the common
// case skip the per-field lookup.
bool has_custom_connection_options(const std::vector<Header>& headers) {
  bool custom = false;
  for (const Header& h : headers) {
    if (iequals(h.name, "connection")) {
      for_each_element(h.value, [&](std::string_view token) {
        if (!iequals(token, "close") && !iequals(token, "keep-alive") &&
            !iequals(token, "upgrade")) {
          custom = true;
        }
      });
    }
  }
  return custom;
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_number(std::string& out, unsigned long long v) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof(digits), v);
  out.append(digits, r.ptr);
}

void append_version(std::string& out, std::uint8_t major, std::uint8_t minor) {
  out.push_back(static_cast<char>('0' + (major % 10)));
  out.push_back('.');
  out.push_back(static_cast<char>('0' + (minor % 10)));
}

// Via (RFC 9110 §7.6.3): existing values in order, then ours, as one field.
void append_via(std::string& out, const std::vector<Header>& headers, std::uint8_t major,
                std::uint8_t minor, std::string_view via) {
  out.append("Via: ");
  for (const Header& h : headers) {
    if (iequals(h.name, "via") && !trim_ows(h.value).empty()) {
      out.append(trim_ows(h.value));
      out.append(", ");
    }
  }
  append_version(out, major, minor);
  out.push_back(' ');
  out.append(via);
  out.append("\r\n");
}

}  // namespace

void write_request_head(const RequestHead& head, const ForwardContext& ctx, std::string& out) {
  const RoutingKey key = routing_key(head);
  // Upstream connections always speak HTTP/1.1; a 1.0 client's request is forwarded as 1.1
  // (RFC 9110 §2.5: the version is hop-by-hop).
  out.append(head.method);
  out.push_back(' ');
  if (key.absolute_form && (key.origin_target.empty() || key.origin_target.front() != '/')) {
    out.push_back('/');  // "http://h?q" -> "/?q"
  }
  out.append(key.origin_target);
  out.append(" HTTP/1.1\r\n");

  const bool custom_options = has_custom_connection_options(head.headers);
  bool have_host = false;
  bool have_request_id = false;
  bool have_xff = false;
  bool have_port = false;
  for (const Header& h : head.headers) {
    const std::string_view name = h.name;
    if (iequals(name, "upgrade")) {
      if (head.upgrade) {
        append_header(out, name, h.value);  // kept for the tunnel, RFC 9110 §7.8
      }
      continue;
    }
    if (is_fixed_hop_by_hop(name) || iequals(name, "transfer-encoding")) {
      continue;  // ours follow
    }
    if (iequals(name, "host")) {
      // RFC 9112 §3.2.2: an absolute-form target's authority replaces Host.
      append_header(out, name, key.host);
      have_host = true;
      continue;
    }
    if (iequals(name, "x-forwarded-proto") || iequals(name, "x-forwarded-host")) {
      continue;  // never trust the client's; ours follow
    }
    if (iequals(name, "x-forwarded-for")) {
      have_xff = true;  // merged into one field below (trusted peers) or replaced
      continue;
    }
    if (iequals(name, "forwarded") || iequals(name, "x-real-ip") ||
        iequals(name, "x-forwarded-port")) {
      if (!ctx.trusted_peer) {
        continue;  // anyone could have written them
      }
      have_port = have_port || iequals(name, "x-forwarded-port");
    }
    if (!ctx.via.empty() && iequals(name, "via")) {
      continue;  // merged with ours below
    }
    if (custom_options && !is_protected(name) && named_by_connection(head.headers, name)) {
      continue;
    }
    if (iequals(name, "x-request-id")) {
      have_request_id = true;
    }
    append_header(out, name, h.value);
  }

  if (!have_host) {
    // An HTTP/1.0 request may lack Host; the 1.1 request we send must carry one (the
    // absolute-form authority, or empty when the authority is unknown, RFC 9112 §3.2).
    append_header(out, "Host", key.host);
  }
  if (head.body == BodyKind::chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  if (head.upgrade) {
    out.append("Connection: upgrade\r\n");
  }
  const bool keep_xff = ctx.trusted_peer && have_xff;
  if (keep_xff || !ctx.client_ip.empty()) {
    out.append("X-Forwarded-For: ");
    bool first = true;
    if (keep_xff) {
      for (const Header& h : head.headers) {
        if (iequals(h.name, "x-forwarded-for")) {
          for_each_element(h.value, [&](std::string_view element) {
            if (!first) {
              out.append(", ");
            }
            out.append(element);
            first = false;
          });
        }
      }
    }
    if (!ctx.client_ip.empty()) {
      if (!first) {
        out.append(", ");
      }
      out.append(ctx.client_ip);
    }
    out.append("\r\n");
  }
  append_header(out, "X-Forwarded-Proto", ctx.proto);
  if (!key.host.empty()) {
    append_header(out, "X-Forwarded-Host", key.host);
  }
  if (ctx.port != 0 && !have_port) {
    out.append("X-Forwarded-Port: ");
    append_number(out, ctx.port);
    out.append("\r\n");
  }
  if (!have_request_id && !ctx.request_id.empty()) {
    append_header(out, "X-Request-Id", ctx.request_id);
  }
  if (!ctx.via.empty()) {
    append_via(out, head.headers, head.version_major, head.version_minor, ctx.via);
  }
  out.append("\r\n");
}

void downgrade_to_http10(std::string& head) {
  const auto eol = head.find("\r\n");
  if (eol == std::string::npos || eol < 8 || head.compare(eol - 8, 8, "HTTP/1.1") != 0) {
    return;
  }
  head[eol - 1] = '0';
  if (head.size() >= 4) {
    head.insert(head.size() - 2, "Connection: keep-alive\r\n");
  }
}

void write_response_head(const ResponseHead& head, bool close, std::string_view via,
                         std::string& out) {
  const bool switching = head.status == 101;
  out.append("HTTP/1.1 ");
  append_number(out, head.status);
  out.push_back(' ');
  out.append(head.reason.empty() ? reason_phrase(head.status) : head.reason);
  out.append("\r\n");

  const bool custom_options = has_custom_connection_options(head.headers);
  for (const Header& h : head.headers) {
    const std::string_view name = h.name;
    if (iequals(name, "upgrade")) {
      if (switching) {
        append_header(out, name, h.value);
      }
      continue;
    }
    if (is_fixed_hop_by_hop(name)) {
      continue;
    }
    if (!via.empty() && iequals(name, "via")) {
      continue;
    }
    if (custom_options && !is_protected(name) && named_by_connection(head.headers, name)) {
      continue;
    }
    append_header(out, name, h.value);
  }
  if (switching) {
    out.append("Connection: upgrade\r\n");
  } else if (close) {
    out.append("Connection: close\r\n");
  }
  if (!via.empty()) {
    append_via(out, head.headers, head.version_major, head.version_minor, via);
  }
  out.append("\r\n");
}

std::string error_response(unsigned status, std::string_view code, std::string_view detail,
                           bool close, bool head_request) {
  std::string out;
  out.reserve(160 + code.size() + detail.size());
  out.append("HTTP/1.1 ");
  append_number(out, status);
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  append_number(out, detail.size() + 1);
  out.append("\r\nX-Routemesh-Error: ");
  out.append(code);
  out.append("\r\n");
  if (close) {
    out.append("Connection: close\r\n");
  }
  out.append("\r\n");
  if (!head_request) {
    out.append(detail);
    out.push_back('\n');
  }
  return out;
}

std::string_view reason_phrase(unsigned status) {
  // RFC 9110 §15.
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace routemesh::proxy::http
