#include "proxy/http/keep_alive.h"

#include <catch2/catch.hpp>

using namespace routemesh::proxy::http;

TEST_CASE("the client connection stays open after a response only when nothing forbids it") {
  struct Row {
    bool request_keep_alive;
    BodyKind response_body;
    bool request_read;
    bool upstream_stopped_reading;
    bool draining;
    bool keep;
  };
  const Row rows[] = {
      {true, BodyKind::content_length, true, false, false, true},
      {true, BodyKind::chunked, true, false, false, true},
      {true, BodyKind::none, true, false, false, true},
      {false, BodyKind::content_length, true, false, false, false},  // client asked to close
      {true, BodyKind::content_length, true, false, true, false},    // draining
      {true, BodyKind::content_length, false, false, false, false},  // body left unread
      {true, BodyKind::content_length, true, true, false, false},    // upstream stopped reading
      {true, BodyKind::until_close, true, false, false, false},      // RFC 9112 §6.3 rule 8
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead req;
    req.keep_alive = r.request_keep_alive;
    ResponseHead resp;
    resp.body = r.response_body;
    INFO("row " << row++);
    CHECK(keep_client_after_response(req, resp, r.request_read, r.upstream_stopped_reading,
                                     r.draining) == r.keep);
  }
}

TEST_CASE("the client connection stays open after an error answer only for a read request") {
  struct Row {
    bool request_keep_alive;
    bool request_read;
    bool draining;
    bool keep;
  };
  const Row rows[] = {
      {true, true, false, true},
      {false, true, false, false},
      {true, false, false, false},  // unread body bytes would be parsed as the next request
      {true, true, true, false},
  };
  int row = 0;
  for (const Row& r : rows) {
    RequestHead req;
    req.keep_alive = r.request_keep_alive;
    INFO("row " << row++);
    CHECK(keep_client_after_error(req, r.request_read, r.draining) == r.keep);
  }
}

TEST_CASE("an upstream connection is pooled only after a complete, in-step exchange") {
  struct Row {
    bool response_keep_alive;
    bool in_step;
    bool request_sent;
    bool draining;
    bool reusable;
  };
  const Row rows[] = {
      {true, true, true, false, true},
      {false, true, true, false, false},  // the upstream said Connection: close (or HTTP/1.0)
      {true, false, true, false, false},  // stray bytes, EOF-delimited body, or data after a splice
      {true, true, false, false, false},  // the upstream has not read the whole request body
      {true, true, true, true, false},    // draining
  };
  int row = 0;
  for (const Row& r : rows) {
    ResponseHead resp;
    resp.keep_alive = r.response_keep_alive;
    INFO("row " << row++);
    CHECK(upstream_reusable(resp, r.in_step, r.request_sent, r.draining) == r.reusable);
  }
}
