#include "config/config.h"

#include "base/address.h"
#include "base/port_mapping.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

namespace routemesh::config {

namespace {

// The one place defaults come from: the struct initialisers in config/types.h. The parser
// starts from this value and overwrites only the keys present in the file, so a missing
// key and a missing section mean the same thing.
NodeConfig fill_defaults() {
  return NodeConfig{};
}

std::string join(const std::string& path, std::string_view key) {
  if (path.empty()) {
    return std::string(key);
  }
  return path + "." + std::string(key);
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool parse_uint(std::string_view text, std::uint64_t& out) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec == std::errc::result_out_of_range) {
    out = std::numeric_limits<std::uint64_t>::max();
    return true;
  }
  return ec == std::errc() && ptr == text.data() + text.size();
}

// Walks the YAML tree and collects every error instead of stopping at the first one.
class Reader {
 public:
  struct Field {
    std::string_view key;
    std::function<void(const YAML::Node&, const std::string&)> read;
  };

  std::vector<FieldError>& errors() { return errors_; }

  void error(const std::string& path, std::string message) {
    errors_.push_back(FieldError{path, std::move(message)});
  }

  // A section: a map whose keys must all be known. A null value (`timeouts:`) means "all
  // defaults", like a missing section.
  void read_map(const YAML::Node& node, const std::string& path,
                std::initializer_list<Field> fields) {
    if (node.IsNull()) {
      return;
    }
    if (!node.IsMap()) {
      error(path, "expected a map");
      return;
    }
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        error(path, "expected a string key");
        continue;
      }
      const std::string key = kv.first.Scalar();
      const std::string key_path = join(path, key);
      if (!seen.insert(key).second) {
        error(key_path, "duplicate key");
        continue;
      }
      bool known = false;
      for (const auto& f : fields) {
        if (f.key == key) {
          known = true;
          f.read(kv.second, key_path);
          break;
        }
      }
      if (!known) {
        error(key_path, "unknown key");
      }
    }
  }

  // Integer scalar in [lo, hi]. Quoted scalars are strings in YAML, so "8080" is a type error.
  std::optional<std::uint64_t> read_integer(const YAML::Node& node, const std::string& path,
                                            std::uint64_t lo, std::uint64_t hi,
                                            const std::string& range_message) {
    if (!node.IsScalar() || node.Tag() == "!") {
      error(path, "expected an integer");
      return std::nullopt;
    }
    std::string text = node.Scalar();
    bool negative = false;
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
      negative = text[0] == '-';
      text.erase(0, 1);
    }
    std::uint64_t v = 0;
    if (!parse_uint(text, v)) {
      error(path, "expected an integer");
      return std::nullopt;
    }
    if ((negative && v != 0) || v < lo || v > hi) {
      error(path, range_message);
      return std::nullopt;
    }
    return v;
  }

  void read_port(const YAML::Node& node, const std::string& path, std::uint16_t& out) {
    if (auto v = read_integer(node, path, 0, 65535, "must be 0..65535")) {
      out = static_cast<std::uint16_t>(*v);
    }
  }

  void read_positive(const YAML::Node& node, const std::string& path, std::uint32_t& out) {
    if (auto v = read_integer(node, path, 1, std::numeric_limits<std::uint32_t>::max(),
                              "must be > 0 and fit in 32 bits")) {
      out = static_cast<std::uint32_t>(*v);
    }
  }

  void read_bool(const YAML::Node& node, const std::string& path, bool& out) {
    if (node.IsScalar() && node.Tag() != "!") {
      const std::string& s = node.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") {
        out = true;
        return;
      }
      if (s == "false" || s == "False" || s == "FALSE") {
        out = false;
        return;
      }
    }
    error(path, "expected true or false");
  }

  bool read_string(const YAML::Node& node, const std::string& path, std::string& out) {
    if (!node.IsScalar()) {
      error(path, "expected a string");
      return false;
    }
    out = node.Scalar();
    return true;
  }

  // A string that must be one of `names` (in that order, joined with "or" in the error).
  // Returns false when it was not a string or not one of them (an error was recorded).
  template <class E>
  bool read_enum(const YAML::Node& node, const std::string& path,
                 std::initializer_list<std::pair<const char*, E>> names, E& out) {
    std::string s;
    if (!read_string(node, path, s)) {
      return false;
    }
    std::string expected;
    for (const auto& [name, value] : names) {
      if (s == name) {
        out = value;
        return true;
      }
      expected += (expected.empty() ? "" : " or ") + std::string(name);
    }
    error(path, "must be " + expected);
    return false;
  }

  // A list of scalars; `key:` with no value is an empty list.
  void read_string_list(const YAML::Node& node, const std::string& path,
                        const std::function<void(const std::string&, const std::string&)>& each) {
    if (node.IsNull()) {
      return;
    }
    if (!node.IsSequence()) {
      error(path, "expected a list");
      return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string item_path = index_path(path, i);
      std::string s;
      if (read_string(node[i], item_path, s)) {
        each(s, item_path);
      }
    }
  }

 private:
  std::vector<FieldError> errors_;
};

