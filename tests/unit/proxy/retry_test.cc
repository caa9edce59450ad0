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
    bool table_changed;
    bool killed;
    bool retry;
  };
  const Row rows[] = {
      {errc::upstream_connect_failed, true, BodyKind::none, false, false, false, true},
      {errc::upstream_connect_timeout, true, BodyKind::none, false, false, false, true},
      {errc::upstream_reset, true, BodyKind::none, false, false, false, true},
      {errc::upstream_timeout, true, BodyKind::none, false, false, false, false},
      {errc::upstream_malformed, true, BodyKind::none, false, false, false, false},
      {errc::upstream_connect_failed, false, BodyKind::none, false, false, false, false},  // POST
      {errc::upstream_connect_failed, true, BodyKind::content_length, false, false, false, false},
      {errc::upstream_connect_failed, true, BodyKind::chunked, false, false, false, false},
      {errc::upstream_connect_failed, true, BodyKind::none, true, false, false, false},  // once
      {errc::upstream_connect_failed, true, BodyKind::none, false, true, false, false},
      {errc::upstream_connect_failed, true, BodyKind::none, false, false, true, false},
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead req;
    req.idempotent = r.idempotent;
    req.body = r.body;
    INFO("row " << row++);
    CHECK(may_retry_elsewhere(req, r.failure, r.retried, r.table_changed, r.killed) == r.retry);
  }
}

TEST_CASE("a request is resent on a new connection when a pooled one was closed under it") {
  struct Row {
    error_code failure;
    bool pooled;
    bool request_buffered;
    bool killed;
    bool resend;
  };
  const Row rows[] = {
      {errc::upstream_reset, true, true, false, true},
      {errc::upstream_reset, false, true, false, false},  // a new connection: a real failure
      {errc::upstream_reset, true, false, false, false},  // part of the body is gone already
      {errc::upstream_reset, true, true, true, false},
      {errc::upstream_connect_failed, true, true, false, false},
      {errc::upstream_timeout, true, true, false, false},
      {errc::upstream_malformed, true, true, false, false},
  };
  int row = 0;
  for (const Row& r : rows) {
    INFO("row " << row++);
    CHECK(may_resend_on_new_connection(r.failure, r.pooled, r.request_buffered, r.killed) ==
          r.resend);
  }
}
