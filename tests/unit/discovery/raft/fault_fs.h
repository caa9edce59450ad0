#pragma once
// A fault-injecting, in-memory FileSystem for the simulator (the WAL's seam): what survives a
// crash is what a real disk may keep.
//  - Appends not yet synced are lost or torn on a crash: the file keeps its synced bytes, then
//    a prefix of the unsynced ones whose 512-byte sectors are each either written or zeroed.
//  - Creations, renames and removals not yet made durable by sync_dir are undone on a crash
//    (one durable namespace for the whole file system: the WAL uses one directory).
//  - sync() can fail (EIO) at a given rate; the WAL then stops the "process".
//  - crash_at_next_sync: the process dies inside the next sync (SimulatedCrash is thrown).
// truncate() is durable at once (the real one syncs before returning).

#include "discovery/raft/file_system.h"
#include "tests/unit/discovery/raft/sim_rng.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace routemesh::discovery::raft::sim {

// Thrown where a simulated process dies (inside a sync, or from the WAL's on_fatal).
struct SimulatedCrash {};

class FaultFs final : public FileSystem {
 public:
  static constexpr std::size_t kSector = 512;

  explicit FaultFs(std::uint64_t seed) : rng_(seed) {}

  double sync_error_rate = 0;
  bool crash_at_next_sync = false;

  // The process died: see the header comment. `keep_bytes`: exactly this many bytes of each
  // file's unsynced appends survive, none zeroed (scenario tests); nullopt: random tearing.
  void crash(std::optional<std::size_t> keep_bytes = std::nullopt);
  // Bytes appended but not synced, over all files (what a crash now would put at risk).
  std::size_t unsynced_bytes() const;
  std::size_t unsynced_at_last_crash() const { return unsynced_at_last_crash_; }
  std::uint64_t syncs() const { return syncs_; }
  std::uint64_t torn_writes() const { return torn_; }
  std::uint64_t sync_errors() const { return sync_errors_; }

  boost::system::error_code create_directories(const std::string& dir) override;
  std::vector<std::string> list(const std::string& dir) override;
  boost::system::error_code read(const std::string& path, Bytes& out) override;
  boost::system::result<std::unique_ptr<AppendFile>> open_append(const std::string& path,
                                                                 bool create) override;
  boost::system::error_code truncate(const std::string& path, std::uint64_t size) override;
  boost::system::error_code rename(const std::string& from, const std::string& to) override;
  boost::system::error_code remove(const std::string& path) override;
  boost::system::error_code sync_dir(const std::string& dir) override;
  boost::system::result<std::unique_ptr<DirLock>> lock(const std::string& path) override;
  bool locked(const std::string& path) override { return locks_.contains(path); }

 private:
  struct Inode {
    Bytes data;
    std::size_t synced = 0;  // data[0, synced) is durable
  };
  class File;
  class Lock;
  friend class File;
  friend class Lock;

  boost::system::error_code sync_file(Inode& inode);

  Rng rng_;
  std::map<std::string, std::shared_ptr<Inode>> names_;
  std::map<std::string, std::shared_ptr<Inode>> durable_names_;
  std::set<std::string> locks_;
  std::size_t unsynced_at_last_crash_ = 0;
  std::uint64_t syncs_ = 0;
  std::uint64_t torn_ = 0;
  std::uint64_t sync_errors_ = 0;
};

}  // namespace routemesh::discovery::raft::sim
