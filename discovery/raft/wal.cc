#include "discovery/raft/wal.h"

#include <spdlog/spdlog.h>
#include <boost/crc.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace routemesh::discovery::raft {
namespace {

namespace fs = std::filesystem;

enum class RecordType : std::uint8_t {
  entry = 1,
  hard_state = 2,
  snapshot_marker = 3,
  bootstrap = 4
};
enum class MarkerKind : std::uint8_t { saved = 0, installed = 1 };

constexpr std::size_t kHeader = 8;                        // u32 len + u32 crc
constexpr std::uint32_t kMaxRecord = (64u << 20) + 4096;  // entries are bounded by the frame size
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

// Fatal I/O: the node must stop rather than acknowledge something that is not durable
// (after a failed fsync the page cache state is unknown; retrying is not safe).
[[noreturn]] void die(const char* what, const std::string& path) {
  int e = errno;
  spdlog::critical("raft wal: {} {} failed: {}; stopping the node", what, path, std::strerror(e));
  std::abort();
}

void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
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

void append_record(Bytes& buf, RecordType type, const Bytes& payload) {
  std::size_t at = buf.size();
  buf.resize(at + kHeader + 1);
  buf[at + kHeader] = static_cast<std::uint8_t>(type);
  buf.insert(buf.end(), payload.begin(), payload.end());
  std::uint32_t len = static_cast<std::uint32_t>(payload.size() + 1);
  put_u32(&buf[at], len);
  put_u32(&buf[at + 4], crc32c(&buf[at + kHeader], len));
}

Bytes marker_payload(const SnapshotMeta& meta, MarkerKind kind) {
  Bytes p = codec::encode_snapshot_meta(meta);
  p.push_back(static_cast<std::uint8_t>(kind));
  return p;
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

void write_all(int fd, const std::uint8_t* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("write", path);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    die("open dir", dir);
  }
  if (::fsync(fd) != 0) {
    die("fsync dir", dir);
  }
  ::close(fd);
}

bool read_file(const std::string& path, Bytes& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      ::close(fd);
      return false;
    }
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return true;
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
  std::string path;
};

