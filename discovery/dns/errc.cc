#include "discovery/dns/errc.h"

#include <string>

namespace routemesh::discovery::dns {

namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "routemesh.dns"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::upstream_timeout:
        return "upstream resolver did not answer in time";
      case errc::upstream_unreachable:
        return "upstream resolver unreachable";
      case errc::upstream_closed:
        return "upstream resolver closed the connection";
    }
    return "unknown dns error";
  }
};

}  // namespace

const boost::system::error_category& dns_category() noexcept {
  static const Category category;
  return category;
}

boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), dns_category()};
}

}  // namespace routemesh::discovery::dns
