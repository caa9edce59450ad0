#include "discovery/dns/message.h"

// host2wire.h uses ldns_rbtree_t without including its header.
#include <ldns/rbtree.h>
// (keep the line above first)
#include <ldns/host2wire.h>
#include <ldns/packet.h>
#include <ldns/rdata.h>
#include <ldns/rr.h>
#include <ldns/wire2host.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <type_traits>

namespace routemesh::discovery::dns {

namespace {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxName = 255;         // RFC 1035 §3.1, wire form
constexpr std::uint8_t kBadVersExtended = 1;  // BADVERS = 16: upper 8 bits of the 12-bit RCODE

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

Pkt read(std::span<const std::uint8_t> wire) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK) {
    ldns_pkt_free(raw);
    return nullptr;
  }
  return Pkt(raw);
}

Bytes write(const ldns_pkt* p) {
  std::uint8_t* buf = nullptr;
  std::size_t size = 0;
  if (ldns_pkt2wire(&buf, p, &size) != LDNS_STATUS_OK || buf == nullptr) {
    std::free(buf);
    return {};
  }
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

// The labels of a DNAME rdf (uncompressed wire form); nullopt when it is not one.
std::optional<Labels> labels_of(const ldns_rdf* rdf) {
  if (rdf == nullptr || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) {
    return std::nullopt;
  }
  const std::uint8_t* data = ldns_rdf_data(rdf);
  const std::size_t size = ldns_rdf_size(rdf);
  Labels out;
  std::size_t i = 0;
  while (i < size) {
    const std::size_t len = data[i];
    if (len == 0) {
      return i + 1 == size ? std::optional<Labels>(std::move(out)) : std::nullopt;
    }
    if (len > 63 || i + 1 + len > size) {
      return std::nullopt;
    }
    out.emplace_back(reinterpret_cast<const char*>(data + i + 1), len);
    i += 1 + len;
  }
  return std::nullopt;
}

// A DNAME rdf; null when the name does not fit the wire form.
ldns_rdf* dname(const Labels& labels) {
  Bytes w;
  for (const auto& l : labels) {
    if (l.empty() || l.size() > 63) {
      return nullptr;
    }
    w.push_back(static_cast<std::uint8_t>(l.size()));
    w.insert(w.end(), l.begin(), l.end());
  }
  w.push_back(0);
  if (w.size() > kMaxName) {
    return nullptr;
  }
  return ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, w.size(), w.data());
}

bool same_name(const Labels& a, const Labels& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() ||
        !std::equal(a[i].begin(), a[i].end(), b[i].begin(),
                    [](char x, char y) { return lower(x) == lower(y); })) {
      return false;
    }
  }
  return true;
}

// Adds one record to `section`; false when it cannot be written (a name too long).
bool push(ldns_pkt* p, ldns_pkt_section section, const Record& record) {
  ldns_rdf* owner = dname(record.name);
  if (owner == nullptr) {
    return false;
  }
  ldns_rr* rr = ldns_rr_new();
  ldns_rr_set_owner(rr, owner);
  ldns_rr_set_type(rr, static_cast<ldns_rr_type>(record.type));
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, record.ttl);
  bool ok = true;
  std::visit(
      [&](const auto& data) {
        using T = std::decay_t<decltype(data)>;
        if constexpr (std::is_same_v<T, Address>) {
          ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(data.v6 ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A,
                                                     data.v6 ? 16 : 4, data.bytes.data()));
        } else if constexpr (std::is_same_v<T, SrvData>) {
          ldns_rdf* target = dname(data.target);
          if (target == nullptr) {
            ok = false;
            return;
          }
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, data.priority));
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, data.weight));
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, data.port));
          ldns_rr_push_rdf(rr, target);
        } else {
          ldns_rdf* target = dname(data);
          if (target == nullptr) {
            ok = false;
            return;
          }
          ldns_rr_push_rdf(rr, target);
        }
      },
      record.data);
  if (!ok) {
    ldns_rr_free(rr);
    return false;
  }
  ldns_pkt_push_rr(p, section, rr);
  return true;
}

