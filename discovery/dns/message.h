#pragma once
// The DNS wire format (pure, through ldns): reading a client's query, writing local answers
// and errors, and what the forwarder does to a query and an upstream's reply. No sockets.
// Every function takes any bytes and never throws or crashes on them (fuzzed:
// tests/fuzz/dns_fuzz.cc).

#include "discovery/dns/types.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace routemesh::discovery::dns {

using Bytes = std::vector<std::uint8_t>;

// The UDP payload size this server advertises and the most it sends over UDP, whatever a
// client advertises (1232: fits an IPv6 minimum MTU without fragmentation, as resolvers have
// used since the 2020 DNS flag day).
inline constexpr std::uint16_t kMaxUdpPayload = 1232;
// The smallest reply size every client takes over UDP (RFC 1035 §4.2.1).
inline constexpr std::uint16_t kMinUdpPayload = 512;

// A client's message, read.
struct Decoded {
  std::optional<Query> query;  // a well-formed QUERY with one question
  // When there is no query: the answer to send instead (FORMERR, NOTIMP, or BADVERS for an
  // EDNS version other than 0, RFC 6891 §6.1.3), or empty to drop the message (shorter than
  // a header, or a response: answering responses could loop).
  Bytes reply;
  Outcome outcome = Outcome::local;  // formerr, notimp or dropped when there is no query
};
Decoded decode_query(std::span<const std::uint8_t> wire);

// The largest reply `query` may get over `transport`: 65535 over TCP (RFC 1035 §4.2.2); over
// UDP 512 without EDNS, else the client's advertised size, at least 512 and at most
// kMaxUdpPayload (RFC 6891 §6.2.5).
std::size_t reply_limit(const Query& query, Transport transport);

// A local answer: QR, AA and RA set, ID, RD and CD copied, the question echoed as the client
// wrote it, an OPT record when the query had one. A reply over `limit` bytes is sent without
// records and with TC set instead (RFC 2181 §9): the client asks again over TCP.
Bytes encode_answer(const Query& query, const Answer& answer, std::size_t limit);
// An answer without records: SERVFAIL when every upstream failed, REFUSED.
Bytes encode_error(const Query& query, Rcode rcode);

// ---- forwarding -----------------------------------------------------------------------------

// The query sent to an upstream: a fresh `id` (the client's is not reused), RD set, CD copied,
// the question as the client wrote it, and with `edns` an OPT record advertising
// kMaxUdpPayload with the client's DO bit.
Bytes encode_upstream_query(const Query& query, std::uint16_t id, bool edns);

struct UpstreamReply {
  enum class Status {
    ok,
    mismatch,   // not the reply to our query: another id, no QR bit or another question
    malformed,  // not a DNS message ldns can read
  };
  Status status = Status::malformed;
  std::uint8_t rcode = 0;  // the header's RCODE
  bool truncated = false;  // TC: ask the same upstream again over TCP
  // How long the reply may be cached: the smallest TTL of the answer section for a positive
  // answer; for NXDOMAIN and NODATA min(SOA TTL, SOA MINIMUM) from the authority section (RFC
  // 2308 §5); at most kMaxCacheTtl. nullopt: not cacheable (truncated, another RCODE, a
  // negative answer without SOA, a TTL of 0).
  std::optional<std::uint32_t> cache_ttl;
};
inline constexpr std::uint32_t kMaxCacheTtl = 3600;

// Checks that `wire` answers the query sent with `id` for `question` (names compared without
// regard to case).
UpstreamReply inspect_upstream_reply(std::span<const std::uint8_t> wire, std::uint16_t id,
                                     const Question& question);

// An upstream's reply made the client's: the client's ID, RD, CD and question; RA set, AA,
// AD, TC and RCODE kept; every TTL lowered by `age_s` (a cache hit, RFC 1035 §7.4); the
// upstream's OPT record replaced by ours when the client sent one and dropped otherwise (RFC
// 6891 §6.1.1: OPT is per hop); over `limit`, without records and with TC set. nullopt when
// `wire` cannot be read.
std::optional<Bytes> reply_from_upstream(std::span<const std::uint8_t> wire, const Query& query,
                                         std::uint32_t age_s, std::size_t limit);

// The cache key of a forwarded query: the lower-cased name, type, class and the DO and CD
// bits (they change what an upstream answers).
std::string cache_key(const Query& query);

// Label values for metrics.
const char* to_string(Outcome outcome);
// "A", "AAAA", "SRV", "PTR", ... for the types worth a value of their own, else "other".
const char* type_label(std::uint16_t type);

}  // namespace routemesh::discovery::dns
