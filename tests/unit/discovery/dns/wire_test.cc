#include "discovery/dns/wire.h"

#include "discovery/dns/answer.h"
#include "discovery/dns/view.h"
#include "tests/unit/support/dns_sample.h"

#include <ldns/ldns.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

using namespace routemesh;
using namespace routemesh::discovery;
using namespace routemesh::discovery::dns;

namespace {

struct Opt {
  std::uint16_t udp_size = 1232;
  bool dnssec_ok = false;
  std::uint8_t version = 0;
};

// A client's message written by hand, so that every field can be chosen.
Bytes message(const Labels& name, std::uint16_t type, std::optional<Opt> opt = std::nullopt,
              std::uint16_t id = 0x4242, bool rd = true, bool cd = false) {
  Bytes w{static_cast<std::uint8_t>(id >> 8),
          static_cast<std::uint8_t>(id & 0xff),
          static_cast<std::uint8_t>(rd ? 0x01 : 0),
          static_cast<std::uint8_t>(cd ? 0x10 : 0),
          0,
          1,
          0,
          0,
          0,
          0,
          0,
          static_cast<std::uint8_t>(opt ? 1 : 0)};
  for (const auto& l : name) {
    w.push_back(static_cast<std::uint8_t>(l.size()));
    w.insert(w.end(), l.begin(), l.end());
  }
  w.push_back(0);
  w.insert(w.end(),
           {static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type & 0xff), 0, 1});
  if (opt) {
    w.insert(w.end(), {0, 0, 41, static_cast<std::uint8_t>(opt->udp_size >> 8),
                       static_cast<std::uint8_t>(opt->udp_size & 0xff), 0, opt->version,
                       static_cast<std::uint8_t>(opt->dnssec_ok ? 0x80 : 0), 0, 0, 0});
  }
  return w;
}

// The ldns path's reply to `wire` (decode_query, answer, encode_answer).
Bytes slow_reply(const Bytes& wire, const View& view, const NetworkView& network) {
  Decoded d = decode_query(wire);
  REQUIRE(d.query);
  const Answer a = answer(*d.query, view, network, AnswerOptions{5}, 0);
  return encode_answer(*d.query, a, reply_limit(*d.query, Transport::udp));
}

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

Bytes upstream_reply(const Query& q, std::initializer_list<const char*> answers,
                     std::initializer_list<const char*> authority) {
  ldns_pkt* raw = nullptr;
  const Bytes sent = encode_upstream_query(q, 9, true);
  REQUIRE(ldns_wire2pkt(&raw, sent.data(), sent.size()) == LDNS_STATUS_OK);
  Pkt p(raw);
  ldns_pkt_set_qr(p.get(), true);
  ldns_pkt_set_ra(p.get(), true);
  ldns_pkt_set_ad(p.get(), true);
  auto push = [&](ldns_pkt_section section, const char* text) {
    ldns_rr* rr = nullptr;
    REQUIRE(ldns_rr_new_frm_str(&rr, text, 0, nullptr, nullptr) == LDNS_STATUS_OK);
    ldns_pkt_push_rr(p.get(), section, rr);
  };
  for (const char* a : answers) {
    push(LDNS_SECTION_ANSWER, a);
  }
  for (const char* a : authority) {
    push(LDNS_SECTION_AUTHORITY, a);
  }
  std::uint8_t* buf = nullptr;
  std::size_t size = 0;
  REQUIRE(ldns_pkt2wire(&buf, p.get(), &size) == LDNS_STATUS_OK);
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

}  // namespace

TEST_CASE("parse_fast: the common query, with and without EDNS") {
  FastQuery q;
  REQUIRE(parse_fast(message({"WeB", "NetA"}, kTypeSrv, Opt{4096, true}, 0x1234, true, true), q));
  CHECK(q.id == 0x1234);
  CHECK(q.rd);
  CHECK(q.cd);
  CHECK(q.type == kTypeSrv);
  CHECK(q.klass == kClassIn);
  CHECK(q.edns);
  CHECK(q.udp_size == 4096);
  CHECK(q.dnssec_ok);
  CHECK(q.question_end == 12 + 10 + 4);
  CHECK(q.key == answer_key(Question{{"web", "neta"}, kTypeSrv, kClassIn}));
  CHECK(reply_limit(q, Transport::udp) == kMaxUdpPayload);
  CHECK(reply_limit(q, Transport::tcp) == 65535);

  REQUIRE(parse_fast(message({"web"}, kTypeA, std::nullopt, 7, false), q));
  CHECK_FALSE(q.rd);
  CHECK_FALSE(q.cd);
  CHECK_FALSE(q.edns);
  CHECK(reply_limit(q, Transport::udp) == kMinUdpPayload);
  REQUIRE(parse_fast(message({"web"}, kTypeA, Opt{100}), q));
  CHECK(reply_limit(q, Transport::udp) == kMinUdpPayload);

  // The same cache key as the ldns path's query.
  for (bool with_do : {false, true}) {
    for (bool cd : {false, true}) {
      const Bytes wire =
          message({"N1", "Example", "test"}, kTypeAaaa, Opt{1232, with_do}, 1, true, cd);
      REQUIRE(parse_fast(wire, q));
      std::string key;
      cache_key(q, key);
      CHECK(key == cache_key(*decode_query(wire).query));
    }
  }
}

