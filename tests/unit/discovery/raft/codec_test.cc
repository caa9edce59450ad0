#include "discovery/raft/codec.h"

#include <catch2/catch.hpp>

#include <random>

using namespace routemesh::discovery::raft;

namespace {

Message sample(MessageType type) {
  Message m;
  m.type = type;
  m.from = 0x1122334455667788ull;
  m.to = 3;
  m.term = 42;
  m.log_term = 41;
  m.index = 1000;
  m.commit = 999;
  m.reject = type == MessageType::append_resp || type == MessageType::vote_resp;
  m.reject_hint = 77;
  m.read_seq = 5;
  m.transfer = type == MessageType::vote;
  if (type == MessageType::append) {
    m.entries.push_back(Entry{41, 1001, EntryType::normal, Bytes{1, 2, 3}});
    m.entries.push_back(Entry{42, 1002, EntryType::noop, {}});
    m.entries.push_back(Entry{42, 1003, EntryType::conf_change, Bytes(300, 0xab)});
  }
  if (type == MessageType::snapshot) {
    Snapshot s;
    s.meta.index = 900;
    s.meta.term = 40;
    s.meta.conf.voters = {1, 2, 3};
    s.meta.conf.learners = {~0ull};
    s.data = Bytes(100000, 0x5c);
    m.snapshot = s;
  }
  return m;
}

const MessageType kAllTypes[] = {MessageType::pre_vote,  MessageType::pre_vote_resp,
                                 MessageType::vote,      MessageType::vote_resp,
                                 MessageType::append,    MessageType::append_resp,
                                 MessageType::heartbeat, MessageType::heartbeat_resp,
                                 MessageType::snapshot,  MessageType::timeout_now};

}  // namespace

