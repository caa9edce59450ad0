#pragma once
// Small state files of a node's data_dir (the agent's managers.json, the manager's
// bootstrap.json): written so that a crash leaves either the old or the new file, never a
// torn one. Blocking POSIX calls: for startup and rare updates on the control thread, not for
// the request path.

#include <boost/system/result.hpp>

#include <optional>
#include <string>

namespace routemesh::base {

// Writes `text` to dir/name: creates `dir` if needed, writes dir/name.tmp (created with `mode`,
// less the umask: 0600 for private keys), fsyncs it, renames it over dir/name and fsyncs the
// directory. Errors (the errno of the step that failed) are values; dir/name is then unchanged.
boost::system::result<void> write_file_atomic(const std::string& dir, const std::string& name,
                                              const std::string& text, unsigned mode = 0644);

// The whole file, or nullopt when it cannot be opened or read.
std::optional<std::string> read_file(const std::string& path);

}  // namespace routemesh::base
