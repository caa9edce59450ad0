#pragma once
// Building the heads the proxy sends. Pure functions over values.

#include "proxy/http/types.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace routemesh::proxy::http {

struct ForwardContext {
  std::string_view client_ip;       // the downstream peer address, for X-Forwarded-For
  std::string_view proto = "http";  // X-Forwarded-Proto
  std::string_view request_id;      // used when the request has no X-Request-Id
  std::string_view via;             // non-empty: append "Via: 1.1 <via>"
  std::uint16_t port = 0;           // the port the client connected to (X-Forwarded-Port)
  // The peer is a trusted proxy (node.trusted_proxies): its forwarding fields are believed
  // and appended to. Otherwise X-Forwarded-For is replaced by the peer address, Forwarded and
  // X-Real-IP are dropped and X-Forwarded-Port is ours.
  bool trusted_peer = false;
};

// Appends the upstream request head to `out`: request line (HTTP/1.1; an absolute-form
// target is sent in origin-form, RFC 9112 §3.2.2, with its authority as Host), headers minus
// hop-by-hop ones (RFC 9110 §7.6.1: Connection, the fields it names, Keep-Alive,
// Proxy-Connection, TE, Trailer, Upgrade unless tunnelling), one canonical
// "Transfer-Encoding: chunked" for a chunked body (forwarded verbatim), X-Forwarded-For
// (appended to for a trusted peer, else replaced), X-Forwarded-Proto/-Host/-Port set,
// X-Request-Id kept or added, optional Via.
void write_request_head(const RequestHead& head, const ForwardContext& ctx, std::string& out);

// Turns a head written by write_request_head for an HTTP/1.0 client into an HTTP/1.0 request
// asking to keep the upstream connection open: the request line's "HTTP/1.1" becomes
// "HTTP/1.0" and "Connection: keep-alive" is added before the blank line. RFC 9112 §7.1: a
// 1.0 client cannot read chunked coding and a server must not send it in answer to a 1.0
// request, so the request goes upstream as 1.0 (as nginx does by default). A head whose first
// line does not end in "HTTP/1.1" is left unchanged.
void downgrade_to_http10(std::string& head);

// Appends the downstream response head: status line, headers minus hop-by-hop ones,
// "Connection: close" when `close` is set, optional Via. For 101 the Upgrade and
// Connection: upgrade headers are kept.
void write_response_head(const ResponseHead& head, bool close, std::string_view via,
                         std::string& out);

// A complete error response with a short plain-text body naming the cause and an
// X-Routemesh-Error header, e.g. (503, "no_healthy_endpoint", "no healthy endpoint for web").
// For a HEAD request (`head_request`) the body is left out (RFC 9110 §9.3.2), Content-Length
// still giving its size, so a pipelined next response is not corrupted.
std::string error_response(unsigned status, std::string_view code, std::string_view detail,
                           bool close, bool head_request = false);

// The standard reason phrase of a status code ("Bad Gateway").
std::string_view reason_phrase(unsigned status);

}  // namespace routemesh::proxy::http
