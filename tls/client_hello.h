#pragma once
// The server name a TLS client asks for, read from its ClientHello before any TLS library sees
// the connection (RFC 8446 section 4.1.2, RFC 6066 section 3). The HTTPS port peeks at the
// first bytes of a connection with this: a name routed by SNI is spliced to its service
// untouched (passthrough); any other connection is handed to OpenSSL for termination. Pure:
// bytes in, a verdict out.

#include <cstddef>
#include <string>
#include <string_view>

namespace routemesh::tls {

struct ClientHelloInfo {
  enum class Status {
    need_more,  // a prefix of a ClientHello: read more and call again
    complete,   // a whole ClientHello; `server_name` is its SNI ("" = none)
    not_tls,    // not a TLS handshake record, or a malformed ClientHello
  };
  Status status = Status::need_more;
  std::string server_name;  // lower-case host name, without a trailing dot
  std::string problem;      // for not_tls: what was wrong, for logs
};

// The largest ClientHello read_client_hello waits for: bytes beyond this are not_tls. Real
// ClientHellos are a few hundred bytes (about 1.8 KiB with a post-quantum key share).
inline constexpr std::size_t kMaxClientHello = 16 * 1024 + 5;

// Reads the ClientHello at the start of `bytes` (the first bytes a client sent, possibly split
// over several handshake records). A server_name that is not a valid host name is not_tls.
ClientHelloInfo read_client_hello(std::string_view bytes);

}  // namespace routemesh::tls
