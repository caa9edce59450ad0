#include "discovery/dns/wire.h"

#include <algorithm>
#include <cstring>

namespace routemesh::discovery::dns {

namespace {

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxName = 255;  // RFC 1035 §3.1, wire form
constexpr std::size_t kOptSize = 11;   // root owner, type, class, TTL, RDLENGTH
// Header bits (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
constexpr std::uint8_t kQr = 0x80;
constexpr std::uint8_t kTc = 0x02;
constexpr std::uint8_t kRd = 0x01;
constexpr std::uint8_t kCd = 0x10;

std::uint16_t be16(std::span<const std::uint8_t> w, std::size_t at) {
  return static_cast<std::uint16_t>((w[at] << 8) | w[at + 1]);
}

void put16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}

char lower(std::uint8_t c) {
  return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

// Moves `pos` past a name (labels, ending in the root label or a compression pointer); false
// when it runs past the end or holds an unknown label type.
bool skip_name(std::span<const std::uint8_t> w, std::size_t& pos) {
  for (std::size_t labels = 0; labels < 128; ++labels) {
    if (pos >= w.size()) {
      return false;
    }
    const std::uint8_t len = w[pos];
    if ((len & 0xc0) == 0xc0) {
      pos += 2;
      return pos <= w.size();
    }
    if ((len & 0xc0) != 0) {
      return false;
    }
    pos += 1 + std::size_t{len};
    if (len == 0) {
      return true;
    }
  }
  return false;
}

Labels lowered(const Labels& name) {
  Labels out = name;
  for (auto& l : out) {
    for (char& c : l) {
      c = lower(static_cast<std::uint8_t>(c));
    }
  }
  return out;
}

Labels split(const std::string& name) {
  Labels out;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    out.push_back(name.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) {
      return out;
    }
    start = dot + 1;
  }
}

Labels concat(Labels a, const Labels& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The reverse name of an address (RFC 1035 §3.5, RFC 3596 §2.5).
Labels reverse_name(const Address& a) {
  Labels out;
  if (!a.v6) {
    for (int i = 3; i >= 0; --i) {
      out.push_back(std::to_string(a.bytes[static_cast<std::size_t>(i)]));
    }
    out.push_back("in-addr");
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      const std::uint8_t b = a.bytes[static_cast<std::size_t>(i)];
      out.emplace_back(1, kHex[b & 0x0f]);
      out.emplace_back(1, kHex[b >> 4]);
    }
    out.push_back("ip6");
  }
  out.push_back("arpa");
  return out;
}

}  // namespace

bool parse_fast(std::span<const std::uint8_t> wire, FastQuery& out) {
  if (wire.size() < kHeaderSize || (wire[2] & kQr) != 0 || ((wire[2] >> 3) & 0x0f) != 0) {
    return false;
  }
  const std::uint16_t additional = be16(wire, 10);
  if (be16(wire, 4) != 1 || be16(wire, 6) != 0 || be16(wire, 8) != 0 || additional > 1) {
    return false;
  }
  out.id = be16(wire, 0);
  out.rd = (wire[2] & kRd) != 0;
  out.cd = (wire[3] & kCd) != 0;
  out.key.clear();
  std::size_t pos = kHeaderSize;
  for (;;) {
    if (pos >= wire.size()) {
      return false;
    }
    const std::uint8_t len = wire[pos];
    if (len > 63 || pos + 1 + len > wire.size()) {
      return false;  // a compression pointer, another label type, or cut short
    }
    out.key.push_back(static_cast<char>(len));
    for (std::size_t i = 0; i < len; ++i) {
      out.key.push_back(lower(wire[pos + 1 + i]));
    }
    pos += 1 + std::size_t{len};
    if (out.key.size() > kMaxName) {
      return false;
    }
    if (len == 0) {
      break;
    }
  }
  if (pos + 4 > wire.size()) {
    return false;
  }
  out.type = be16(wire, pos);
  out.klass = be16(wire, pos + 2);
  if (out.type == kTypeOpt) {
    return false;  // FORMERR: the ldns path writes it
  }
  out.key.append(reinterpret_cast<const char*>(wire.data() + pos), 4);
  pos += 4;
  out.question_end = pos;
  out.edns = false;
  out.udp_size = 0;
  out.dnssec_ok = false;
  if (additional == 1) {
    // The OPT record (RFC 6891 §6.1.2): root owner, type 41, CLASS the UDP size, TTL the
    // extended RCODE, version and flags, then options (code, length, data).
    if (pos + kOptSize > wire.size() || wire[pos] != 0 || be16(wire, pos + 1) != kTypeOpt) {
      return false;
    }
    out.udp_size = be16(wire, pos + 3);
    const std::uint8_t version = wire[pos + 6];
    out.dnssec_ok = (wire[pos + 7] & 0x80) != 0;
    const std::size_t end = pos + kOptSize + be16(wire, pos + 9);
    if (version != 0 || out.udp_size == 0 || end != wire.size()) {
      return false;  // BADVERS, or an OPT record the ldns path is the judge of
    }
    for (pos += kOptSize; pos < end;) {
      if (pos + 4 > end) {
        return false;
      }
      pos += 4 + std::size_t{be16(wire, pos + 2)};
    }
    if (pos != end) {
      return false;
    }
    out.edns = true;
  }
  return pos == wire.size();
}