TEST_CASE("codec: every message kind round-trips") {
  for (MessageType t : kAllTypes) {
    INFO("type " << static_cast<int>(t));
    Message m = sample(t);
    auto back = codec::decode_message(codec::encode_message(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  Message zero;
  auto back = codec::decode_message(codec::encode_message(zero));
  REQUIRE(back);
  CHECK(*back == zero);
}

TEST_CASE("codec: every truncation of a message is rejected") {
  for (MessageType t : {MessageType::append, MessageType::snapshot, MessageType::vote}) {
    Bytes b = codec::encode_message(sample(t));
    std::size_t step = b.size() > 5000 ? 97 : 1;
    for (std::size_t n = 0; n < b.size(); n += step) {
      INFO("type " << static_cast<int>(t) << " prefix " << n);
      CHECK_FALSE(codec::decode_message(b.data(), n));
    }
    Bytes longer = b;
    longer.push_back(0);
    CHECK_FALSE(codec::decode_message(longer));  // trailing garbage
  }
}

TEST_CASE("codec: bad version, type, flags and huge counts are rejected") {
  Bytes b = codec::encode_message(sample(MessageType::heartbeat));
  Bytes v = b;
  v[0] = 2;
  CHECK_FALSE(codec::decode_message(v));
  Bytes t = b;
  t[1] = 200;
  CHECK_FALSE(codec::decode_message(t));
  // A claimed entry count far beyond the input must not allocate or read out of bounds.
  Bytes huge = {codec::kMessageVersion,
                4,
                1,
                2,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x7f};
  CHECK_FALSE(codec::decode_message(huge));
  // An 11-byte varint overflows 64 bits.
  Bytes overflow = {
      codec::kMessageVersion, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK_FALSE(codec::decode_message(overflow));
}

TEST_CASE("codec: random garbage never crashes the decoder") {
  std::mt19937_64 rng(12345);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng() % 64);
    for (auto& x : b) {
      x = static_cast<std::uint8_t>(rng());
    }
    if (!b.empty() && (rng() & 1)) {
      b[0] = codec::kMessageVersion;
    }
    auto m = codec::decode_message(b);
    if (m) {
      ++accepted;
      CHECK(codec::encode_message(*m).size() <= b.size());  // canonical or shorter varints
    }
  }
  SUCCEED("accepted " << accepted);
}

TEST_CASE("codec: a corrupted byte is rejected or decodes to another, stable message") {
  // Flip every byte of valid encodings (and, separately, its lowest bit). The decoder must
  // never return the original message for corrupted bytes (no byte of the encoding is
  // ignored), and whatever it does accept must survive encode -> decode unchanged, in no more
  // bytes than it came in (so a corrupt frame can never grow into something else on relay).
  for (MessageType t : {MessageType::append, MessageType::vote, MessageType::heartbeat_resp}) {
    const Message original = sample(t);
    const Bytes valid = codec::encode_message(original);
    int rejected = 0;
    int accepted = 0;
    for (std::size_t i = 0; i < valid.size(); ++i) {
      for (std::uint8_t mask : {std::uint8_t{0xff}, std::uint8_t{0x01}}) {
        INFO("type " << static_cast<int>(t) << " byte " << i << " mask " << int{mask});
        Bytes b = valid;
        b[i] ^= mask;
        auto m = codec::decode_message(b);
        if (!m) {
          ++rejected;
          continue;
        }
        ++accepted;
        CHECK_FALSE(*m == original);
        Bytes again = codec::encode_message(*m);
        CHECK(again.size() <= b.size());
        auto back = codec::decode_message(again);
        REQUIRE(back);
        CHECK(*back == *m);
      }
    }
    // Both outcomes occur: corrupted headers are refused, corrupted payload bytes are not.
    CHECK(rejected > 0);
    CHECK(accepted > 0);
  }
}

TEST_CASE("codec: WAL payloads and snapshots round-trip") {
  Entry e{7, 9, EntryType::conf_change, Bytes{9, 8, 7}};
  CHECK(codec::decode_entry(codec::encode_entry(e)) == e);
  HardState hs{5, 0xffffffffffffffffull, 77};
  CHECK(codec::decode_hard_state(codec::encode_hard_state(hs)) == hs);
  ConfState cs{{1, 2}, {3}};
  CHECK(codec::decode_conf_state(codec::encode_conf_state(cs)) == cs);
  Snapshot s{SnapshotMeta{10, 2, cs}, Bytes{1, 2}};
  CHECK(codec::decode_snapshot(codec::encode_snapshot(s)) == s);
  CHECK_FALSE(codec::decode_hard_state(Bytes{0x80}));
}

TEST_CASE("codec: a WAL batch round-trips and every truncation is rejected") {
  codec::WalBatch full;
  full.marker = SnapshotMeta{10, 2, ConfState{{1, 2}, {3}}};
  full.marker_kind = codec::MarkerKind::installed;
  full.entries = {Entry{2, 11, EntryType::normal, Bytes{1}},
                  Entry{3, 12, EntryType::conf_change, Bytes{4, 5}}};
  full.hard_state = HardState{3, 2, 12};
  codec::WalBatch head;  // a segment head: marker and hard state only
  head.marker = SnapshotMeta{4, 1, ConfState{{1}, {}}};
  head.hard_state = HardState{1, 1, 4};
  for (const codec::WalBatch& b : {full, head, codec::WalBatch{}}) {
    Bytes enc = codec::encode_wal_batch(b);
    auto back = codec::decode_wal_batch(enc.data(), enc.size());
    REQUIRE(back.has_value());
    CHECK(*back == b);
    for (std::size_t n = 0; n < enc.size(); ++n) {
      CHECK_FALSE(codec::decode_wal_batch(enc.data(), n).has_value());
    }
  }
  Bytes bad_flags{8, 0};
  CHECK_FALSE(codec::decode_wal_batch(bad_flags.data(), bad_flags.size()).has_value());
}

TEST_CASE("codec: driver envelopes separate commands from address records") {
  Bytes wrapped = codec::wrap_command("{\"op\":\"x\"}");  // `command` views into it
  auto cmd = codec::unwrap_entry(wrapped);
  REQUIRE(cmd);
  CHECK(cmd->kind == codec::EnvelopeKind::command);
  CHECK(cmd->command == "{\"op\":\"x\"}");
  Bytes wrapped_empty = codec::wrap_command("");
  auto empty = codec::unwrap_entry(wrapped_empty);
  REQUIRE(empty);
  CHECK(empty->command.empty());

  codec::PeerBook book{{1, "127.0.0.11:7946"}, {2, "[::1]:7946"}};
  auto peers = codec::unwrap_entry(codec::wrap_peers(book));
  REQUIRE(peers);
  CHECK(peers->kind == codec::EnvelopeKind::peers);
  CHECK(peers->peers == book);
  CHECK_FALSE(codec::unwrap_entry(Bytes{}));
  CHECK_FALSE(codec::unwrap_entry(Bytes{9, 1}));

  auto snap = codec::unwrap_snapshot_data(codec::wrap_snapshot_data(book, "state"));
  REQUIRE(snap);
  CHECK(snap->peers == book);
  CHECK(snap->sm_image == "state");
  CHECK_FALSE(codec::unwrap_snapshot_data(Bytes{2, 0, 0}));
}