TEST_CASE("parse_fast: anything unusual is not fast") {
  FastQuery q;
  const Bytes good = message({"web", "neta"}, kTypeA, Opt{});
  REQUIRE(parse_fast(good, q));
  CHECK_FALSE(parse_fast({}, q));
  CHECK_FALSE(parse_fast(Bytes(good.begin(), good.begin() + 11), q));
  for (std::size_t cut = 12; cut < good.size(); ++cut) {
    CHECK_FALSE(parse_fast(Bytes(good.begin(), good.begin() + static_cast<long>(cut)), q));
  }
  auto changed = [&](std::size_t at, std::uint8_t value) {
    Bytes w = good;
    w[at] = value;
    return w;
  };
  CHECK_FALSE(parse_fast(changed(2, 0x80), q));    // a response
  CHECK_FALSE(parse_fast(changed(2, 2 << 3), q));  // opcode STATUS
  CHECK_FALSE(parse_fast(changed(5, 2), q));       // two questions
  CHECK_FALSE(parse_fast(changed(5, 0), q));       // none
  CHECK_FALSE(parse_fast(changed(7, 1), q));       // an answer record
  CHECK_FALSE(parse_fast(changed(9, 1), q));       // an authority record
  CHECK_FALSE(parse_fast(changed(11, 2), q));      // two additional records
  CHECK_FALSE(parse_fast(changed(12, 0xc0), q));   // a compression pointer
  CHECK_FALSE(parse_fast(changed(12, 64), q));     // another label type
  CHECK_FALSE(parse_fast(changed(11, 0), q));      // an OPT record left over
  Bytes trailing = message({"web"}, kTypeA);
  trailing.push_back(0);
  CHECK_FALSE(parse_fast(trailing, q));
  CHECK_FALSE(parse_fast(message({"web"}, kTypeOpt), q));                     // FORMERR
  CHECK_FALSE(parse_fast(message({"web"}, kTypeA, Opt{1232, false, 1}), q));  // BADVERS
  CHECK_FALSE(parse_fast(message({"web"}, kTypeA, Opt{0}), q));
  Bytes owner = message({"web"}, kTypeA, Opt{});
  owner[owner.size() - 11] = 1;  // an OPT record whose owner is not the root
  CHECK_FALSE(parse_fast(owner, q));
  Bytes option = message({"web"}, kTypeA, Opt{});
  option.back() = 4;                           // RDLENGTH 4: an option header, no data
  option.insert(option.end(), {0, 10, 0, 8});  // a cookie of 8 bytes, none there
  CHECK_FALSE(parse_fast(option, q));
  option.back() = 0;  // an empty option: fine
  REQUIRE(parse_fast(option, q));
  CHECK(q.edns);
  // Names of 255 bytes at most (RFC 1035 §3.1).
  const std::string label(63, 'a');
  CHECK(parse_fast(message({label, label, label, std::string(61, 'b')}, kTypeA), q));
  CHECK_FALSE(parse_fast(message({label, label, label, std::string(62, 'b')}, kTypeA), q));
}

