#include "discovery/raft/wal.h"

#include "tests/unit/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using namespace routemesh::discovery::raft;

namespace {

Entry entry(Index i, Term t, std::string data = {}) {
  if (data.empty()) {
    data = "cmd-" + std::to_string(i);
  }
  return Entry{t, i, EntryType::normal, Bytes(data.begin(), data.end())};
}

std::vector<Entry> entries(Index from, Index to, Term t) {
  std::vector<Entry> out;
  for (Index i = from; i <= to; ++i) {
    out.push_back(entry(i, t));
  }
  return out;
}

WalOptions segments_of(std::uint64_t bytes) {
  WalOptions o;
  o.segment_bytes = bytes;
  return o;
}

OpenedWal open_ok(const std::string& dir, std::uint64_t segment_bytes = 64ull << 20) {
  auto r = open_wal(dir, segments_of(segment_bytes));
  REQUIRE(r.has_value());
  return std::move(*r);
}

std::uintmax_t file_size(const std::string& p) {
  return fs::file_size(p);
}

void flip_byte(const std::string& path, std::uintmax_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5a));
}

Snapshot snapshot_at(Index i, Term t, std::string data) {
  Snapshot s;
  s.meta.index = i;
  s.meta.term = t;
  s.meta.conf.voters = {1, 2, 3};
  s.data = Bytes(data.begin(), data.end());
  return s;
}

}  // namespace

TEST_CASE("wal: entries, hard state and bootstrap survive a reopen") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path);
    CHECK(w.state.empty());
    w.storage->save_bootstrap({ConfState{{7}, {}}, {{7, "127.0.0.1:7946"}}});
    w.storage->save(std::nullopt, entries(1, 10, 1), HardState{1, 7, 4});
    w.storage->save(std::nullopt, entries(11, 12, 2), HardState{2, 7, 12});
  }
  auto w = open_ok(d.path);
  CHECK_FALSE(w.state.snapshot);
  CHECK(w.state.hard_state == HardState{2, 7, 12});
  REQUIRE(w.state.entries.size() == 12);
  CHECK(w.state.entries[0] == entry(1, 1));
  CHECK(w.state.entries[11] == entry(12, 2));
  REQUIRE(w.state.bootstrap);
  CHECK(w.state.bootstrap->conf.voters == std::set<NodeId>{7});
  CHECK(w.state.bootstrap->peers.at(7) == "127.0.0.1:7946");
  CHECK(w.state.truncated_bytes == 0);
}

TEST_CASE("wal: saved entries replace the stored suffix from their first index") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path);
    w.storage->save(std::nullopt, entries(1, 5, 1), HardState{1, 0, 2});
    // A new leader of term 2 overwrote entries 3.. (Raft §5.3).
    w.storage->save(std::nullopt, {entry(3, 2, "x"), entry(4, 2, "y")}, HardState{2, 0, 2});
  }
  auto w = open_ok(d.path);
  REQUIRE(w.state.entries.size() == 4);
  CHECK(w.state.entries[2] == entry(3, 2, "x"));
  CHECK(w.state.entries[3] == entry(4, 2, "y"));
}

TEST_CASE("wal: a torn last record is truncated at every byte offset") {
  routemesh::test::TempDir base("rm-wal");
  std::string seg;
  std::uintmax_t before = 0;
  std::uintmax_t after = 0;
  {
    auto w = open_ok(base.path);
    w.storage->save(std::nullopt, entries(1, 3, 1), HardState{1, 1, 3});
    seg = list_segments(base.path).back();
    before = file_size(seg);
    w.storage->save(std::nullopt, {entry(4, 1, "the last record")}, std::nullopt);
    after = file_size(seg);
  }
  REQUIRE(after > before + 9);
  std::string name = fs::path(seg).filename().string();
  for (std::uintmax_t cut = before; cut < after; ++cut) {
    INFO("cut at " << cut);
    routemesh::test::TempDir d("rm-wal");
    fs::copy_file(seg, d.path + "/" + name);
    fs::resize_file(d.path + "/" + name, cut);
    {
      auto w = open_ok(d.path);
      CHECK(w.state.truncated_bytes == cut - before);
      CHECK(w.state.entries == entries(1, 3, 1));
      CHECK(w.state.hard_state == HardState{1, 1, 3});
      CHECK(file_size(d.path + "/" + name) == before);
      // Appending after the truncation point yields a clean log.
      w.storage->save(std::nullopt, {entry(4, 2, "again")}, std::nullopt);
    }
    auto w = open_ok(d.path);
    REQUIRE(w.state.entries.size() == 4);
    CHECK(w.state.entries[3] == entry(4, 2, "again"));
  }
}

