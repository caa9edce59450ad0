#include "proxy/http/fields.h"

#include "proxy/http/ascii.h"

namespace routemesh::proxy::http {

std::string_view find_header(const std::vector<Header>& headers, std::string_view lower_name) {
  for (const Header& f : headers) {
    if (detail::iequals(f.name, lower_name)) {
      return f.value;
    }
  }
  return {};
}

std::string_view find_cookie(const RequestHead& head, std::string_view name) {
  for (const Header& f : head.headers) {
    if (!detail::iequals(f.name, "cookie")) {
      continue;
    }
    std::string_view rest = f.value;
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      const std::string_view pair = detail::trim_ows(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      const auto eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        std::string_view value = pair.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
          value = value.substr(1, value.size() - 2);
        }
        return value;
      }
    }
  }
  return {};
}

}  // namespace routemesh::proxy::http
