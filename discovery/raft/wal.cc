#include "discovery/raft/wal.h"

#include "base/check.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/crc.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

namespace routemesh::discovery::raft {
namespace {

enum class RecordType : std::uint8_t {
  entry = 1,            // format 1 only
  hard_state = 2,       // format 1 only
  snapshot_marker = 3,  // format 1 only
  bootstrap = 4,
  batch = 5,  // format 2: codec::WalBatch
};

constexpr char kSegmentMagic[8] = {'R', 'M', 'W', 'A', 'L', '0', '0', '2'};
constexpr std::size_t kSegmentHeader = 24;
constexpr std::size_t kHeaderV1 = 8;   // u32 len + u32 crc
constexpr std::size_t kHeaderV2 = 12;  // u32 len + u32 body crc + u32 header crc
// Format 1 bounded records by the transport's frame size. A format-2 batch holds a whole
// Ready, which can gather many frames' entries; the header checksum, not this bound, is what
// rejects a garbage length.
constexpr std::uint32_t kMaxRecordV1 = (64u << 20) + 4096;
constexpr std::uint32_t kMaxRecordV2 = 1u << 30;
constexpr char kSnapMagic[8] = {'R', 'M', 'S', 'N', 'A', 'P', '0', '1'};

class WalCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "raft.wal"; }
  std::string message(int ev) const override {
    switch (static_cast<wal_errc>(ev)) {
      case wal_errc::corrupt:
        return "write-ahead log is corrupt";
      case wal_errc::bad_snapshot:
        return "snapshot file missing or corrupt";
      case wal_errc::locked:
        return "data_dir is locked by another process";
    }
    return "unknown wal error";
  }
};

void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
}
void put_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    p[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
}
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  }
  return v;
}

std::uint32_t header_crc(std::uint64_t offset, std::uint32_t len, std::uint32_t body_crc) {
  std::uint8_t b[16];
  put_u64(b, offset);
  put_u32(b + 8, len);
  put_u32(b + 12, body_crc);
  return crc32c(b, sizeof b);
}

std::array<std::uint8_t, kSegmentHeader> segment_header(std::uint64_t seq) {
  std::array<std::uint8_t, kSegmentHeader> h{};
  std::memcpy(h.data(), kSegmentMagic, 8);
  put_u64(h.data() + 8, seq);
  put_u32(h.data() + 20, crc32c(h.data(), 20));
  return h;
}

// One format-2 record, to be written at byte `offset` of its segment.
Bytes make_record(RecordType type, const Bytes& payload, std::uint64_t offset) {
  Bytes buf(kHeaderV2 + 1 + payload.size());
  buf[kHeaderV2] = static_cast<std::uint8_t>(type);
  std::memcpy(buf.data() + kHeaderV2 + 1, payload.data(), payload.size());
  RM_CHECK(payload.size() + 1 <= kMaxRecordV2, "WAL record over 1 GiB");
  auto len = static_cast<std::uint32_t>(payload.size() + 1);
  std::uint32_t body = crc32c(buf.data() + kHeaderV2, len);
  put_u32(buf.data(), len);
  put_u32(buf.data() + 4, body);
  put_u32(buf.data() + 8, header_crc(offset, len, body));
  return buf;
}

// [u32 size of conf][conf_state][wrap_peers]
Bytes bootstrap_payload(const BootstrapState& b) {
  Bytes conf = codec::encode_conf_state(b.conf);
  Bytes p(4);
  put_u32(p.data(), static_cast<std::uint32_t>(conf.size()));
  p.insert(p.end(), conf.begin(), conf.end());
  Bytes peers = codec::wrap_peers(b.peers);
  p.insert(p.end(), peers.begin(), peers.end());
  return p;
}

std::optional<BootstrapState> decode_bootstrap(const Bytes& p) {
  if (p.size() < 4 || get_u32(p.data()) > p.size() - 4) {
    return std::nullopt;
  }
  auto split = p.begin() + 4 + get_u32(p.data());
  auto cs = codec::decode_conf_state(Bytes(p.begin() + 4, split));
  auto pb = codec::unwrap_entry(Bytes(split, p.end()));
  if (!cs || !pb || pb->kind != codec::EnvelopeKind::peers) {
    return std::nullopt;
  }
  return BootstrapState{*cs, pb->peers};
}