TEST_CASE("wal: a bad checksum on the last record is a torn tail") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::uintmax_t before = 0;
  {
    auto w = open_ok(d.path);
    w.storage->save(std::nullopt, entries(1, 3, 1), std::nullopt);
    seg = list_segments(d.path).back();
    before = file_size(seg);
    w.storage->save(std::nullopt, {entry(4, 1)}, std::nullopt);
  }
  std::uintmax_t after = file_size(seg);
  flip_byte(seg, after - 1);
  auto w = open_ok(d.path);
  CHECK(w.state.entries == entries(1, 3, 1));
  CHECK(w.state.truncated_bytes == after - before);
  CHECK(file_size(seg) == before);
}

TEST_CASE("wal: a corrupt record in the middle of the log is an error") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  {
    auto w = open_ok(d.path);
    w.storage->save(std::nullopt, entries(1, 3, 1), std::nullopt);
    seg = list_segments(d.path).back();
    w.storage->save(std::nullopt, entries(4, 6, 1), std::nullopt);
  }
  flip_byte(seg, 12);  // inside the first record's payload
  auto r = open_wal(d.path);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(wal_errc::corrupt));
}

TEST_CASE("wal: corruption in an older segment is an error even at its end") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path, /*segment_bytes=*/64);
    for (Index i = 1; i <= 20; ++i) {
      w.storage->save(std::nullopt, {entry(i, 1)}, std::nullopt);
    }
    REQUIRE(w.storage->segment_count() > 2);
  }
  auto segs = list_segments(d.path);
  flip_byte(segs.front(), file_size(segs.front()) - 1);
  auto r = open_wal(d.path, segments_of(64));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(wal_errc::corrupt));
}

TEST_CASE("wal: a local snapshot deletes older segments and keeps the newest two files") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path, /*segment_bytes=*/200);
    for (Index i = 1; i <= 40; ++i) {
      w.storage->save(std::nullopt, {entry(i, 1)}, HardState{1, 1, i});
    }
    std::size_t before = w.storage->segment_count();
    REQUIRE(before > 4);
    w.storage->save_snapshot(snapshot_at(10, 1, "image-10"));
    w.storage->save_snapshot(snapshot_at(20, 1, "image-20"));
    w.storage->save_snapshot(snapshot_at(30, 1, "image-30"));
    CHECK(w.storage->segment_count() < before);
    CHECK(list_snapshots(d.path).size() == 2);
    w.storage->save(std::nullopt, {entry(41, 2)}, HardState{2, 1, 41});
  }
  auto w = open_ok(d.path, 200);
  REQUIRE(w.state.snapshot);
  CHECK(w.state.snapshot->meta.index == 30);
  CHECK(w.state.snapshot->meta.conf.voters == std::set<NodeId>{1, 2, 3});
  CHECK(w.state.snapshot->data == Bytes{'i', 'm', 'a', 'g', 'e', '-', '3', '0'});
  REQUIRE(w.state.entries.size() == 11);
  CHECK(w.state.entries.front().index == 31);
  CHECK(w.state.entries.back() == entry(41, 2));
  CHECK(w.state.hard_state == HardState{2, 1, 41});
  // Every segment left holds something after the oldest kept data.
  auto files = list_snapshots(d.path);
  CHECK(fs::path(files.back()).filename().string().find("snap-") == 0);
}

TEST_CASE("wal: an installed snapshot replaces the whole stored log") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path);
    w.storage->save(std::nullopt, entries(1, 10, 1), HardState{1, 0, 3});
    // InstallSnapshot (§7) from a leader whose log diverged after 3.
    w.storage->save(snapshot_at(20, 3, "leader-image"), {}, HardState{3, 0, 20});
    w.storage->save(std::nullopt, entries(21, 22, 3), HardState{3, 0, 22});
  }
  auto w = open_ok(d.path);
  REQUIRE(w.state.snapshot);
  CHECK(w.state.snapshot->meta.index == 20);
  CHECK(w.state.entries == entries(21, 22, 3));
}

TEST_CASE("wal: a snapshot file without a WAL marker is ignored") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path);
    w.storage->save(std::nullopt, entries(1, 5, 1), HardState{1, 0, 5});
  }
  {
    // A file written by a crashed save (rename done, marker never synced) looks exactly like
    // a real one; produce one with a second WAL and move it over.
    routemesh::test::TempDir other("rm-wal");
    auto w = open_ok(other.path);
    w.storage->save(snapshot_at(50, 4, "never-acknowledged"), {}, std::nullopt);
    auto snaps = list_snapshots(other.path);
    REQUIRE(snaps.size() == 1);
    fs::copy_file(snaps[0], d.path + "/" + fs::path(snaps[0]).filename().string());
  }
  auto w = open_ok(d.path);
  CHECK_FALSE(w.state.snapshot);
  CHECK(w.state.entries == entries(1, 5, 1));
}

