#include "tls/client_hello.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using namespace routemesh;
using Status = tls::ClientHelloInfo::Status;

namespace {

// The first flight of a real OpenSSL client: its ClientHello record(s), SNI `name` ("" = none).
std::string real_client_hello(const char* name) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  if (name[0] != '\0') {
    SSL_set_tlsext_host_name(ssl, name);
  }
  SSL_connect(ssl);  // wants to read the ServerHello: returns -1 after writing the hello
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  std::string hello(data, static_cast<std::size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return hello;
}

void put16(std::string& s, std::size_t v) {
  s += static_cast<char>((v >> 8) & 0xff);
  s += static_cast<char>(v & 0xff);
}

// A minimal ClientHello body with the given extensions block (already length-prefixed or
// empty), wrapped in a handshake header and one record.
std::string hello_with_extensions(const std::string& extensions) {
  std::string body;
  body += "\x03\x03";
  body += std::string(32, 'r');
  body += '\0';  // session id
  put16(body, 2);
  body += "\x13\x01";  // one cipher suite
  body += "\x01";
  body += '\0';  // compression: null
  body += extensions;
  std::string hs;
  hs += '\x01';
  hs += '\0';
  put16(hs, body.size());
  hs += body;
  std::string rec = "\x16\x03\x01";
  put16(rec, hs.size());
  return rec + hs;
}

std::string sni_extension(const std::string& name) {
  std::string list;
  list += '\0';  // host_name
  put16(list, name.size());
  list += name;
  std::string data;
  put16(data, list.size());
  data += list;
  std::string ext;
  put16(ext, 0);  // server_name
  put16(ext, data.size());
  ext += data;
  std::string block;
  put16(block, ext.size());
  return block + ext;
}

}  // namespace

TEST_CASE("a real ClientHello gives its server name, lower-cased") {
  const std::string hello = real_client_hello("Web.Example.test");
  auto info = tls::read_client_hello(hello);
  REQUIRE(info.status == Status::complete);
  CHECK(info.server_name == "web.example.test");

  auto none = tls::read_client_hello(real_client_hello(""));
  REQUIRE(none.status == Status::complete);
  CHECK(none.server_name.empty());
}

TEST_CASE("every prefix of a ClientHello needs more, never a verdict") {
  const std::string hello = real_client_hello("a.test");
  for (std::size_t n = 0; n < hello.size(); ++n) {
    CAPTURE(n);
    CHECK(tls::read_client_hello(std::string_view(hello).substr(0, n)).status == Status::need_more);
  }
}

TEST_CASE("a ClientHello split over two handshake records is put back together") {
  const std::string hello = real_client_hello("split.test");
  const std::string hs = hello.substr(5);
  const std::size_t half = hs.size() / 2;
  std::string two;
  for (const std::string& part : {hs.substr(0, half), hs.substr(half)}) {
    two += "\x16\x03\x01";
    put16(two, part.size());
    two += part;
  }
  for (std::size_t n = 0; n < two.size(); ++n) {
    CHECK(tls::read_client_hello(std::string_view(two).substr(0, n)).status == Status::need_more);
  }
  auto info = tls::read_client_hello(two);
  REQUIRE(info.status == Status::complete);
  CHECK(info.server_name == "split.test");
}

TEST_CASE("a trailing dot is dropped; a name that is not a host name is refused") {
  auto dot = tls::read_client_hello(hello_with_extensions(sni_extension("a.test.")));
  REQUIRE(dot.status == Status::complete);
  CHECK(dot.server_name == "a.test");
  for (const char* bad : {"a b", "a/b", "", "a..b", "a_b\\x01"}) {
    CAPTURE(bad);
    CHECK(tls::read_client_hello(hello_with_extensions(sni_extension(bad))).status ==
          Status::not_tls);
  }
}

TEST_CASE("no extensions at all: complete, without a name") {
  auto info = tls::read_client_hello(hello_with_extensions(""));
  REQUIRE(info.status == Status::complete);
  CHECK(info.server_name.empty());
}

TEST_CASE("plaintext, other record types and malformed hellos are not TLS") {
  CHECK(tls::read_client_hello("GET / HTTP/1.1\r\nHost: a\r\n\r\n").status == Status::not_tls);
  CHECK(tls::read_client_hello(std::string("\x15\x03\x03\x00\x02\x02\x28", 7)).status ==
        Status::not_tls);  // an alert
  std::string hello = hello_with_extensions(sni_extension("a.test"));
  // The extensions block claims more bytes than the hello holds.
  std::string bad = hello;
  bad[bad.size() - sni_extension("a.test").size()] = '\x7f';
  CHECK(tls::read_client_hello(bad).status == Status::not_tls);
  // Two server_name extensions.
  std::string ext = sni_extension("a.test").substr(2);
  std::string block;
  put16(block, ext.size() * 2);
  CHECK(tls::read_client_hello(hello_with_extensions(block + ext + ext)).status == Status::not_tls);
  // A record longer than TLS allows.
  CHECK(tls::read_client_hello(std::string("\x16\x03\x01\x48\x01", 5)).status == Status::not_tls);
  // A first handshake message that is not a ClientHello (a ServerHello).
  std::string server = hello;
  server[5] = '\x02';
  CHECK(tls::read_client_hello(server).status == Status::not_tls);
}