std::size_t reply_limit(const FastQuery& query, Transport transport) {
  if (transport == Transport::tcp) {
    return 65535;
  }
  if (!query.edns) {
    return kMinUdpPayload;
  }
  return std::clamp<std::size_t>(query.udp_size, kMinUdpPayload, kMaxUdpPayload);
}

void cache_key(const FastQuery& query, std::string& out) {
  out.assign(query.key);
  out.push_back(static_cast<char>((query.dnssec_ok ? 1 : 0) | (query.cd ? 2 : 0)));
}

std::string answer_key(const Question& question) {
  std::string key;
  for (const auto& l : question.name) {
    if (l.empty() || l.size() > 63) {
      return {};
    }
    key.push_back(static_cast<char>(l.size()));
    for (char c : l) {
      key.push_back(lower(static_cast<std::uint8_t>(c)));
    }
  }
  key.push_back('\0');
  if (key.size() > kMaxName) {
    return {};
  }
  for (std::uint16_t v : {question.type, question.klass}) {
    key.push_back(static_cast<char>(v >> 8));
    key.push_back(static_cast<char>(v & 0xff));
  }
  return key;
}

std::optional<StoredReply> store_reply(std::span<const std::uint8_t> reply) {
  if (reply.size() < kHeaderSize || be16(reply, 4) != 1 || (reply[2] & kTc) != 0) {
    return std::nullopt;
  }
  StoredReply s;
  s.flags[0] = static_cast<std::uint8_t>(reply[2] & ~(kRd | kTc));
  s.flags[1] = static_cast<std::uint8_t>(reply[3] & ~kCd);
  std::size_t pos = kHeaderSize;
  if (!skip_name(reply, pos) || pos + 4 > reply.size()) {
    return std::nullopt;
  }
  pos += 4;
  s.question_size = pos - kHeaderSize;
  const std::size_t records = pos;
  for (int section = 0; section < 3; ++section) {
    s.counts[section] = be16(reply, 6 + 2 * static_cast<std::size_t>(section));
    for (std::size_t i = 0; i < s.counts[section]; ++i) {
      if (!skip_name(reply, pos) || pos + 10 > reply.size() || be16(reply, pos) == kTypeOpt) {
        return std::nullopt;
      }
      s.ttl_offsets.push_back(static_cast<std::uint16_t>(pos + 4 - records));
      pos += 10 + std::size_t{be16(reply, pos + 8)};
      if (pos > reply.size()) {
        return std::nullopt;
      }
    }
  }
  if (pos != reply.size()) {
    return std::nullopt;
  }
  s.records.assign(reply.begin() + static_cast<std::ptrdiff_t>(records), reply.end());
  return s;
}

std::optional<StoredReply> store_upstream_reply(std::span<const std::uint8_t> upstream,
                                                const Query& query) {
  Query canonical;
  canonical.question = query.question;
  canonical.question.name = lowered(query.question.name);
  auto reply = reply_from_upstream(upstream, canonical, 0, 65535);
  if (!reply) {
    return std::nullopt;
  }
  return store_reply(*reply);
}

