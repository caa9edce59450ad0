#include "discovery/raft/codec.h"

#include <cstring>

namespace routemesh::discovery::raft::codec {
namespace {

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<std::uint8_t>(v));
  }
  void bytes(const std::uint8_t* p, std::size_t n) {
    varint(n);
    out_.insert(out_.end(), p, p + n);
  }
  void bytes(const Bytes& b) { bytes(b.data(), b.size()); }
  void str(std::string_view s) { bytes(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

 private:
  Bytes& out_;
};

// Every read checks the remaining length; a failed read poisons the reader so decoders can
// check `ok()` once at the end.
class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n) : p_(p), end_(p + n) {}
  bool ok() const { return ok_; }
  bool at_end() const { return p_ == end_; }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  std::uint8_t u8() {
    if (!ok_ || p_ == end_) {
      ok_ = false;
      return 0;
    }
    return *p_++;
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t b = u8();
      if (!ok_) {
        return 0;
      }
      if (shift == 63 && b > 1) {
        break;  // more than 64 bits
      }
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        return v;
      }
    }
    ok_ = false;
    return 0;
  }
  // Returns a view of the next length-prefixed byte string.
  std::pair<const std::uint8_t*, std::size_t> bytes() {
    std::uint64_t n = varint();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {nullptr, 0};
    }
    const std::uint8_t* start = p_;
    p_ += n;
    return {start, static_cast<std::size_t>(n)};
  }
  Bytes byte_vec() {
    auto [p, n] = bytes();
    return ok_ ? Bytes(p, p + n) : Bytes{};
  }
  std::string str() {
    auto [p, n] = bytes();
    return ok_ ? std::string(reinterpret_cast<const char*>(p), n) : std::string{};
  }
  // A count of items each at least `min_item` bytes long: bounds allocations on garbage.
  std::uint64_t count(std::size_t min_item) {
    std::uint64_t n = varint();
    if (ok_ && n > remaining() / min_item) {
      ok_ = false;
    }
    return ok_ ? n : 0;
  }
  void fail() { ok_ = false; }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  bool ok_ = true;
};

void put_conf(Writer& w, const ConfState& cs) {
  w.varint(cs.voters.size());
  for (NodeId id : cs.voters) {
    w.varint(id);
  }
  w.varint(cs.learners.size());
  for (NodeId id : cs.learners) {
    w.varint(id);
  }
}

ConfState get_conf(Reader& r) {
  ConfState cs;
  std::uint64_t n = r.count(1);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    cs.voters.insert(r.varint());
  }
  std::uint64_t m = r.count(1);
  for (std::uint64_t i = 0; i < m && r.ok(); ++i) {
    cs.learners.insert(r.varint());
  }
  return cs;
}

void put_meta(Writer& w, const SnapshotMeta& meta) {
  w.varint(meta.index);
  w.varint(meta.term);
  put_conf(w, meta.conf);
}

SnapshotMeta get_meta(Reader& r) {
  SnapshotMeta meta;
  meta.index = r.varint();
  meta.term = r.varint();
  meta.conf = get_conf(r);
  return meta;
}

void put_entry(Writer& w, const Entry& e) {
  w.varint(e.term);
  w.varint(e.index);
  w.u8(static_cast<std::uint8_t>(e.type));
  w.bytes(e.data);
}

Entry get_entry(Reader& r) {
  Entry e;
  e.term = r.varint();
  e.index = r.varint();
  std::uint8_t t = r.u8();
  if (t > static_cast<std::uint8_t>(EntryType::conf_change)) {
    r.fail();
  }
  e.type = static_cast<EntryType>(t);
  e.data = r.byte_vec();
  return e;
}

void put_peers(Writer& w, const PeerBook& peers) {
  w.varint(peers.size());
  for (const auto& [id, addr] : peers) {
    w.varint(id);
    w.str(addr);
  }
}

PeerBook get_peers(Reader& r) {
  PeerBook peers;
  std::uint64_t n = r.count(2);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    NodeId id = r.varint();
    peers[id] = r.str();
  }
  return peers;
}