TEST_CASE("wal: a second open of the same data_dir is refused") {
  routemesh::test::TempDir d("rm-wal");
  auto w = open_ok(d.path);
  auto r = open_wal(d.path);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(wal_errc::locked));
}

TEST_CASE("wal: crc32c matches the Castagnoli check value") {
  const char* s = "123456789";
  CHECK(crc32c(reinterpret_cast<const std::uint8_t*>(s), 9) == 0xE3069283u);
}

// ---- torn tails, corruption, format versions, `wal check` ----------------------------------

namespace {

void put_u32_at(Bytes& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  }
}

Bytes read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A format-1 record as the writer before format 2 laid it out: [len][crc32c(body)][body].
void append_v1(Bytes& seg, std::uint8_t type, const Bytes& payload) {
  std::size_t at = seg.size();
  seg.resize(at + 8);
  seg.push_back(type);
  seg.insert(seg.end(), payload.begin(), payload.end());
  auto len = static_cast<std::uint32_t>(payload.size() + 1);
  put_u32_at(seg, at, len);
  put_u32_at(seg, at + 4, crc32c(&seg[at + 8], len));
}

// Segment sizes after each of `n` single-entry saves (offsets where records start/end).
std::vector<std::uintmax_t> save_each(OpenedWal& w, const std::string& dir, Index from, Index to,
                                      std::string data = {}) {
  std::vector<std::uintmax_t> ends;
  for (Index i = from; i <= to; ++i) {
    w.storage->save(std::nullopt, {entry(i, 1, data)}, HardState{1, 1, i});
    ends.push_back(file_size(list_segments(dir).back()));
  }
  return ends;
}

std::vector<Entry> big_entries(Index from, Index to) {
  std::vector<Entry> out;
  for (Index i = from; i <= to; ++i) {
    out.push_back(entry(i, 1, std::string(60, 'x')));
  }
  return out;
}

std::string open_problem(const std::string& dir) {
  std::string problem;
  auto r = open_wal(dir, {}, &problem);
  CHECK_FALSE(r.has_value());
  if (!r.has_value()) {
    CHECK(r.error() == make_error_code(wal_errc::corrupt));
  }
  return problem;
}

}  // namespace

TEST_CASE("wal: zeroed sectors at the end of the last segment are a torn tail") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::uintmax_t before = 0;
  {
    auto w = open_ok(d.path);
    save_each(w, d.path, 1, 3);
    seg = list_segments(d.path).back();
    before = file_size(seg);
    // A Ready that was being synced when the power went: its size made it to disk, its
    // sectors did not (they read back as zeros).
    w.storage->save(std::nullopt, big_entries(4, 40), HardState{1, 1, 40});
  }
  Bytes b = read_all(seg);
  REQUIRE(b.size() > before + 1024);
  std::fill(b.begin() + static_cast<std::ptrdiff_t>(before), b.end(), 0);
  write_all(seg, b);
  auto w = open_ok(d.path);
  CHECK(w.state.entries == entries(1, 3, 1));
  CHECK(w.state.hard_state == HardState{1, 1, 3});
  CHECK(w.state.truncated_bytes == b.size() - before);
  CHECK(file_size(seg) == before);
}

TEST_CASE("wal: a record with a missing middle sector at the end is a torn tail") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::uintmax_t before = 0;
  {
    auto w = open_ok(d.path);
    save_each(w, d.path, 1, 2);
    seg = list_segments(d.path).back();
    before = file_size(seg);
    w.storage->save(std::nullopt, big_entries(3, 60), HardState{1, 1, 60});
  }
  Bytes b = read_all(seg);
  REQUIRE(b.size() > before + 1024);
  // Sectors are written in any order: the last one made it, one before it did not.
  std::size_t sector = (before / 512 + 1) * 512;
  std::fill(b.begin() + static_cast<std::ptrdiff_t>(sector),
            b.begin() + static_cast<std::ptrdiff_t>(sector + 512), 0);
  write_all(seg, b);
  auto w = open_ok(d.path);
  CHECK(w.state.entries == entries(1, 2, 1));
  CHECK(w.state.truncated_bytes == b.size() - before);
}

