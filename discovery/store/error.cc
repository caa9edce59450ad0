#include "discovery/store/error.h"

#include <string>

namespace routemesh::discovery::store {
namespace {

class StoreCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "routemesh.store"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid:
        return "invalid command";
      case errc::conflict:
        return "conflicts with the cluster state";
      case errc::not_found:
        return "no such object";
      case errc::version_mismatch:
        return "the object changed since the given version";
      case errc::key_reused:
        return "the idempotency key was first used with another request";
    }
    return "unknown store error " + std::to_string(value);
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const StoreCategory category;
  return category;
}

std::string_view to_string(errc code) {
  switch (code) {
    case errc::invalid:
      return "invalid";
    case errc::conflict:
      return "conflict";
    case errc::not_found:
      return "not_found";
    case errc::version_mismatch:
      return "version_mismatch";
    case errc::key_reused:
      return "key_reused";
  }
  return "invalid";
}

}  // namespace routemesh::discovery::store