void read_access_log(Reader& r, const YAML::Node& node, const std::string& path,
                     AccessLogSettings& out) {
  r.read_map(
      node, path,
      {
          {"enabled",
           [&](const YAML::Node& n, const std::string& p) { r.read_bool(n, p, out.enabled); }},
          {"format",
           [&](const YAML::Node& n, const std::string& p) {
             r.read_enum(n, p,
                         {{"json", AccessLogFormat::json}, {"combined", AccessLogFormat::combined}},
                         out.format);
           }},
          {"path",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.path) && out.path.empty()) {
               r.error(p, "must not be empty (use \"-\" for stdout)");
             }
           }},
      });
}

// A list of IP ranges ("10.0.0.0/8", "2001:db8::/32") or single addresses (a /32 or /128).
void read_ip_ranges(Reader& r, const YAML::Node& n, const std::string& p,
                    std::vector<base::IpRange>& out) {
  r.read_string_list(n, p, [&](const std::string& s, const std::string& item_path) {
    if (auto range = base::parse_ip_range(s)) {
      out.push_back(*range);
    } else {
      r.error(item_path,
              "expected an IP range with no host bits set (10.0.0.0/8, 2001:db8::/32) or an IP "
              "address");
    }
  });
}

void read_node(Reader& r, const YAML::Node& node, const std::string& path, NodeSettings& out) {
  r.read_map(
      node, path,
      {
          {"name",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.name) && !base::is_host_name(out.name)) {
               r.error(p, "must be a host-name-like string (letters, digits, '-', '_', '.')");
             }
           }},
          {"listen",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.listen) && !base::is_ip_literal(out.listen)) {
               r.error(p, "not an IP address");
             }
           }},
          {"http_port",
           [&](const YAML::Node& n, const std::string& p) { r.read_port(n, p, out.http_port); }},
          {"https_port",
           [&](const YAML::Node& n, const std::string& p) { r.read_port(n, p, out.https_port); }},
          {"admin",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.admin) &&
                 !base::parse_host_port(out.admin, {.host_names = true, .port_zero = true})) {
               r.error(p, "expected HOST:PORT");
             }
           }},
          {"metrics",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.metrics) && !out.metrics.empty() &&
                 !base::parse_host_port(out.metrics, {.host_names = true, .port_zero = true})) {
               r.error(p, "expected HOST:PORT (or \"\" for none)");
             }
           }},
          {"threads",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 0, 1024, "must be 0..1024 (0 = number of cores)")) {
               out.threads = static_cast<unsigned>(*v);
             }
           }},
          {"via", [&](const YAML::Node& n, const std::string& p) { r.read_bool(n, p, out.via); }},
          {"proxy_protocol_from",
           [&](const YAML::Node& n, const std::string& p) {
             read_ip_ranges(r, n, p, out.proxy_protocol_from);
           }},
          {"trusted_proxies",
           [&](const YAML::Node& n, const std::string& p) {
             read_ip_ranges(r, n, p, out.trusted_proxies);
           }},
          {"access_log", [&](const YAML::Node& n,
                             const std::string& p) { read_access_log(r, n, p, out.access_log); }},
          {"vips",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.vips_mode) && out.vips_mode != "auto" &&
                 out.vips_mode != "on" && out.vips_mode != "off") {
               r.error(p, "must be auto, on or off");
             }
           }},
          {"dns",
           [&](const YAML::Node& n, const std::string& p) {
             if (r.read_string(n, p, out.dns_mode) && out.dns_mode != "auto" &&
                 out.dns_mode != "on" && out.dns_mode != "off") {
               r.error(p, "must be auto, on or off");
             }
           }},
          {"overlay",
           [&](const YAML::Node& n, const std::string& p) {
             if (!r.read_string(n, p, out.overlay)) {
               return;
             }
             if (out.overlay == "off") {
               out.overlay_off = true;
               out.overlay.clear();
             } else if (auto hp = base::parse_host_port(out.overlay);
                        !hp || !base::is_ip_literal(hp->host) || hp->port == 0) {
               r.error(p, "expected IP:PORT (a specific address other nodes can reach) or \"off\"");
             }
           }},
      });
}

