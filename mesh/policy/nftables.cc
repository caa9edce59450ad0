#include "mesh/policy/nftables.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

namespace routemesh::mesh::policy {

namespace {

using discovery::PolicyPeerKind;

std::string address_text(const std::uint8_t* bytes, bool v6) {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  if (::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, buf.data(), buf.size()) == nullptr) {
    return {};
  }
  return buf.data();
}

// "10.0.0.0/8", or the bare address for a /32 or /128 (as nft lists it).
std::string range_text(const base::IpRange& r) {
  std::string text = address_text(r.bytes.data(), r.v6);
  if (r.prefix != (r.v6 ? 128U : 32U)) {
    text += "/" + std::to_string(r.prefix);
  }
  return text;
}

std::string_view family(bool v6) {
  return v6 ? "ip6" : "ip";
}

// "ip saddr 1.2.3.4" or "ip saddr { 1.2.3.4, 1.2.3.5 }".
std::string saddr(bool v6, const std::vector<std::string>& addresses) {
  std::string out = std::string(family(v6)) + " saddr ";
  if (addresses.size() == 1) {
    return out + addresses.front();
  }
  out += "{ ";
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    out += (i == 0 ? "" : ", ") + addresses[i];
  }
  return out + " }";
}

// Names and ids are object names and hex; this keeps a comment a valid nft string whatever
// the state holds.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    out += (c == '"' || c == '\\' || c < 0x20) ? '_' : c;
  }
  return out + "\"";
}

// Chain names are identifiers: letters, digits, '_'.
std::string identifier(std::string_view text) {
  std::string out;
  for (char c : text) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    out += keep ? c : '_';
  }
  return out;
}

bool contains(const std::vector<std::string>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// The task addresses of one family whose facts satisfy `pred`, in byte (numeric) order.
template <class Pred>
std::vector<std::string> task_addresses(const Compiled& c, bool v6, Pred pred) {
  std::vector<AddressKey> keys;
  c.sources.for_each([&](const AddressKey& key, std::uint32_t index) {
    if (key.size == (v6 ? 16U : 4U) && pred(c.facts[index])) {
      keys.push_back(key);
    }
  });
  std::sort(keys.begin(), keys.end(),
            [](const AddressKey& a, const AddressKey& b) { return a.view() < b.view(); });
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    out.push_back(address_text(k.bytes.data(), v6));
  }
  return out;
}

const NetworkRange* find_network(const Compiled& c, std::string_view name) {
  for (const auto& n : c.networks) {
    if (n.name == name) {
      return &n;
    }
  }
  return nullptr;
}

class ChainWriter {
 public:
  ChainWriter(std::string& out, const Compiled& c) : out_(out), c_(c) {}

  void line(std::string_view match, std::string_view verdict, std::string_view comment) {
    out_ += "\t\t";
    if (!match.empty()) {
      out_ += match;
      out_ += ' ';
    }
    out_ += verdict;
    out_ += " comment ";
    out_ += quoted(comment);
    out_ += '\n';
  }

  // Accepts the sources of `network` (its subnet, its tasks): isolation's default.
  void network_sources(std::string_view network, bool v6, std::string_view verdict,
                       std::string_view comment) {
    if (const NetworkRange* n = find_network(c_, network); n != nullptr && n->subnet.v6 == v6) {
      line(saddr(v6, {range_text(n->subnet)}), verdict, comment);
    }
    const auto tasks =
        task_addresses(c_, v6, [&](const SourceInfo& s) { return contains(s.networks, network); });
    if (!tasks.empty()) {
      line(saddr(v6, tasks), verdict, comment);
    }
  }

  // The sources `rule.from` stands for in one family, with the rule's verdict.
  void rule(const Rule& rule, bool v6) {
    const std::string_view verdict = rule.action == PolicyAction::allow ? "accept" : "counter drop";
    const std::string comment = "policy " + rule.id;
    switch (rule.from.kind) {
      case PolicyPeerKind::service: {
        const auto tasks = task_addresses(
            c_, v6, [&](const SourceInfo& s) { return contains(s.services, rule.from.name); });
        if (!tasks.empty()) {
          line(saddr(v6, tasks), verdict, comment);
        }
        break;
      }
      case PolicyPeerKind::network:
        network_sources(rule.from.name, v6, verdict, comment);
        break;
      case PolicyPeerKind::cidr:
        if (rule.from.range.v6 == v6) {
          line(saddr(v6, {range_text(rule.from.range)}), verdict, comment);
        }
        break;
    }
  }

