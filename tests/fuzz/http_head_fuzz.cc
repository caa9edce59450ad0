// libFuzzer target for the HTTP/1.1 parsers and the head rewriter.
//
// Input layout: byte 0 chooses the parser (even: request, odd: response) and, for responses,
// whether the request was HEAD; byte 1 chooses where the rest is split into two feeds. The
// driver loop mirrors the proxy session: re-feed unconsumed bytes after each event, call
// next_message() after each message, stop at an upgrade or an error. Every request head also
// goes through the session's pure helpers (routing key, field and cookie lookup, the HTTP/1.0
// downgrade).

#include "proxy/http/fields.h"
#include "proxy/http/parser.h"
#include "proxy/http/rewrite.h"
#include "proxy/http/routing_key.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace routemesh::proxy::http;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

template <typename Parser, typename OnHead, typename IsTunnel>
void run(Parser& p, const char* data, std::size_t size, std::size_t split, OnHead on_head,
         IsTunnel is_tunnel) {
  const std::size_t bounds[2] = {split, size};
  std::size_t pos = 0;
  int messages = 0;
  for (std::size_t end : bounds) {
    while (true) {
      const FeedResult r = p.feed(data + pos, end - pos);
      check(r.consumed <= end - pos);
      pos += r.consumed;
      if (r.event == Event::need_more) {
        check(pos == end);
        break;
      }
      if (r.event == Event::error) {
        check(p.error().status >= 400 && p.error().status <= 599);
        check(!p.error().reason.empty());
        return;
      }
      if (r.event == Event::head_complete) {
        on_head(p);
        continue;
      }
      if (is_tunnel(p) || ++messages > 10000) {
        return;
      }
      p.next_message();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* raw, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::uint8_t mode = raw[0];
  const auto* data = reinterpret_cast<const char*>(raw + 2);
  const std::size_t len = size - 2;
  const std::size_t split = len == 0 ? 0 : raw[1] % (len + 1);

  Limits limits;
  limits.max_header_bytes = 2048;  // small limits so the fuzzer reaches them
  limits.max_uri_bytes = 512;
  limits.max_headers = 16;
  std::string out;

  if ((mode & 1) == 0) {
    RequestParser p(limits);
    ForwardContext ctx;
    ctx.client_ip = "192.0.2.1";
    ctx.request_id = "fuzz";
    ctx.via = (mode & 2) != 0 ? "fuzz-node" : "";
    run(
        p, data, len, split,
        [&](RequestParser& rp) {
          const RequestHead& h = rp.head();
          check(h.version_major == 1 && h.version_minor <= 1);
          check(!(h.body == BodyKind::until_close));
          check(h.headers.size() <= limits.max_headers);
          check(h.target.size() <= limits.max_uri_bytes);
          out.clear();
          write_request_head(h, ctx, out);
          check(out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0);
          if (h.version_minor == 0) {
            downgrade_to_http10(out);
            check(out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0);
          }
          // What the session derives from every head: the routing key, the request id, the
          // affinity cookie. The views must stay inside the head.
          const RoutingKey key = routing_key(h);
          check(!key.path.empty() && key.path.front() == '/');
          check(key.path.find('?') == std::string_view::npos);
          (void)find_header(h.headers, "x-request-id");
          (void)find_cookie(h, "sid");
        },
        [](const RequestParser& rp) { return rp.head().upgrade || rp.head().is_connect; });
  } else {
    ResponseParser p(limits);
    p.expect_response((mode & 2) != 0);
    run(
        p, data, len, split,
        [&](ResponseParser& rp) {
          const ResponseHead& h = rp.head();
          check(h.status >= 100 && h.status <= 599);
          out.clear();
          write_response_head(h, (mode & 4) != 0, (mode & 8) != 0 ? "fuzz-node" : "", out);
          check(out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0);
        },
        [](const ResponseParser& rp) { return rp.head().upgrade; });
    if (p.finish().event == Event::error) {
      check(p.error().status == 502);
    }
  }
  return 0;
}