void read_timeouts(Reader& r, const YAML::Node& node, const std::string& path, Timeouts& out) {
  auto field = [&](std::string_view key, std::uint32_t& dst) {
    return Reader::Field{
        key, [&r, &dst](const YAML::Node& n, const std::string& p) { r.read_positive(n, p, dst); }};
  };
  // The request body settings are off by default: 0 is allowed there.
  auto off_or = [&](std::string_view key, std::uint32_t& dst) {
    return Reader::Field{
        key, [&r, &dst](const YAML::Node& n, const std::string& p) {
          if (auto v = r.read_integer(n, p, 0, std::numeric_limits<std::uint32_t>::max(),
                                      "must be 0 (off) or fit in 32 bits")) {
            dst = static_cast<std::uint32_t>(*v);
          }
        }};
  };
  r.read_map(node, path,
             {field("request_head_ms", out.request_head_ms), field("idle_ms", out.idle_ms),
              field("upstream_connect_ms", out.upstream_connect_ms),
              field("upstream_response_ms", out.upstream_response_ms),
              field("upstream_idle_ms", out.upstream_idle_ms), field("l4_idle_ms", out.l4_idle_ms),
              field("udp_idle_ms", out.udp_idle_ms), field("drain_ms", out.drain_ms),
              off_or("request_body_ms", out.request_body_ms),
              off_or("body_min_rate_bps", out.body_min_rate_bps),
              off_or("body_min_rate_grace_ms", out.body_min_rate_grace_ms)});
}

void read_limits(Reader& r, const YAML::Node& node, const std::string& path, Limits& out) {
  auto field = [&](std::string_view key, std::uint32_t& dst) {
    return Reader::Field{
        key, [&r, &dst](const YAML::Node& n, const std::string& p) { r.read_positive(n, p, dst); }};
  };
  r.read_map(node, path,
             {field("max_header_bytes", out.max_header_bytes),
              field("max_uri_bytes", out.max_uri_bytes), field("max_headers", out.max_headers),
              field("max_connections_per_thread", out.max_connections_per_thread),
              field("max_idle_upstream_per_endpoint", out.max_idle_upstream_per_endpoint),
              Reader::Field{"max_request_body_bytes",
                            [&r, &out](const YAML::Node& n, const std::string& p) {
                              if (auto v = r.read_integer(n, p, 0, std::uint64_t{1} << 50,
                                                          "must be 0 (no limit) or a byte count")) {
                                out.max_request_body_bytes = *v;
                              }
                            }}});
}

void read_health(Reader& r, const YAML::Node& node, const std::string& path, HealthSettings& out) {
  auto field = [&](std::string_view key, std::uint32_t& dst) {
    return Reader::Field{
        key, [&r, &dst](const YAML::Node& n, const std::string& p) { r.read_positive(n, p, dst); }};
  };
  const std::size_t before = r.errors().size();
  r.read_map(
      node, path,
      {field("max_failures", out.max_failures), field("base_ejection_ms", out.base_ejection_ms),
       field("max_ejection_ms", out.max_ejection_ms)});
  // Only meaningful when both values parsed; otherwise the first error already explains it.
  if (r.errors().size() == before && out.max_ejection_ms < out.base_ejection_ms) {
    r.error(join(path, "max_ejection_ms"), "must be >= base_ejection_ms");
  }
}

