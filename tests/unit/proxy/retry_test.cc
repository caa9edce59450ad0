#include "proxy/http/retry.h"

#include <catch2/catch.hpp>

#include <boost/system/error_code.hpp>

using namespace routemesh::proxy::http;
using boost::system::error_code;
using routemesh::proxy::errc;

TEST_CASE("failures before any response byte are the retryable ones") {
  struct Row {
    error_code failure;
    bool before_response;
  };
  const Row rows[] = {
      {errc::upstream_connect_failed, true},
      {errc::upstream_connect_timeout, true},
      {errc::upstream_reset, true},
      {errc::upstream_timeout, false},
      {errc::upstream_malformed, false},
      {errc::upstream_aborted, false},
      {errc::client_gone, false},
      {errc::bad_request_body, false},
      {errc::killed, false},
      {error_code{}, false},
  };
  for (const Row& r : rows) {
    INFO(r.failure.message());
    CHECK(failed_before_response(r.failure) == r.before_response);
  }
}

TEST_CASE("an idempotent bodyless request is retried once elsewhere (RFC 9110 §9.2.2)") {
  struct Row {
    error_code failure;
    bool idempotent;
    BodyKind body;
    bool retried;
    bool killed;
    bool retry;
  };
  const Row rows[] = {
      {errc::upstream_connect_failed, true, BodyKind::none, false, false, true},
      {errc::upstream_connect_timeout, true, BodyKind::none, false, false, true},
      {errc::upstream_reset, true, BodyKind::none, false, false, true},
      {errc::upstream_timeout, true, BodyKind::none, false, false, false},
      {errc::upstream_malformed, true, BodyKind::none, false, false, false},
      {errc::upstream_connect_failed, false, BodyKind::none, false, false, false},  // POST
      {errc::upstream_connect_failed, true, BodyKind::content_length, false, false, false},
      {errc::upstream_connect_failed, true, BodyKind::chunked, false, false, false},
      {errc::upstream_connect_failed, true, BodyKind::none, true, false, false},  // once
      {errc::upstream_connect_failed, true, BodyKind::none, false, true, false},
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead req;
    req.idempotent = r.idempotent;
    req.body = r.body;
    INFO("row " << row++);
    CHECK(may_retry_elsewhere(req, r.failure, r.retried, r.killed) == r.retry);
  }
}

TEST_CASE(
    "only an idempotent bodiless request is resent when a pooled connection closed under it") {
  // RFC 9110 §9.2.2, RFC 9112 §9.3.1: the upstream may have acted on a POST before it closed.
  struct Row {
    bool idempotent;
    BodyKind body;
    error_code failure;
    bool pooled;
    bool killed;
    bool resend;
  };
  const Row rows[] = {
      {true, BodyKind::none, errc::upstream_reset, true, false, true},
      {false, BodyKind::none, errc::upstream_reset, true, false, false},  // POST: never twice
      {true, BodyKind::content_length, errc::upstream_reset, true, false, false},  // PUT + body
      {true, BodyKind::chunked, errc::upstream_reset, true, false, false},
      {true, BodyKind::none, errc::upstream_reset, false, false, false},  // a new connection
      {true, BodyKind::none, errc::upstream_reset, true, true, false},
      {true, BodyKind::none, errc::upstream_connect_failed, true, false, false},
      {true, BodyKind::none, errc::upstream_timeout, true, false, false},
      {true, BodyKind::none, errc::upstream_malformed, true, false, false},
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead req;
    req.idempotent = r.idempotent;
    req.body = r.body;
    INFO("row " << row++);
    CHECK(may_resend_on_new_connection(req, r.failure, r.pooled, r.killed) == r.resend);
  }
}
