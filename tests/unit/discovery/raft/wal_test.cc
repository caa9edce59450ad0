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

OpenedWal open_ok(const std::string& dir, std::uint64_t segment_bytes = 64ull << 20) {
  auto r = open_wal(dir, segment_bytes);
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
  auto r = open_wal(d.path, 64);
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
