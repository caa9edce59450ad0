#pragma once
// Incremental HTTP/1.1 parsers over llhttp that do no I/O (Beast's basic_parser idea).
// One parser per connection side, used from one proxy thread.
//
// The driver feeds raw bytes; the parser stops at two points: after a complete head, and
// after a complete message. Body bytes are not copied: `feed` reports how many input bytes
// belong to the current message, and the driver forwards exactly those bytes verbatim
// (chunk framing included, after the parser validated it). Bytes after message_complete are
// the next pipelined message and must be fed again after `next_message()`.

#include "proxy/http/types.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace routemesh::proxy::http {

struct Limits {
  std::uint32_t max_header_bytes = 16 * 1024;  // whole head incl. request line -> 431
  std::uint32_t max_uri_bytes = 8 * 1024;      // -> 414
  std::uint32_t max_headers = 100;             // -> 431
  std::uint64_t max_body_bytes = 0;            // requests only, 0 = no limit -> 413
};

enum class Event {
  need_more,         // all input consumed, message not finished
  head_complete,     // head() is valid; consumed bytes include the whole head
  message_complete,  // message ended at consumed bytes
  error,             // error() says why; stop reading, answer, close
};

struct FeedResult {
  Event event = Event::need_more;
  std::size_t consumed = 0;
};

class RequestParser {
 public:
  explicit RequestParser(const Limits& limits);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds bytes. Before head_complete, bytes are copied into the head buffer; after it, body
  // bytes are only validated (chunk sizes) and counted. Smuggling defences (RFC 9112 §6.3,
  // §11.2): CL together with TE, conflicting or malformed CL, TE other than a final
  // "chunked", bad chunk sizes, obs-fold, whitespace before ':', bare CR or LF, invalid
  // header bytes and multiple Host headers are all errors.
  FeedResult feed(const char* data, std::size_t len);

  // The parsed head; valid from head_complete until next_message().
  const RequestHead& head() const;
  const ParseError& error() const;

  // Call after message_complete to parse the next pipelined request.
  void next_message();

  // Bytes of the current message's body seen so far (for metrics).
  std::uint64_t body_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ResponseParser {
 public:
  explicit ResponseParser(const Limits& limits);
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // Must be called before each response: HEAD requests get bodiless responses.
  void expect_response(bool request_was_head);

  // As RequestParser::feed. A 1xx (other than 101) response is a complete message of its own;
  // the driver forwards it and keeps reading for the final response of the same request.
  FeedResult feed(const char* data, std::size_t len);

  // The upstream closed: ends an until_close body (message_complete) or is an error.
  FeedResult finish();

  const ResponseHead& head() const;
  const ParseError& error() const;
  void next_message();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace routemesh::proxy::http
