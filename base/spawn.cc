#include "base/spawn.h"

#include <prometheus/counter.h>
#include <spdlog/spdlog.h>

namespace routemesh::base {

void log_and_count_exception(std::string_view what, prometheus::Counter* errors,
                             const std::exception_ptr& error) {
  if (!error) {
    return;
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("{} failed: {}", what, e.what());
  } catch (...) {
    spdlog::error("{} failed with a non-standard exception", what);
  }
  if (errors != nullptr) {
    errors->Increment();
  }
}

}  // namespace routemesh::base
