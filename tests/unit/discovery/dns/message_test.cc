#include "discovery/dns/message.h"

#include <ldns/ldns.h>

#include <catch2/catch.hpp>

#include <cctype>
#include <cstdlib>
#include <memory>
#include <string>

using namespace routemesh::discovery::dns;

namespace {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

Pkt parse(const Bytes& wire) {
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_wire2pkt(&p, wire.data(), wire.size()) == LDNS_STATUS_OK);
  return Pkt(p);
}

Bytes serialize(const ldns_pkt* p) {
  std::uint8_t* buf = nullptr;
  std::size_t size = 0;
  REQUIRE(ldns_pkt2wire(&buf, p, &size) == LDNS_STATUS_OK);
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

std::string rr_text(const ldns_rr* rr) {
  char* s = ldns_rr2str(rr);
  std::string out = s;
  std::free(s);
  return out;
}

// Names compared without case: ldns compresses a name into an earlier one that differs only
// in case (DNS names are case-insensitive, RFC 4343), so a target may come out as the
// question was written.
std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

ldns_rr* rr_from(const char* text) {
  ldns_rr* rr = nullptr;
  REQUIRE(ldns_rr_new_frm_str(&rr, text, 0, nullptr, nullptr) == LDNS_STATUS_OK);
  return rr;
}

Query query(Labels name, std::uint16_t type = kTypeA) {
  Query q;
  q.id = 0x1234;
  q.rd = true;
  q.question = Question{std::move(name), type, kClassIn};
  return q;
}

// A client's message: encode_upstream_query writes a well-formed query.
Bytes client_query(const Query& q, bool edns) {
  return encode_upstream_query(q, q.id, edns);
}

Address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  Address out;
  out.bytes[0] = a;
  out.bytes[1] = b;
  out.bytes[2] = c;
  out.bytes[3] = d;
  return out;
}

}  // namespace

TEST_CASE("decode: a well-formed query, with and without EDNS (RFC 6891)") {
  Query q = query({"Web", "NetA"}, kTypeSrv);
  q.cd = true;
  q.dnssec_ok = true;
  Decoded d = decode_query(client_query(q, true));
  REQUIRE(d.query);
  CHECK(d.query->id == 0x1234);
  CHECK(d.query->rd);
  CHECK(d.query->cd);
  CHECK(d.query->question.name == Labels{"Web", "NetA"});
  CHECK(d.query->question.type == kTypeSrv);
  CHECK(d.query->question.klass == kClassIn);
  CHECK(d.query->edns);
  CHECK(d.query->udp_size == kMaxUdpPayload);
  CHECK(d.query->dnssec_ok);

  Decoded plain = decode_query(client_query(query({"web"}), false));
  REQUIRE(plain.query);
  CHECK_FALSE(plain.query->edns);
}

TEST_CASE("decode: what is not a query is dropped, refused as NOTIMP or answered FORMERR") {
  const Bytes good = client_query(query({"web"}), false);
  CHECK(decode_query({}).outcome == Outcome::dropped);
  CHECK(decode_query(Bytes(good.begin(), good.begin() + 11)).outcome == Outcome::dropped);
  CHECK(decode_query(Bytes(good.begin(), good.begin() + 11)).reply.empty());

  Bytes response = good;
  response[2] |= 0x80;  // QR: a response is never answered (it could loop)
  CHECK(decode_query(response).outcome == Outcome::dropped);
  CHECK(decode_query(response).reply.empty());

  Bytes status = good;
  status[2] = static_cast<std::uint8_t>((status[2] & 0x87) | (2 << 3));  // opcode STATUS
  Decoded n = decode_query(status);
  CHECK(n.outcome == Outcome::notimp);
  REQUIRE(n.reply.size() == 12);
  CHECK(n.reply[0] == 0x12);
  CHECK(n.reply[1] == 0x34);
  CHECK((n.reply[2] & 0x80) != 0);
  CHECK((n.reply[3] & 0x0f) == 4);

  auto formerr = [](const Bytes& wire) {
    Decoded d = decode_query(wire);
    CHECK_FALSE(d.query);
    CHECK(d.outcome == Outcome::formerr);
    REQUIRE(d.reply.size() == 12);
    CHECK(d.reply[0] == wire[0]);
    CHECK(d.reply[1] == wire[1]);
    CHECK((d.reply[3] & 0x0f) == 1);
  };
  formerr(Bytes(good.begin(), good.end() - 2));  // question cut short
  Bytes no_question(good.begin(), good.begin() + 12);
  no_question[5] = 0;
  formerr(no_question);
  Bytes two = good;
  two[5] = 2;  // qdcount 2, one question present
  formerr(two);
  Bytes both = good;
  both.insert(both.end(), good.begin() + 12, good.end());
  both[5] = 2;  // two questions (RFC 9619: exactly one)
  formerr(both);
  Bytes bad_label = good;
  bad_label[12] = 0x40;  // a label length of 64 (RFC 1035 §2.3.4: at most 63)
  formerr(bad_label);
  formerr(client_query(query({"x"}, kTypeOpt), false));
}

