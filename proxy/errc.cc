#include "proxy/errc.h"

#include <cerrno>
#include <string>

namespace routemesh::proxy {
namespace {

class ProxyCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "routemesh.proxy"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::upstream_connect_failed:
        return "cannot connect to the upstream";
      case errc::upstream_connect_timeout:
        return "connecting to the upstream timed out";
      case errc::upstream_reset:
        return "the upstream closed the connection before responding";
      case errc::upstream_timeout:
        return "no response from the upstream in time";
      case errc::upstream_malformed:
        return "invalid response from the upstream";
      case errc::upstream_aborted:
        return "the upstream failed in the middle of the response body";
      case errc::client_gone:
        return "the client went away";
      case errc::bad_request_body:
        return "invalid request body framing";
      case errc::killed:
        return "cancelled by shutdown";
      case errc::local_resources:
        return "this node is out of descriptors, memory or local ports";
      case errc::request_body_timeout:
        return "the request body did not arrive in time";
    }
    return "unknown proxy error";
  }
};

}  // namespace

bool is_local_resource_error(const boost::system::error_code& ec) noexcept {
  if (ec.category() != boost::system::system_category() &&
      ec.category() != boost::system::generic_category()) {
    return false;
  }
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM || v == EADDRNOTAVAIL;
}

const boost::system::error_category& proxy_category() noexcept {
  static const ProxyCategory category;
  return category;
}

boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), proxy_category()};
}

}  // namespace routemesh::proxy
