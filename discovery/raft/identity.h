#pragma once
// The node identity file, data_dir/identity.json: {"cluster_id","node_id","name"}.
// Written once by `cluster init` or after a successful join (cmd/), read on every start; a
// data_dir with an identity never re-joins. Ids are shown as 16 lowercase hex digits.
// Blocking file I/O on the calling thread; errors are values.

#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace routemesh::discovery::raft {

struct Identity {
  std::string cluster_id;  // 16 hex digits
  std::uint64_t node_id = 0;
  std::string name;
  bool operator==(const Identity&) const = default;
};

std::string format_node_id(std::uint64_t id);                       // 16 lowercase hex digits
std::optional<std::uint64_t> parse_node_id(std::string_view text);  // exactly 16 hex digits

// Path of the identity file inside `data_dir`.
std::string identity_path(const std::string& data_dir);
// errc::no_such_file_or_directory when absent; errc::invalid_argument when malformed.
boost::system::result<Identity> read_identity(const std::string& data_dir);
// Atomic: tmp + fsync + rename + fsync dir. Creates data_dir if missing.
boost::system::result<void> write_identity(const std::string& data_dir, const Identity& id);

}  // namespace routemesh::discovery::raft