TEST_CASE("decode: EDNS version other than 0 is answered BADVERS (RFC 6891 §6.1.3)") {
  Bytes wire = client_query(query({"web"}), true);
  // The OPT RR ends the message: name(1) type(2) class(2) ext-rcode(1) version(1) flags(2)
  // rdlen(2).
  wire[wire.size() - 5] = 1;
  Decoded d = decode_query(wire);
  CHECK_FALSE(d.query);
  CHECK(d.outcome == Outcome::formerr);
  Pkt p = parse(d.reply);
  CHECK(ldns_pkt_id(p.get()) == 0x1234);
  CHECK(ldns_pkt_get_rcode(p.get()) == 0);
  CHECK(ldns_pkt_edns_extended_rcode(p.get()) == 1);  // 16 = BADVERS
  CHECK(ldns_pkt_edns_version(p.get()) == 0);
}

TEST_CASE("reply size limit: 512 without EDNS, the client's size within 512..1232, 65535 on TCP") {
  Query q = query({"web"});
  CHECK(reply_limit(q, Transport::udp) == 512);
  CHECK(reply_limit(q, Transport::tcp) == 65535);
  q.edns = true;
  q.udp_size = 4096;
  CHECK(reply_limit(q, Transport::udp) == 1232);
  q.udp_size = 1000;
  CHECK(reply_limit(q, Transport::udp) == 1000);
  q.udp_size = 100;
  CHECK(reply_limit(q, Transport::udp) == 512);
}

TEST_CASE("encode: a local answer echoes the question as asked, AA and RA set, every kind") {
  Query q = query({"WeB", "neta"}, kTypeAny);
  q.edns = true;
  q.udp_size = 4096;
  Answer a;
  a.answers.push_back(Record{q.question.name, kTypeA, 5, v4(10, 10, 0, 3)});
  Address six;
  six.v6 = true;
  six.bytes[0] = 0xfd;
  six.bytes[15] = 6;
  a.answers.push_back(Record{q.question.name, kTypeAaaa, 5, six});
  a.answers.push_back(
      Record{q.question.name, kTypeSrv, 5, SrvData{0, 0, 80, Labels{"web", "neta"}}});
  a.answers.push_back(Record{q.question.name, kTypePtr, 5, Labels{"web", "neta"}});
  a.additional.push_back(Record{Labels{"web", "neta"}, kTypeA, 5, v4(10, 10, 0, 3)});
  Pkt p = parse(encode_answer(q, a, reply_limit(q, Transport::udp)));
  CHECK(ldns_pkt_id(p.get()) == 0x1234);
  CHECK(ldns_pkt_qr(p.get()));
  CHECK(ldns_pkt_aa(p.get()));
  CHECK(ldns_pkt_ra(p.get()));
  CHECK(ldns_pkt_rd(p.get()));
  CHECK_FALSE(ldns_pkt_tc(p.get()));
  CHECK(rr_text(ldns_rr_list_rr(ldns_pkt_question(p.get()), 0)) == "WeB.neta.\tIN\tANY\n");
  ldns_rr_list* answers = ldns_pkt_answer(p.get());
  REQUIRE(ldns_rr_list_rr_count(answers) == 4);
  CHECK(rr_text(ldns_rr_list_rr(answers, 0)) == "WeB.neta.\t5\tIN\tA\t10.10.0.3\n");
  CHECK(rr_text(ldns_rr_list_rr(answers, 1)) == "WeB.neta.\t5\tIN\tAAAA\tfd00::6\n");
  CHECK(rr_text(ldns_rr_list_rr(answers, 2)) == "WeB.neta.\t5\tIN\tSRV\t0 0 80 web.neta.\n");
  CHECK(lower(rr_text(ldns_rr_list_rr(answers, 3))) == "web.neta.\t5\tin\tptr\tweb.neta.\n");
  CHECK(ldns_rr_list_rr_count(ldns_pkt_additional(p.get())) == 1);
  CHECK(ldns_pkt_edns(p.get()));
  CHECK(ldns_pkt_edns_udp_size(p.get()) == kMaxUdpPayload);

  Answer nx;
  nx.rcode = Rcode::nxdomain;
  Pkt n = parse(encode_answer(query({"secret"}), nx, 512));
  CHECK(ldns_pkt_get_rcode(n.get()) == LDNS_RCODE_NXDOMAIN);
  CHECK_FALSE(ldns_pkt_edns(n.get()));  // no OPT for a client that sent none
}

