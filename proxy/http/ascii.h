#pragma once
// ASCII helpers for HTTP field names and values (RFC 9110 §5.1: field names are
// case-insensitive; §5.6.3: OWS is SP / HTAB). Shared by the parser and the head rewriter.

#include <cstddef>
#include <string_view>

namespace routemesh::proxy::http::detail {

inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Case-insensitive comparison against a literal; `lower_literal` must be lower-case.
inline bool iequals(std::string_view a, std::string_view lower_literal) {
  if (a.size() != lower_literal.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower_literal[i]) {
      return false;
    }
  }
  return true;
}

// Strips optional whitespace (SP / HTAB) at both ends.
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace routemesh::proxy::http::detail