template <class T, class F>
std::optional<T> decode_all(const Bytes& b, F&& f) {
  Reader r(b.data(), b.size());
  T v = f(r);
  if (!r.ok() || !r.at_end()) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

Bytes encode_message(const Message& m) {
  Bytes out;
  std::size_t hint = 64;
  for (const Entry& e : m.entries) {
    hint += e.data.size() + 24;
  }
  if (m.snapshot) {
    hint += m.snapshot->data.size() + 64;
  }
  out.reserve(hint);
  Writer w(out);
  w.u8(kMessageVersion);
  w.u8(static_cast<std::uint8_t>(m.type));
  w.varint(m.from);
  w.varint(m.to);
  w.varint(m.term);
  w.varint(m.log_term);
  w.varint(m.index);
  w.varint(m.commit);
  w.varint(m.reject_hint);
  w.varint(m.read_seq);
  std::uint8_t flags = (m.reject ? 1 : 0) | (m.transfer ? 2 : 0) | (m.snapshot ? 4 : 0);
  w.u8(flags);
  w.varint(m.entries.size());
  for (const Entry& e : m.entries) {
    put_entry(w, e);
  }
  if (m.snapshot) {
    put_meta(w, m.snapshot->meta);
    w.bytes(m.snapshot->data);
  }
  return out;
}

std::optional<Message> decode_message(const std::uint8_t* data, std::size_t size) {
  Reader r(data, size);
  if (r.u8() != kMessageVersion) {
    return std::nullopt;
  }
  Message m;
  std::uint8_t type = r.u8();
  if (type > static_cast<std::uint8_t>(MessageType::timeout_now)) {
    return std::nullopt;
  }
  m.type = static_cast<MessageType>(type);
  m.from = r.varint();
  m.to = r.varint();
  m.term = r.varint();
  m.log_term = r.varint();
  m.index = r.varint();
  m.commit = r.varint();
  m.reject_hint = r.varint();
  m.read_seq = r.varint();
  std::uint8_t flags = r.u8();
  if ((flags & ~std::uint8_t{7}) != 0) {
    return std::nullopt;
  }
  m.reject = (flags & 1) != 0;
  m.transfer = (flags & 2) != 0;
  std::uint64_t n = r.count(4);  // an entry takes at least 4 bytes
  m.entries.reserve(n);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    m.entries.push_back(get_entry(r));
  }
  if ((flags & 4) != 0) {
    Snapshot s;
    s.meta = get_meta(r);
    s.data = r.byte_vec();
    m.snapshot = std::move(s);
  }
  if (!r.ok() || !r.at_end()) {
    return std::nullopt;
  }
  return m;
}

Bytes encode_entry(const Entry& e) {
  Bytes out;
  out.reserve(e.data.size() + 24);
  Writer w(out);
  put_entry(w, e);
  return out;
}

std::optional<Entry> decode_entry(const Bytes& b) {
  return decode_all<Entry>(b, [](Reader& r) { return get_entry(r); });
}

Bytes encode_hard_state(const HardState& hs) {
  Bytes out;
  Writer w(out);
  w.varint(hs.term);
  w.varint(hs.vote);
  w.varint(hs.commit);
  return out;
}

std::optional<HardState> decode_hard_state(const Bytes& b) {
  return decode_all<HardState>(b, [](Reader& r) {
    HardState hs;
    hs.term = r.varint();
    hs.vote = r.varint();
    hs.commit = r.varint();
    return hs;
  });
}

Bytes encode_snapshot_meta(const SnapshotMeta& meta) {
  Bytes out;
  Writer w(out);
  put_meta(w, meta);
  return out;
}

std::optional<SnapshotMeta> decode_snapshot_meta(const Bytes& b) {
  return decode_all<SnapshotMeta>(b, [](Reader& r) { return get_meta(r); });
}

Bytes encode_conf_state(const ConfState& cs) {
  Bytes out;
  Writer w(out);
  put_conf(w, cs);
  return out;
}

std::optional<ConfState> decode_conf_state(const Bytes& b) {
  return decode_all<ConfState>(b, [](Reader& r) { return get_conf(r); });
}

