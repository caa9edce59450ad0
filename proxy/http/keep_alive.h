#pragma once
// When a connection may carry another message after this one (RFC 9112 §9.3): the client
// connection after an answer, and the upstream connection after an exchange. Pure rules over
// what the session observed; the session supplies the facts, these decide.

#include "proxy/http/types.h"

namespace routemesh::proxy::http {

// Whether the client connection stays open after a final response was relayed to it. It
// closes when the client asked to close, when the node is draining, when part of the request
// body was left unread (those bytes would be parsed as the next request), when the upstream
// stopped reading the body (the rest of it is never read), and when the response body is
// delimited by the connection's close (RFC 9112 §6.3 rule 8: the client needs the close to
// see its end).
inline bool keep_client_after_response(const RequestHead& request, const ResponseHead& response,
                                       bool request_read, bool upstream_stopped_reading,
                                       bool draining) {
  return request.keep_alive && !draining && request_read && !upstream_stopped_reading &&
         response.body != BodyKind::until_close;
}

// Whether the client connection stays open after the proxy's own error answer: the client
// asked for keep-alive, the node is not draining, and every byte of the request was read (the
// session first tries to complete a bodyless or fully buffered request).
inline bool keep_client_after_error(const RequestHead& request, bool request_read, bool draining) {
  return request.keep_alive && !draining && request_read;
}

// Whether the upstream connection of an exchange that completed goes back to the pool: the
// upstream offers keep-alive, the byte stream is in step with the messages (`in_step`: no
// bytes after the response, the body did not end with the connection, nothing pending after a
// spliced body), the whole request body was sent (else the upstream is still reading it), and
// the node is not draining.
inline bool upstream_reusable(const ResponseHead& response, bool in_step, bool request_sent,
                              bool draining) {
  return response.keep_alive && in_step && request_sent && !draining;
}

}  // namespace routemesh::proxy::http
