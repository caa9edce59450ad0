#pragma once
// The store's expected errors as a Boost.System category, so that they travel as an
// error_code or a boost::system::result where a code is enough, and to_string for the wire
// name the API and the Raft result encoding use ("invalid", "conflict", ...). The errc values
// and the Error struct (code + message + field) are in types.h.

#include "discovery/store/types.h"

#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>

#include <string_view>
#include <type_traits>

namespace routemesh::discovery::store {

// Name "routemesh.store"; message() is a short English phrase for each errc.
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// "invalid", "conflict", "not_found", "version_mismatch", "key_reused": the API's error.code.
std::string_view to_string(errc code);

}  // namespace routemesh::discovery::store

template <>
struct boost::system::is_error_code_enum<routemesh::discovery::store::errc> : std::true_type {};
