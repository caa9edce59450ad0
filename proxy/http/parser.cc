#include "proxy/http/parser.h"

#include "proxy/http/ascii.h"

#include <llhttp.h>

#include <array>
#include <cctype>
#include <cstring>

// Design notes (see README.md for the whole picture):
//
// * llhttp does the tokenising and the chunked framing; we pause it in on_headers_complete and
//   on_message_complete so `feed` can stop exactly at the head / message boundaries, and
//   llhttp_get_error_pos() then tells how many input bytes belong to the message.
// * rm_llhttp is built in llhttp's strict mode (LLHTTP_STRICT_MODE=1, top-level CMakeLists):
//   inside the start line and the field lines it rejects CTLs, DEL, bare CR, bare LF, non-token
//   name bytes and whitespace before ':'. It still accepts a bare LF ending the start line or
//   the head, obs-fold, bare CRs before the request line, CTLs in a reason phrase, RTSP/ICE
//   protocols, HTTP/0.9 and 2.0 request lines, an empty field name, and a chunked body ended
//   by "\n\n". Each is a request-smuggling vector once a backend frames the
//   bytes differently (RFC 9112 §11.2), so this file adds its own checks: a raw scan of the
//   start line and of the line boundaries in the head, header semantics checked as each field
//   completes, and a check of the last four bytes of a chunked body. The test "llhttp strict
//   mode alone ..." in parser_test.cc pins down which checks llhttp makes for us.
// * Piece callbacks may split a field across feed calls, so names and values are appended to one
//   buffer and remembered as offsets; string_views are built only once the head is complete and
//   the buffer no longer grows. The buffer, span vector and header vector keep their capacity
//   across messages, so a steady keep-alive connection parses without allocating.

namespace routemesh::proxy::http {
namespace {

using detail::iequals;
using detail::lower;
using detail::trim_ows;

constexpr char kEmpty = 0;

// Bytes the head scanner must look at: CTLs (incl. CR, LF, HTAB) and DEL. Everything else
// (visible ASCII, SP, obs-text) is left to llhttp's grammar.
constexpr std::array<bool, 256> make_special_table() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) {
    t[c] = true;
  }
  t[0x7f] = true;
  return t;
}
constexpr std::array<bool, 256> kSpecial = make_special_table();

enum class Phase { head, body, done, error };

struct Span {
  std::uint32_t off = 0;
  std::uint32_t len = 0;
};

struct HeaderSpan {
  Span name;
  Span value;
};

// Static reasons; ParseError::reason points at these.
constexpr std::string_view kBareCr = "bare CR in message head";
constexpr std::string_view kBareLf = "bare LF line terminator";
constexpr std::string_view kObsFold = "obsolete line folding";
constexpr std::string_view kBadByte = "invalid byte in message head";
constexpr std::string_view kBadProtocol = "protocol is not HTTP";
constexpr std::string_view kHeadTooLarge = "header section too large";
constexpr std::string_view kTooManyHeaders = "too many header fields";
constexpr std::string_view kUriTooLong = "request target too long";
constexpr std::string_view kBadName = "invalid header field name";
constexpr std::string_view kDupCl = "multiple Content-Length fields";
constexpr std::string_view kBadCl = "invalid Content-Length";
constexpr std::string_view kClAndTe = "Content-Length with Transfer-Encoding";
constexpr std::string_view kTeNotChunked = "Transfer-Encoding does not end in chunked";
constexpr std::string_view kTeChunkedTwice = "chunked applied more than once";
constexpr std::string_view kTeHttp10 = "Transfer-Encoding in an HTTP/1.0 request";
constexpr std::string_view kDupHost = "multiple Host fields";
constexpr std::string_view kNoHost = "missing Host field";
constexpr std::string_view kBadHost = "invalid Host (expected host[:port])";
constexpr std::string_view kBadAuthority = "invalid authority in the request target";
constexpr std::string_view kTeOnlyChunked = "Transfer-Encoding other than chunked";
constexpr std::string_view kBodyTooLarge = "request body too large";
constexpr std::string_view kVersion = "HTTP version not supported";
constexpr std::string_view kBadChunkEnd = "chunked body not terminated by CRLF";
constexpr std::string_view kBadStatus = "invalid status code";
constexpr std::string_view kMalformed = "malformed message";
constexpr std::string_view kEofInMessage = "connection closed before the message ended";

// uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2): a bracketed IPv6 literal or a name
// of letters, digits, '-', '.', '_' and '~', then optionally ':' and 1 to 5 digits up to 65535.
// Empty is allowed (a request whose target has no authority sends an empty Host).
bool host_value_valid(std::string_view v) {
  if (v.empty()) {
    return true;
  }
  std::size_t i = 0;
  if (v[0] == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) {
      return false;
    }
    for (char c : v.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return false;
      }
    }
    i = close + 1;
  } else {
    while (i < v.size() && v[i] != ':') {
      const char c = v[i];
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_' &&
          c != '~') {
        return false;
      }
      ++i;
    }
    if (i == 0) {
      return false;
    }
  }
  if (i == v.size()) {
    return true;
  }
  if (v[i] != ':') {
    return false;
  }
  const std::string_view port = v.substr(i + 1);
  if (port.empty() || port.size() > 5) {
    return false;
  }
  unsigned n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') {
      return false;
    }
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n <= 65535;
}

// An origin-form ("/..."), asterisk-form ("*") target is fine as it is; an absolute-form one
// must be "scheme://authority[/path][?query]" with a valid host[:port] authority (no userinfo).
bool target_authority_valid(std::string_view t) {
  if (t.empty() || t.front() == '/' || t == "*") {
    return true;
  }
  const std::size_t scheme = t.find("://");
  if (scheme == std::string_view::npos || scheme == 0) {
    return false;
  }
  std::string_view rest = t.substr(scheme + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  return !authority.empty() && host_value_valid(authority);
}

// One llhttp parser plus our strictness checks; shared by requests and responses.
class Core {
 public:
  Core(llhttp_type_t type, const Limits& limits) : limits_(limits), request_(type == HTTP_REQUEST) {
    llhttp_init(&ll_, type, &settings());
    ll_.data = this;
    buf_.reserve(1024);
    spans_.reserve(32);
    req_.headers.reserve(32);
    resp_.headers.reserve(32);
  }

  FeedResult feed(const char* data, std::size_t len) {
    if (phase_ == Phase::error) {
      return {Event::error, 0};
    }
    if (phase_ == Phase::done) {
      // The driver must call next_message() first; stay put rather than parse a new message.
      return {Event::message_complete, 0};
    }
    if (data == nullptr || len == 0) {
      data = &kEmpty;
      len = 0;
    }
    if (paused_) {
      llhttp_resume(&ll_);
      paused_ = false;
    }
    feed_data_ = data;
    const llhttp_errno_t err = llhttp_execute(&ll_, data, len);
    std::size_t consumed = len;
    if (err != HPE_OK) {
      const char* pos = llhttp_get_error_pos(&ll_);
      consumed = (pos != nullptr && pos >= data) ? static_cast<std::size_t>(pos - data) : 0;
    }

    if (err == HPE_OK) {
      if (phase_ == Phase::head) {
        if (!scan_head(data, len)) {
          return {Event::error, 0};
        }
      } else {
        track_tail(data, len);
      }
      return {Event::need_more, len};
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      paused_ = err == HPE_PAUSED;
      if (head_just_completed_) {
        head_just_completed_ = false;
        // The head ended inside this buffer: scan its remaining bytes before publishing it.
        if (!scan_head(data, consumed) || !first_line_done_) {
          if (phase_ != Phase::error) {
            fail(request_ ? 400 : 502, kMalformed);
          }
          return {Event::error, 0};
        }
        return {Event::head_complete, consumed};
      }
      if (message_just_completed_ || err == HPE_PAUSED_UPGRADE) {
        message_just_completed_ = false;
        track_tail(data, consumed);
        // RFC 9112 §7.1: the last-chunk and the trailer section end in CRLF CRLF. llhttp also
        // ends the message on "\n\n" and "\r<any>", which a backend may frame differently.
        if (body_kind_ == BodyKind::chunked && tail_ != 0x0d0a0d0aU) {
          fail(request_ ? 400 : 502, kBadChunkEnd);
          return {Event::error, 0};
        }
        phase_ = Phase::done;
        return {Event::message_complete, consumed};
      }
      // A pause we did not ask for cannot happen; treat it as malformed input.
      fail(request_ ? 400 : 502, kMalformed);
      return {Event::error, 0};
    }
    if (phase_ != Phase::error) {
      fail_from_llhttp(err);
    }
    return {Event::error, 0};
  }

  FeedResult finish() {
    if (phase_ == Phase::error) {
      return {Event::error, 0};
    }
    if (phase_ == Phase::done) {
      return {Event::message_complete, 0};
    }
    if (phase_ == Phase::body && body_kind_ == BodyKind::until_close) {
      if (paused_) {
        // Paused in on_headers_complete: run the post-head states (no input consumed) so that
        // llhttp reaches its read-until-EOF state, where llhttp_finish completes the message.
        llhttp_resume(&ll_);
        paused_ = false;
        llhttp_errno_t err = llhttp_execute(&ll_, &kEmpty, 0);
        if (err != HPE_OK) {
          fail_from_llhttp(err);
          return {Event::error, 0};
        }
      }
      const llhttp_errno_t err = llhttp_finish(&ll_);
      if ((err == HPE_OK || err == HPE_PAUSED) && message_just_completed_) {
        message_just_completed_ = false;
        paused_ = err == HPE_PAUSED;
        phase_ = Phase::done;
        return {Event::message_complete, 0};
      }
    }
    fail(request_ ? 400 : 502, kEofInMessage);
    return {Event::error, 0};
  }

  void next_message() {
    llhttp_reset(&ll_);
    paused_ = false;
    phase_ = Phase::head;
    head_just_completed_ = false;
    message_just_completed_ = false;
    buf_.clear();
    spans_.clear();
    req_.headers.clear();
    req_ = RequestHead{.headers = std::move(req_.headers)};
    resp_.headers.clear();
    resp_ = ResponseHead{.headers = std::move(resp_.headers)};
    error_ = ParseError{};
    target_ = Span{};
    reason_ = Span{};
    field_open_ = false;
    cur_ = HeaderSpan{};
    head_bytes_ = 0;
    prev_ = 0;
    first_line_done_ = false;
    line_len_ = 0;
    line_first_ = 0;
    line_last_ = 0;
    line_ninth_ = 0;
    cl_count_ = 0;
    content_length_ = 0;
    te_seen_ = false;
    te_chunked_count_ = 0;
    te_final_chunked_ = false;
    te_fields_ = 0;
    te_only_chunked_ = true;
    upgrade_h2c_ = false;
    host_count_ = 0;
    host_ = Span{};
    upgrade_value_ = Span{};
    expect_continue_ = false;
    body_kind_ = BodyKind::none;
    body_bytes_ = 0;
    tail_ = 0;
  }

  void set_head_request(bool v) { head_request_ = v; }

  const RequestHead& request_head() const { return req_; }
  const ResponseHead& response_head() const { return resp_; }
  const ParseError& error() const { return error_; }
  std::uint64_t body_bytes() const { return body_bytes_; }

 private:
  static Core& self(llhttp_t* p) { return *static_cast<Core*>(p->data); }

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_url = &Core::on_url;
      st.on_status = &Core::on_status;
      st.on_version_complete = &Core::on_version_complete;
      st.on_header_field = &Core::on_header_field;
      st.on_header_field_complete = &Core::on_header_field_complete;
      st.on_header_value = &Core::on_header_value;
      st.on_header_value_complete = &Core::on_header_value_complete;
      st.on_headers_complete = &Core::on_headers_complete;
      st.on_body = &Core::on_body;
      st.on_message_complete = &Core::on_message_complete;
      return st;
    }();
    return s;
  }

  void fail(unsigned status, std::string_view reason) {
    if (phase_ == Phase::error) {
      return;  // keep the first cause
    }
    phase_ = Phase::error;
    error_ = ParseError{status, reason};
  }

  // For use inside callbacks: records the cause and makes llhttp stop with an error.
  int fail_cb(unsigned status, std::string_view reason) {
    fail(status, reason);
    return HPE_USER;
  }

  void fail_from_llhttp(llhttp_errno_t err) {
    if (!request_) {
      fail(502, kMalformed);
      return;
    }
    // llhttp 8.1 reports an unknown version number and a missing CRLF after the version with
    // the same errno; only the former is a 505 (RFC 9110 §15.6.6).
    if (err == HPE_INVALID_VERSION &&
        std::strcmp(llhttp_get_error_reason(&ll_), "Invalid HTTP version") == 0) {
      fail(505, kVersion);
      return;
    }
    if (err == HPE_PAUSED_H2_UPGRADE) {
      fail(505, kVersion);  // "PRI * HTTP/2.0": prior-knowledge HTTP/2 is not served here
      return;
    }
    fail(400, kMalformed);
  }

  // Appends a piece of the head to the buffer, enforcing the head size limit early.
  bool append(const char* at, std::size_t n) {
    if (buf_.size() + n > limits_.max_header_bytes) {
      return false;
    }
    buf_.append(at, n);
    return true;
  }

  std::string_view view(Span s) const { return std::string_view(buf_).substr(s.off, s.len); }

  // Raw-byte checks for what llhttp 8.1 accepts even in strict mode (RFC 9112 §2.2, §5.2,
  // RFC 9110 §5.5), as pinned down by "llhttp strict mode alone ..." in parser_test.cc: a bare
  // LF ending the start line or the head, obs-fold, bare CRs among the empty lines before the
  // start line, CTLs in a reason phrase, and a protocol other than HTTP (llhttp also takes
  // RTSP/ and ICE/). Also counts head bytes for the 431 limit.
  //
  // The start line is scanned byte by byte (it is short and carries the protocol check). In
  // the field section llhttp's strict mode itself rejects CTLs, DEL, bare CR and bare LF inside
  // a line, so only line boundaries are looked at, found with memchr: this scan used to visit
  // every head byte and cost as much as llhttp itself.
  bool scan_head(const char* data, std::size_t len) {
    head_bytes_ += len;
    if (head_bytes_ > limits_.max_header_bytes) {
      fail(request_ ? 431 : 502, kHeadTooLarge);
      return false;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(data);
    unsigned char prev = prev_;
    std::size_t i = 0;
    if (!first_line_done_ && line_len_ == 0 && prev == 0) {
      i = scan_whole_start_line(p, len);
      if (phase_ == Phase::error) {
        return false;
      }
      if (i != 0) {
        prev = '\n';
      }
    }
    for (; i < len && !first_line_done_; ++i) {
      const unsigned char c = p[i];
      if (!check_byte(prev, c, true)) {
        return false;
      }
      prev = c;
    }
    while (i < len) {
      // p[i] starts a segment: the first byte of a line, or of this call's input.
      if (!check_byte(prev, p[i], false)) {
        return false;
      }
      const void* lf = std::memchr(p + i, '\n', len - i);
      if (lf == nullptr) {
        prev = p[len - 1];
        break;
      }
      const auto j = static_cast<std::size_t>(static_cast<const unsigned char*>(lf) - p);
      if ((j > i ? p[j - 1] : prev) != '\r') {
        fail(request_ ? 400 : 502, kBareLf);
        return false;
      }
      prev = '\n';
      i = j + 1;
    }
    prev_ = prev;
    return true;
  }

  // The per-byte rules of the head, given the byte before: CR only before LF, LF only after
  // CR, no line starting with SP/HTAB after a line end (obs-fold), no CTL other than HTAB, no
  // DEL; plus the start line's own checks while `start_line`.
  bool check_byte(unsigned char prev, unsigned char c, bool start_line) {
    if (prev == '\r' && c != '\n') {
      fail(request_ ? 400 : 502, kBareCr);
      return false;
    }
    if (start_line && !scan_first_line(c)) {
      return false;
    }
    if (kSpecial[c]) {
      if (c == '\n') {
        if (prev != '\r') {
          fail(request_ ? 400 : 502, kBareLf);
          return false;
        }
      } else if (c != '\r' && c != '\t') {
        fail(request_ ? 400 : 502, kBadByte);
        return false;
      }
    }
    if (prev == '\n' && (c == ' ' || c == '\t')) {
      fail(request_ ? 400 : 502, kObsFold);
      return false;
    }
    return true;
  }

  // The usual case of the start line: it begins this input, ends in it with CRLF and holds no
  // CTL but HTAB. Leaves the same state the per-byte path would and returns the offset after
  // its LF, or 0 to leave the line to the per-byte path (which then finds the same errors).
  std::size_t scan_whole_start_line(const unsigned char* p, std::size_t len) {
    const void* lf = std::memchr(p, '\n', len);
    if (lf == nullptr) {
      return 0;
    }
    const auto j = static_cast<std::size_t>(static_cast<const unsigned char*>(lf) - p);
    if (j < 2 || p[j - 1] != '\r') {
      return 0;
    }
    const std::size_t n = j - 1;  // the line without its CRLF
    for (std::size_t k = 0; k < n; ++k) {
      if (kSpecial[p[k]] && p[k] != '\t') {
        return 0;
      }
    }
    std::uint64_t first = 0;
    for (std::size_t k = 0; k < n && k < 5; ++k) {
      first = (first << 8) | p[k];
    }
    std::uint64_t last = 0;
    for (std::size_t k = n > 8 ? n - 8 : 0; k < n; ++k) {
      last = (last << 8) | p[k];
    }
    line_first_ = first;
    line_last_ = last;
    line_ninth_ = n >= 9 ? p[n - 9] : 0;
    line_len_ = static_cast<std::uint32_t>(n);
    return finish_start_line() ? j + 1 : 0;
  }

  // Tracks the first 5 and last 8 bytes of the start line (leading empty lines skipped,
  // RFC 9112 §2.2) and checks the protocol name when the line ends.
  bool scan_first_line(unsigned char c) {
    if (c == '\r') {
      return true;
    }
    if (c != '\n') {
      if (line_len_ < 5) {
        line_first_ = (line_first_ << 8) | c;
      }
      line_ninth_ = static_cast<unsigned char>(line_last_ >> 56);
      line_last_ = (line_last_ << 8) | c;
      ++line_len_;
      return true;
    }
    if (line_len_ == 0) {
      return true;
    }
    return finish_start_line();
  }

  bool finish_start_line() {
    first_line_done_ = true;
    constexpr std::uint64_t kHttpSlash = 0x485454502fULL;  // "HTTP/"
    bool ok = false;
    if (request_) {
      // request-line ends in SP "HTTP/" DIGIT "." DIGIT (RFC 9112 §3, §2.3); without the SP
      // llhttp would take "GET /xHTTP/1.1" as an HTTP/0.9 request.
      ok = line_len_ >= 9 && line_ninth_ == ' ' && (line_last_ >> 24) == kHttpSlash &&
           ((line_last_ >> 8) & 0xff) == '.';
    } else {
      ok = line_len_ >= 5 && line_first_ == kHttpSlash;
    }
    if (!ok) {
      fail(request_ ? 400 : 502, kBadProtocol);
    }
    return ok;
  }

  // Keeps the last four body bytes, for the chunked terminator check.
  void track_tail(const char* data, std::size_t len) {
    const std::size_t start = len > 4 ? len - 4 : 0;
    for (std::size_t i = start; i < len; ++i) {
      tail_ = (tail_ << 8) | static_cast<unsigned char>(data[i]);
    }
  }

  static int on_url(llhttp_t* p, const char* at, std::size_t n) {
    Core& c = self(p);
    if (c.target_.len == 0) {
      c.target_.off = static_cast<std::uint32_t>(c.buf_.size());
    }
    if (c.target_.len + n > c.limits_.max_uri_bytes) {
      return c.fail_cb(414, kUriTooLong);
    }
    if (!c.append(at, n)) {
      return c.fail_cb(431, kHeadTooLarge);
    }
    c.target_.len += static_cast<std::uint32_t>(n);
    return 0;
  }

  static int on_status(llhttp_t* p, const char* at, std::size_t n) {
    Core& c = self(p);
    if (c.reason_.len == 0) {
      c.reason_.off = static_cast<std::uint32_t>(c.buf_.size());
    }
    if (!c.append(at, n)) {
      return c.fail_cb(502, kHeadTooLarge);
    }
    c.reason_.len += static_cast<std::uint32_t>(n);
    return 0;
  }

  static int on_version_complete(llhttp_t* p) {
    Core& c = self(p);
    // Only HTTP/1.0 and HTTP/1.1 are spoken here; llhttp also accepts 0.9 and 2.0.
    if (p->http_major != 1 || p->http_minor > 1) {
      return c.fail_cb(c.request_ ? 505 : 502, kVersion);
    }
    return 0;
  }

  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    Core& c = self(p);
    if (c.phase_ != Phase::head) {
      return 0;  // trailer fields: validated by llhttp, forwarded verbatim, not interpreted
    }
    if (!c.field_open_) {
      if (c.spans_.size() >= c.limits_.max_headers) {
        return c.fail_cb(c.request_ ? 431 : 502, kTooManyHeaders);
      }
      c.field_open_ = true;
      c.cur_ = HeaderSpan{};
      c.cur_.name.off = static_cast<std::uint32_t>(c.buf_.size());
    }
    if (!c.append(at, n)) {
      return c.fail_cb(c.request_ ? 431 : 502, kHeadTooLarge);
    }
    c.cur_.name.len += static_cast<std::uint32_t>(n);
    return 0;
  }

  static int on_header_field_complete(llhttp_t* p) {
    Core& c = self(p);
    if (c.phase_ != Phase::head) {
      return 0;
    }
    c.field_open_ = false;
    // RFC 9110 §5.1: the name is a non-empty token. llhttp's strict mode rejects every
    // non-token byte in a name (whitespace before ':' included, RFC 9112 §5.1) but accepts an
    // empty name.
    if (c.cur_.name.len == 0) {
      return c.fail_cb(c.request_ ? 400 : 502, kBadName);
    }
    c.cur_.value.off = static_cast<std::uint32_t>(c.buf_.size());
    c.cur_.value.len = 0;
    return 0;
  }

  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    Core& c = self(p);
    if (c.phase_ != Phase::head) {
      // A trailer field. llhttp unfolds obs-fold here without a word: a piece of a value that
      // starts with SP or HTAB right after a line end is a folded line (RFC 9112 §5.2: reject).
      if (n > 0 && (at[0] == ' ' || at[0] == '\t')) {
        const unsigned char before = at > c.feed_data_ ? static_cast<unsigned char>(at[-1])
                                                       : static_cast<unsigned char>(c.tail_ & 0xff);
        if (before == '\n') {
          return c.fail_cb(c.request_ ? 400 : 502, kObsFold);
        }
      }
      return 0;
    }
    if (!c.append(at, n)) {
      return c.fail_cb(c.request_ ? 431 : 502, kHeadTooLarge);
    }
    c.cur_.value.len += static_cast<std::uint32_t>(n);
    return 0;
  }

  static int on_header_value_complete(llhttp_t* p) {
    Core& c = self(p);
    if (c.phase_ != Phase::head) {
      return 0;
    }
    // RFC 9112 §5: OWS around the value is not part of it. llhttp drops the leading OWS only.
    std::string_view value = c.view(c.cur_.value);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
      value.remove_suffix(1);
    }
    c.cur_.value.len = static_cast<std::uint32_t>(value.size());
    // RFC 9110 §5.5 (no CTL other than HTAB, no DEL in a value) is enforced by llhttp's strict
    // mode before this callback runs.
    c.spans_.push_back(c.cur_);
    return c.interpret(c.view(c.cur_.name), value);
  }

  // Framing-relevant fields are checked as soon as they complete.
  int interpret(std::string_view name, std::string_view value) {
    const unsigned bad = request_ ? 400 : 502;
    if (iequals(name, "content-length")) {
      // RFC 9112 §6.3 rule 5: a repeated Content-Length is rejected even when equal; simplest
      // and removes any ambiguity between hops.
      if (++cl_count_ > 1) {
        return fail_cb(bad, kDupCl);
      }
      if (value.empty() || value.size() > 19) {
        return fail_cb(bad, kBadCl);
      }
      std::uint64_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') {
          return fail_cb(bad, kBadCl);
        }
        v = v * 10 + static_cast<std::uint64_t>(ch - '0');
      }
      content_length_ = v;
      return 0;
    }
    if (iequals(name, "transfer-encoding")) {
      // RFC 9112 §6.1: a server MAY reject TE in HTTP/1.0 requests; we must, since a 1.0 hop
      // would frame the body by Content-Length or by close.
      if (request_ && ll_.http_minor == 0) {
        return fail_cb(400, kTeHttp10);
      }
      te_seen_ = true;
      // Requests: exactly one field with the single coding "chunked" (checked at the end of
      // the head, so that Content-Length + Transfer-Encoding still answers 400). Anything else
      // is a coding we do not implement (RFC 9112 §6.1: 501), and forwarding it would let the
      // next hop frame the body differently from us.
      if (request_) {
        ++te_fields_;
        if (!iequals(trim_ows(value), "chunked")) {
          te_only_chunked_ = false;
        }
        return 0;
      }
      std::string_view rest = value;
      while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        const std::string_view element = trim_ows(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (element.empty()) {
          continue;  // RFC 9110 §5.6.1: empty list elements are ignored
        }
        if (iequals(element, "chunked")) {
          // RFC 9112 §6.1: chunked MUST NOT be applied more than once.
          if (++te_chunked_count_ > 1) {
            return fail_cb(bad, kTeChunkedTwice);
          }
          te_final_chunked_ = true;
        } else {
          if (te_chunked_count_ > 0) {
            // A coding after chunked: chunked is no longer final (RFC 9112 §6.3 rule 4).
            return fail_cb(bad, kTeNotChunked);
          }
          te_final_chunked_ = false;
        }
      }
      return 0;
    }
    if (request_ && iequals(name, "host")) {
      // RFC 9112 §3.2: more than one Host field -> 400.
      if (++host_count_ > 1) {
        return fail_cb(400, kDupHost);
      }
      host_ = cur_.value;
      return 0;
    }
    if (iequals(name, "upgrade")) {
      upgrade_value_ = cur_.value;
      // Every protocol of every Upgrade field (RFC 9110 §7.8: a comma-separated list).
      std::string_view rest = value;
      while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        std::string_view token = trim_ows(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        token = token.substr(0, token.find('/'));
        if (iequals(trim_ows(token), "h2c")) {
          upgrade_h2c_ = true;
        }
      }
      return 0;
    }
    if (request_ && iequals(name, "expect")) {
      expect_continue_ = iequals(value, "100-continue");
      return 0;
    }
    return 0;
  }

  template <typename Head>
  void publish_headers(Head& h) {
    h.headers.clear();
    for (const HeaderSpan& s : spans_) {
      h.headers.push_back(Header{view(s.name), view(s.value)});
    }
  }

  static int on_headers_complete(llhttp_t* p) {
    Core& c = self(p);
    const int rc = c.request_ ? c.request_head_complete() : c.response_head_complete();
    if (rc != 0) {
      return rc;
    }
    c.phase_ = Phase::body;
    c.head_just_completed_ = true;
    return HPE_PAUSED;
  }

  int request_head_complete() {
    // on_version_complete never runs for a version-less (HTTP/0.9 style) request line; that is
    // a malformed line rather than a version we could name, as the head scanner also finds.
    if (ll_.http_major != 1 || ll_.http_minor > 1) {
      return fail_cb(400, kBadProtocol);
    }
    // RFC 9112 §6.1: a sender MUST NOT send Content-Length with Transfer-Encoding; as an
    // intermediary we reject rather than pick one (§6.3 rule 3 allows either).
    if (te_seen_ && cl_count_ > 0) {
      return fail_cb(400, kClAndTe);
    }
    if (te_seen_ && (te_fields_ != 1 || !te_only_chunked_)) {
      return fail_cb(501, kTeOnlyChunked);
    }
    if (ll_.http_minor == 1 && host_count_ == 0) {
      return fail_cb(400, kNoHost);  // RFC 9112 §3.2
    }
    // RFC 9112 §3.2: Host is uri-host [":" port]; userinfo, a path or a non-numeric port
    // would make us route by one name while the backend sees another.
    if (host_count_ > 0 && !host_value_valid(view(host_))) {
      return fail_cb(400, kBadHost);
    }
    if (ll_.method != HTTP_CONNECT && !target_authority_valid(view(target_))) {
      return fail_cb(400, kBadAuthority);
    }
    RequestHead& h = req_;
    h.method = llhttp_method_name(static_cast<llhttp_method_t>(ll_.method));
    h.target = view(target_);
    h.version_major = ll_.http_major;
    h.version_minor = ll_.http_minor;
    publish_headers(h);
    h.host = host_count_ > 0 ? view(host_) : std::string_view{};
    h.is_connect = ll_.method == HTTP_CONNECT;
    h.is_head = ll_.method == HTTP_HEAD;
    switch (ll_.method) {
      case HTTP_GET:
      case HTTP_HEAD:
      case HTTP_OPTIONS:
      case HTTP_PUT:
      case HTTP_DELETE:
      case HTTP_TRACE:
        h.idempotent = true;
        break;
      default:
        h.idempotent = false;
        break;
    }
    // RFC 9110 §7.8: Upgrade is ignored in HTTP/1.0 requests. "h2c" is not tunnelled either:
    // an h2c tunnel would let the client send further requests the proxy never routes or
    // checks (h2c smuggling), so it is forwarded as a plain request without the upgrade.
    if (!h.is_connect && ll_.upgrade != 0 && (ll_.http_minor == 0 || upgrade_h2c_)) {
      ll_.upgrade = 0;
    }
    h.upgrade = ll_.upgrade != 0 && !h.is_connect;
    h.expect_continue = expect_continue_ && ll_.http_minor == 1;
    if (h.is_connect) {
      body_kind_ = BodyKind::none;  // llhttp stops after a CONNECT head; the driver refuses it
    } else if (te_seen_) {
      body_kind_ = BodyKind::chunked;
    } else if (cl_count_ > 0 && content_length_ > 0) {
      body_kind_ = BodyKind::content_length;
    } else {
      body_kind_ = BodyKind::none;  // RFC 9112 §6.3 rule 7: no framing in a request = no body
    }
    h.body = body_kind_;
    h.content_length = body_kind_ == BodyKind::content_length ? content_length_ : 0;
    h.keep_alive = llhttp_should_keep_alive(&ll_) != 0;
    // RFC 9110 §15.5.14: refused before a byte of the body is read or forwarded.
    if (limits_.max_body_bytes != 0 && h.content_length > limits_.max_body_bytes) {
      return fail_cb(413, kBodyTooLarge);
    }
    return 0;
  }

  int response_head_complete() {
    if (ll_.http_major != 1 || ll_.http_minor > 1) {
      return fail_cb(502, kVersion);
    }
    if (te_seen_ && cl_count_ > 0) {
      return fail_cb(502, kClAndTe);
    }
    // RFC 9110 §15: status codes outside 100..599 are invalid; llhttp accepts any 3 digits.
    if (ll_.status_code < 100 || ll_.status_code > 599) {
      return fail_cb(502, kBadStatus);
    }
    ResponseHead& h = resp_;
    h.status = ll_.status_code;
    h.reason = view(reason_);
    h.version_major = ll_.http_major;
    h.version_minor = ll_.http_minor;
    publish_headers(h);
    h.upgrade = false;
    // RFC 9112 §6.3 rule 1: responses to HEAD, 1xx, 204 and 304 end with the head whatever
    // their framing fields say. Setting F_SKIPBODY here is what returning 1 from
    // on_headers_complete does; we return HPE_PAUSED instead, so we set the flag ourselves.
    const unsigned s = h.status;
    if (s == 101) {
      // RFC 9110 §15.2.2: after 101 the connection speaks the new protocol; make llhttp stop
      // after the head even when the Upgrade/Connection fields are missing.
      h.upgrade = true;
      ll_.upgrade = 1;
      ll_.flags |= F_SKIPBODY;
      body_kind_ = BodyKind::none;
    } else if (head_request_ || s / 100 == 1 || s == 204 || s == 304) {
      ll_.upgrade = 0;
      ll_.flags |= F_SKIPBODY;
      body_kind_ = BodyKind::none;
    } else {
      ll_.upgrade = 0;
      if (te_seen_ && te_final_chunked_) {
        body_kind_ = BodyKind::chunked;
      } else if (te_seen_) {
        body_kind_ = BodyKind::until_close;  // RFC 9112 §6.3 rule 4 (responses)
      } else if (cl_count_ > 0) {
        body_kind_ = content_length_ > 0 ? BodyKind::content_length : BodyKind::none;
      } else {
        body_kind_ = BodyKind::until_close;  // RFC 9112 §6.3 rule 8
      }
    }
    h.body = body_kind_;
    h.content_length = body_kind_ == BodyKind::content_length ? content_length_ : 0;
    h.keep_alive = !h.upgrade && llhttp_should_keep_alive(&ll_) != 0;
    return 0;
  }

  static int on_body(llhttp_t* p, const char*, std::size_t n) {
    Core& c = self(p);
    c.body_bytes_ += n;
    // A chunked request body is counted as it streams (a Content-Length one was checked at
    // the head).
    if (c.request_ && c.limits_.max_body_bytes != 0 && c.body_bytes_ > c.limits_.max_body_bytes) {
      return c.fail_cb(413, kBodyTooLarge);
    }
    return 0;
  }

  static int on_message_complete(llhttp_t* p) {
    Core& c = self(p);
    c.message_just_completed_ = true;
    return HPE_PAUSED;
  }

  llhttp_t ll_{};
  Limits limits_;
  bool request_;
  bool head_request_ = false;  // responses: the request was HEAD

  Phase phase_ = Phase::head;
  bool paused_ = false;
  bool head_just_completed_ = false;
  bool message_just_completed_ = false;

  std::string buf_;
  std::vector<HeaderSpan> spans_;
  RequestHead req_;
  ResponseHead resp_;
  ParseError error_;

  Span target_;
  Span reason_;
  bool field_open_ = false;
  HeaderSpan cur_;

  // Raw head scanner state.
  std::size_t head_bytes_ = 0;
  unsigned char prev_ = 0;
  bool first_line_done_ = false;
  std::uint32_t line_len_ = 0;
  std::uint64_t line_first_ = 0;
  std::uint64_t line_last_ = 0;
  unsigned char line_ninth_ = 0;  // the byte before the last 8 of the start line

  // Framing fields.
  unsigned cl_count_ = 0;
  std::uint64_t content_length_ = 0;
  bool te_seen_ = false;
  unsigned te_chunked_count_ = 0;
  bool te_final_chunked_ = false;
  unsigned te_fields_ = 0;       // requests: Transfer-Encoding fields seen
  bool te_only_chunked_ = true;  // requests: every TE field is exactly "chunked"
  bool upgrade_h2c_ = false;     // an Upgrade field lists h2c
  unsigned host_count_ = 0;
  Span host_;
  Span upgrade_value_;
  bool expect_continue_ = false;

  BodyKind body_kind_ = BodyKind::none;
  std::uint64_t body_bytes_ = 0;
  std::uint32_t tail_ = 0;
  const char* feed_data_ = nullptr;  // the buffer llhttp_execute is parsing now
};

}  // namespace