std::string segment_name(std::uint64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "wal-%016" PRIx64 ".log", seq);
  return buf;
}

std::string snapshot_name(Term term, Index index) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "snap-%016" PRIx64 "-%016" PRIx64 ".snap", term, index);
  return buf;
}

std::optional<std::uint64_t> parse_segment(const std::string& name) {
  std::uint64_t seq = 0;
  char tail = 0;
  if (name.size() != 24 || std::sscanf(name.c_str(), "wal-%16" SCNx64 ".lo%c", &seq, &tail) != 2 ||
      tail != 'g') {
    return std::nullopt;
  }
  return seq;
}

std::optional<std::pair<Term, Index>> parse_snapshot(const std::string& name) {
  std::uint64_t term = 0;
  std::uint64_t index = 0;
  char tail = 0;
  if (name.size() != 43 ||
      std::sscanf(name.c_str(), "snap-%16" SCNx64 "-%16" SCNx64 ".sna%c", &term, &index, &tail) !=
          3 ||
      tail != 'p') {
    return std::nullopt;
  }
  return std::pair{term, index};
}

struct SegmentFile {
  std::uint64_t seq;
  std::string name;
  std::string path;
};

std::vector<SegmentFile> segments_in(FileSystem& fs, const std::string& dir) {
  std::vector<SegmentFile> out;
  for (const auto& name : fs.list(dir)) {
    if (auto seq = parse_segment(name)) {
      out.push_back({*seq, name, dir + "/" + name});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

struct SnapFile {
  Term term;
  Index index;
  std::string name;
  std::string path;
};

std::vector<SnapFile> snapshots_in(FileSystem& fs, const std::string& dir) {
  std::vector<SnapFile> out;
  for (const auto& name : fs.list(dir)) {
    if (auto ti = parse_snapshot(name)) {
      out.push_back({ti->first, ti->second, name, dir + "/" + name});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::pair{a.index, a.term} < std::pair{b.index, b.term};
  });
  return out;
}

std::optional<Snapshot> load_snapshot_file(FileSystem& fs, const std::string& path) {
  Bytes buf;
  if (fs.read(path, buf) || buf.size() < 20 || std::memcmp(buf.data(), kSnapMagic, 8) != 0) {
    return std::nullopt;
  }
  std::uint32_t crc = get_u32(&buf[8]);
  std::uint64_t size = get_u32(&buf[12]) | (std::uint64_t{get_u32(&buf[16])} << 32);
  if (size != buf.size() - 20 || crc32c(buf.data() + 20, buf.size() - 20) != crc) {
    return std::nullopt;
  }
  return codec::decode_snapshot(Bytes(buf.begin() + 20, buf.end()));
}

// ---------------------------------------------------------------------------------------------
// Reading segments

struct Record {
  std::uint64_t offset = 0;
  RecordType type = RecordType::batch;
  const std::uint8_t* payload = nullptr;
  std::size_t size = 0;
};

// A record at `off`, or why there is none.
struct Probe {
  std::size_t length = 0;  // header + body; 0: bad
  const char* why = "";
};

Probe probe(const Bytes& buf, std::size_t off, int format) {
  std::size_t left = buf.size() - off;
  std::size_t header = format == 1 ? kHeaderV1 : kHeaderV2;
  if (left < header) {
    return {0, "truncated record header"};
  }
  std::uint32_t len = get_u32(&buf[off]);
  std::uint32_t body = get_u32(&buf[off + 4]);
  if (format == 2) {
    if (header_crc(off, len, body) != get_u32(&buf[off + 8])) {
      return {0, "bad record header (length or checksum)"};
    }
    if (len < 1 || len > kMaxRecordV2) {
      return {0, "bad record length"};
    }
  } else if (len < 1 || len > kMaxRecordV1) {
    return {0, "bad record length"};
  }
  if (left - header < len) {
    return {0, "record runs past the end of the file"};
  }
  if (crc32c(&buf[off + header], len) != body) {
    return {0, "bad record checksum"};
  }
  return {header + len, ""};
}

// The first offset > `from` holding a valid record (format 2: its header checksum covers
// its offset, so only a record really written there matches).
std::optional<std::size_t> next_valid_record(const Bytes& buf, std::size_t from, int format) {
  for (std::size_t p = from + 1; p + (format == 1 ? kHeaderV1 : kHeaderV2) < buf.size(); ++p) {
    if (probe(buf, p, format).length > 0) {
      return p;
    }
  }
  return std::nullopt;
}

struct SegmentScan {
  int format = 2;
  std::vector<Record> records;
  std::size_t end = 0;  // just after the last good record (or the header)
  bool torn = false;    // [end, size) is a torn tail
  std::string problem;  // corruption: "at byte offset N: why"
};

// Reads one segment. `last`: the newest segment, the only one whose end may be torn.
SegmentScan scan_segment(const Bytes& buf, std::uint64_t seq, bool last) {
  SegmentScan s;
  bool v2 = buf.size() >= 8 && std::memcmp(buf.data(), kSegmentMagic, 8) == 0;
  bool v1 = !v2 && buf.size() >= kHeaderV1 && get_u32(buf.data()) >= 1 &&
            get_u32(buf.data()) <= kMaxRecordV1;
  s.format = v1 ? 1 : 2;
  std::size_t off = 0;
  if (!v1) {
    auto expected = segment_header(seq);
    if (buf.size() < kSegmentHeader || !std::equal(expected.begin(), expected.end(), buf.begin())) {
      // A new segment's header is written and synced before any record: if it is damaged, no
      // record after it was ever acknowledged, unless one is valid (then this is corruption).
      bool later = next_valid_record(buf, 0, 2) || next_valid_record(buf, 0, 1) ||
                   probe(buf, 0, 1).length > 0;
      if (!last || later) {
        s.problem = buf.empty() ? "at byte offset 0: empty segment"
                                : "at byte offset 0: bad segment header";
        return s;
      }
      s.torn = !buf.empty();
      return s;
    }
    off = kSegmentHeader;
  }
  while (off < buf.size()) {
    Probe p = probe(buf, off, s.format);
    if (p.length == 0) {
      auto next = next_valid_record(buf, off, s.format);
      if (!last || next) {
        s.end = off;
        s.problem = next ? fmt::format(
                               "at byte offset {}: {}; a valid record follows at byte "
                               "offset {}, so this is damage to synced data",
                               off, p.why, *next)
                         : fmt::format("at byte offset {}: {} (not the last segment)", off, p.why);
        return s;
      }
      s.torn = true;
      break;
    }
    std::size_t h = s.format == 1 ? kHeaderV1 : kHeaderV2;
    s.records.push_back(
        Record{off, static_cast<RecordType>(buf[off + h]), &buf[off + h + 1], p.length - h - 1});
    off += p.length;
  }
  s.end = off;
  return s;
}

// Per-segment facts kept for deleting old segments.
struct SegmentInfo {
  std::uint64_t seq = 0;
  std::string path;
  Index max_entry = 0;  // largest entry index written to it (0: none)
};

// Everything read back from a directory, without changing it.
struct Replay {
  StoredState state;
  std::vector<SegmentInfo> infos;
  std::vector<WalSegmentReport> reports;
  int last_format = 2;
  std::size_t last_end = 0;  // valid bytes of the last segment
  std::size_t records = 0;
  std::string torn_path;
  std::string torn_name;
  std::uint64_t torn_offset = 0;
  std::uint64_t torn_bytes = 0;
  wal_errc error = wal_errc::corrupt;
  bool corrupt = true;  // false: `problem` is an I/O error, not damage
  std::string problem;  // non-empty: refuse
};

Replay replay(FileSystem& fs, const std::string& dir) {
  Replay out;
  StoredState& st = out.state;
  std::vector<Entry> entries;
  std::map<std::pair<Index, Term>, bool> markers;  // snapshots the WAL says are durable
  Index installed_floor = 0;  // entries must start after the latest installed snapshot
  auto segs = segments_in(fs, dir);
  Bytes buf;
  for (std::size_t si = 0; si < segs.size(); ++si) {
    const SegmentFile& seg = segs[si];
    const bool last_segment = si + 1 == segs.size();
    if (auto ec = fs.read(seg.path, buf)) {
      out.problem = fmt::format("cannot read {}: {}", seg.path, ec.message());
      out.corrupt = false;
      return out;
    }
    SegmentScan scan = scan_segment(buf, seg.seq, last_segment);
    WalSegmentReport rep{seg.name, scan.format, buf.size(), scan.records.size(), 0, 0};
    SegmentInfo info{seg.seq, seg.path, 0};
    auto add_entry = [&](Entry e, std::uint64_t off) {
      // Entries replace every stored entry at or after their index (Ready contract).
      while (!entries.empty() && entries.back().index >= e.index) {
        entries.pop_back();
      }
      if (!entries.empty() && entries.back().index + 1 != e.index) {
        out.problem = fmt::format("corrupt WAL segment {} at byte offset {}: gap before entry {}",
                                  seg.path, off, e.index);
        return false;
      }
      info.max_entry = std::max(info.max_entry, e.index);
      rep.first_entry = rep.first_entry == 0 ? e.index : std::min(rep.first_entry, e.index);
      rep.last_entry = std::max(rep.last_entry, e.index);
      entries.push_back(std::move(e));
      return true;
    };
    auto add_marker = [&](const SnapshotMeta& meta, codec::MarkerKind kind) {
      markers[{meta.index, meta.term}] = true;
      if (kind == codec::MarkerKind::installed) {
        // InstallSnapshot replaced the whole log (RaftLog::restore).
        entries.clear();
        installed_floor = std::max(installed_floor, meta.index);
      }
    };
    for (const Record& r : scan.records) {
      Bytes payload(r.payload, r.payload + r.size);
      bool ok = true;
      switch (r.type) {
        case RecordType::entry: {
          auto e = codec::decode_entry(payload);
          ok = e.has_value();
          if (ok && !add_entry(std::move(*e), r.offset)) {
            return out;
          }
          break;
        }
        case RecordType::hard_state: {
          auto hs = codec::decode_hard_state(payload);
          ok = hs.has_value();
          if (ok) {
            st.hard_state = *hs;
          }
          break;
        }
        case RecordType::snapshot_marker: {
          if (payload.empty()) {
            ok = false;
            break;
          }
          auto kind = payload.back();
          payload.pop_back();
          auto meta = codec::decode_snapshot_meta(payload);
          ok = meta && kind <= static_cast<std::uint8_t>(codec::MarkerKind::installed);
          if (ok) {
            add_marker(*meta, static_cast<codec::MarkerKind>(kind));
          }
          break;
        }
        case RecordType::bootstrap: {
          st.bootstrap = decode_bootstrap(payload);
          ok = st.bootstrap.has_value();
          break;
        }
        case RecordType::batch: {
          auto b = codec::decode_wal_batch(r.payload, r.size);
          ok = b.has_value();
          if (!ok) {
            break;
          }
          if (b->marker) {
            add_marker(*b->marker, b->marker_kind);
          }
          for (Entry& e : b->entries) {
            if (!add_entry(std::move(e), r.offset)) {
              return out;
            }
          }
          if (b->hard_state) {
            st.hard_state = *b->hard_state;
          }
          break;
        }
        default:
          ok = false;
      }
      if (!ok) {
        // The checksums matched, so this is not a torn write but a bug or a newer format.
        out.reports.push_back(rep);
        out.problem = fmt::format("corrupt WAL segment {} at byte offset {}: undecodable record",
                                  seg.path, r.offset);
        return out;
      }
    }
    out.records += scan.records.size();
    if (!scan.problem.empty()) {
      // Reported after the good records before it, so `wal check` shows what is intact.
      out.reports.push_back(rep);
      out.problem = fmt::format("corrupt WAL segment {} {}", seg.path, scan.problem);
      return out;
    }
    if (last_segment) {
      out.last_format = scan.format;
      out.last_end = scan.end;
      if (scan.torn) {
        out.torn_path = seg.path;
        out.torn_name = seg.name;
        out.torn_offset = scan.end;
        out.torn_bytes = buf.size() - scan.end;
      }
    }
    out.reports.push_back(rep);
    out.infos.push_back(std::move(info));
  }

  // Newest snapshot file that a marker declares durable and that reads back intact.
  auto snaps = snapshots_in(fs, dir);
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) {
    if (!markers.contains({it->index, it->term})) {
      continue;  // written but never acknowledged (crash before its marker): unused
    }
    auto s = load_snapshot_file(fs, it->path);
    if (s && s->meta.index == it->index && s->meta.term == it->term) {
      st.snapshot = std::move(*s);
      break;
    }
    spdlog::warn("raft wal: skipping unreadable snapshot {}", it->path);
  }
  out.error = wal_errc::bad_snapshot;
  Index snap_index = st.snapshot ? st.snapshot->meta.index : 0;
  if (installed_floor > snap_index) {
    out.problem =
        fmt::format("installed snapshot at index {} is missing from {}", installed_floor, dir);
    return out;
  }
  std::erase_if(entries, [&](const Entry& e) { return e.index <= snap_index; });
  if (!entries.empty() && (st.snapshot || installed_floor > 0) &&
      entries.front().index != snap_index + 1) {
    out.problem = fmt::format("WAL entries in {} start at {} but the snapshot ends at {}", dir,
                              entries.front().index, snap_index);
    return out;
  }
  if (!entries.empty() && !st.snapshot && entries.front().index != 1) {
    out.problem =
        fmt::format("WAL entries in {} start at {} without a snapshot", dir, entries.front().index);
    return out;
  }
  out.error = wal_errc::corrupt;
  Index last = entries.empty() ? snap_index : entries.back().index;
  if (st.hard_state.commit > last) {
    // Entries and hard state are written together, so this is lost synced data.
    out.problem = fmt::format("WAL in {}: commit index {} is beyond the last stored entry {}", dir,
                              st.hard_state.commit, last);
    return out;
  }
  st.entries = std::move(entries);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

class Wal final : public LogStorage {
 public:
  Wal(std::string dir, WalOptions options, FileSystem& fs, std::unique_ptr<DirLock> lock)
      : dir_(std::move(dir)), opt_(std::move(options)), fs_(fs), lock_(std::move(lock)) {}

  // Called by open_wal after replay (and after truncating a torn tail).
  void resume(std::vector<SegmentInfo> segments, std::size_t tail_size, int tail_format,
              std::optional<SnapshotMeta> snap, HardState hs) {
    segments_ = std::move(segments);
    latest_snapshot_ = std::move(snap);
    hard_state_ = hs;
    if (segments_.empty()) {
      open_new_segment(1);
      return;
    }
    if (tail_format == 1) {
      // Never append format-1 records: continue in a new format-2 segment, whose head
      // repeats the snapshot marker and hard state.
      rotate();
      return;
    }
    const SegmentInfo& last = segments_.back();
    auto f = fs_.open_append(last.path, false);
    if (!f) {
      fatal("open", last.path, f.error());
    }
    file_ = std::move(*f);
    size_ = tail_size;
    if (size_ == 0) {
      // Its header was torn (and truncated away): write it again.
      auto h = segment_header(last.seq);
      write_and_sync(Bytes(h.begin(), h.end()), false);
    }
  }

  void save(const std::optional<Snapshot>& snapshot, const std::vector<Entry>& entries,
            const std::optional<HardState>& hard_state) override {
    if (!snapshot && entries.empty() && !hard_state) {
      return;
    }
    if (size_ >= opt_.segment_bytes) {
      rotate();
    }
    codec::WalBatch b;
    if (snapshot) {
      write_snapshot_file(*snapshot);
      b.marker = snapshot->meta;
      b.marker_kind = codec::MarkerKind::installed;
    }
    b.entries = entries;
    b.hard_state = hard_state;
    write_and_sync(make_record(RecordType::batch, codec::encode_wal_batch(b), size_));
    if (snapshot) {
      latest_snapshot_ = snapshot->meta;
    }
    for (const Entry& e : entries) {
      segments_.back().max_entry = std::max(segments_.back().max_entry, e.index);
    }
    if (hard_state) {
      hard_state_ = *hard_state;
    }
  }

  void save_bootstrap(const BootstrapState& bootstrap) override {
    write_and_sync(make_record(RecordType::bootstrap, bootstrap_payload(bootstrap), size_));
  }

  void save_snapshot(const Snapshot& snapshot, int keep_snapshots) override {
    write_snapshot_file(snapshot);
    codec::WalBatch b;
    b.marker = snapshot.meta;
    b.marker_kind = codec::MarkerKind::saved;
    write_and_sync(make_record(RecordType::batch, codec::encode_wal_batch(b), size_));
    latest_snapshot_ = snapshot.meta;
    rotate();
    // Segments are deleted as a prefix only: a later segment may replace entries of an
    // earlier one, never the other way round. The new segment's head holds the marker and
    // hard state, so nothing else of the deleted ones is needed.
    bool removed = false;
    while (segments_.size() > 1 && segments_.front().max_entry <= snapshot.meta.index) {
      if (auto ec = fs_.remove(segments_.front().path)) {
        fatal("unlink", segments_.front().path, ec);
      }
      segments_.erase(segments_.begin());
      removed = true;
    }
    auto snaps = snapshots_in(fs_, dir_);
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep_snapshots) < snaps.size(); ++i) {
      if (auto ec = fs_.remove(snaps[i].path)) {
        fatal("unlink", snaps[i].path, ec);
      }
      removed = true;
    }
    if (removed) {
      sync_dir();
    }
  }

  std::size_t segment_count() const override { return segments_.size(); }
  std::uint64_t last_sync_ns() const override { return last_sync_ns_; }

 private:
  // The node must stop rather than acknowledge something that is not durable (after a failed
  // fsync the page cache state is unknown; retrying is not safe).
  [[noreturn]] void fatal(const char* what, const std::string& path,
                          const boost::system::error_code& ec) {
    std::string msg =
        fmt::format("raft wal: {} {} failed: {}; stopping the node", what, path, ec.message());
    if (opt_.on_fatal) {
      opt_.on_fatal(msg);
    }
    spdlog::critical("{}", msg);
    std::abort();
  }

  // One write, one fdatasync: the unit a crash keeps or tears.
  void write_and_sync(const Bytes& buf, bool count = true) {
    const std::string& path = segments_.back().path;
    if (auto ec = file_->append(buf.data(), buf.size())) {
      fatal("write", path, ec);
    }
    size_ += buf.size();
    auto t0 = std::chrono::steady_clock::now();
    if (auto ec = file_->sync()) {
      fatal("fdatasync", path, ec);
    }
    if (count) {
      last_sync_ns_ =
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now() - t0)
                                         .count());
    }
  }

  void sync_dir() {
    if (auto ec = fs_.sync_dir(dir_)) {
      fatal("fsync dir", dir_, ec);
    }
  }

  void open_new_segment(std::uint64_t seq) {
    std::string path = dir_ + "/" + segment_name(seq);
    auto f = fs_.open_append(path, true);
    if (!f) {
      fatal("create", path, f.error());
    }
    file_ = std::move(*f);
    size_ = 0;
    segments_.push_back({seq, path, 0});
    auto h = segment_header(seq);
    write_and_sync(Bytes(h.begin(), h.end()), false);
    sync_dir();
  }

  // New segment whose head repeats the latest snapshot marker and hard state.
  void rotate() {
    open_new_segment(segments_.empty() ? 1 : segments_.back().seq + 1);
    codec::WalBatch b;
    b.marker = latest_snapshot_;
    b.marker_kind = codec::MarkerKind::saved;
    b.hard_state = hard_state_;
    write_and_sync(make_record(RecordType::batch, codec::encode_wal_batch(b), size_));
  }

  void write_snapshot_file(const Snapshot& s) {
    Bytes body = codec::encode_snapshot(s);
    Bytes head(20);
    std::memcpy(head.data(), kSnapMagic, 8);
    put_u32(&head[8], crc32c(body.data(), body.size()));
    put_u32(&head[12], static_cast<std::uint32_t>(body.size()));
    put_u32(&head[16], static_cast<std::uint32_t>(std::uint64_t{body.size()} >> 32));
    std::string final_path = dir_ + "/" + snapshot_name(s.meta.term, s.meta.index);
    std::string tmp = final_path + ".tmp";
    fs_.remove(tmp);  // a leftover of a crash; usually absent
    auto f = fs_.open_append(tmp, true);
    if (!f) {
      fatal("create", tmp, f.error());
    }
    if (auto ec = (*f)->append(head.data(), head.size())) {
      fatal("write", tmp, ec);
    }
    if (auto ec = (*f)->append(body.data(), body.size())) {
      fatal("write", tmp, ec);
    }
    if (auto ec = (*f)->sync()) {
      fatal("fsync", tmp, ec);
    }
    f->reset();
    if (auto ec = fs_.rename(tmp, final_path)) {
      fatal("rename", tmp, ec);
    }
    sync_dir();
  }

  std::string dir_;
  WalOptions opt_;
  FileSystem& fs_;
  std::unique_ptr<DirLock> lock_;
  std::unique_ptr<AppendFile> file_;
  std::uint64_t size_ = 0;
  std::vector<SegmentInfo> segments_;
  std::optional<SnapshotMeta> latest_snapshot_;
  HardState hard_state_;
  std::uint64_t last_sync_ns_ = 0;
};

}  // namespace

