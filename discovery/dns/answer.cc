#include "discovery/dns/answer.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <string_view>

namespace routemesh::discovery::dns {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

Labels split(std::string_view name) {
  Labels out;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    out.emplace_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) {
      return out;
    }
    start = dot + 1;
  }
}

Labels concat(Labels a, const Labels& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// splitmix64: a small, well-mixed generator for the shuffle (the seed comes from the caller).
std::uint64_t next(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <class T>
void shuffle(std::vector<T>& v, std::uint64_t seed) {
  for (std::size_t i = v.size(); i > 1; --i) {
    std::swap(v[i - 1], v[next(seed) % i]);
  }
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The address a reverse name (RFC 1035 §3.5, RFC 3596 §2.5) stands for; nullopt when the
// name is not a complete one.
std::optional<Address> reverse_address(const std::vector<std::string>& labels) {
  const std::size_t n = labels.size();
  if (n == 6 && labels[4] == "in-addr" && labels[5] == "arpa") {
    Address a;
    for (std::size_t i = 0; i < 4; ++i) {
      const std::string& l = labels[3 - i];
      if (l.empty() || l.size() > 3 || (l.size() > 1 && l[0] == '0')) {
        return std::nullopt;
      }
      unsigned v = 0;
      for (char c : l) {
        if (c < '0' || c > '9') {
          return std::nullopt;
        }
        v = v * 10 + static_cast<unsigned>(c - '0');
      }
      if (v > 255) {
        return std::nullopt;
      }
      a.bytes[i] = static_cast<std::uint8_t>(v);
    }
    return a;
  }
  if (n == 34 && labels[32] == "ip6" && labels[33] == "arpa") {
    Address a;
    a.v6 = true;
    for (std::size_t i = 0; i < 32; ++i) {
      const std::string& l = labels[31 - i];
      if (l.size() != 1 || !std::isxdigit(static_cast<unsigned char>(l[0]))) {
        return std::nullopt;
      }
      const char c = l[0];
      const unsigned v =
          c <= '9' ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(c - 'a' + 10);
      a.bytes[i / 2] = static_cast<std::uint8_t>(a.bytes[i / 2] | (i % 2 == 0 ? v << 4 : v));
    }
    return a;
  }
  return std::nullopt;
}

bool in_subnet(const Address& a, const base::Ipv4Cidr& cidr) {
  if (a.v6) {
    return false;
  }
  const std::uint32_t v = (std::uint32_t{a.bytes[0]} << 24) | (std::uint32_t{a.bytes[1]} << 16) |
                          (std::uint32_t{a.bytes[2]} << 8) | a.bytes[3];
  const std::uint32_t mask = cidr.prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - cidr.prefix);
  return (v & mask) == cidr.network;
}

enum class Kind { service, tasks, task, srv };

struct Match {
  Kind kind;
  const ServiceView* service;
  const TaskView* task = nullptr;
  std::uint16_t port = 0;
};

std::optional<std::uint16_t> parse_port_label(std::string_view label) {
  if (label.size() < 2 || label.size() > 6 || label[0] != '_' || label[1] == '0') {
    return std::nullopt;
  }
  unsigned v = 0;
  for (char c : label.substr(1)) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(v);
}

std::optional<Match> match(std::string_view name, const NetworkView& network) {
  auto service = [&](std::string_view s) -> const ServiceView* {
    auto it = network.services.find(std::string(s));
    return it == network.services.end() ? nullptr : &it->second;
  };
  if (const auto* s = service(name)) {
    return Match{Kind::service, s};
  }
  if (name.starts_with("tasks.")) {
    if (const auto* s = service(name.substr(6))) {
      return Match{Kind::tasks, s};
    }
  }
  if (name.starts_with("_")) {
    const std::size_t first = name.find('.');
    if (first != std::string_view::npos && name.substr(first + 1).starts_with("_tcp.")) {
      const auto port = parse_port_label(name.substr(0, first));
      const auto* s = service(name.substr(first + 6));
      if (port && s != nullptr &&
          std::binary_search(s->target_ports.begin(), s->target_ports.end(), *port)) {
        return Match{Kind::srv, s, nullptr, *port};
      }
    }
  }
  if (const std::size_t at = name.find(".tasks."); at != std::string_view::npos) {
    const std::string_view id = name.substr(0, at);
    if (id.find('.') == std::string_view::npos) {
      if (const auto* s = service(name.substr(at + 7))) {
        for (const auto& t : s->tasks) {
          if (lower(t.id) == id) {
            return Match{Kind::task, s, &t};
          }
        }
      }
    }
  }
  return std::nullopt;
}

// Whether `name` belongs to the cluster even though the asking network has nothing by it.
bool cluster_name(std::string_view name, const View& view) {
  for (const auto& n : view.network_names) {
    if (name == n || ends_with(name, "." + n)) {
      return true;
    }
  }
  std::vector<std::string_view> forms{name};
  if (name.starts_with("tasks.")) {
    forms.push_back(name.substr(6));
  }
  if (name.starts_with("_")) {
    const std::size_t first = name.find('.');
    const std::size_t second = first == std::string_view::npos ? first : name.find('.', first + 1);
    if (second != std::string_view::npos) {
      forms.push_back(name.substr(second + 1));
    }
  }
  if (const std::size_t at = name.find(".tasks."); at != std::string_view::npos) {
    forms.push_back(name.substr(at + 7));
  }
  return std::any_of(forms.begin(), forms.end(),
                     [&](std::string_view f) { return view.service_names.count(std::string(f)); });
}

bool wants(std::uint16_t qtype, const Address& a) {
  return qtype == kTypeAny || (qtype == kTypeA && !a.v6) || (qtype == kTypeAaaa && a.v6);
}

std::uint16_t type_of(const Address& a) {
  return a.v6 ? kTypeAaaa : kTypeA;
}

Labels task_name(const TaskView& task, const Labels& service_name) {
  Labels out = concat({lower(task.id), "tasks"}, service_name);
  return out;
}

bool has_task_name(const TaskView& task) {
  return !task.id.empty() && task.id.size() <= 63 && task.id.find('.') == std::string::npos;
}

std::vector<const TaskView*> healthy(const ServiceView& s, std::uint64_t rnd) {
  std::vector<const TaskView*> out;
  for (const auto& t : s.tasks) {
    if (t.healthy) {
      out.push_back(&t);
    }
  }
  shuffle(out, rnd);
  return out;
}

}  // namespace

Answer answer(const Query& query, const View& view, const NetworkView& network,
              const AnswerOptions& options, std::uint64_t rnd) {
  Answer out;
  const std::uint16_t qtype = query.question.type;
  if (qtype == kTypeAxfr || qtype == kTypeIxfr) {
    out.rcode = Rcode::refused;
    return out;
  }
  if (query.question.klass != kClassIn && query.question.klass != kClassAny) {
    out.action = Answer::Action::forward;
    return out;
  }
  std::vector<std::string> labels;
  for (const auto& l : query.question.name) {
    if (l.empty() || l.find('.') != std::string::npos) {
      out.action = Answer::Action::forward;  // not a name the cluster could have
      return out;
    }
    labels.push_back(lower(l));
  }
  if (labels.empty()) {
    out.action = Answer::Action::forward;
    return out;
  }
  const Labels& owner = query.question.name;
  auto record = [&](Labels name, std::uint16_t type, auto data) {
    return Record{std::move(name), type, options.ttl_s, std::move(data)};
  };

  if (auto address = reverse_address(labels)) {
    if (auto it = network.ptr.find(*address); it != network.ptr.end()) {
      if (qtype == kTypePtr || qtype == kTypeAny) {
        for (const auto& target : it->second) {
          out.answers.push_back(record(owner, kTypePtr, target));
        }
      }
      return out;
    }
    const bool ours = view.addresses.count(*address) != 0 ||
                      std::any_of(view.subnets.begin(), view.subnets.end(),
                                  [&](const base::Ipv4Cidr& c) { return in_subnet(*address, c); });
    if (ours) {
      out.rcode = Rcode::nxdomain;
    } else {
      out.action = Answer::Action::forward;
    }
    return out;
  }

  std::string name;
  for (const auto& l : labels) {
    name += (name.empty() ? "" : ".") + l;
  }
  std::optional<Match> m = match(name, network);
  if (!m && ends_with(name, "." + network.name)) {
    m = match(std::string_view(name).substr(0, name.size() - network.name.size() - 1), network);
  }
  if (!m) {
    if (cluster_name(name, view)) {
      out.rcode = Rcode::nxdomain;
    } else {
      out.action = Answer::Action::forward;
    }
    return out;
  }

  const ServiceView& s = *m->service;
  const Labels service_name = concat(split(s.name), split(network.name));
  std::vector<Address> addresses;
  switch (m->kind) {
    case Kind::service:
      if (s.mode == EndpointMode::vip) {
        if (s.vip) {
          addresses.push_back(*s.vip);
        }
        break;
      }
      [[fallthrough]];
    case Kind::tasks:
      for (const TaskView* t : healthy(s, rnd)) {
        if (std::find(addresses.begin(), addresses.end(), t->address) == addresses.end()) {
          addresses.push_back(t->address);
        }
      }
      break;
    case Kind::task:
      addresses.push_back(m->task->address);
      break;
    case Kind::srv:
      if (qtype != kTypeSrv && qtype != kTypeAny) {
        break;
      }
      if (s.mode == EndpointMode::vip) {
        if (s.vip) {
          out.answers.push_back(record(owner, kTypeSrv, SrvData{0, 0, m->port, service_name}));
          out.additional.push_back(record(service_name, type_of(*s.vip), *s.vip));
        }
        break;
      }
      for (const TaskView* t : healthy(s, rnd)) {
        if (!has_task_name(*t)) {
          continue;
        }
        const Labels target = task_name(*t, service_name);
        const std::uint16_t port = t->port != 0 ? t->port : m->port;
        out.answers.push_back(record(owner, kTypeSrv, SrvData{0, 0, port, target}));
        out.additional.push_back(record(target, type_of(t->address), t->address));
      }
      break;
  }
  for (const auto& a : addresses) {
    if (wants(qtype, a)) {
      out.answers.push_back(record(owner, type_of(a), a));
    }
  }
  return out;
}

Outcome outcome_of(const Answer& answer) {
  if (answer.action == Answer::Action::forward) {
    return Outcome::forwarded;
  }
  switch (answer.rcode) {
    case Rcode::noerror:
      return answer.answers.empty() ? Outcome::nodata : Outcome::local;
    case Rcode::nxdomain:
      return Outcome::nxdomain;
    case Rcode::refused:
      return Outcome::refused;
    case Rcode::formerr:
      return Outcome::formerr;
    case Rcode::notimp:
      return Outcome::notimp;
    case Rcode::servfail:
      return Outcome::servfail;
  }
  return Outcome::local;
}

}  // namespace routemesh::discovery::dns