std::vector<SegmentFile> segments_in(const std::string& dir) {
  std::vector<SegmentFile> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    if (auto seq = parse_segment(de.path().filename().string())) {
      out.push_back({*seq, de.path().string()});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

struct SnapFile {
  Term term;
  Index index;
  std::string path;
};

std::vector<SnapFile> snapshots_in(const std::string& dir) {
  std::vector<SnapFile> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    if (auto ti = parse_snapshot(de.path().filename().string())) {
      out.push_back({ti->first, ti->second, de.path().string()});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::pair{a.index, a.term} < std::pair{b.index, b.term};
  });
  return out;
}

std::optional<Snapshot> load_snapshot_file(const std::string& path) {
  Bytes buf;
  if (!read_file(path, buf) || buf.size() < 20 || std::memcmp(buf.data(), kSnapMagic, 8) != 0) {
    return std::nullopt;
  }
  std::uint32_t crc = get_u32(&buf[8]);
  std::uint64_t size = get_u32(&buf[12]) | (std::uint64_t{get_u32(&buf[16])} << 32);
  if (size != buf.size() - 20 || crc32c(buf.data() + 20, buf.size() - 20) != crc) {
    return std::nullopt;
  }
  return codec::decode_snapshot(Bytes(buf.begin() + 20, buf.end()));
}

// Per-segment facts kept for deleting old segments.
struct SegmentInfo {
  std::uint64_t seq = 0;
  std::string path;
  Index max_entry = 0;  // largest entry index written to it (0: none)
};

class Wal final : public LogStorage {
 public:
  Wal(std::string dir, std::uint64_t segment_bytes, int lock_fd)
      : dir_(std::move(dir)), segment_bytes_(segment_bytes), lock_fd_(lock_fd) {}
  ~Wal() override {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    if (lock_fd_ >= 0) {
      ::close(lock_fd_);  // releases the flock
    }
  }

  // Called by open_wal after replay.
  void resume(std::vector<SegmentInfo> segments, std::uint64_t tail_size,
              std::optional<SnapshotMeta> snap, HardState hs) {
    segments_ = std::move(segments);
    latest_snapshot_ = std::move(snap);
    hard_state_ = hs;
    if (segments_.empty()) {
      open_new_segment(1);
      return;
    }
    const SegmentInfo& last = segments_.back();
    fd_ = ::open(last.path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd_ < 0) {
      die("open", last.path);
    }
    size_ = tail_size;
  }

  void save(const std::optional<Snapshot>& snapshot, const std::vector<Entry>& entries,
            const std::optional<HardState>& hard_state) override {
    if (size_ >= segment_bytes_) {
      rotate();
    }
    Bytes buf;
    if (snapshot) {
      write_snapshot_file(*snapshot);
      append_record(buf, RecordType::snapshot_marker,
                    marker_payload(snapshot->meta, MarkerKind::installed));
      latest_snapshot_ = snapshot->meta;
    }
    for (const Entry& e : entries) {
      append_record(buf, RecordType::entry, codec::encode_entry(e));
      segments_.back().max_entry = std::max(segments_.back().max_entry, e.index);
    }
    if (hard_state) {
      append_record(buf, RecordType::hard_state, codec::encode_hard_state(*hard_state));
      hard_state_ = *hard_state;
    }
    if (!buf.empty()) {
      write_and_sync(buf);
    }
  }

  void save_bootstrap(const BootstrapState& bootstrap) override {
    Bytes buf;
    append_record(buf, RecordType::bootstrap, bootstrap_payload(bootstrap));
    write_and_sync(buf);
  }

  void save_snapshot(const Snapshot& snapshot, int keep_snapshots) override {
    write_snapshot_file(snapshot);
    Bytes buf;
    append_record(buf, RecordType::snapshot_marker,
                  marker_payload(snapshot.meta, MarkerKind::saved));
    write_and_sync(buf);
    latest_snapshot_ = snapshot.meta;
    rotate();
    // Segments are deleted as a prefix only: a later segment may replace entries of an
    // earlier one, never the other way round. The new segment's head holds the marker and
    // hard state, so nothing else of the deleted ones is needed.
    bool removed = false;
    while (segments_.size() > 1 && segments_.front().max_entry <= snapshot.meta.index) {
      if (::unlink(segments_.front().path.c_str()) != 0) {
        die("unlink", segments_.front().path);
      }
      segments_.erase(segments_.begin());
      removed = true;
    }
    auto snaps = snapshots_in(dir_);
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep_snapshots) < snaps.size(); ++i) {
      if (::unlink(snaps[i].path.c_str()) != 0) {
        die("unlink", snaps[i].path);
      }
      removed = true;
    }
    if (removed) {
      fsync_dir(dir_);
    }
  }

  std::size_t segment_count() const override { return segments_.size(); }
  std::uint64_t last_sync_ns() const override { return last_sync_ns_; }

 private:
  void write_and_sync(const Bytes& buf) {
    const std::string& path = segments_.back().path;
    write_all(fd_, buf.data(), buf.size(), path);
    auto t0 = std::chrono::steady_clock::now();
    if (::fdatasync(fd_) != 0) {
      die("fdatasync", path);
    }
    last_sync_ns_ = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    size_ += buf.size();
  }

  void open_new_segment(std::uint64_t seq) {
    std::string path = dir_ + "/" + segment_name(seq);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      die("create", path);
    }
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = fd;
    size_ = 0;
    segments_.push_back({seq, path, 0});
    fsync_dir(dir_);
  }

  // New segment whose head repeats the latest snapshot marker and hard state.
  void rotate() {
    open_new_segment(segments_.empty() ? 1 : segments_.back().seq + 1);
    Bytes buf;
    if (latest_snapshot_) {
      append_record(buf, RecordType::snapshot_marker,
                    marker_payload(*latest_snapshot_, MarkerKind::saved));
    }
    append_record(buf, RecordType::hard_state, codec::encode_hard_state(hard_state_));
    write_and_sync(buf);
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
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      die("create", tmp);
    }
    write_all(fd, head.data(), head.size(), tmp);
    write_all(fd, body.data(), body.size(), tmp);
    if (::fsync(fd) != 0) {
      die("fsync", tmp);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
      die("rename", tmp);
    }
    fsync_dir(dir_);
  }

  std::string dir_;
  std::uint64_t segment_bytes_;
  int lock_fd_ = -1;
  int fd_ = -1;
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

