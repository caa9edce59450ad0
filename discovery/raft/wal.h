#pragma once
// Write-ahead log of the Raft driver (POSIX files, no Asio).
//
// Layout of data_dir:
//   wal-<seq:016x>.log            append-only segments of records
//                                 [u32 len][u32 crc32c][u8 type][payload], little-endian,
//                                 len = 1 + payload size, crc over type + payload
//   snap-<term:016x>-<index:016x>.snap   snapshot files: "RMSNAP01" [u32 crc32c] [u64 size]
//                                 body (codec::encode_snapshot); written tmp+fsync+rename+fsync dir
//   LOCK                          flock()ed while open (one process per data_dir)
// Record types: entry, hard_state, snapshot_marker (meta + kind), bootstrap (conf + peers).
// A snapshot marker of kind `installed` (a snapshot received from the leader) replaces the
// whole log on replay; kind `saved` (local compaction, or the copy at a segment's head) only
// records that the snapshot file is durable. A snapshot file is used only if a marker names it.
// Each new segment starts with the latest snapshot marker and hard state, so older segments
// can be deleted after a snapshot without losing them.
//
// Durability: save() returns only after fdatasync; a write or sync failure logs and aborts the
// process (never acknowledge what is not durable; fsync errors are not retryable).
// Recovery: a torn or corrupt record at the END of the last segment is truncated (logged);
// corruption anywhere else is an error (wal_errc::corrupt).
// Threading: one thread (the control thread); blocking calls.

#include "discovery/raft/codec.h"
#include "discovery/raft/types.h"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace routemesh::discovery::raft {

enum class wal_errc {
  corrupt = 1,   // a bad record outside the tail of the last segment, or a gap in the log
  bad_snapshot,  // the snapshot a marker names is missing or corrupt
  locked,        // another process holds data_dir/LOCK
};
const boost::system::error_category& wal_category() noexcept;
boost::system::error_code make_error_code(wal_errc e) noexcept;

struct BootstrapState {
  ConfState conf;
  codec::PeerBook peers;
};

// What open() found on disk.
struct StoredState {
  std::optional<Snapshot> snapshot;  // newest durable snapshot (data included)
  HardState hard_state;
  std::vector<Entry> entries;  // contiguous, starting right after the snapshot (or at any index)
  std::optional<BootstrapState> bootstrap;
  std::uint64_t truncated_bytes = 0;  // torn tail removed from the last segment
  bool empty() const {
    return !snapshot && entries.empty() && !bootstrap && hard_state == HardState{};
  }
};

// The persistence seam of the driver (docs/style.md, "Seams"): the WAL in production, fakes in
// tests.
class LogStorage {
 public:
  LogStorage() = default;
  LogStorage(const LogStorage&) = delete;
  LogStorage& operator=(const LogStorage&) = delete;
  virtual ~LogStorage() = default;

  // One Ready's worth, in this order: `snapshot` (received; own file + `installed` marker),
  // `entries` (replacing every stored entry with index >= entries.front().index), `hard_state`;
  // then one fdatasync. Returns when durable; aborts on I/O failure.
  virtual void save(const std::optional<Snapshot>& snapshot, const std::vector<Entry>& entries,
                    const std::optional<HardState>& hard_state) = 0;
  // Writes the bootstrap membership (only on an empty log); durable on return.
  virtual void save_bootstrap(const BootstrapState& bootstrap) = 0;
  // A snapshot of the local state machine at an applied index: durable file + `saved` marker,
  // then a new segment, then deletes segments holding only entries <= its index and every
  // snapshot file but the newest `keep_snapshots`.
  virtual void save_snapshot(const Snapshot& snapshot, int keep_snapshots = 2) = 0;

  // Observability and tests.
  virtual std::size_t segment_count() const = 0;
  virtual std::uint64_t last_sync_ns() const = 0;  // duration of the latest fdatasync
};

struct OpenedWal {
  std::unique_ptr<LogStorage> storage;
  StoredState state;
};

// Opens (creating it if missing) `dir` and reads everything back. Errors: wal_errc, or a
// system error_code (permissions, ...). Details are logged.
boost::system::result<OpenedWal> open_wal(const std::string& dir,
                                          std::uint64_t segment_bytes = 64ull << 20);

// Paths of the files in `dir`, oldest first (tests and tools).
std::vector<std::string> list_segments(const std::string& dir);
std::vector<std::string> list_snapshots(const std::string& dir);

// CRC-32C (Castagnoli), as used in the records.
std::uint32_t crc32c(const std::uint8_t* data, std::size_t size);

}  // namespace routemesh::discovery::raft

namespace boost::system {
template <>
struct is_error_code_enum<routemesh::discovery::raft::wal_errc> : std::true_type {};
}  // namespace boost::system
