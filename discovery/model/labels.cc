#include "discovery/model/labels.h"

#include "base/address.h"

#include <algorithm>
#include <string_view>

namespace routemesh::discovery {

namespace {

std::string join(const std::string& prefix, std::string_view key) {
  if (prefix.empty()) {
    return std::string(key);
  }
  return prefix + "." + std::string(key);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto pos = s.find(sep);
    out.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) {
      break;
    }
    s.remove_prefix(pos + 1);
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  });
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Port numbers in labels: the shared port grammar (digits only), 1..65535.
bool parse_port(std::string_view s, std::uint16_t& out) {
  const auto port = base::parse_port(s);
  if (!port || *port == 0) {
    return false;
  }
  out = *port;
  return true;
}

// Parses one host of mesh.http / external_route / mesh.sni. Returns false and sets `why`.
bool parse_host_pattern(std::string_view text, HostPattern& out, std::string& why) {
  if (text.empty()) {
    why = "empty host";
    return false;
  }
  if (text.find(':') != std::string_view::npos) {
    why = "a port is not allowed in host \"" + std::string(text) + "\"";
    return false;
  }
  if (starts_with(text, "*.")) {
    std::string_view suffix = text.substr(2);
    if (!base::is_host_name(suffix)) {
      why = "invalid host \"" + std::string(text) + "\"";
      return false;
    }
    out.host = "." + lower(suffix);
    out.wildcard = true;
    return true;
  }
  if (!base::is_host_name(text)) {
    why = "invalid host \"" + std::string(text) + "\"";
    return false;
  }
  out.host = lower(text);
  out.wildcard = false;
  return true;
}

bool same_pattern(const HostPattern& a, const HostPattern& b) {
  return a.host == b.host && a.wildcard == b.wildcard;
}

void add_host(std::vector<HostPattern>& hosts, HostPattern p) {
  for (const auto& h : hosts) {
    if (same_pattern(h, p)) {
      return;
    }
  }
  hosts.push_back(std::move(p));
}

// mesh.http.path: a prefix of the request target's path (RFC 9110 §4.2.1 origin-form), so no
// query, fragment or whitespace. Trailing '/' is dropped so "/v1" and "/v1/" are one route.
bool parse_path_prefix(std::string_view text, std::string& out, std::string& why) {
  if (text.empty() || text[0] != '/') {
    why = "must start with '/'";
    return false;
  }
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      why = "must not contain spaces or control characters";
      return false;
    }
    if (c == '?' || c == '#') {
      why = "must not contain a query or fragment";
      return false;
    }
  }
  std::string p(text);
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  out = std::move(p);
  return true;
}

// RFC 6265 §4.1.1: cookie-name = token (RFC 2616 §2.2): CHARs except CTLs and separators.
bool valid_cookie_name(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  constexpr std::string_view kSeparators = "()<>@,;:\\\"/[]?={} \t";
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x1f || u >= 0x7f || kSeparators.find(c) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// Docker UCP HRM: "external_route=http://HOST[:PORT],internal_port=N" (pairs in any order).
// The PORT of external_route names the HRM port in UCP; here every HTTP route is served on
// the node's http_port, so it is validated and otherwise not used.
bool parse_ucp(std::string_view value, const std::string& path, HttpExposure& out,
               std::vector<StateError>& errors) {
  const std::size_t before = errors.size();
  auto fail = [&](std::string message) { errors.push_back(StateError{path, std::move(message)}); };
  std::optional<std::string_view> route;
  std::optional<std::string_view> internal_port;
  for (std::string_view part : split(value, ',')) {
    part = trim(part);
    if (part.empty()) {
      continue;
    }
    auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      fail("expected KEY=VALUE, got \"" + std::string(part) + "\"");
      continue;
    }
    std::string_view key = trim(part.substr(0, eq));
    std::string_view val = trim(part.substr(eq + 1));
    std::optional<std::string_view>* slot = nullptr;
    if (key == "external_route") {
      slot = &route;
    } else if (key == "internal_port") {
      slot = &internal_port;
    } else {
      fail("unsupported key \"" + std::string(key) + "\"");
      continue;
    }
    if (slot->has_value()) {
      fail("duplicate key \"" + std::string(key) + "\"");
      continue;
    }
    *slot = val;
  }
  if (!route) {
    fail("external_route required");
  } else {
    std::string_view r = *route;
    auto scheme_end = r.find("://");
    if (scheme_end == std::string_view::npos) {
      fail("invalid external_route \"" + std::string(r) + "\": expected http://HOST[:PORT]");
    } else {
      const std::string scheme = lower(r.substr(0, scheme_end));
      std::string_view rest = r.substr(scheme_end + 3);
      if (scheme == "https" || scheme == "sni") {
        fail("only http external_route supported for now");
      } else if (scheme != "http") {
        fail("invalid external_route scheme \"" + scheme + "\"");
      } else {
        std::string_view authority = rest.substr(0, rest.find('/'));
        std::string_view after = rest.substr(authority.size());
        if (!after.empty() && after != "/") {
          fail("a path in external_route is not supported (use mesh.http.path)");
        }
        std::string_view host = authority;
        if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
          host = authority.substr(0, colon);
          std::uint16_t external_port = 0;
          if (!parse_port(authority.substr(colon + 1), external_port)) {
            fail("external_route port must be 1..65535");
          }
        }
        HostPattern p;
        std::string why;
        if (parse_host_pattern(host, p, why)) {
          out.hosts.push_back(std::move(p));
        } else {
          fail(why);
        }
      }
    }
  }
  if (!internal_port) {
    fail("internal_port required");
  } else if (!parse_port(*internal_port, out.port)) {
    fail("internal_port must be 1..65535");
  }
  return errors.size() == before;
}

}  // namespace