TEST_CASE("encode: an answer over the limit is sent without records and with TC (RFC 2181 §9)") {
  Query q = query({"tasks", "big"});
  Answer a;
  for (std::uint8_t i = 1; i <= 40; ++i) {
    a.answers.push_back(Record{q.question.name, kTypeA, 5, v4(172, 31, 0, i)});
  }
  const Bytes small = encode_answer(q, a, 512);
  CHECK(small.size() <= 512);
  Pkt t = parse(small);
  CHECK(ldns_pkt_tc(t.get()));
  CHECK(ldns_pkt_ancount(t.get()) == 0);
  CHECK(ldns_pkt_qdcount(t.get()) == 1);
  Pkt full = parse(encode_answer(q, a, 65535));
  CHECK_FALSE(ldns_pkt_tc(full.get()));
  CHECK(ldns_pkt_ancount(full.get()) == 40);
}

TEST_CASE("encode: SERVFAIL and REFUSED carry the question and no records") {
  Pkt p = parse(encode_error(query({"example", "com"}), Rcode::servfail));
  CHECK(ldns_pkt_get_rcode(p.get()) == LDNS_RCODE_SERVFAIL);
  CHECK(ldns_pkt_qdcount(p.get()) == 1);
  CHECK(ldns_pkt_ancount(p.get()) == 0);
  CHECK_FALSE(ldns_pkt_aa(p.get()));
}

namespace {

// An upstream's reply to the query sent with `id`: `answers` and `authority` in presentation
// form.
Bytes upstream_reply(const Query& q, std::uint16_t id, std::initializer_list<const char*> answers,
                     std::initializer_list<const char*> authority = {},
                     ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR, bool edns = true) {
  Pkt sent = parse(encode_upstream_query(q, id, edns));
  ldns_pkt_set_qr(sent.get(), true);
  ldns_pkt_set_ra(sent.get(), true);
  ldns_pkt_set_rcode(sent.get(), static_cast<std::uint8_t>(rcode));
  for (const char* a : answers) {
    ldns_pkt_push_rr(sent.get(), LDNS_SECTION_ANSWER, rr_from(a));
  }
  for (const char* a : authority) {
    ldns_pkt_push_rr(sent.get(), LDNS_SECTION_AUTHORITY, rr_from(a));
  }
  return serialize(sent.get());
}

}  // namespace

TEST_CASE("upstream query: a fresh id, RD set, the question as asked, our EDNS size") {
  Query q = query({"Example", "com"});
  q.rd = false;
  q.dnssec_ok = true;
  Pkt p = parse(encode_upstream_query(q, 777, true));
  CHECK(ldns_pkt_id(p.get()) == 777);
  CHECK(ldns_pkt_rd(p.get()));
  CHECK_FALSE(ldns_pkt_qr(p.get()));
  CHECK(rr_text(ldns_rr_list_rr(ldns_pkt_question(p.get()), 0)) == "Example.com.\tIN\tA\n");
  CHECK(ldns_pkt_edns_udp_size(p.get()) == kMaxUdpPayload);
  CHECK(ldns_pkt_edns_do(p.get()));
  CHECK_FALSE(ldns_pkt_edns(parse(encode_upstream_query(q, 1, false)).get()));
}