Bytes encode_wal_batch(const WalBatch& b) {
  Bytes out;
  std::size_t hint = 32;
  for (const Entry& e : b.entries) {
    hint += e.data.size() + 24;
  }
  out.reserve(hint);
  Writer w(out);
  w.u8(static_cast<std::uint8_t>((b.marker ? 1 : 0) | (b.hard_state ? 2 : 0)));
  if (b.marker) {
    put_meta(w, *b.marker);
    w.u8(static_cast<std::uint8_t>(b.marker_kind));
  }
  w.varint(b.entries.size());
  for (const Entry& e : b.entries) {
    put_entry(w, e);
  }
  if (b.hard_state) {
    w.varint(b.hard_state->term);
    w.varint(b.hard_state->vote);
    w.varint(b.hard_state->commit);
  }
  return out;
}

std::optional<WalBatch> decode_wal_batch(const std::uint8_t* data, std::size_t size) {
  Reader r(data, size);
  WalBatch b;
  std::uint8_t flags = r.u8();
  if ((flags & ~std::uint8_t{3}) != 0) {
    return std::nullopt;
  }
  if ((flags & 1) != 0) {
    b.marker = get_meta(r);
    std::uint8_t kind = r.u8();
    if (kind > static_cast<std::uint8_t>(MarkerKind::installed)) {
      r.fail();
    }
    b.marker_kind = static_cast<MarkerKind>(kind);
  }
  std::uint64_t n = r.count(4);  // an entry takes at least 4 bytes
  b.entries.reserve(n);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    b.entries.push_back(get_entry(r));
  }
  if ((flags & 2) != 0) {
    HardState hs;
    hs.term = r.varint();
    hs.vote = r.varint();
    hs.commit = r.varint();
    b.hard_state = hs;
  }
  if (!r.ok() || !r.at_end()) {
    return std::nullopt;
  }
  return b;
}

Bytes encode_snapshot(const Snapshot& s) {
  Bytes out;
  out.reserve(s.data.size() + 64);
  Writer w(out);
  put_meta(w, s.meta);
  w.bytes(s.data);
  return out;
}

std::optional<Snapshot> decode_snapshot(const Bytes& b) {
  return decode_all<Snapshot>(b, [](Reader& r) {
    Snapshot s;
    s.meta = get_meta(r);
    s.data = r.byte_vec();
    return s;
  });
}

Bytes wrap_command(std::string_view command) {
  Bytes out;
  out.reserve(command.size() + 1);
  out.push_back(static_cast<std::uint8_t>(EnvelopeKind::command));
  out.insert(out.end(), command.begin(), command.end());
  return out;
}

Bytes wrap_peers(const PeerBook& peers) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(EnvelopeKind::peers));
  Writer w(out);
  put_peers(w, peers);
  return out;
}

std::optional<Unwrapped> unwrap_entry(const Bytes& data) {
  if (data.empty()) {
    return std::nullopt;
  }
  Unwrapped u;
  switch (static_cast<EnvelopeKind>(data[0])) {
    case EnvelopeKind::command:
      u.kind = EnvelopeKind::command;
      u.command = std::string_view(reinterpret_cast<const char*>(data.data()) + 1, data.size() - 1);
      return u;
    case EnvelopeKind::peers: {
      u.kind = EnvelopeKind::peers;
      Reader r(data.data() + 1, data.size() - 1);
      u.peers = get_peers(r);
      if (!r.ok() || !r.at_end()) {
        return std::nullopt;
      }
      return u;
    }
  }
  return std::nullopt;
}

Bytes wrap_snapshot_data(const PeerBook& peers, std::string_view sm_image) {
  Bytes out;
  out.reserve(sm_image.size() + 16 + peers.size() * 32);
  Writer w(out);
  w.u8(1);  // envelope version
  put_peers(w, peers);
  w.str(sm_image);
  return out;
}

std::optional<SnapshotData> unwrap_snapshot_data(const Bytes& data) {
  return decode_all<SnapshotData>(data, [](Reader& r) {
    SnapshotData d;
    if (r.u8() != 1) {
      r.fail();
    }
    d.peers = get_peers(r);
    d.sm_image = r.str();
    return d;
  });
}

}  // namespace routemesh::discovery::raft::codec