void read_dns(Reader& r, const YAML::Node& node, const std::string& path, DnsSettings& out) {
  r.read_map(
      node, path,
      {
          {"port",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 1, 65535, "must be 1..65535")) {
               out.port = static_cast<std::uint16_t>(*v);
             }
           }},
          {"ttl_s",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 0, 3600, "must be 0..3600")) {
               out.ttl_s = static_cast<std::uint32_t>(*v);
             }
           }},
          {"upstreams",
           [&](const YAML::Node& n, const std::string& p) {
             r.read_string_list(n, p, [&](const std::string& s, const std::string& item_path) {
               auto hp = base::parse_host_port(s, {.port_optional = true});
               if (!hp || !base::is_ip_literal(hp->host) || base::is_unspecified_ip(hp->host)) {
                 r.error(item_path, "expected IP or IP:PORT of a resolver ([IPv6]:PORT)");
               } else {
                 out.upstreams.push_back(s);
               }
             });
           }},
          {"upstream_timeout_ms",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 10, 60'000, "must be 10..60000")) {
               out.upstream_timeout_ms = static_cast<std::uint32_t>(*v);
             }
           }},
          {"cache_entries",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 0, 1'000'000, "must be 0..1000000 (0 = no cache)")) {
               out.cache_entries = static_cast<std::uint32_t>(*v);
             }
           }},
      });
}

void read_firewall(Reader& r, const YAML::Node& node, const std::string& path,
                   FirewallSettings& out) {
  r.read_map(node, path,
             {
                 {"backend",
                  [&](const YAML::Node& n, const std::string& p) {
                    r.read_enum(
                        n, p,
                        {{"none", FirewallBackend::none}, {"nftables", FirewallBackend::nftables}},
                        out.backend);
                  }},
                 {"nft",
                  [&](const YAML::Node& n, const std::string& p) {
                    if (r.read_string(n, p, out.nft) && out.nft.empty()) {
                      r.error(p, "must not be empty (the nft command or its path)");
                    }
                  }},
             });
}

void read_labels(Reader& r, const YAML::Node& node, const std::string& path,
                 std::map<std::string, std::string>& out) {
  if (node.IsNull()) {
    return;
  }
  if (!node.IsMap()) {
    r.error(path, "expected a map");
    return;
  }
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      r.error(path, "expected a string key");
      continue;
    }
    // Dotted keys such as `mesh.http` are plain keys of this map, not nested paths.
    const std::string key = kv.first.Scalar();
    const std::string key_path = join(path, key);
    if (out.count(key) != 0) {
      r.error(key_path, "duplicate key");
      continue;
    }
    if (kv.second.IsNull()) {
      out[key] = "";
    } else if (kv.second.IsScalar()) {
      // Numbers and booleans are kept as the text written in the file.
      out[key] = kv.second.Scalar();
    } else {
      r.error(key_path, "expected a scalar");
    }
  }
}

void read_service(Reader& r, const YAML::Node& node, const std::string& path, ServiceConfig& out) {
  if (!node.IsMap()) {
    r.error(path, "expected a map");
    return;
  }
  bool has_name = false;
  r.read_map(
      node, path,
      {
          {"name",
           [&](const YAML::Node& n, const std::string& p) {
             has_name = true;
             if (r.read_string(n, p, out.name) && !base::is_object_name(out.name)) {
               r.error(p, "must match [a-z0-9][a-z0-9_.-]{0,62}");
             }
           }},
          {"labels",
           [&](const YAML::Node& n, const std::string& p) { read_labels(r, n, p, out.labels); }},
          {"published",
           [&](const YAML::Node& n, const std::string& p) {
             r.read_string_list(n, p, [&](const std::string& s, const std::string& item_path) {
               if (auto m = base::parse_port_mapping(s)) {
                 out.published.push_back(std::move(*m));
               } else {
                 r.error(item_path,
                         "expected [ADDRESS:]PUBLISHED:TARGET[/tcp|/udp] or "
                         "published=P,target=T[,protocol=..][,mode=ingress|host][,address=IP] "
                         "with ports 1..65535");
               }
             });
           }},
          {"tasks",
           [&](const YAML::Node& n, const std::string& p) {
             r.read_string_list(n, p, [&](const std::string& s, const std::string& item_path) {
               if (base::parse_host_port(s, {.port_optional = true})) {
                 out.tasks.push_back(s);
               } else {
                 r.error(item_path, "not an IP:PORT address");
               }
             });
           }},
      });
  if (!has_name) {
    r.error(join(path, "name"), "required");
  }
}