TEST_CASE("wal: a bad length in the middle of the last segment is corruption, not a torn tail") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::vector<std::uintmax_t> ends;
  {
    auto w = open_ok(d.path);
    ends = save_each(w, d.path, 1, 6);
    seg = list_segments(d.path).back();
  }
  // Record 3's length now points past the end of the file; records 4..6 (with their votes
  // and commits) were synced and acknowledged, so they must not be dropped as a torn tail.
  Bytes b = read_all(seg);
  put_u32_at(b, ends[1], 0x00fffff0);
  write_all(seg, b);
  std::string problem = open_problem(d.path);
  INFO(problem);
  CHECK(problem.find(seg) != std::string::npos);
  CHECK(problem.find("at byte offset " + std::to_string(ends[1])) != std::string::npos);
  CHECK(problem.find("valid record follows at byte offset " + std::to_string(ends[2])) !=
        std::string::npos);
  CHECK(file_size(seg) == b.size());  // nothing was truncated
}

TEST_CASE("wal: a bad checksum followed by valid records is corruption") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::vector<std::uintmax_t> ends;
  {
    auto w = open_ok(d.path);
    ends = save_each(w, d.path, 1, 4);
    seg = list_segments(d.path).back();
  }
  flip_byte(seg, ends[0] + 14);  // inside record 2's body
  std::string problem = open_problem(d.path);
  CHECK(problem.find(seg + " at byte offset " + std::to_string(ends[0])) != std::string::npos);
  CHECK(problem.find("bad record checksum") != std::string::npos);
}

TEST_CASE("wal: corruption in an older segment names the file and offset") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path, 64);
    save_each(w, d.path, 1, 10);
    REQUIRE(list_segments(d.path).size() > 2);
  }
  auto segs = list_segments(d.path);
  std::uintmax_t size = file_size(segs[1]);
  flip_byte(segs[1], size - 1);  // its last record: a torn tail only if it were the last segment
  auto r = open_wal(d.path, segments_of(64));
  REQUIRE_FALSE(r.has_value());
  WalReport rep = check_wal(d.path);
  CHECK_FALSE(rep.ok());
  CHECK(rep.problem.find(segs[1]) != std::string::npos);
  CHECK(rep.problem.find("not the last segment") != std::string::npos);
}

TEST_CASE("wal: a record moved to another offset is detected (the header checksum covers it)") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::vector<std::uintmax_t> ends;
  {
    auto w = open_ok(d.path);
    ends = save_each(w, d.path, 1, 4, "same-size");
    seg = list_segments(d.path).back();
  }
  // Records 2 and 3 have the same length: swap them. Each is intact, but at the wrong place.
  Bytes b = read_all(seg);
  std::size_t len = ends[1] - ends[0];
  REQUIRE(ends[2] - ends[1] == len);
  std::swap_ranges(b.begin() + static_cast<std::ptrdiff_t>(ends[0]),
                   b.begin() + static_cast<std::ptrdiff_t>(ends[1]),
                   b.begin() + static_cast<std::ptrdiff_t>(ends[1]));
  write_all(seg, b);
  std::string problem = open_problem(d.path);
  CHECK(problem.find("at byte offset " + std::to_string(ends[0]) + ": bad record header") !=
        std::string::npos);
}

TEST_CASE("wal: a torn segment header (crash while rotating) is dropped and rewritten") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path, 64);
    save_each(w, d.path, 1, 5);
    // A local snapshot ends with a new segment that holds only its head.
    w.storage->save_snapshot(snapshot_at(3, 1, "image-3"));
  }
  auto segs = list_segments(d.path);
  REQUIRE(segs.size() >= 2);
  // The crash came while its 24-byte header was being written: 10 bytes made it.
  fs::resize_file(segs.back(), 10);
  {
    auto w = open_ok(d.path, 64);
    REQUIRE(w.state.snapshot);
    CHECK(w.state.snapshot->meta.index == 3);
    CHECK(w.state.entries == entries(4, 5, 1));
    CHECK(w.state.hard_state == HardState{1, 1, 5});
    CHECK(w.state.truncated_bytes == 10);
    w.storage->save(std::nullopt, {entry(6, 1)}, HardState{1, 1, 6});
  }
  auto w = open_ok(d.path, 64);
  CHECK(w.state.entries == entries(4, 6, 1));
  CHECK(w.state.truncated_bytes == 0);
}

