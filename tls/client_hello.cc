#include "tls/client_hello.h"

#include "base/address.h"

#include <cstdint>

namespace routemesh::tls {

namespace {

using Status = ClientHelloInfo::Status;

constexpr std::uint8_t kHandshakeRecord = 22;
constexpr std::uint8_t kClientHello = 1;
constexpr std::uint16_t kServerNameExtension = 0;
constexpr std::uint8_t kHostName = 0;

// A bounds-checked reader over the ClientHello body.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  bool ok() const { return ok_; }
  std::size_t left() const { return bytes_.size() - at_; }

  std::uint32_t number(std::size_t width) {
    if (!ok_ || left() < width) {
      ok_ = false;
      return 0;
    }
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < width; ++i) {
      v = (v << 8) | static_cast<std::uint8_t>(bytes_[at_ + i]);
    }
    at_ += width;
    return v;
  }
  std::string_view take(std::size_t n) {
    if (!ok_ || left() < n) {
      ok_ = false;
      return {};
    }
    std::string_view out = bytes_.substr(at_, n);
    at_ += n;
    return out;
  }
  // A field preceded by its length in `width` bytes.
  std::string_view vector(std::size_t width) { return take(number(width)); }

 private:
  std::string_view bytes_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

ClientHelloInfo fail(std::string problem) {
  ClientHelloInfo info;
  info.status = Status::not_tls;
  info.problem = std::move(problem);
  return info;
}

// The ClientHello body (after the 4-byte handshake header).
ClientHelloInfo parse_body(std::string_view body) {
  Reader r(body);
  r.number(2);  // legacy_version
  r.take(32);   // random
  r.vector(1);  // legacy_session_id
  r.vector(2);  // cipher_suites
  r.vector(1);  // legacy_compression_methods
  ClientHelloInfo info;
  info.status = Status::complete;
  if (!r.ok()) {
    return fail("truncated ClientHello");
  }
  if (r.left() == 0) {
    return info;  // no extensions (TLS 1.2 and older may omit them): no SNI
  }
  Reader extensions(r.vector(2));
  if (!r.ok()) {
    return fail("truncated extensions");
  }
  bool seen = false;
  while (extensions.ok() && extensions.left() > 0) {
    const std::uint32_t type = extensions.number(2);
    std::string_view data = extensions.vector(2);
    if (!extensions.ok()) {
      return fail("truncated extension");
    }
    if (type != kServerNameExtension) {
      continue;
    }
    if (seen) {
      return fail("two server_name extensions");
    }
    seen = true;
    Reader names(data);
    Reader list(names.vector(2));
    if (!names.ok() || names.left() != 0) {
      return fail("malformed server_name extension");
    }
    while (list.ok() && list.left() > 0) {
      const std::uint32_t name_type = list.number(1);
      std::string_view name = list.vector(2);
      if (!list.ok()) {
        return fail("malformed server_name list");
      }
      if (name_type != kHostName || !info.server_name.empty()) {
        continue;  // RFC 6066: one host_name; other types are not defined
      }
      if (name.ends_with('.')) {
        name.remove_suffix(1);
      }
      if (name.empty() || !base::is_host_name(name)) {
        return fail("server_name is not a host name");
      }
      info.server_name.assign(name);
      for (char& c : info.server_name) {
        if (c >= 'A' && c <= 'Z') {
          c = static_cast<char>(c - 'A' + 'a');
        }
      }
    }
  }
  return info;
}

}  // namespace

ClientHelloInfo read_client_hello(std::string_view bytes) {
  // Handshake messages may be fragmented over several records (RFC 8446 section 5.1):
  // collect the fragments until the ClientHello's declared length is there.
  std::string handshake;
  std::size_t at = 0;
  for (;;) {
    if (bytes.size() - at < 5) {
      return bytes.size() > kMaxClientHello ? fail("ClientHello too large") : ClientHelloInfo{};
    }
    const auto type = static_cast<std::uint8_t>(bytes[at]);
    const auto major = static_cast<std::uint8_t>(bytes[at + 1]);
    const std::size_t length =
        (static_cast<std::uint8_t>(bytes[at + 3]) << 8) | static_cast<std::uint8_t>(bytes[at + 4]);
    if (type != kHandshakeRecord || major != 3) {
      return fail("not a TLS handshake record");
    }
    if (length == 0 || length > 16 * 1024) {
      return fail("bad record length");
    }
    if (at + 5 + length > kMaxClientHello) {
      return fail("ClientHello too large");
    }
    if (bytes.size() - at - 5 < length) {
      return ClientHelloInfo{};  // the rest of this record is still on its way
    }
    handshake.append(bytes.substr(at + 5, length));
    at += 5 + length;
    if (handshake.size() < 4) {
      continue;
    }
    if (static_cast<std::uint8_t>(handshake[0]) != kClientHello) {
      return fail("the first handshake message is not a ClientHello");
    }
    const std::size_t body = (static_cast<std::uint8_t>(handshake[1]) << 16) |
                             (static_cast<std::uint8_t>(handshake[2]) << 8) |
                             static_cast<std::uint8_t>(handshake[3]);
    if (body + 4 > kMaxClientHello) {
      return fail("ClientHello too large");
    }
    if (handshake.size() >= body + 4) {
      return parse_body(std::string_view(handshake).substr(4, body));
    }
  }
}

}  // namespace routemesh::tls