TEST_CASE("upstream reply: matched by id and question (any case); TTLs decide caching") {
  const Query q = query({"example", "com"});
  const Bytes ok =
      upstream_reply(q, 9, {"example.com. 300 IN A 192.0.2.1", "example.com. 60 IN A 192.0.2.2"});
  UpstreamReply r = inspect_upstream_reply(ok, 9, q.question);
  CHECK(r.status == UpstreamReply::Status::ok);
  CHECK(r.rcode == 0);
  CHECK_FALSE(r.truncated);
  CHECK(r.cache_ttl == 60u);

  CHECK(inspect_upstream_reply(ok, 10, q.question).status == UpstreamReply::Status::mismatch);
  CHECK(inspect_upstream_reply(ok, 9, Question{{"EXAMPLE", "Com"}, kTypeA, kClassIn}).status ==
        UpstreamReply::Status::ok);
  CHECK(inspect_upstream_reply(ok, 9, Question{{"example", "org"}, kTypeA, kClassIn}).status ==
        UpstreamReply::Status::mismatch);
  CHECK(inspect_upstream_reply(ok, 9, Question{{"example", "com"}, kTypeAaaa, kClassIn}).status ==
        UpstreamReply::Status::mismatch);
  CHECK(inspect_upstream_reply(client_query(q, false), q.id, q.question).status ==
        UpstreamReply::Status::mismatch);  // a query, not a reply
  CHECK(inspect_upstream_reply(Bytes{1, 2, 3}, 9, q.question).status ==
        UpstreamReply::Status::malformed);

  // Negative answers: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5); without SOA, not cached.
  const char* soa = "com. 900 IN SOA ns.com. host.com. 1 7200 900 1209600 120";
  CHECK(inspect_upstream_reply(upstream_reply(q, 9, {}, {soa}, LDNS_RCODE_NXDOMAIN), 9, q.question)
            .cache_ttl == 120u);
  CHECK(inspect_upstream_reply(upstream_reply(q, 9, {}, {soa}), 9, q.question).cache_ttl == 120u);
  CHECK_FALSE(
      inspect_upstream_reply(upstream_reply(q, 9, {}, {}, LDNS_RCODE_NXDOMAIN), 9, q.question)
          .cache_ttl);
  CHECK_FALSE(
      inspect_upstream_reply(upstream_reply(q, 9, {}, {}, LDNS_RCODE_SERVFAIL), 9, q.question)
          .cache_ttl);
  CHECK(inspect_upstream_reply(upstream_reply(q, 9, {"example.com. 86400 IN A 192.0.2.1"}), 9,
                               q.question)
            .cache_ttl == kMaxCacheTtl);
  CHECK_FALSE(
      inspect_upstream_reply(upstream_reply(q, 9, {"example.com. 0 IN A 192.0.2.1"}), 9, q.question)
          .cache_ttl);

  Pkt tc = parse(ok);
  ldns_pkt_set_tc(tc.get(), true);
  UpstreamReply t = inspect_upstream_reply(serialize(tc.get()), 9, q.question);
  CHECK(t.truncated);
  CHECK_FALSE(t.cache_ttl);
}

TEST_CASE("upstream reply made the client's: its id and question, TTLs aged, OPT per hop") {
  Query q = query({"EXAMPLE", "com"});
  q.id = 4242;
  const Bytes up = upstream_reply(query({"example", "com"}), 9, {"example.com. 300 IN A 192.0.2.1"},
                                  {"com. 900 IN NS ns.com."});
  auto out = reply_from_upstream(up, q, 100, 512);
  REQUIRE(out);
  Pkt p = parse(*out);
  CHECK(ldns_pkt_id(p.get()) == 4242);
  CHECK(ldns_pkt_ra(p.get()));
  CHECK_FALSE(ldns_pkt_aa(p.get()));
  CHECK(rr_text(ldns_rr_list_rr(ldns_pkt_question(p.get()), 0)) == "EXAMPLE.com.\tIN\tA\n");
  CHECK(lower(rr_text(ldns_rr_list_rr(ldns_pkt_answer(p.get()), 0))) ==
        "example.com.\t200\tin\ta\t192.0.2.1\n");
  CHECK(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p.get()), 0)) == 800);
  CHECK_FALSE(ldns_pkt_edns(p.get()));  // the client sent no OPT: the upstream's is dropped
  CHECK(ldns_rr_list_rr_count(ldns_pkt_additional(p.get())) == 0);

  q.edns = true;
  q.udp_size = 4096;
  Pkt e = parse(*reply_from_upstream(up, q, 1000, 1232));
  CHECK(ldns_pkt_edns(e.get()));
  CHECK(ldns_pkt_edns_udp_size(e.get()) == kMaxUdpPayload);
  CHECK(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(e.get()), 0)) == 0);  // never below 0

  // Too big for the client: no records, TC set, the upstream's RCODE kept.
  Pkt t = parse(*reply_from_upstream(up, query({"example", "com"}), 0, 40));
  CHECK(ldns_pkt_tc(t.get()));
  CHECK(ldns_pkt_ancount(t.get()) == 0);
  CHECK_FALSE(reply_from_upstream(Bytes{0, 1}, q, 0, 512));
}

TEST_CASE("cache key: case-insensitive name, then type, class, DO and CD") {
  Query a = query({"Example", "COM"});
  Query b = query({"example", "com"});
  CHECK(cache_key(a) == cache_key(b));
  b.question.type = kTypeAaaa;
  CHECK(cache_key(a) != cache_key(b));
  Query c = query({"example", "com"});
  c.dnssec_ok = true;
  CHECK(cache_key(a) != cache_key(c));
  CHECK(cache_key(query({"ab", "c"})) != cache_key(query({"a", "bc"})));
}

TEST_CASE("metric labels") {
  CHECK(std::string(type_label(kTypeA)) == "A");
  CHECK(std::string(type_label(kTypeSrv)) == "SRV");
  CHECK(std::string(type_label(999)) == "other");
  CHECK(std::string(to_string(Outcome::nxdomain)) == "nxdomain");
  CHECK(std::string(to_string(Outcome::cached)) == "cached");
}