std::vector<std::string> list_segments(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& s : segments_in(dir)) {
    out.push_back(s.path);
  }
  return out;
}

std::vector<std::string> list_snapshots(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& s : snapshots_in(dir)) {
    out.push_back(s.path);
  }
  return out;
}

boost::system::result<OpenedWal> open_wal(const std::string& dir, std::uint64_t segment_bytes) {
  std::error_code fec;
  fs::create_directories(dir, fec);
  if (fec) {
    spdlog::error("raft wal: cannot create {}: {}", dir, fec.message());
    return boost::system::error_code(fec.value(), boost::system::system_category());
  }
  std::string lock_path = dir + "/LOCK";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    return boost::system::error_code(errno, boost::system::system_category());
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    spdlog::error("raft wal: {} is locked by another process", dir);
    return make_error_code(wal_errc::locked);
  }
  // Leftovers of a crash while writing a snapshot file.
  for (const auto& de : fs::directory_iterator(dir, fec)) {
    if (de.path().extension() == ".tmp") {
      fs::remove(de.path(), fec);
    }
  }
  auto wal = std::make_unique<Wal>(dir, segment_bytes, lock_fd);

  StoredState st;
  std::vector<Entry> entries;
  std::map<std::pair<Index, Term>, bool> markers;  // snapshots the WAL says are durable
  Index installed_floor = 0;  // entries must start after the latest installed snapshot
  std::vector<SegmentInfo> infos;
  std::uint64_t tail_size = 0;
  auto segs = segments_in(dir);
  for (std::size_t si = 0; si < segs.size(); ++si) {
    const bool last_segment = si + 1 == segs.size();
    Bytes buf;
    if (!read_file(segs[si].path, buf)) {
      spdlog::error("raft wal: cannot read {}", segs[si].path);
      return make_error_code(wal_errc::corrupt);
    }
    SegmentInfo info{segs[si].seq, segs[si].path, 0};
    std::size_t off = 0;
    while (off < buf.size()) {
      std::size_t left = buf.size() - off;
      std::uint32_t len = left >= kHeader ? get_u32(&buf[off]) : 0;
      bool complete = left >= kHeader && len >= 1 && len <= kMaxRecord && left - kHeader >= len;
      bool crc_ok = complete && crc32c(&buf[off + kHeader], len) == get_u32(&buf[off + 4]);
      if (!crc_ok) {
        // A torn write can only be the last thing in the last segment: a record running past
        // the end of the file, or a bad checksum on the very last record.
        bool tail = last_segment && (!complete || off + kHeader + len == buf.size());
        if (!tail) {
          spdlog::error("raft wal: corrupt record at {}:{}", segs[si].path, off);
          return make_error_code(wal_errc::corrupt);
        }
        spdlog::warn("raft wal: truncating torn tail of {} at offset {} ({} bytes)", segs[si].path,
                     off, left);
        if (::truncate(segs[si].path.c_str(), static_cast<off_t>(off)) != 0) {
          die("truncate", segs[si].path);
        }
        int fd = ::open(segs[si].path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::fsync(fd) != 0) {
          die("fsync", segs[si].path);
        }
        ::close(fd);
        st.truncated_bytes = left;
        buf.resize(off);
        break;
      }
      auto type = static_cast<RecordType>(buf[off + kHeader]);
      Bytes payload(buf.begin() + static_cast<std::ptrdiff_t>(off + kHeader + 1),
                    buf.begin() + static_cast<std::ptrdiff_t>(off + kHeader + len));
      bool ok = true;
      switch (type) {
        case RecordType::entry: {
          auto e = codec::decode_entry(payload);
          if (!e) {
            ok = false;
            break;
          }
          // Entries replace every stored entry at or after their index (Ready contract).
          while (!entries.empty() && entries.back().index >= e->index) {
            entries.pop_back();
          }
          if (!entries.empty() && entries.back().index + 1 != e->index) {
            spdlog::error("raft wal: gap before entry {} in {}", e->index, segs[si].path);
            return make_error_code(wal_errc::corrupt);
          }
          info.max_entry = std::max(info.max_entry, e->index);
          entries.push_back(std::move(*e));
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
          auto kind = static_cast<MarkerKind>(payload.back());
          payload.pop_back();
          auto meta = codec::decode_snapshot_meta(payload);
          if (!meta || (kind != MarkerKind::saved && kind != MarkerKind::installed)) {
            ok = false;
            break;
          }
          markers[{meta->index, meta->term}] = true;
          if (kind == MarkerKind::installed) {
            // InstallSnapshot replaced the whole log (RaftLog::restore).
            entries.clear();
            installed_floor = std::max(installed_floor, meta->index);
          }
          break;
        }
        case RecordType::bootstrap: {
          st.bootstrap = decode_bootstrap(payload);
          ok = st.bootstrap.has_value();
          break;
        }
        default:
          ok = false;
      }
      if (!ok) {
        // The checksum matched, so this is not a torn write but a bug or a newer format.
        spdlog::error("raft wal: undecodable record at {}:{}", segs[si].path, off);
        return make_error_code(wal_errc::corrupt);
      }
      off += kHeader + len;
    }
    if (last_segment) {
      tail_size = buf.size();
    }
    infos.push_back(std::move(info));
  }

  // Newest snapshot file that a marker declares durable and that reads back intact.
  auto snaps = snapshots_in(dir);
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) {
    if (!markers.contains({it->index, it->term})) {
      continue;  // written but never acknowledged (crash before its marker): unused
    }
    auto s = load_snapshot_file(it->path);
    if (s && s->meta.index == it->index && s->meta.term == it->term) {
      st.snapshot = std::move(*s);
      break;
    }
    spdlog::warn("raft wal: skipping unreadable snapshot {}", it->path);
  }
  Index snap_index = st.snapshot ? st.snapshot->meta.index : 0;
  if (installed_floor > snap_index) {
    spdlog::error("raft wal: installed snapshot at {} is missing", installed_floor);
    return make_error_code(wal_errc::bad_snapshot);
  }
  std::erase_if(entries, [&](const Entry& e) { return e.index <= snap_index; });
  if (!entries.empty() && (st.snapshot || installed_floor > 0) &&
      entries.front().index != snap_index + 1) {
    spdlog::error("raft wal: entries start at {} but the snapshot ends at {}",
                  entries.front().index, snap_index);
    return make_error_code(wal_errc::bad_snapshot);
  }
  if (!entries.empty() && !st.snapshot && entries.front().index != 1) {
    spdlog::error("raft wal: entries start at {} without a snapshot", entries.front().index);
    return make_error_code(wal_errc::bad_snapshot);
  }
  st.entries = std::move(entries);
  std::optional<SnapshotMeta> meta;
  if (st.snapshot) {
    meta = st.snapshot->meta;
  }
  wal->resume(std::move(infos), tail_size, meta, st.hard_state);
  return OpenedWal{std::move(wal), std::move(st)};
}

}  // namespace routemesh::discovery::raft
