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

namespace {

bool same_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (detail::lower(a[i]) != detail::lower(b[i])) {
      return false;
    }
  }
  return true;
}

// Calls f(name) for each protocol name (the part before '/') of every Upgrade field.
template <class F>
void for_each_upgrade(const std::vector<Header>& headers, F f) {
  for (const Header& h : headers) {
    if (!detail::iequals(h.name, "upgrade")) {
      continue;
    }
    std::string_view rest = h.value;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      std::string_view token = detail::trim_ows(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      token = detail::trim_ows(token.substr(0, token.find('/')));
      if (!token.empty()) {
        f(token);
      }
    }
  }
}

}  // namespace

bool upgrade_accepted(const RequestHead& request, const ResponseHead& response) {
  bool any = false;
  bool all_asked = true;
  for_each_upgrade(response.headers, [&](std::string_view offered) {
    any = true;
    bool asked = false;
    for_each_upgrade(request.headers, [&](std::string_view wanted) {
      asked = asked || same_ignoring_case(offered, wanted);
    });
    all_asked = all_asked && asked;
  });
  return any && all_asked;
}

}  // namespace routemesh::proxy::http
