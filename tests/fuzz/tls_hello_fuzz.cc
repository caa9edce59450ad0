// libFuzzer target for the ClientHello reader of the HTTPS port (tls/client_hello.h): the
// first bytes of every connection to that port, from anyone.
//
// Besides not crashing: a complete hello's name is a lower-case host name without a trailing
// dot; the verdict on the input does not change with bytes appended after a complete hello
// or a refusal; and a prefix of input that needs more needs more too (the reader never
// decides early on a prefix).

#include "tls/client_hello.h"

#include "base/address.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using routemesh::tls::ClientHelloInfo;
using routemesh::tls::read_client_hello;
using Status = ClientHelloInfo::Status;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const ClientHelloInfo info = read_client_hello(bytes);
  if (info.status == Status::complete && !info.server_name.empty()) {
    check(routemesh::base::is_host_name(info.server_name));
    check(info.server_name.back() != '.');
    for (char c : info.server_name) {
      check(!(c >= 'A' && c <= 'Z'));
    }
  }
  if (info.status != Status::need_more) {
    std::string longer(bytes);
    longer.append("\x16\x03\x01\x00\x05garbage", 13);
    const ClientHelloInfo again = read_client_hello(longer);
    check(again.status == info.status);
    check(again.server_name == info.server_name);
  } else {
    for (std::size_t cut : {size / 2, size / 3, size > 0 ? size - 1 : 0}) {
      check(read_client_hello(bytes.substr(0, cut)).status == Status::need_more);
    }
  }
  return 0;
}