const boost::system::error_category& wal_category() noexcept {
  static const WalCategory cat;
  return cat;
}

boost::system::error_code make_error_code(wal_errc e) noexcept {
  return {static_cast<int>(e), wal_category()};
}

std::uint32_t crc32c(const std::uint8_t* data, std::size_t size) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, size);
  return crc.checksum();
}

std::vector<std::string> list_segments(const std::string& dir, FileSystem* fs) {
  std::vector<std::string> out;
  for (auto& s : segments_in(fs != nullptr ? *fs : posix_file_system(), dir)) {
    out.push_back(s.path);
  }
  return out;
}

std::vector<std::string> list_snapshots(const std::string& dir, FileSystem* fs) {
  std::vector<std::string> out;
  for (auto& s : snapshots_in(fs != nullptr ? *fs : posix_file_system(), dir)) {
    out.push_back(s.path);
  }
  return out;
}

boost::system::result<OpenedWal> open_wal(const std::string& dir, const WalOptions& options,
                                          std::string* problem) {
  FileSystem& fs = options.fs != nullptr ? *options.fs : posix_file_system();
  if (auto ec = fs.create_directories(dir)) {
    spdlog::error("raft wal: cannot create {}: {}", dir, ec.message());
    return ec;
  }
  auto lock = fs.lock(dir + "/LOCK");
  if (!lock) {
    if (lock.error() == boost::system::errc::resource_unavailable_try_again ||
        lock.error() == boost::system::errc::operation_would_block) {
      spdlog::error("raft wal: {} is locked by another process", dir);
      return make_error_code(wal_errc::locked);
    }
    return lock.error();
  }
  // Leftovers of a crash while writing a snapshot file.
  for (const auto& name : fs.list(dir)) {
    if (name.size() > 4 && name.ends_with(".tmp")) {
      fs.remove(dir + "/" + name);
    }
  }
  Replay r = replay(fs, dir);
  if (!r.problem.empty()) {
    spdlog::error("raft wal: {}; refusing to start (inspect it with `routemesh wal check {}`)",
                  r.problem, dir);
    if (problem != nullptr) {
      *problem = r.problem;
    }
    return make_error_code(r.error);
  }
  if (!r.torn_path.empty()) {
    spdlog::warn("raft wal: truncating the torn tail of {} at byte offset {} ({} bytes)",
                 r.torn_path, r.torn_offset, r.torn_bytes);
    if (auto ec = fs.truncate(r.torn_path, r.torn_offset)) {
      spdlog::critical("raft wal: truncate {} failed: {}", r.torn_path, ec.message());
      return ec;
    }
    r.state.truncated_bytes = r.torn_bytes;
  }
  auto wal = std::make_unique<Wal>(dir, options, fs, std::move(*lock));
  std::optional<SnapshotMeta> meta;
  if (r.state.snapshot) {
    meta = r.state.snapshot->meta;
  }
  wal->resume(std::move(r.infos), r.last_end, r.last_format, meta, r.state.hard_state);
  return OpenedWal{std::move(wal), std::move(r.state)};
}