void read_services(Reader& r, const YAML::Node& node, const std::string& path,
                   std::vector<ServiceConfig>& out) {
  if (node.IsNull()) {
    return;
  }
  if (!node.IsSequence()) {
    r.error(path, "expected a list");
    return;
  }
  std::map<std::string, std::size_t> names;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string item_path = index_path(path, i);
    ServiceConfig svc;
    read_service(r, node[i], item_path, svc);
    if (base::is_object_name(svc.name)) {
      auto [it, inserted] = names.emplace(svc.name, i);
      if (!inserted) {
        r.error(join(item_path, "name"), "duplicate service name \"" + svc.name + "\"");
      }
    }
    out.push_back(std::move(svc));
  }
}

void read_certificates(Reader& r, const YAML::Node& node, const std::string& path,
                       std::vector<CertificateConfig>& out) {
  if (node.IsNull()) {
    return;
  }
  if (!node.IsSequence()) {
    r.error(path, "expected a list");
    return;
  }
  std::set<std::string> hosts;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string item_path = index_path(path, i);
    if (!node[i].IsMap()) {
      r.error(item_path, "expected a map with host, cert and key");
      continue;
    }
    CertificateConfig c;
    r.read_map(
        node[i], item_path,
        {
            {"host",
             [&](const YAML::Node& n, const std::string& p) {
               if (r.read_string(n, p, c.host) && !base::is_certificate_host(c.host)) {
                 r.error(p, "expected a lower-case host name, *.suffix or * (the default)");
               }
             }},
            {"cert",
             [&](const YAML::Node& n, const std::string& p) { r.read_string(n, p, c.cert); }},
            {"key", [&](const YAML::Node& n, const std::string& p) { r.read_string(n, p, c.key); }},
        });
    for (const auto& [field, value] :
         {std::pair{"host", &c.host}, std::pair{"cert", &c.cert}, std::pair{"key", &c.key}}) {
      if (value->empty()) {
        r.error(join(item_path, field), "required");
      }
    }
    if (!c.host.empty() && !hosts.insert(c.host).second) {
      r.error(join(item_path, "host"), "a second certificate for " + c.host);
    }
    out.push_back(std::move(c));
  }
}