namespace {

std::optional<std::uint32_t> parse_u32(std::string_view text, std::uint32_t min,
                                       std::uint32_t max) {
  text = trim(text);
  if (text.empty() || text.size() > 10) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v < min || v > max) {
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(v);
}

struct HealthLabels {
  HealthCheck check;
  bool any = false;
  bool kind_set = false;
};

// One mesh.health.<name> label into `h`; `fail` reports an error on that label.
template <typename Fail>
void parse_health_label(std::string_view name, const std::string& value, HealthLabels& h,
                        Fail& fail) {
  h.any = true;
  auto number = [&](std::uint32_t& out, std::uint32_t min, std::uint32_t max) {
    if (auto v = parse_u32(value, min, max)) {
      out = *v;
    } else {
      fail("must be " + std::to_string(min) + ".." + std::to_string(max));
    }
  };
  if (name == "check") {
    if (value == "tcp") {
      h.check.kind = HealthCheck::Kind::tcp;
      h.kind_set = true;
    } else if (value == "http") {
      h.check.kind = HealthCheck::Kind::http;
      h.kind_set = true;
    } else {
      fail("must be tcp or http");
    }
  } else if (name == "path") {
    if (value.empty() || value.front() != '/' ||
        value.find_first_of(" \t\r\n") != std::string::npos || value.size() > 1024) {
      fail("must be an origin-form request target starting with '/', no spaces");
    } else {
      h.check.path = value;
    }
  } else if (name == "status") {
    // "200" or "200-399"
    const auto dash = value.find('-');
    auto lo = parse_u32(std::string_view(value).substr(0, dash), 100, 599);
    auto hi = dash == std::string::npos
                  ? lo
                  : parse_u32(std::string_view(value).substr(dash + 1), 100, 599);
    if (!lo || !hi || *hi < *lo) {
      fail("must be a status (200) or a range (200-399) within 100..599");
    } else {
      h.check.status_min = static_cast<std::uint16_t>(*lo);
      h.check.status_max = static_cast<std::uint16_t>(*hi);
    }
  } else if (name == "port") {
    std::uint32_t p = 0;
    number(p, 1, 65535);
    h.check.port = static_cast<std::uint16_t>(p);
  } else if (name == "interval_ms") {
    number(h.check.interval_ms, 10, 3'600'000);
  } else if (name == "timeout_ms") {
    number(h.check.timeout_ms, 10, 3'600'000);
  } else if (name == "healthy") {
    number(h.check.healthy_threshold, 1, 100);
  } else if (name == "unhealthy") {
    number(h.check.unhealthy_threshold, 1, 100);
  } else if (name == "start_period_ms") {
    number(h.check.start_period_ms, 0, 86'400'000);
  } else {
    fail(
        "unknown mesh.health label (check, path, status, port, interval_ms, timeout_ms, "
        "healthy, unhealthy, start_period_ms)");
  }
}

}  // namespace

std::string to_string(const HostPattern& pattern) {
  return pattern.wildcard ? "*" + pattern.host : pattern.host;
}

