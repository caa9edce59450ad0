#pragma once
// When a failed attempt is sent again. Pure rules over the failure (proxy::errc) and what the
// session knows about the request.

#include "proxy/errc.h"
#include "proxy/http/types.h"

#include <boost/system/error_code.hpp>

namespace routemesh::proxy::http {

// Whether nothing of the request can have reached a server application: the connect failed,
// or the connection closed before any response byte.
inline bool failed_before_response(const boost::system::error_code& failure) {
  return failure == errc::upstream_connect_failed || failure == errc::upstream_connect_timeout ||
         failure == errc::upstream_reset;
}

// Whether a failed attempt is retried once on another endpoint (RFC 9110 §9.2.2): the
// request is idempotent and has no body, it failed before any response, it was not retried
// yet, and shutdown has not killed the connection. The caller still needs another endpoint
// to pick (in the newest table: a table that changed during the attempt routes the request
// again); without one, the first failure is what the client hears.
inline bool may_retry_elsewhere(const RequestHead& request,
                                const boost::system::error_code& failure, bool retried,
                                bool killed) {
  return failed_before_response(failure) && request.idempotent && request.body == BodyKind::none &&
         !retried && !killed;
}

// Whether an attempt on a pooled connection is sent again on a new connection to the same
// endpoint (not counted as a retry): the upstream closed the idle connection before any
// response byte (keep-alive timeout, restart), the request is idempotent and has no body
// (RFC 9110 §9.2.2, RFC 9112 §9.3.1: the upstream may have acted on a POST before closing,
// and sending it again would do it twice), and shutdown has not killed the connection.
inline bool may_resend_on_new_connection(const RequestHead& request,
                                         const boost::system::error_code& failure, bool pooled,
                                         bool killed) {
  return failure == errc::upstream_reset && pooled && request.idempotent &&
         request.body == BodyKind::none && !killed;
}

}  // namespace routemesh::proxy::http
