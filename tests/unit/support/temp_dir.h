#pragma once
// A fresh directory under the system temp dir, removed with everything in it when the object
// goes out of scope. For unit tests that need real files (WAL, identity, Raft data dirs).

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <stdlib.h>

namespace routemesh::test {

struct TempDir {
  // `prefix` names the directory ("rm-wal" -> /tmp/rm-wal-XXXXXX).
  explicit TempDir(std::string_view prefix) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path;
};

}  // namespace routemesh::test