void push_question(ldns_pkt* p, const Question& q) {
  ldns_rdf* owner = dname(q.name);
  if (owner == nullptr) {
    return;  // decode_query only accepts names that fit
  }
  ldns_rr* rr = ldns_rr_new();
  ldns_rr_set_owner(rr, owner);
  ldns_rr_set_type(rr, static_cast<ldns_rr_type>(q.type));
  ldns_rr_set_class(rr, static_cast<ldns_rr_class>(q.klass));
  ldns_rr_set_question(rr, true);
  ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, rr);
}

// A reply to `q` with no records yet: ID, QR, RD, CD, RA, the question, our OPT record when
// the client sent one (RFC 6891 §6.1.1).
Pkt reply_to(const Query& q, Rcode rcode) {
  Pkt p(ldns_pkt_new());
  ldns_pkt_set_id(p.get(), q.id);
  ldns_pkt_set_qr(p.get(), true);
  ldns_pkt_set_opcode(p.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rd(p.get(), q.rd);
  ldns_pkt_set_cd(p.get(), q.cd);
  ldns_pkt_set_ra(p.get(), true);
  ldns_pkt_set_rcode(p.get(), static_cast<std::uint8_t>(rcode));
  push_question(p.get(), q.question);
  if (q.edns) {
    ldns_pkt_set_edns_udp_size(p.get(), kMaxUdpPayload);
    ldns_pkt_set_edns_do(p.get(), q.dnssec_ok);
  }
  return p;
}

// A bare header answering a message that could not be read as a query: its ID, opcode and RD
// bit, QR and `rcode`, no sections (RFC 1035 §4.1.1).
Bytes header_only(std::span<const std::uint8_t> wire, Rcode rcode) {
  Bytes out(kHeaderSize, 0);
  out[0] = wire[0];
  out[1] = wire[1];
  out[2] = static_cast<std::uint8_t>(0x80 | (wire[2] & 0x79));
  out[3] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(rcode));
  return out;
}

// `full` when it fits `limit`; else the same reply without records, with TC.
Bytes fit(Bytes full, std::size_t limit, Pkt empty) {
  if (full.size() <= limit) {
    return full;
  }
  ldns_pkt_set_tc(empty.get(), true);
  return write(empty.get());
}

}  // namespace

Decoded decode_query(std::span<const std::uint8_t> wire) {
  Decoded d;
  if (wire.size() < kHeaderSize || (wire[2] & 0x80) != 0) {
    d.outcome = Outcome::dropped;
    return d;
  }
  if (const unsigned opcode = (wire[2] >> 3) & 0x0f; opcode != LDNS_PACKET_QUERY) {
    d.reply = header_only(wire, Rcode::notimp);
    d.outcome = Outcome::notimp;
    return d;
  }
  d.outcome = Outcome::formerr;
  Pkt p = read(wire);
  if (!p || ldns_pkt_qdcount(p.get()) != 1 ||
      ldns_rr_list_rr_count(ldns_pkt_question(p.get())) != 1) {
    d.reply = header_only(wire, Rcode::formerr);
    return d;
  }
  const ldns_rr* rr = ldns_rr_list_rr(ldns_pkt_question(p.get()), 0);
  auto name = labels_of(ldns_rr_owner(rr));
  const auto type = static_cast<std::uint16_t>(ldns_rr_get_type(rr));
  if (!name || type == kTypeOpt) {
    d.reply = header_only(wire, Rcode::formerr);
    return d;
  }
  Query q;
  q.id = ldns_pkt_id(p.get());
  q.rd = ldns_pkt_rd(p.get());
  q.cd = ldns_pkt_cd(p.get());
  q.question = Question{std::move(*name), type, static_cast<std::uint16_t>(ldns_rr_get_class(rr))};
  if (ldns_pkt_edns(p.get())) {
    q.edns = true;
    q.udp_size = ldns_pkt_edns_udp_size(p.get());
    q.dnssec_ok = ldns_pkt_edns_do(p.get());
    if (ldns_pkt_edns_version(p.get()) != 0) {
      // RFC 6891 §6.1.3: BADVERS, with our OPT record (version 0).
      Pkt reply = reply_to(q, Rcode::noerror);
      ldns_pkt_set_edns_extended_rcode(reply.get(), kBadVersExtended);
      d.reply = write(reply.get());
      return d;
    }
  }
  d.query = std::move(q);
  d.outcome = Outcome::local;
  return d;
}

