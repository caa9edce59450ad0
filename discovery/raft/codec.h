#pragma once
// Binary encodings used by the Raft driver: peer messages (transport frames), WAL record
// payloads, snapshot files and the driver's envelopes inside entry and snapshot data.
// Pure functions over bytes: no I/O. Decoders never throw and never read out of bounds; they
// return nullopt on truncated, oversized or otherwise malformed input.
//
// Integers are LEB128 varints (u64), enums one byte, byte strings a varint length + bytes.
// Message layout (version 1):
//   u8 version, u8 type, from, to, term, log_term, index, commit, reject_hint, read_seq,
//   u8 flags (1 reject, 2 transfer, 4 snapshot), varint n, n × entry, [snapshot]
//   entry    = term, index, u8 type, bytes data
//   snapshot = meta, bytes data;  meta = index, term, conf;  conf = n, n × id, m, m × id

#include "discovery/raft/types.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::discovery::raft::codec {

inline constexpr std::uint8_t kMessageVersion = 1;

Bytes encode_message(const Message& m);
std::optional<Message> decode_message(const std::uint8_t* data, std::size_t size);
inline std::optional<Message> decode_message(const Bytes& b) {
  return decode_message(b.data(), b.size());
}

// WAL record payloads.
Bytes encode_entry(const Entry& e);
std::optional<Entry> decode_entry(const Bytes& b);
Bytes encode_hard_state(const HardState& hs);
std::optional<HardState> decode_hard_state(const Bytes& b);
Bytes encode_snapshot_meta(const SnapshotMeta& meta);
std::optional<SnapshotMeta> decode_snapshot_meta(const Bytes& b);
Bytes encode_conf_state(const ConfState& cs);
std::optional<ConfState> decode_conf_state(const Bytes& b);

// One WAL batch record (format 2): everything one Ready persists, so that a crash keeps all of
// it or none of it. Also used, with only a marker and the hard state, at a segment's head and
// for a local snapshot's marker.
//   batch = u8 flags (1 marker, 2 hard state), [meta, u8 kind], varint n, n × entry,
//           [term, vote, commit]
enum class MarkerKind : std::uint8_t {
  saved = 0,      // a local snapshot (or the copy at a segment's head): its file is durable
  installed = 1,  // a snapshot received from the leader: it replaces the whole log
};
struct WalBatch {
  std::optional<SnapshotMeta> marker;
  MarkerKind marker_kind = MarkerKind::saved;
  std::vector<Entry> entries;
  std::optional<HardState> hard_state;
  bool operator==(const WalBatch&) const = default;
};
Bytes encode_wal_batch(const WalBatch& b);
std::optional<WalBatch> decode_wal_batch(const std::uint8_t* data, std::size_t size);

// Snapshot = meta + data in one buffer (the snapshot file body).
Bytes encode_snapshot(const Snapshot& s);
std::optional<Snapshot> decode_snapshot(const Bytes& b);

using PeerBook = std::map<NodeId, std::string>;  // node id → "IP:PORT"

// Driver envelope of normal entries: the first byte says who consumes the entry.
enum class EnvelopeKind : std::uint8_t {
  command = 0,  // StateMachine command: data[1:]
  peers = 1,    // address book update (id → address), applied by the driver only
};
Bytes wrap_command(std::string_view command);
Bytes wrap_peers(const PeerBook& peers);
struct Unwrapped {
  EnvelopeKind kind = EnvelopeKind::command;
  std::string_view command;  // kind == command: points into the input
  PeerBook peers;            // kind == peers
};
std::optional<Unwrapped> unwrap_entry(const Bytes& data);

// Driver envelope of snapshot data: the peer address book + the StateMachine image.
Bytes wrap_snapshot_data(const PeerBook& peers, std::string_view sm_image);
struct SnapshotData {
  PeerBook peers;
  std::string sm_image;
};
std::optional<SnapshotData> unwrap_snapshot_data(const Bytes& data);

}  // namespace routemesh::discovery::raft::codec