struct RequestParser::Impl {
  explicit Impl(const Limits& limits) : core(HTTP_REQUEST, limits) {}
  Core core;
};

RequestParser::RequestParser(const Limits& limits) : impl_(std::make_unique<Impl>(limits)) {}
RequestParser::~RequestParser() = default;

FeedResult RequestParser::feed(const char* data, std::size_t len) {
  return impl_->core.feed(data, len);
}
const RequestHead& RequestParser::head() const {
  return impl_->core.request_head();
}
const ParseError& RequestParser::error() const {
  return impl_->core.error();
}
void RequestParser::next_message() {
  impl_->core.next_message();
}
std::uint64_t RequestParser::body_bytes() const {
  return impl_->core.body_bytes();
}

struct ResponseParser::Impl {
  explicit Impl(const Limits& limits) : core(HTTP_RESPONSE, limits) {}
  Core core;
};

ResponseParser::ResponseParser(const Limits& limits) : impl_(std::make_unique<Impl>(limits)) {}
ResponseParser::~ResponseParser() = default;

void ResponseParser::expect_response(bool request_was_head) {
  impl_->core.set_head_request(request_was_head);
}
FeedResult ResponseParser::feed(const char* data, std::size_t len) {
  return impl_->core.feed(data, len);
}
FeedResult ResponseParser::finish() {
  return impl_->core.finish();
}
const ResponseHead& ResponseParser::head() const {
  return impl_->core.response_head();
}
const ParseError& ResponseParser::error() const {
  return impl_->core.error();
}
void ResponseParser::next_message() {
  impl_->core.next_message();
}

}  // namespace routemesh::proxy::http