TEST_CASE("stored local answers: the same bytes as the ldns path") {
  const View view = test::sample_dns_view();
  const NetworkView& neta = view.by_address.at("10.10.0.2");
  LocalAnswers local(view, neta, AnswerOptions{5}, 1000);
  CHECK(local.size() > 0);

  struct Case {
    Labels name;
    std::uint16_t type;
    bool stored;  // before anything is learnt
  };
  const Case cases[] = {
      {{"web"}, kTypeA, true},
      {{"WeB", "NetA"}, kTypeA, true},
      {{"web"}, kTypeAaaa, true},  // NODATA
      {{"_80", "_TCP", "web"}, kTypeSrv, true},
      {{"api"}, kTypeA, true},  // dnsrr, one healthy IPv4 task
      {{"t0", "tasks", "Web"}, kTypeA, true},
      {{"tasks", "api", "neta"}, kTypeAaaa, true},
      {{"3", "0", "10", "10", "in-addr", "arpa"}, kTypePtr, true},
      {{"secret"}, kTypeA, false},  // another network's service: NXDOMAIN
      {{"x", "NETB"}, kTypeTxt, false},
      {{"web"}, kTypeMx, false},            // NODATA, learnt
      {{"example", "com"}, kTypeA, false},  // forwarded
  };
  FastQuery q;
  Bytes fast;
  for (const auto& c : cases) {
    CAPTURE(c.name, c.type);
    for (std::optional<Opt> opt :
         {std::optional<Opt>{}, std::optional<Opt>{Opt{}}, std::optional<Opt>{Opt{4096, true}}}) {
      for (bool rd : {false, true}) {
        const Bytes wire = message(c.name, c.type, opt, 0xbeef, rd, !rd);
        REQUIRE(parse_fast(wire, q));
        const LocalAnswers::Entry* e = local.find(q.key);
        if (e == nullptr) {
          CHECK_FALSE(c.stored);
          Decoded d = decode_query(wire);
          local.learn(*d.query, answer(*d.query, view, neta, AnswerOptions{5}, 0));
          e = local.find(q.key);
        }
        REQUIRE(e != nullptr);
        const Decoded d = decode_query(wire);
        const Answer a = answer(*d.query, view, neta, AnswerOptions{5}, 0);
        CHECK(e->forward == (a.action == Answer::Action::forward));
        if (e->forward) {
          continue;
        }
        CHECK(e->outcome == outcome_of(a));
        REQUIRE(write_reply(e->reply, wire, q, 0, reply_limit(q, Transport::udp), fast));
        CHECK(fast == slow_reply(wire, view, neta));
        // Truncated: the header, the question, the OPT record.
        for (std::size_t limit : {std::size_t{20}, std::size_t{45}}) {
          REQUIRE(write_reply(e->reply, wire, q, 0, limit, fast));
          CHECK(fast == encode_answer(*d.query, a, limit));
        }
      }
    }
  }

  // Shuffled answers are not stored: several task addresses, several SRV targets.
  const Bytes tasks = message({"tasks", "web"}, kTypeA);
  REQUIRE(parse_fast(tasks, q));
  CHECK(local.find(q.key) == nullptr);
  Decoded d = decode_query(tasks);
  local.learn(*d.query, answer(*d.query, view, neta, AnswerOptions{5}, 0));
  CHECK(local.find(q.key) == nullptr);

  // Full: nothing more is learnt.
  LocalAnswers none(view, neta, AnswerOptions{5}, 0);
  CHECK(none.size() == 0);
  REQUIRE(parse_fast(message({"web"}, kTypeA), q));
  CHECK(none.find(q.key) == nullptr);

  // A question of another size than the stored one is not answered from it.
  REQUIRE(parse_fast(message({"web"}, kTypeA), q));
  const LocalAnswers::Entry* web = local.find(q.key);
  REQUIRE(web != nullptr);
  const Bytes longer = message({"web", "neta"}, kTypeA);
  FastQuery other;
  REQUIRE(parse_fast(longer, other));
  CHECK_FALSE(write_reply(web->reply, longer, other, 0, 512, fast));
}

TEST_CASE("stored upstream replies: the same bytes as reply_from_upstream, TTLs aged") {
  Query asked;
  asked.question = Question{{"www", "example", "com"}, kTypeA, kClassIn};
  const Bytes up = upstream_reply(
      asked,
      {"www.example.com. 300 IN CNAME web.Example.com.", "web.example.com. 60 IN A 192.0.2.1"},
      {"example.com. 3600 IN NS ns1.example.com."});
  auto stored = store_upstream_reply(up, asked);
  REQUIRE(stored);
  CHECK(stored->ttl_offsets.size() == 3);
  FastQuery q;
  Bytes fast;
  for (const Labels& name : {Labels{"www", "example", "com"}, Labels{"WwW", "eXample", "COM"}}) {
    for (std::optional<Opt> opt : {std::optional<Opt>{}, std::optional<Opt>{Opt{1232, true}}}) {
      const Bytes wire = message(name, kTypeA, opt, 77, true, true);
      REQUIRE(parse_fast(wire, q));
      const Query client = *decode_query(wire).query;
      for (std::uint32_t age : {0u, 59u, 61u, 4000u}) {
        for (std::size_t limit : {std::size_t{512}, std::size_t{40}}) {
          CAPTURE(name, age, limit);
          REQUIRE(write_reply(*stored, wire, q, age, limit, fast));
          CHECK(fast == *reply_from_upstream(up, client, age, limit));
        }
      }
    }
  }
  CHECK_FALSE(store_reply(Bytes{1, 2, 3}));
  CHECK_FALSE(store_upstream_reply(Bytes{1, 2, 3}, asked));
}
