#pragma once
// Value types of HTTP/1.1 message heads (RFC 9112). Views point into the parser's own
// buffer and stay valid until the parser is reset or fed the next message.

#include <cstdint>
#include <string_view>
#include <vector>

namespace routemesh::proxy::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

enum class BodyKind {
  none,            // no body (no CL/TE, or CL: 0, or HEAD/204/304 response)
  content_length,  // exactly content_length bytes
  chunked,         // Transfer-Encoding: chunked
  until_close,     // response without framing: body ends when the upstream closes
};

struct RequestHead {
  std::string_view method;
  std::string_view target;
  std::uint8_t version_major = 1;
  std::uint8_t version_minor = 1;
  std::vector<Header> headers;
  std::string_view host;  // the Host header (exactly one is required for 1.1)
  BodyKind body = BodyKind::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;        // after Connection tokens and version defaults
  bool upgrade = false;          // Connection: upgrade + Upgrade header (not CONNECT)
  bool expect_continue = false;  // Expect: 100-continue
  bool is_head = false;          // method HEAD: the response has no body
  bool is_connect = false;
  bool idempotent = false;  // GET HEAD OPTIONS PUT DELETE TRACE
};

struct ResponseHead {
  unsigned status = 0;
  std::string_view reason;
  std::uint8_t version_major = 1;
  std::uint8_t version_minor = 1;
  std::vector<Header> headers;
  BodyKind body = BodyKind::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade = false;  // 101 Switching Protocols
};

// Why a request was rejected: the status to answer with (the connection is always closed
// after a framing error, RFC 9112 §11.2).
struct ParseError {
  unsigned status = 400;    // 400, 408, 413, 414, 431, 501, 505
  std::string_view reason;  // short static text for the body and the log
};

}  // namespace routemesh::proxy::http