void read_cluster(Reader& r, const YAML::Node& node, const std::string& path,
                  ClusterSettings& out) {
  bool has_role = false;
  bool has_data_dir = false;
  bool has_peer = false;
  bool ticks_ok = true;
  auto ip_port = [&](std::string& dst) {
    return [&r, &dst](const YAML::Node& n, const std::string& p) {
      if (r.read_string(n, p, dst) && !base::parse_host_port(dst)) {
        r.error(p, "expected IP:PORT");
      }
    };
  };
  auto ticks = [&](std::uint32_t& dst) {
    return [&r, &dst, &ticks_ok](const YAML::Node& n, const std::string& p) {
      const std::size_t before = r.errors().size();
      r.read_positive(n, p, dst);
      ticks_ok = ticks_ok && r.errors().size() == before;
    };
  };
  r.read_map(
      node, path,
      {
          {"role",
           [&](const YAML::Node& n, const std::string& p) {
             has_role = true;
             r.read_enum(n, p, {{"manager", ClusterRole::manager}, {"worker", ClusterRole::worker}},
                         out.role);
           }},
          {"data_dir",
           [&](const YAML::Node& n, const std::string& p) {
             has_data_dir = true;
             if (r.read_string(n, p, out.data_dir) && out.data_dir.empty()) {
               r.error(p, "must not be empty");
             }
           }},
          {"peer",
           [&](const YAML::Node& n, const std::string& p) {
             has_peer = true;
             ip_port(out.peer)(n, p);
           }},
          {"join", ip_port(out.join)},
          {"tick_ms", ticks(out.tick_ms)},
          {"election_ticks", ticks(out.election_ticks)},
          {"heartbeat_ticks", ticks(out.heartbeat_ticks)},
          {"subnet_pool",
           [&](const YAML::Node& n, const std::string& p) {
             if (!r.read_string(n, p, out.subnet_pool)) {
               return;
             }
             const auto cidr = base::parse_ipv4_cidr(out.subnet_pool);
             if (!cidr) {
               r.error(p, "expected an IPv4 CIDR such as 10.10.0.0/16 (no host bits set)");
             } else if (cidr->prefix > 24) {
               r.error(p, "prefix must be /24 or shorter (networks get a /24 each)");
             }
           }},
          {"snapshot_entries",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 1, std::numeric_limits<std::uint64_t>::max(),
                                         "must be > 0")) {
               out.snapshot_entries = *v;
             }
           }},
          {"heartbeat_ms",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 10, 600'000, "must be 10..600000")) {
               out.heartbeat_ms = static_cast<std::uint32_t>(*v);
             }
           }},
          {"node_down_after_ms",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 50, 3'600'000, "must be 50..3600000")) {
               out.node_down_after_ms = static_cast<std::uint32_t>(*v);
             }
           }},
          {"cert_lifetime_s",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 10, 10 * 365 * 24 * 3600,
                                         "must be 10..315360000 (10 s to 10 years)")) {
               out.cert_lifetime_s = static_cast<std::uint32_t>(*v);
             }
           }},
          {"user_cert_lifetime_s",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 10, 10 * 365 * 24 * 3600,
                                         "must be 10..315360000 (10 s to 10 years)")) {
               out.user_cert_lifetime_s = static_cast<std::uint32_t>(*v);
             }
           }},
          {"overlay_encryption",
           [&](const YAML::Node& n, const std::string& p) {
             r.read_bool(n, p, out.overlay_encryption);
           }},
          {"overlay_rekey_s",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v =
                     r.read_integer(n, p, 0, 365 * 24 * 3600, "must be 0..31536000 (0 = never)")) {
               out.overlay_rekey_s = static_cast<std::uint32_t>(*v);
             }
           }},
          {"overlay_rekey_bytes",
           [&](const YAML::Node& n, const std::string& p) {
             if (auto v = r.read_integer(n, p, 0, std::uint64_t{1} << 50,
                                         "must be 0..2^50 (0 = never)")) {
               out.overlay_rekey_bytes = static_cast<std::uint64_t>(*v);
             }
           }},
      });
  if (!node.IsNull() && !node.IsMap()) {
    return;  // read_map reported it
  }
  if (!has_role) {
    r.error(join(path, "role"), "required (manager or worker)");
  }
  if (!has_data_dir) {
    r.error(join(path, "data_dir"), "required");
  }
  if (!has_peer && out.role == ClusterRole::manager && has_role) {
    r.error(join(path, "peer"), "required for managers (Raft transport IP:PORT)");
  }
  if (out.node_down_after_ms <= out.heartbeat_ms) {
    r.error(join(path, "node_down_after_ms"), "must be greater than heartbeat_ms");
  }
  if (ticks_ok && out.heartbeat_ticks >= out.election_ticks) {
    r.error(join(path, "heartbeat_ticks"), "must be < election_ticks");
  }
}

