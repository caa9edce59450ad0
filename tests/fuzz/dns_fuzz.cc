// The DNS server's query path on arbitrary bytes: decode_query, answer() from a fixed view of
// a small cluster, encode_answer under each size limit; and the same bytes as an upstream's
// reply: inspect_upstream_reply, reply_from_upstream, the cache. Nothing may crash, leak or
// read out of bounds, and a reply must fit its limit. The fast path (wire.h) on the same
// bytes: a message parse_fast takes is one decode_query reads the same way, and its replies
// from stored bytes (local answers, upstream replies) are the ldns path's, byte for byte.

#include "discovery/dns/answer.h"
#include "discovery/dns/cache.h"
#include "discovery/dns/message.h"
#include "discovery/dns/view.h"
#include "discovery/dns/wire.h"
#include "tests/unit/support/dns_sample.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

using namespace routemesh;
using namespace routemesh::discovery;
using namespace routemesh::discovery::dns;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const View view = test::sample_dns_view();
  static Cache cache(16);
  const std::span<const std::uint8_t> wire(data, size);
  const NetworkView& network = view.by_address.begin()->second;
  static LocalAnswers local(view, network, AnswerOptions{5}, 256);
  // A client's "example.com A" (id 0x0102, RD, no EDNS): the query the upstream checks below
  // answer when the bytes are not a query of their own.
  static const Bytes example = {1,   2,   1,   0,   0,   1, 0,   0,   0,   0, 0, 0, 7, 'e', 'x',
                                'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};

  FastQuery fq;
  const bool fast = parse_fast(wire, fq);
  Decoded d = decode_query(wire);
  check(d.query || d.outcome != Outcome::local);
  check(!fast || d.query);
  Query q;  // `example`, read
  q.id = 0x0102;
  q.rd = true;
  q.question = Question{{"example", "com"}, kTypeA, kClassIn};
  std::span<const std::uint8_t> client(example);
  if (d.query) {
    q = *d.query;
    const Answer a = answer(q, view, network, AnswerOptions{5}, size);
    if (fast) {
      client = wire;
      check(fq.id == q.id && fq.rd == q.rd && fq.cd == q.cd && fq.type == q.question.type &&
            fq.klass == q.question.klass && fq.edns == q.edns &&
            (!q.edns || (fq.udp_size == q.udp_size && fq.dnssec_ok == q.dnssec_ok)));
      check(fq.key == answer_key(q.question));
      local.learn(q, a);
    }
    const LocalAnswers::Entry* stored = fast ? local.find(fq.key) : nullptr;
    if (stored != nullptr) {
      check(stored->forward == (a.action == Answer::Action::forward));
    }
    for (Transport t : {Transport::udp, Transport::tcp}) {
      const std::size_t limit = reply_limit(q, t);
      const Bytes reply = encode_answer(q, a, limit);
      check(reply.size() <= limit);
      if (stored != nullptr && !stored->forward) {
        check(limit == reply_limit(fq, t));
        Bytes out;
        check(write_reply(stored->reply, wire, fq, 0, limit, out));
        check(out == reply);
      }
    }
    (void)encode_error(q, Rcode::servfail);
    (void)encode_upstream_query(q, 7, size % 2 == 0);
  }
  const std::uint16_t id = size >= 2 ? static_cast<std::uint16_t>(data[0] << 8 | data[1]) : 0;
  const UpstreamReply r = inspect_upstream_reply(wire, id, q.question);
  if (r.status == UpstreamReply::Status::ok && r.cache_ttl) {
    cache.insert(cache_key(q), Bytes(wire.begin(), wire.end()), *r.cache_ttl, size);
  }
  if (auto hit = cache.lookup(cache_key(q), size + 1000)) {
    (void)reply_from_upstream(hit->reply, q, hit->age_s, 512);
  }
  FastQuery cq;
  const auto stored = store_upstream_reply(wire, q);
  check(parse_fast(client, cq));
  for (std::size_t limit : {std::size_t{512}, std::size_t{65535}}) {
    const auto age = static_cast<std::uint32_t>(size % 300);
    if (auto out = reply_from_upstream(wire, q, age, limit)) {
      check(out->size() <= limit);
      if (stored && (fast || !d.query)) {  // `client` is the message `q` was read from
        Bytes fast_out;
        check(write_reply(*stored, client, cq, age, limit, fast_out));
        check(fast_out == *out);
      }
    }
  }
  return 0;
}