TEST_CASE("wal: format-1 segments are still read, and writing continues in format 2") {
  routemesh::test::TempDir d("rm-wal");
  Bytes seg;
  for (Index i = 1; i <= 3; ++i) {
    append_v1(seg, 1, codec::encode_entry(entry(i, 1)));
  }
  append_v1(seg, 2, codec::encode_hard_state(HardState{1, 2, 3}));
  std::string name = d.path + "/wal-0000000000000001.log";
  write_all(name, seg);
  WalReport rep = check_wal(d.path);
  REQUIRE(rep.ok());
  REQUIRE(rep.segments.size() == 1);
  CHECK(rep.segments[0].format == 1);
  CHECK(rep.last_index == 3);
  {
    auto w = open_ok(d.path);
    CHECK(w.state.entries == entries(1, 3, 1));
    CHECK(w.state.hard_state == HardState{1, 2, 3});
    w.storage->save(std::nullopt, {entry(4, 2)}, HardState{2, 2, 4});
  }
  CHECK(file_size(name) == seg.size());  // the old segment is never appended to
  REQUIRE(list_segments(d.path).size() == 2);
  auto w = open_ok(d.path);
  REQUIRE(w.state.entries.size() == 4);
  CHECK(w.state.entries[3] == entry(4, 2));
  CHECK(w.state.hard_state == HardState{2, 2, 4});
  CHECK(check_wal(d.path).segments.at(1).format == 2);
}

TEST_CASE("wal: a commit index beyond the stored entries is refused") {
  routemesh::test::TempDir d("rm-wal");
  Bytes seg;
  append_v1(seg, 1, codec::encode_entry(entry(1, 1)));
  append_v1(seg, 2, codec::encode_hard_state(HardState{1, 1, 5}));
  write_all(d.path + "/wal-0000000000000001.log", seg);
  std::string problem = open_problem(d.path);
  CHECK(problem.find("commit index 5 is beyond the last stored entry 1") != std::string::npos);
}

TEST_CASE("wal check: reports segments, records, last index and hard state") {
  routemesh::test::TempDir d("rm-wal");
  {
    auto w = open_ok(d.path, 200);
    w.storage->save_bootstrap({ConfState{{1}, {}}, {{1, "127.0.0.1:7946"}}});
    save_each(w, d.path, 1, 12);
    w.storage->save_snapshot(snapshot_at(8, 1, "image-8"));
    w.storage->save(std::nullopt, {entry(13, 2)}, HardState{2, 1, 13});
  }
  WalReport rep = check_wal(d.path);
  INFO(format_wal_report(rep));
  REQUIRE(rep.ok());
  CHECK_FALSE(rep.in_use);
  CHECK(rep.segments.size() == list_segments(d.path).size());
  CHECK(rep.records > 0);
  REQUIRE(rep.snapshot);
  CHECK(rep.snapshot->index == 8);
  CHECK(rep.first_index == 9);
  CHECK(rep.last_index == 13);
  CHECK(rep.last_term == 2);
  CHECK(rep.hard_state == HardState{2, 1, 13});
  CHECK(rep.torn_file.empty());
  std::string text = format_wal_report(rep);
  CHECK(text.find("last index: 13 (term 2)") != std::string::npos);
  CHECK(text.find("torn tail: none") != std::string::npos);
  CHECK(text.ends_with("ok\n"));
  {
    auto w = open_ok(d.path);
    CHECK(check_wal(d.path).in_use);  // a running node holds the lock
  }
}

TEST_CASE("wal check: reports a torn tail without truncating it, and corruption") {
  routemesh::test::TempDir d("rm-wal");
  std::string seg;
  std::vector<std::uintmax_t> ends;
  {
    auto w = open_ok(d.path);
    ends = save_each(w, d.path, 1, 3);
    seg = list_segments(d.path).back();
  }
  fs::resize_file(seg, ends[2] - 3);
  WalReport rep = check_wal(d.path);
  REQUIRE(rep.ok());
  CHECK(rep.torn_file == fs::path(seg).filename().string());
  CHECK(rep.torn_offset == ends[1]);
  CHECK(rep.torn_bytes == ends[2] - 3 - ends[1]);
  CHECK(rep.last_index == 2);
  CHECK(file_size(seg) == ends[2] - 3);  // check changes nothing
  CHECK(format_wal_report(rep).find("torn tail: " + rep.torn_file + " at byte offset " +
                                    std::to_string(ends[1])) != std::string::npos);

  flip_byte(seg, 24 + 14);  // inside the first record, right after the segment header
  rep = check_wal(d.path);
  CHECK_FALSE(rep.ok());
  std::string text = format_wal_report(rep);
  CHECK(text.find("CORRUPT: corrupt WAL segment " + seg + " at byte offset 24") !=
        std::string::npos);

  routemesh::test::TempDir empty("rm-wal");
  CHECK_FALSE(check_wal(empty.path).ok());
}