std::size_t reply_limit(const Query& query, Transport transport) {
  if (transport == Transport::tcp) {
    return 65535;
  }
  if (!query.edns) {
    return kMinUdpPayload;
  }
  return std::clamp<std::size_t>(query.udp_size, kMinUdpPayload, kMaxUdpPayload);
}

Bytes encode_answer(const Query& query, const Answer& answer, std::size_t limit) {
  Pkt p = reply_to(query, answer.rcode);
  ldns_pkt_set_aa(p.get(), true);
  for (const auto& r : answer.answers) {
    push(p.get(), LDNS_SECTION_ANSWER, r);
  }
  for (const auto& r : answer.additional) {
    push(p.get(), LDNS_SECTION_ADDITIONAL, r);
  }
  Pkt empty = reply_to(query, answer.rcode);
  ldns_pkt_set_aa(empty.get(), true);
  return fit(write(p.get()), limit, std::move(empty));
}

Bytes encode_error(const Query& query, Rcode rcode) {
  return write(reply_to(query, rcode).get());
}

Bytes encode_upstream_query(const Query& query, std::uint16_t id, bool edns) {
  Pkt p(ldns_pkt_new());
  ldns_pkt_set_id(p.get(), id);
  ldns_pkt_set_opcode(p.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rd(p.get(), true);
  ldns_pkt_set_cd(p.get(), query.cd);
  push_question(p.get(), query.question);
  if (edns) {
    ldns_pkt_set_edns_udp_size(p.get(), kMaxUdpPayload);
    ldns_pkt_set_edns_do(p.get(), query.dnssec_ok);
  }
  return write(p.get());
}

UpstreamReply inspect_upstream_reply(std::span<const std::uint8_t> wire, std::uint16_t id,
                                     const Question& question) {
  UpstreamReply r;
  Pkt p = read(wire);
  if (!p) {
    return r;
  }
  r.status = UpstreamReply::Status::mismatch;
  if (!ldns_pkt_qr(p.get()) || ldns_pkt_id(p.get()) != id ||
      ldns_rr_list_rr_count(ldns_pkt_question(p.get())) != 1) {
    return r;
  }
  const ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(p.get()), 0);
  auto name = labels_of(ldns_rr_owner(q));
  if (!name || !same_name(*name, question.name) ||
      static_cast<std::uint16_t>(ldns_rr_get_type(q)) != question.type ||
      static_cast<std::uint16_t>(ldns_rr_get_class(q)) != question.klass) {
    return r;
  }
  r.status = UpstreamReply::Status::ok;
  r.rcode = static_cast<std::uint8_t>(ldns_pkt_get_rcode(p.get()));
  r.truncated = ldns_pkt_tc(p.get());
  if (r.truncated) {
    return r;
  }
  const ldns_rr_list* answers = ldns_pkt_answer(p.get());
  const std::size_t count = ldns_rr_list_rr_count(answers);
  std::optional<std::uint32_t> ttl;
  if (r.rcode == LDNS_RCODE_NOERROR && count > 0) {
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint32_t t = ldns_rr_ttl(ldns_rr_list_rr(answers, i));
      ttl = ttl ? std::min(*ttl, t) : t;
    }
  } else if (r.rcode == LDNS_RCODE_NXDOMAIN || r.rcode == LDNS_RCODE_NOERROR) {
    const ldns_rr_list* authority = ldns_pkt_authority(p.get());
    for (std::size_t i = 0; i < ldns_rr_list_rr_count(authority); ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(authority, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_rr_rd_count(rr) >= 7) {
        const ldns_rdf* minimum = ldns_rr_rdf(rr, 6);
        if (minimum != nullptr && ldns_rdf_size(minimum) == 4) {
          ttl = std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum));
        }
        break;
      }
    }
  }
  if (ttl && *ttl > 0) {
    r.cache_ttl = std::min(*ttl, kMaxCacheTtl);
  }
  return r;
}