ParseResult parse_document(const YAML::Node& root) {
  NodeConfig cfg = fill_defaults();
  Reader r;
  if (!root.IsNull() && !root.IsMap()) {
    r.error("", "expected a map at the top level");
    return r.errors();
  }
  r.read_map(
      root, "",
      {
          {"node",
           [&](const YAML::Node& n, const std::string& p) { read_node(r, n, p, cfg.node); }},
          {"timeouts", [&](const YAML::Node& n,
                           const std::string& p) { read_timeouts(r, n, p, cfg.timeouts); }},
          {"limits",
           [&](const YAML::Node& n, const std::string& p) { read_limits(r, n, p, cfg.limits); }},
          {"health",
           [&](const YAML::Node& n, const std::string& p) { read_health(r, n, p, cfg.health); }},
          {"dns", [&](const YAML::Node& n, const std::string& p) { read_dns(r, n, p, cfg.dns); }},
          {"firewall", [&](const YAML::Node& n,
                           const std::string& p) { read_firewall(r, n, p, cfg.firewall); }},
          {"services", [&](const YAML::Node& n,
                           const std::string& p) { read_services(r, n, p, cfg.services); }},
          {"certificates",
           [&](const YAML::Node& n, const std::string& p) {
             read_certificates(r, n, p, cfg.certificates);
           }},
          {"cluster",
           [&](const YAML::Node& n, const std::string& p) {
             cfg.cluster_mode = true;
             read_cluster(r, n, p, cfg.cluster);
           }},
      });
  if (cfg.cluster_mode && !cfg.services.empty()) {
    r.error("services", "not allowed in cluster mode; use the API");
  }
  if (cfg.cluster_mode && !cfg.certificates.empty()) {
    r.error("certificates", "not allowed in cluster mode; use `routemesh cert add`");
  }
  if (cfg.cluster_mode && cfg.node.overlay.empty() && !cfg.node.overlay_off &&
      !base::is_unspecified_ip(cfg.node.listen)) {
    cfg.node.overlay = base::join_host_port(cfg.node.listen, kDefaultOverlayPort);
  }
  cfg.node.vips = cfg.node.vips_mode == "on" ||
                  (cfg.node.vips_mode == "auto" && cfg.cluster_mode &&
                   !base::is_unspecified_ip(cfg.node.listen) &&
                   !cfg.node.listen.starts_with("127.") && cfg.node.listen != "::1");
  cfg.node.dns = cfg.node.dns_mode == "on" ||
                 (cfg.node.dns_mode == "auto" && cfg.cluster_mode &&
                  !base::is_unspecified_ip(cfg.node.listen) &&
                  !cfg.node.listen.starts_with("127.") && cfg.node.listen != "::1");
  if (cfg.node.dns_mode == "on" && !cfg.cluster_mode) {
    r.error("node.dns", "on needs cluster mode (a cluster section): names come from the cluster");
  }
  if (cfg.firewall.backend == FirewallBackend::nftables && !cfg.cluster_mode) {
    r.error("firewall.backend",
            "nftables needs cluster mode (a cluster section): policies come from the cluster");
  }
  if (!r.errors().empty()) {
    return std::move(r.errors());
  }
  return cfg;
}

}  // namespace

ParseResult parse(std::string_view yaml_text) {
  // yaml-cpp reports syntax errors (and misuse) by throwing; nothing may escape parse().
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    return parse_document(root);
  } catch (const YAML::Exception& e) {
    std::string message = "YAML syntax error";
    if (!e.mark.is_null()) {
      message += " at line " + std::to_string(e.mark.line + 1) + ", column " +
                 std::to_string(e.mark.column + 1);
    }
    message += ": " + e.msg;
    return std::vector<FieldError>{FieldError{"", message}};
  } catch (const std::exception& e) {
    return std::vector<FieldError>{FieldError{"", std::string("cannot parse: ") + e.what()}};
  }
}

ParseResult load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::vector<FieldError>{FieldError{"", "cannot read file \"" + path + "\""}};
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return std::vector<FieldError>{FieldError{"", "error reading file \"" + path + "\""}};
  }
  return parse(text.str());
}

std::vector<std::string> restart_required(const NodeConfig& current, const NodeConfig& next) {
  std::vector<std::string> keys;
  const NodeSettings& a = current.node;
  const NodeSettings& b = next.node;
  if (a.name != b.name) {
    keys.emplace_back("node.name");
  }
  if (a.listen != b.listen) {
    keys.emplace_back("node.listen");
  }
  if (a.http_port != b.http_port) {
    keys.emplace_back("node.http_port");
  }
  if (a.https_port != b.https_port) {
    keys.emplace_back("node.https_port");
  }
  if (a.admin != b.admin) {
    keys.emplace_back("node.admin");
  }
  if (a.metrics != b.metrics) {
    keys.emplace_back("node.metrics");
  }
  if (a.threads != b.threads) {
    keys.emplace_back("node.threads");
  }
  if (a.overlay != b.overlay) {
    keys.emplace_back("node.overlay");
  }
  if (a.vips != b.vips) {
    keys.emplace_back("node.vips");
  }
  if (a.dns != b.dns) {
    keys.emplace_back("node.dns");
  }
  return keys;
}

std::string format_errors(const std::vector<FieldError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (e.path.empty()) {
      out += e.message;
    } else {
      out += e.path + ": " + e.message;
    }
    out += '\n';
  }
  return out;
}

}  // namespace routemesh::config
