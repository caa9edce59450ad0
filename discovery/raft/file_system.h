#pragma once
// The file operations the WAL needs, behind a seam: POSIX files in production, a
// fault-injecting in-memory file system in the simulator (unsynced writes lost or torn at
// sector granularity on a crash, fsync errors). No Asio; blocking calls.
//
// Threading: a FileSystem and the files it opens are used by one thread (the WAL's).
// Errors: system error codes (errno values) for every operation; nothing throws. Paths are
// plain strings ("dir/name"); only the WAL's own directory layout is needed (one level).

#include "discovery/raft/types.h"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace routemesh::discovery::raft {

// A file opened for appending. Closing (destruction) does not sync.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  virtual ~AppendFile() = default;

  // Appends all `size` bytes (retrying short writes).
  virtual boost::system::error_code append(const std::uint8_t* data, std::size_t size) = 0;
  // fdatasync: on success everything appended so far survives a crash. After a failure the
  // state of the unsynced data is unknown and the caller must not retry (it stops the node).
  virtual boost::system::error_code sync() = 0;
};

// Held while the process owns a directory (flock); released on destruction.
class DirLock {
 public:
  DirLock() = default;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  virtual ~DirLock() = default;
};

class FileSystem {
 public:
  FileSystem() = default;
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;
  virtual ~FileSystem() = default;

  virtual boost::system::error_code create_directories(const std::string& dir) = 0;
  // Names (not paths) of the regular files in `dir`; empty when it does not exist.
  virtual std::vector<std::string> list(const std::string& dir) = 0;
  virtual boost::system::error_code read(const std::string& path, Bytes& out) = 0;
  // Opens `path` for appending; `create`: the file must not exist yet (O_CREAT | O_EXCL).
  virtual boost::system::result<std::unique_ptr<AppendFile>> open_append(const std::string& path,
                                                                         bool create) = 0;
  // Shortens `path` to `size` bytes and syncs it.
  virtual boost::system::error_code truncate(const std::string& path, std::uint64_t size) = 0;
  virtual boost::system::error_code rename(const std::string& from, const std::string& to) = 0;
  virtual boost::system::error_code remove(const std::string& path) = 0;
  // Makes creations, renames and removals in `dir` durable.
  virtual boost::system::error_code sync_dir(const std::string& dir) = 0;
  // Exclusive lock on the file `path` (created if missing), without waiting:
  // errc::resource_unavailable_try_again when another process holds it.
  virtual boost::system::result<std::unique_ptr<DirLock>> lock(const std::string& path) = 0;
  // Whether another process holds lock(path) right now (false when `path` does not exist).
  virtual bool locked(const std::string& path) = 0;
};

// The real file system (POSIX calls). One shared instance; it holds no state.
FileSystem& posix_file_system();

}  // namespace routemesh::discovery::raft