  void user_space_only(std::span<const base::IpRange> ranges, bool v6) {
    for (const auto& r : ranges) {
      if (r.v6 == v6) {
        line(saddr(v6, {range_text(r)}), "accept", "PROXY protocol peer: judged in user space");
      }
    }
  }

 private:
  std::string& out_;
  const Compiled& c_;
};

// The rules of `service` that may apply at `port`, in decide()'s order (ties by id, so the
// text does not depend on the order of the state).
std::vector<const Rule*> applicable(const Compiled& c, std::string_view service, std::uint16_t port,
                                    Entry entry) {
  std::vector<const Rule*> out;
  const auto it = c.rules.find(service);
  if (it == c.rules.end()) {
    return out;
  }
  for (const auto& r : it->second) {
    const bool port_ok = entry == Entry::published ? r.port == port : r.port == 0 || r.port == port;
    if (port_ok) {
      out.push_back(&r);
    }
  }
  std::sort(out.begin(), out.end(), [](const Rule* a, const Rule* b) {
    return outranks(*a, *b) || (!outranks(*b, *a) && a->id < b->id);
  });
  return out;
}

bool is_v6(const std::string& address) {
  std::array<std::uint8_t, 16> b{};
  return ::inet_pton(AF_INET6, address.c_str(), b.data()) == 1;
}

}  // namespace

KernelTargets kernel_targets(const RouteTable& table) {
  KernelTargets t;
  for (const auto& v : table.vips) {
    t.vips.push_back(KernelVip{v.vip.text, v.port, table.clusters[v.cluster].service, v.network});
  }
  for (const auto& r : table.l4) {
    t.published.push_back(KernelPort{r.published, table.clusters[r.cluster].service});
  }
  return t;
}

std::string render_nftables(const Compiled& policy, const KernelTargets& targets,
                            std::span<const base::IpRange> user_space_only) {
  std::string dispatch;
  std::string chains;
  ChainWriter w(chains, policy);
  for (const auto& vip : targets.vips) {
    const bool v6 = is_v6(vip.address);
    const std::string name = "vip_" + identifier(vip.address) + "_" + std::to_string(vip.port);
    dispatch += "\t\t" + std::string(family(v6)) + " daddr " + vip.address + " tcp dport " +
                std::to_string(vip.port) + " jump " + name + "\n";
    chains += "\n\tchain " + name + " {\n";
    chains +=
        "\t\tcomment " + quoted("service " + vip.service + " on network " + vip.network) + "\n";
    w.user_space_only(user_space_only, v6);
    for (const Rule* r : applicable(policy, vip.service, vip.port, Entry::vip)) {
      w.rule(*r, v6);
    }
    w.network_sources(vip.network, v6, "accept", "same network");
    w.line("", "counter drop", "isolation: not on network " + vip.network);
    chains += "\t}\n";
  }
  for (const auto& port : targets.published) {
    const auto rules = applicable(policy, port.service, port.port, Entry::published);
    if (rules.empty()) {
      continue;  // open, like every published port no rule names
    }
    const std::string name = "published_" + std::to_string(port.port);
    dispatch += "\t\ttcp dport " + std::to_string(port.port) + " jump " + name + "\n";
    chains += "\n\tchain " + name + " {\n";
    chains += "\t\tcomment " + quoted("service " + port.service + ", published port") + "\n";
    for (bool v6 : {false, true}) {
      w.user_space_only(user_space_only, v6);
    }
    for (const Rule* r : rules) {
      for (bool v6 : {false, true}) {
        w.rule(*r, v6);
      }
    }
    w.line("", "accept", "published port");
    chains += "\t}\n";
  }

  std::string out =
      "# routemesh: network policy of this node's VIPs and layer-4 published ports.\n"
      "# Generated from the cluster state; replaced as a whole on every change.\n";
  out += "table " + std::string(kNftTable) + "\n";
  out += "delete table " + std::string(kNftTable) + "\n";
  out += "table " + std::string(kNftTable) + " {\n";
  out += "\tchain input {\n";
  out += "\t\ttype filter hook input priority filter; policy accept;\n";
  out += "\t\tct state established,related accept comment " +
         quoted("connections are judged when they open") + "\n";
  out += dispatch;
  out += "\t}\n";
  out += chains;
  out += "}\n";
  return out;
}

std::string nftables_removal() {
  return "table " + std::string(kNftTable) + "\ndelete table " + std::string(kNftTable) + "\n";
}

}  // namespace routemesh::mesh::policy
