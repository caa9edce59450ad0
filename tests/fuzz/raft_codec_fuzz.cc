// libFuzzer target for the Raft binary codec (discovery/raft/codec.h): peers' messages and
// the WAL's records are decoded from bytes that may be corrupt or hostile. Checks (abort on
// failure): decoding never crashes; whatever decodes re-encodes to bytes that decode to an
// equal value (and, for messages, to the same bytes again).
//
// Input: byte 0 picks the decoder (message, entry, hard state, snapshot meta, conf state,
// snapshot); the rest is the encoded value.

#include "discovery/raft/codec.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

using namespace routemesh::discovery::raft;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

template <class Decode, class Encode>
void round_trip(const Bytes& in, Decode decode, Encode encode) {
  const auto v = decode(in);
  if (!v) {
    return;
  }
  const Bytes once = encode(*v);
  const auto again = decode(once);
  check(again.has_value());
  check(*again == *v);
  check(encode(*again) == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const Bytes in(data + 1, data + size);
  switch (data[0] % 6) {
    case 0: {
      // Message has no operator==: compare canonical bytes instead.
      const auto m = codec::decode_message(in);
      if (m) {
        const Bytes once = codec::encode_message(*m);
        const auto again = codec::decode_message(once);
        check(again.has_value());
        check(codec::encode_message(*again) == once);
      }
      break;
    }
    case 1:
      round_trip(
          in, [](const Bytes& b) { return codec::decode_entry(b); },
          [](const Entry& e) { return codec::encode_entry(e); });
      break;
    case 2:
      round_trip(
          in, [](const Bytes& b) { return codec::decode_hard_state(b); },
          [](const HardState& h) { return codec::encode_hard_state(h); });
      break;
    case 3:
      round_trip(
          in, [](const Bytes& b) { return codec::decode_snapshot_meta(b); },
          [](const SnapshotMeta& m) { return codec::encode_snapshot_meta(m); });
      break;
    case 4:
      round_trip(
          in, [](const Bytes& b) { return codec::decode_conf_state(b); },
          [](const ConfState& c) { return codec::encode_conf_state(c); });
      break;
    default:
      round_trip(
          in, [](const Bytes& b) { return codec::decode_snapshot(b); },
          [](const Snapshot& s) { return codec::encode_snapshot(s); });
      break;
  }
  return 0;
}
