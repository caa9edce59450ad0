#pragma once
// Write-ahead log of the Raft driver (files through the FileSystem seam, no Asio).
//
// Layout of data_dir:
//   wal-<seq:016x>.log            append-only segments (format 2):
//                                   header  "RMWAL002" [u64 seq] [u32 0] [u32 crc32c of the 20
//                                           bytes before it]                         (24 bytes)
//                                   records [u32 len] [u32 body crc] [u32 header crc] body
//                                           body = u8 type + payload (len bytes); body crc =
//                                           crc32c(body); header crc = crc32c(u64 offset of
//                                           the record in the file, u32 len, u32 body crc), so
//                                           a record copied or shifted to another offset is
//                                           detected
//                                 format 1 (read only; written before format 2): no header,
//                                 records [u32 len] [u32 crc32c(body)] body
//   snap-<term:016x>-<index:016x>.snap   snapshot files: "RMSNAP01" [u32 crc32c] [u64 size]
//                                 body (codec::encode_snapshot); written tmp+fsync+rename+fsync dir
//   LOCK                          flock()ed while open (one process per data_dir)
// Record types: batch (codec::WalBatch: snapshot marker, entries, hard state) and bootstrap
// (conf + peers); format 1 also had separate entry, hard_state and snapshot_marker records.
//
// Atomicity: every write is ONE record followed by one fdatasync. save() puts a whole Ready
// (installed-snapshot marker, entries, hard state) in one batch record, so a crash keeps all
// of it or none of it: the persisted commit index never lags entries persisted with it (on
// restart the core rebuilds membership from the log up to that commit, so a lost commit would
// roll membership back).
// A snapshot marker of kind `installed` (a snapshot received from the leader) replaces the
// whole log on replay; kind `saved` (local compaction, or the copy at a segment's head) only
// records that the snapshot file is durable. A snapshot file is used only if a marker names it.
// Each new segment starts with a batch holding the latest snapshot marker and hard state, so
// older segments can be deleted after a snapshot without losing them.
//
// Torn tail vs corruption: since only the last write can be unsynced and it is one record,
// a crash can damage only the end of the last segment. A bad record there with no valid
// record after it (zeroed or partial sectors, a record running past the end of the file) is a
// torn tail: open_wal truncates it (logged, StoredState::truncated_bytes). A bad record that
// is followed by a valid one, or a bad record in any other segment, is corruption of synced
// data: open_wal refuses (wal_errc::corrupt) with a message naming the file and byte offset.
// Limit: damage to the very last record itself looks exactly like a torn write and is dropped.
//
// The driver calls save() only for a Ready with must_sync (raft/types.h): a Ready that only
// moves the commit index past ordinary entries writes nothing, so the stored commit may lag.
// Durability: save() returns only after fdatasync; a write or sync failure calls
// WalOptions::on_fatal, which stops the process (never acknowledge what is not durable; fsync
// errors are not retryable).
// Threading: one thread (the control thread); blocking calls.

#include "discovery/raft/codec.h"
#include "discovery/raft/file_system.h"
#include "discovery/raft/types.h"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace routemesh::discovery::raft {

enum class wal_errc {
  corrupt = 1,   // damaged synced data (see above), a gap in the log, or an unknown format
  bad_snapshot,  // the snapshot a marker names is missing or corrupt
  locked,        // another process holds data_dir/LOCK
};
const boost::system::error_category& wal_category() noexcept;
boost::system::error_code make_error_code(wal_errc e) noexcept;

struct BootstrapState {
  ConfState conf;
  codec::PeerBook peers;
};

// What open_wal() found on disk.
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

  // One Ready's worth as one record: `snapshot` (received; its own file first, then an
  // `installed` marker), `entries` (replacing every stored entry with index >=
  // entries.front().index), `hard_state`; then one fdatasync. Returns when durable; stops the
  // process on I/O failure. Nothing is written when all three are empty.
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

struct WalOptions {
  std::uint64_t segment_bytes = 64ull << 20;  // a new segment starts once one reaches this
  FileSystem* fs = nullptr;                   // nullptr: posix_file_system()
  // Called with a description when a write or sync fails; must not return. nullptr: log
  // critical and abort. The simulator throws from it to model the process dying there.
  std::function<void(const std::string&)> on_fatal;
};

struct OpenedWal {
  std::unique_ptr<LogStorage> storage;
  StoredState state;
};

// Opens (creating it if missing) `dir` and reads everything back, truncating a torn tail.
// Errors: wal_errc, or a system error_code (permissions, ...). The reason (for corruption: the
// file and byte offset) is logged and, when `problem` is given, stored there too.
boost::system::result<OpenedWal> open_wal(const std::string& dir, const WalOptions& options = {},
                                          std::string* problem = nullptr);

// `routemesh wal check DIR`: reads `dir` like open_wal but changes nothing (no truncation, no
// lock taken) and reports what it found.
struct WalSegmentReport {
  std::string name;
  int format = 2;
  std::uint64_t bytes = 0;
  std::size_t records = 0;
  Index first_entry = 0;  // 0: the segment holds no entry
  Index last_entry = 0;
};
struct WalReport {
  std::string dir;
  bool in_use = false;  // a running node holds LOCK: the tail may be mid-write
  std::vector<WalSegmentReport> segments;
  std::vector<std::string> snapshot_files;
  std::optional<SnapshotMeta> snapshot;  // the snapshot a restart would use
  std::size_t records = 0;
  Index first_index = 0;  // entries a restart would load (0/0: none)
  Index last_index = 0;
  Term last_term = 0;
  HardState hard_state;
  std::string torn_file;  // non-empty: a torn tail open_wal would truncate
  std::uint64_t torn_offset = 0;
  std::uint64_t torn_bytes = 0;
  std::string problem;   // non-empty: why the log cannot be used
  bool corrupt = false;  // `problem` is damage (it names the file and byte offset); else an
                         // error such as an unreadable file or no segments at all
  bool ok() const { return problem.empty(); }
};
WalReport check_wal(const std::string& dir, FileSystem* fs = nullptr);
// Human-readable report, one fact per line, ending with "ok", "CORRUPT: ..." or "ERROR: ...".
std::string format_wal_report(const WalReport& report);

// Paths of the files in `dir`, oldest first (tests and tools).
std::vector<std::string> list_segments(const std::string& dir, FileSystem* fs = nullptr);
std::vector<std::string> list_snapshots(const std::string& dir, FileSystem* fs = nullptr);

// CRC-32C (Castagnoli), as used in the records.
std::uint32_t crc32c(const std::uint8_t* data, std::size_t size);

}  // namespace routemesh::discovery::raft

namespace boost::system {
template <>
struct is_error_code_enum<routemesh::discovery::raft::wal_errc> : std::true_type {};
}  // namespace boost::system