std::optional<Bytes> reply_from_upstream(std::span<const std::uint8_t> wire, const Query& query,
                                         std::uint32_t age_s, std::size_t limit) {
  Pkt src = read(wire);
  if (!src) {
    return std::nullopt;
  }
  const auto rcode = static_cast<Rcode>(ldns_pkt_get_rcode(src.get()) & 0x0f);
  auto header = [&] {
    Pkt p = reply_to(query, rcode);
    ldns_pkt_set_aa(p.get(), ldns_pkt_aa(src.get()));
    ldns_pkt_set_ad(p.get(), ldns_pkt_ad(src.get()));
    ldns_pkt_set_tc(p.get(), ldns_pkt_tc(src.get()));
    return p;
  };
  Pkt dst = header();
  const std::pair<ldns_pkt_section, ldns_rr_list*> sections[] = {
      {LDNS_SECTION_ANSWER, ldns_pkt_answer(src.get())},
      {LDNS_SECTION_AUTHORITY, ldns_pkt_authority(src.get())},
      {LDNS_SECTION_ADDITIONAL, ldns_pkt_additional(src.get())},
  };
  for (const auto& [section, list] : sections) {
    for (std::size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(list, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_OPT) {
        continue;  // per hop: ours is set by reply_to
      }
      ldns_rr* copy = ldns_rr_clone(rr);
      if (copy == nullptr) {
        continue;
      }
      const std::uint32_t ttl = ldns_rr_ttl(copy);
      ldns_rr_set_ttl(copy, ttl > age_s ? ttl - age_s : 0);
      ldns_pkt_push_rr(dst.get(), section, copy);
    }
  }
  return fit(write(dst.get()), limit, header());
}

std::string cache_key(const Query& query) {
  std::string key;
  for (const auto& l : query.question.name) {
    key.push_back(static_cast<char>(l.size()));
    for (char c : l) {
      key.push_back(lower(c));
    }
  }
  key.push_back('\0');
  key.push_back(static_cast<char>(query.question.type >> 8));
  key.push_back(static_cast<char>(query.question.type & 0xff));
  key.push_back(static_cast<char>(query.question.klass >> 8));
  key.push_back(static_cast<char>(query.question.klass & 0xff));
  key.push_back(static_cast<char>((query.dnssec_ok ? 1 : 0) | (query.cd ? 2 : 0)));
  return key;
}

const char* to_string(Outcome outcome) {
  switch (outcome) {
    case Outcome::local:
      return "local";
    case Outcome::nodata:
      return "nodata";
    case Outcome::nxdomain:
      return "nxdomain";
    case Outcome::forwarded:
      return "forwarded";
    case Outcome::cached:
      return "cached";
    case Outcome::servfail:
      return "servfail";
    case Outcome::formerr:
      return "formerr";
    case Outcome::notimp:
      return "notimp";
    case Outcome::refused:
      return "refused";
    case Outcome::dropped:
      return "dropped";
  }
  return "unknown";
}

const char* type_label(std::uint16_t type) {
  switch (type) {
    case kTypeA:
      return "A";
    case kTypeAaaa:
      return "AAAA";
    case kTypeSrv:
      return "SRV";
    case kTypePtr:
      return "PTR";
    case kTypeCname:
      return "CNAME";
    case kTypeMx:
      return "MX";
    case kTypeTxt:
      return "TXT";
    case kTypeNs:
      return "NS";
    case kTypeSoa:
      return "SOA";
    case kTypeHttps:
      return "HTTPS";
    case kTypeAny:
      return "ANY";
    default:
      return "other";
  }
}

}  // namespace routemesh::discovery::dns