Exposure parse_labels(const std::map<std::string, std::string>& labels,
                      const std::string& path_prefix, std::vector<StateError>& errors) {
  Exposure exposure;
  std::optional<HttpExposure> http;        // from mesh.http
  std::vector<HttpExposure> ucp;           // one per UCP label, in key order
  std::optional<std::uint16_t> http_port;  // mesh.http.port
  std::optional<std::string> http_path;    // mesh.http.path
  bool has_http_label = false;
  HealthLabels health;

  // std::map iterates keys in order, so errors come out in a stable order.
  for (const auto& [key, value] : labels) {
    const std::string path = join(path_prefix, key);
    auto fail = [&](std::string message) {
      errors.push_back(StateError{path, std::move(message)});
    };
    if (starts_with(key, kLabelUcpPrefix)) {
      HttpExposure e;
      e.source_label = key;
      if (parse_ucp(value, path, e, errors)) {
        ucp.push_back(std::move(e));
      }
      continue;
    }
    if (!starts_with(key, "mesh.")) {
      continue;  // the user's own labels
    }
    if (key == kLabelHttp) {
      has_http_label = true;
      HttpExposure e;
      e.source_label = key;
      for (std::string_view part : split(value, ',')) {
        HostPattern p;
        std::string why;
        if (parse_host_pattern(trim(part), p, why)) {
          add_host(e.hosts, std::move(p));
        } else {
          fail(why);
        }
      }
      if (!e.hosts.empty()) {
        http = std::move(e);
      }
    } else if (key == kLabelHttpPort) {
      std::uint16_t port = 0;
      if (parse_port(trim(value), port)) {
        http_port = port;
      } else {
        fail("must be 1..65535");
      }
    } else if (key == kLabelHttpPath) {
      std::string prefix;
      std::string why;
      if (parse_path_prefix(value, prefix, why)) {
        http_path = std::move(prefix);
      } else {
        fail(why);
      }
    } else if (key == kLabelSni) {
      HostPattern p;
      std::string why;
      if (parse_host_pattern(trim(value), p, why)) {
        exposure.sni = std::move(p);
      } else {
        fail(why);
      }
    } else if (key == kLabelSniPort) {
      std::uint16_t port = 0;
      if (parse_port(trim(value), port)) {
        exposure.sni_port = port;
      } else {
        fail("must be 1..65535");
      }
    } else if (key == kLabelSticky) {
      if (valid_cookie_name(value)) {
        exposure.sticky_cookie = value;
      } else {
        fail("not a valid cookie name (RFC 6265 section 4.1.1)");
      }
    } else if (key == kLabelLocality) {
      if (value == "prefer-local") {
        exposure.prefer_local = true;
      } else if (value != "any") {
        fail("must be prefer-local or any");
      }
    } else if (key == kLabelProxyProtocol) {
      if (value == "v1") {
        exposure.proxy_protocol = ProxyProtocol::v1;
      } else if (value == "v2") {
        exposure.proxy_protocol = ProxyProtocol::v2;
      } else if (value != "none") {
        fail("must be v1, v2 or none");
      }
    } else if (key == kLabelDrainGrace) {
      if (auto v = parse_u32(value, 0, 86'400'000)) {
        exposure.drain_grace_ms = *v;
      } else {
        fail("must be 0..86400000 (milliseconds)");
      }
    } else if (starts_with(key, kLabelHealthPrefix)) {
      parse_health_label(key.substr(std::string_view(kLabelHealthPrefix).size()), value, health,
                         fail);
    } else if (key == kLabelLb) {
      if (value == "round_robin") {
        exposure.lb = LbPolicy::round_robin;
      } else if (value == "least_request") {
        exposure.lb = LbPolicy::least_request;
      } else if (value == "random") {
        exposure.lb = LbPolicy::random;
      } else {
        fail("must be round_robin, least_request or random");
      }
    } else {
      fail("unknown mesh label");
    }
  }

  if (health.any) {
    if (!health.kind_set && labels.count("mesh.health.check") == 0) {
      errors.push_back(
          StateError{join(path_prefix, "mesh.health.check"),
                     "required when other mesh.health.* labels are set (tcp or http)"});
    } else if (health.kind_set) {
      exposure.health = health.check;
    }
  }

  // Checked after the loop: these labels modify mesh.http, which sorts before them but may
  // be absent.
  if (!has_http_label) {
    for (const char* key : {kLabelHttpPath, kLabelHttpPort}) {
      if (labels.count(key) != 0) {
        errors.push_back(StateError{join(path_prefix, key), "requires mesh.http"});
      }
    }
  }
  if (labels.count(kLabelSniPort) != 0 && labels.count(kLabelSni) == 0) {
    errors.push_back(StateError{join(path_prefix, kLabelSniPort), "requires mesh.sni"});
  }
  if (labels.count(kLabelSticky) != 0 && !has_http_label && ucp.empty()) {
    errors.push_back(StateError{join(path_prefix, kLabelSticky),
                                "requires mesh.http or a com.docker.ucp.mesh.http label"});
  }

  if (http) {
    if (http_port) {
      http->port = *http_port;
    }
    if (http_path) {
      http->path_prefix = *http_path;
    }
    exposure.http.push_back(std::move(*http));
  }
  for (auto& e : ucp) {
    exposure.http.push_back(std::move(e));
  }
  return exposure;
}

}  // namespace routemesh::discovery