WalReport check_wal(const std::string& dir, FileSystem* fsp) {
  FileSystem& fs = fsp != nullptr ? *fsp : posix_file_system();
  WalReport rep;
  rep.dir = dir;
  rep.in_use = fs.locked(dir + "/LOCK");
  for (const auto& s : snapshots_in(fs, dir)) {
    rep.snapshot_files.push_back(s.name);
  }
  Replay r = replay(fs, dir);
  rep.segments = std::move(r.reports);
  rep.records = r.records;
  if (!r.problem.empty()) {
    rep.corrupt = r.corrupt;
    rep.problem = std::move(r.problem);
    return rep;
  }
  if (rep.segments.empty()) {
    rep.problem = fmt::format("no WAL segments in {} (a node keeps its log in DATA_DIR/raft)", dir);
    return rep;
  }
  const StoredState& st = r.state;
  if (st.snapshot) {
    rep.snapshot = st.snapshot->meta;
  }
  rep.hard_state = st.hard_state;
  if (!st.entries.empty()) {
    rep.first_index = st.entries.front().index;
    rep.last_index = st.entries.back().index;
    rep.last_term = st.entries.back().term;
  } else if (st.snapshot) {
    rep.last_index = st.snapshot->meta.index;
    rep.last_term = st.snapshot->meta.term;
  }
  rep.torn_file = r.torn_name;
  rep.torn_offset = r.torn_offset;
  rep.torn_bytes = r.torn_bytes;
  return rep;
}

