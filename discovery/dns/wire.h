#pragma once
// The fast path of the wire format (pure, no ldns at query time): a parser for the common
// client message and replies written from stored bytes. Everything else takes the ldns path
// (message.h), which stays the reference: a reply written here is byte for byte the one
// encode_answer or reply_from_upstream writes for the same query (tests/unit/discovery/dns/
// wire_test.cc, tests/fuzz/dns_fuzz.cc).
//
// The common message: a header with QR 0 and opcode QUERY, one question (a name of plain
// labels, no compression), no answer or authority records, and at most one additional record,
// an OPT (root owner, EDNS version 0, a UDP size above 0, well-formed options), and nothing
// after it. Anything else is "not fast".
//
// Stored replies are written once by the ldns path for the lower-cased question without EDNS
// and split here: the header flags, the record counts and the records after the question. A
// query is answered by copying the header (its id, RD and CD), its own question (in its own
// case: the stored records point into the question by offset, and ldns compresses names into
// it regardless of case, so the bytes are the same), the records (TTLs lowered by an age), and
// our OPT record when the query had one. A reply over the query's limit is the header with TC,
// the question and the OPT record, as fit() in message.cc writes it.

#include "discovery/dns/answer.h"
#include "discovery/dns/message.h"
#include "discovery/dns/types.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace routemesh::discovery::dns {

// A common client message, read by parse_fast.
struct FastQuery {
  std::uint16_t id = 0;
  bool rd = false;
  bool cd = false;
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  bool edns = false;
  std::uint16_t udp_size = 0;  // edns only
  bool dnssec_ok = false;
  std::size_t question_end = 0;  // the question is wire[12, question_end)
  // The name in wire form, lower-cased (A-Z only), then type and class (2 bytes each, network
  // order): the key of stored local answers.
  std::string key;
};

// Reads `wire` into `out` when it is a common message (above); false ("not fast") for
// anything else, `out` then unspecified. `out.key` keeps its capacity across calls. Never
// throws on any bytes.
bool parse_fast(std::span<const std::uint8_t> wire, FastQuery& out);

// reply_limit (message.h) of a parsed query.
std::size_t reply_limit(const FastQuery& query, Transport transport);

// cache_key (message.h) of a parsed query, into `out`.
void cache_key(const FastQuery& query, std::string& out);

// The key of stored local answers for a question: its lower-cased wire name, type and class.
// Empty when the name does not fit the wire form.
std::string answer_key(const Question& question);

// A reply as stored bytes (above).
struct StoredReply {
  std::uint8_t flags[2] = {};     // header bytes 2 and 3, RD, TC and CD clear
  std::uint16_t counts[3] = {};   // answer, authority and additional records (no OPT)
  std::size_t question_size = 0;  // of the question it was written for
  Bytes records;
  std::vector<std::uint16_t> ttl_offsets;  // of each record's TTL in `records`
};

// Splits a reply the ldns path wrote (encode_answer, reply_from_upstream) to a query without
// EDNS. nullopt when it cannot be walked, has an OPT record, TC set or not one question.
std::optional<StoredReply> store_reply(std::span<const std::uint8_t> reply);

// The stored form of an upstream's reply to `query` (cached for the fast path): the reply
// reply_from_upstream makes of it for the lower-cased question without EDNS, age 0 and no
// limit. nullopt when it cannot be made.
std::optional<StoredReply> store_upstream_reply(std::span<const std::uint8_t> upstream,
                                                const Query& query);

// Writes into `out` the reply to `query` (read from `wire`) from `stored`, every TTL lowered by
// `age_s` (not below 0), within `limit` bytes (above). False, and nothing written, when the
// query's question is not the size of the one `stored` was written for.
bool write_reply(const StoredReply& stored, std::span<const std::uint8_t> wire,
                 const FastQuery& query, std::uint32_t age_s, std::size_t limit, Bytes& out);

// The stored local answers of one network: for each key (answer_key), the answer() of that
// question, when it does not depend on the shuffle: a reply (its bytes and how it counts) or
// the decision to forward (the forwarder's cache is then asked). Built for each new view;
// read and learnt into on the server's thread only.
class LocalAnswers {
 public:
  struct Entry {
    bool forward = false;
    Outcome outcome = Outcome::local;
    StoredReply reply;  // when not forward
  };

  // Pre-renders A, AAAA and SRV for the network's service names (SERVICE, tasks.SERVICE,
  // TASKID.tasks.SERVICE, _PORT._tcp.SERVICE, each with and without .NETWORK) and PTR for its
  // reverse names. At most `capacity` entries, learnt ones included.
  LocalAnswers(const View& view, const NetworkView& network, const AnswerOptions& options,
               std::size_t capacity);

  const Entry* find(const std::string& key) const;
  // Remembers what answer() decided for `query` (which missed): forwarded, or a reply that
  // does not depend on the shuffle (at most one answer and one additional record). Nothing
  // once full.
  void learn(const Query& query, const Answer& answer);
  std::size_t size() const { return entries_.size(); }

 private:
  std::unordered_map<std::string, Entry> entries_;
  std::size_t capacity_;
};

}  // namespace routemesh::discovery::dns