bool write_reply(const StoredReply& stored, std::span<const std::uint8_t> wire,
                 const FastQuery& query, std::uint32_t age_s, std::size_t limit, Bytes& out) {
  const std::size_t question = query.question_end - kHeaderSize;
  if (question != stored.question_size || query.question_end > wire.size()) {
    return false;
  }
  const std::size_t opt = query.edns ? kOptSize : 0;
  const bool fits = kHeaderSize + question + stored.records.size() + opt <= limit;
  out.clear();
  put16(out, query.id);
  out.push_back(
      static_cast<std::uint8_t>(stored.flags[0] | (query.rd ? kRd : 0) | (fits ? 0 : kTc)));
  out.push_back(static_cast<std::uint8_t>(stored.flags[1] | (query.cd ? kCd : 0)));
  put16(out, 1);
  put16(out, fits ? stored.counts[0] : 0);
  put16(out, fits ? stored.counts[1] : 0);
  put16(out, static_cast<std::uint16_t>((fits ? stored.counts[2] : 0) + (query.edns ? 1 : 0)));
  out.insert(out.end(), wire.begin() + kHeaderSize,
             wire.begin() + static_cast<std::ptrdiff_t>(query.question_end));
  if (fits) {
    const std::size_t records = out.size();
    out.insert(out.end(), stored.records.begin(), stored.records.end());
    if (age_s > 0) {
      for (std::uint16_t at : stored.ttl_offsets) {
        std::uint8_t* p = out.data() + records + at;
        const std::uint32_t ttl = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                                  (std::uint32_t{p[2]} << 8) | p[3];
        const std::uint32_t aged = ttl > age_s ? ttl - age_s : 0;
        p[0] = static_cast<std::uint8_t>(aged >> 24);
        p[1] = static_cast<std::uint8_t>(aged >> 16);
        p[2] = static_cast<std::uint8_t>(aged >> 8);
        p[3] = static_cast<std::uint8_t>(aged);
      }
    }
  }
  if (query.edns) {
    // Ours (RFC 6891 §6.1.2): root owner, OPT, kMaxUdpPayload, version 0, the client's DO.
    const std::uint8_t record[kOptSize] = {0,
                                           0,
                                           kTypeOpt,
                                           kMaxUdpPayload >> 8,
                                           kMaxUdpPayload & 0xff,
                                           0,
                                           0,
                                           static_cast<std::uint8_t>(query.dnssec_ok ? 0x80 : 0),
                                           0,
                                           0,
                                           0};
    out.insert(out.end(), record, record + kOptSize);
  }
  return true;
}

LocalAnswers::LocalAnswers(const View& view, const NetworkView& network,
                           const AnswerOptions& options, std::size_t capacity)
    : capacity_(capacity) {
  auto render = [&](const Labels& name, std::uint16_t type) {
    Query q;
    q.question = Question{name, type, kClassIn};
    learn(q, answer(q, view, network, options, 0));
  };
  const Labels network_name = split(network.name);
  for (const auto& [name, service] : network.services) {
    const Labels short_name = split(name);
    for (const Labels& base : {short_name, concat(short_name, network_name)}) {
      std::vector<Labels> names{base, concat({"tasks"}, base)};
      for (const auto& t : service.tasks) {
        if (!t.id.empty() && t.id.size() <= 63 && t.id.find('.') == std::string::npos) {
          names.push_back(concat({t.id, "tasks"}, base));
        }
      }
      for (std::uint16_t port : service.target_ports) {
        names.push_back(concat({"_" + std::to_string(port), "_tcp"}, base));
      }
      for (const auto& n : names) {
        for (std::uint16_t type : {kTypeA, kTypeAaaa, kTypeSrv}) {
          render(n, type);
        }
      }
    }
  }
  for (const auto& [address, targets] : network.ptr) {
    render(reverse_name(address), kTypePtr);
  }
}

const LocalAnswers::Entry* LocalAnswers::find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void LocalAnswers::learn(const Query& query, const Answer& answer) {
  if (entries_.size() >= capacity_) {
    return;
  }
  std::string key = answer_key(query.question);
  if (key.empty() || entries_.count(key) != 0) {
    return;
  }
  Entry e;
  if (answer.action == Answer::Action::forward) {
    e.forward = true;
    entries_.emplace(std::move(key), std::move(e));
    return;
  }
  if (answer.answers.size() > 1 || answer.additional.size() > 1) {
    return;  // may be shuffled: answered by the ldns path each time
  }
  // Written for the lower-cased question without EDNS; the records that carry the client's
  // name get the lower-cased one (ldns points them at the question either way).
  Query canonical;
  canonical.question = query.question;
  canonical.question.name = lowered(query.question.name);
  Answer a = answer;
  for (auto* section : {&a.answers, &a.additional}) {
    for (auto& r : *section) {
      if (r.name == query.question.name) {
        r.name = canonical.question.name;
      }
    }
  }
  auto stored = store_reply(encode_answer(canonical, a, 65535));
  if (!stored) {
    return;
  }
  e.outcome = outcome_of(answer);
  e.reply = std::move(*stored);
  entries_.emplace(std::move(key), std::move(e));
}

}  // namespace routemesh::discovery::dns