std::string format_wal_report(const WalReport& rep) {
  std::string out = fmt::format("WAL {}\n", rep.dir);
  if (rep.in_use) {
    out += "in use by a running node: its last record may be mid-write\n";
  }
  for (const auto& s : rep.segments) {
    out += fmt::format("segment {}: format {}, {} bytes, {} records", s.name, s.format, s.bytes,
                       s.records);
    out += s.last_entry == 0 ? std::string(", no entries\n")
                             : fmt::format(", entries {}..{}\n", s.first_entry, s.last_entry);
  }
  for (const auto& name : rep.snapshot_files) {
    out += fmt::format("snapshot file {}\n", name);
  }
  if (!rep.ok()) {
    out += fmt::format("{}: {}\n", rep.corrupt ? "CORRUPT" : "ERROR", rep.problem);
    return out;
  }
  if (rep.snapshot) {
    out += fmt::format("snapshot in use: index {}, term {}\n", rep.snapshot->index,
                       rep.snapshot->term);
  }
  out += fmt::format("records: {}\n", rep.records);
  if (rep.first_index != 0) {
    out += fmt::format("entries: {}..{}\n", rep.first_index, rep.last_index);
  } else {
    out += "entries: none\n";
  }
  out += fmt::format("last index: {} (term {})\n", rep.last_index, rep.last_term);
  out += fmt::format("hard state: term {}, vote {}, commit {}\n", rep.hard_state.term,
                     rep.hard_state.vote, rep.hard_state.commit);
  if (!rep.torn_file.empty()) {
    out += fmt::format(
        "torn tail: {} at byte offset {} ({} bytes of an unsynced write; dropped at the next "
        "start)\n",
        rep.torn_file, rep.torn_offset, rep.torn_bytes);
  } else {
    out += "torn tail: none\n";
  }
  out += "ok\n";
  return out;
}

}  // namespace routemesh::discovery::raft
