// Argument -> request building and answer -> text rendering for the CLI. Kept free of I/O so
// every flag error and every table is unit-tested without a server (tests/unit/cmd/).

#include "cli/cli_format.h"

#include "base/address.h"
#include "base/port_mapping.h"
#include "discovery/model/policy.h"
#include "discovery/model/state.h"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <map>
#include <utility>

namespace routemesh::cli {
namespace json = boost::json;
namespace {

constexpr std::string_view kPublishExpected =
    "expected [ADDRESS:]PUBLISHED:TARGET[/tcp|/udp] or published=P,target=T[,protocol=tcp|udp]"
    "[,mode=ingress|host][,address=IP]";

// The admin API may be named by host name (it is resolved); port 0 means nothing to a client.
constexpr base::HostPortRules kApiAddressRules{.host_names = true};

std::string flag_error(std::string_view flag, std::string_view message) {
  return std::string(flag) + ": " + std::string(message);
}

// The object under `key` when the answer wraps it ({"service":{...}}), else the answer itself.
const json::object* unwrap(const json::value& answer, std::string_view key) {
  const json::object* o = answer.if_object();
  if (o == nullptr) {
    return nullptr;
  }
  if (const json::value* inner = o->if_contains(key); inner != nullptr && inner->is_object()) {
    return &inner->get_object();
  }
  return o;
}

// The list under `key` ({"services":[...]}) or the answer itself when it is an array.
const json::array* list_of(const json::value& answer, std::string_view key) {
  if (const json::array* a = answer.if_array()) {
    return a;
  }
  if (const json::object* o = answer.if_object()) {
    if (const json::value* v = o->if_contains(key)) {
      return v->if_array();
    }
  }
  return nullptr;
}

// A scalar as table text: strings as they are, numbers in decimal, booleans yes/no, else "-".
std::string text_of(const json::value* v) {
  if (v == nullptr || v->is_null()) {
    return "-";
  }
  if (const json::string* s = v->if_string()) {
    return s->empty() ? "-" : std::string(*s);
  }
  if (v->is_uint64()) {
    return std::to_string(v->get_uint64());
  }
  if (v->is_int64()) {
    return std::to_string(v->get_int64());
  }
  if (v->is_bool()) {
    return v->get_bool() ? "yes" : "no";
  }
  if (v->is_double()) {
    return json::serialize(*v);
  }
  return "-";
}

}  // namespace

std::string field(const json::object& o, std::string_view key) {
  return text_of(o.if_contains(key));
}

std::string format_unix_time(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !(v->is_int64() || v->is_uint64())) {
    return "-";
  }
  const std::time_t t = static_cast<std::time_t>(
      v->is_int64() ? v->get_int64() : static_cast<std::int64_t>(v->get_uint64()));
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) {
    return "-";
  }
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return "-";
  }
  return buf;
}

namespace {

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) {
      out += sep;
    }
    out += parts[i];
  }
  return out;
}

std::string or_dash(std::string s) {
  return s.empty() ? "-" : s;
}

std::vector<std::string> string_list(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const json::value* v = o.if_contains(key); v != nullptr && v->is_array()) {
    for (const json::value& item : v->get_array()) {
      out.push_back(text_of(&item));
    }
  }
  return out;
}

// "8080:80/tcp" per port.
std::vector<std::string> port_list(const json::object& service) {
  std::vector<std::string> out;
  const json::value* v = service.if_contains("ports");
  if (v == nullptr || !v->is_array()) {
    return out;
  }
  for (const json::value& item : v->get_array()) {
    const json::object* p = item.if_object();
    if (p == nullptr) {
      continue;
    }
    std::string protocol = field(*p, "protocol");
    std::string text = field(*p, "published") + ":" + field(*p, "target") + "/" +
                       (protocol == "-" ? "tcp" : protocol);
    if (std::string address = field(*p, "address"); address != "-") {
      text = (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + text;
    }
    if (field(*p, "mode") == "host") {
      text += "(host)";
    }
    out.push_back(std::move(text));
  }
  return out;
}

// "k=v" per label, sorted by key (JSON object order is the server's).
std::vector<std::string> label_list(const json::object& service) {
  std::map<std::string, std::string> sorted;
  if (const json::value* v = service.if_contains("labels"); v != nullptr && v->is_object()) {
    for (const auto& kv : v->get_object()) {
      const json::string* s = kv.value().if_string();
      sorted[std::string(kv.key())] = s != nullptr ? std::string(*s) : text_of(&kv.value());
    }
  }
  std::vector<std::string> out;
  for (const auto& [k, value] : sorted) {
    out.push_back(k + "=" + value);
  }
  return out;
}

std::string unexpected(std::string_view what) {
  return "unexpected answer from the admin API: " + std::string(what);
}

json::array ports_json(const std::vector<json::object>& ports) {
  json::array out;
  for (const auto& p : ports) {
    out.push_back(p);
  }
  return out;
}

}  // namespace

// --- addresses and paths ---

Result<std::vector<std::string>> api_addresses(const std::optional<std::string>& flag,
                                               const char* env_value) {
  std::string text;
  std::string_view source = "--api";
  if (flag.has_value()) {
    text = *flag;
  } else if (env_value != nullptr && *env_value != '\0') {
    text = env_value;
    source = "ROUTEMESH_API";
  } else {
    text = std::string(kDefaultApiAddress);
  }
  auto fail = [&] {
    return Result<std::vector<std::string>>::failure(
        flag_error(source, "expected HOST:PORT[,HOST:PORT...]"));
  };
  std::vector<std::string> out;
  std::string_view rest = text;
  while (true) {
    const std::size_t comma = rest.find(',');
    std::string_view view = rest.substr(0, comma);
    while (!view.empty() && (view.front() == ' ' || view.front() == '\t')) {
      view.remove_prefix(1);
    }
    while (!view.empty() && (view.back() == ' ' || view.back() == '\t')) {
      view.remove_suffix(1);
    }
    if (view.starts_with("http://")) {
      view.remove_prefix(7);
    }
    if (view.ends_with("/")) {
      view.remove_suffix(1);
    }
    if (!base::parse_host_port(view, kApiAddressRules)) {
      return fail();
    }
    if (std::find(out.begin(), out.end(), view) == out.end()) {
      out.emplace_back(view);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::pair<std::string, std::string> split_host_port(std::string_view address) {
  auto hp = base::parse_host_port(address, kApiAddressRules);
  if (!hp) {
    return {std::string(address), ""};
  }
  return {std::move(hp->host), std::to_string(hp->port)};
}

std::string encode_path_segment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                            (u >= '0' && u <= '9') || u == '-' || u == '.' || u == '_' || u == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

// --- argument parsing ---

Result<json::object> parse_publish(std::string_view flag, std::string_view text) {
  const auto m = base::parse_port_mapping(text);
  if (!m) {
    return Result<json::object>::failure(flag_error(flag, kPublishExpected) + ", got '" +
                                         std::string(text) + "'");
  }
  json::object out{{"published", m->published}, {"target", m->target}, {"protocol", m->protocol}};
  if (m->mode != "ingress") {
    out["mode"] = m->mode;
  }
  if (!m->address.empty()) {
    out["address"] = m->address;
  }
  return out;
}

Result<std::pair<std::string, std::string>> parse_label(std::string_view flag,
                                                        std::string_view text) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Result<std::pair<std::string, std::string>>::failure(
        flag_error(flag, "expected KEY=VALUE") + ", got '" + std::string(text) + "'");
  }
  return std::pair<std::string, std::string>{std::string(text.substr(0, eq)),
                                             std::string(text.substr(eq + 1))};
}

Result<std::int64_t> parse_duration_s(std::string_view flag, std::string_view text,
                                      std::int64_t max_s) {
  auto fail = [&] {
    return Result<std::int64_t>::failure(
        flag_error(flag, "expected a duration such as 90, 90s, 30m, 24h or 7d, at most " +
                             std::to_string(max_s) + " s") +
        ", got '" + std::string(text) + "'");
  };
  std::int64_t unit = 1;
  std::string_view digits = text;
  if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        unit = 0;
        break;
    }
    if (unit != 0) {
      digits.remove_suffix(1);
    } else {
      unit = 1;
    }
  }
  if (digits.empty() || digits.size() > 12) {
    return fail();
  }
  std::int64_t n = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') {
      return fail();
    }
    n = n * 10 + (c - '0');
  }
  if (n > max_s / unit) {
    return fail();
  }
  return n * unit;
}

// --- requests ---

std::string idempotency_key(std::uint64_t high, std::uint64_t low) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key(32, '0');
  for (int i = 0; i < 16; ++i) {
    key[static_cast<std::size_t>(15 - i)] = kHex[(high >> (4 * i)) & 0xf];
    key[static_cast<std::size_t>(31 - i)] = kHex[(low >> (4 * i)) & 0xf];
  }
  return key;
}

bool retry_status(unsigned status) {
  return status == 503;
}

ApiRequest get_request(std::string target) {
  return {"GET", std::move(target), ""};
}

std::string read_target(std::string target, bool stale) {
  if (!stale) {
    return target;
  }
  target += target.find('?') == std::string::npos ? "?stale=true" : "&stale=true";
  return target;
}

Result<ApiRequest> service_create_request(const ServiceCreateArgs& args) {
  if (args.name.empty()) {
    return Result<ApiRequest>::failure("--name: required");
  }
  json::object labels;
  for (const auto& text : args.labels) {
    auto kv = parse_label("--label", text);
    if (!kv) {
      return Result<ApiRequest>::failure(kv.error());
    }
    labels[kv.value().first] = kv.value().second;
  }
  std::vector<json::object> ports;
  for (const auto& text : args.publish) {
    auto p = parse_publish("--publish", text);
    if (!p) {
      return Result<ApiRequest>::failure(p.error());
    }
    ports.push_back(std::move(p.value()));
  }
  if (!args.mode.empty() && args.mode != "vip" && args.mode != "dnsrr") {
    return Result<ApiRequest>::failure("--mode: expected vip or dnsrr");
  }
  json::object spec;
  spec["name"] = args.name;
  spec["labels"] = std::move(labels);
  json::array networks;
  for (const auto& n : args.networks) {
    if (n.empty()) {
      return Result<ApiRequest>::failure("--network: expected a network name");
    }
    networks.push_back(json::string(n));
  }
  spec["networks"] = std::move(networks);
  spec["ports"] = ports_json(ports);
  if (!args.mode.empty()) {
    spec["endpoint_mode"] = args.mode;
  }
  return ApiRequest{"POST", "/v1/services", json::serialize(spec)};
}

bool has_update_flags(const ServiceUpdateArgs& args) {
  return !args.label_add.empty() || !args.label_rm.empty() || !args.publish_add.empty() ||
         !args.publish_rm.empty() || !args.network_add.empty() || !args.network_rm.empty() ||
         !args.mode.empty();
}

namespace {

// --publish-rm takes the published port ("8080"), optionally with the protocol or the whole
// mapping as given to --publish ("8080/tcp", "8080:80"). `out` is left alone on failure.
bool parse_published_port(std::string_view text, std::uint16_t& out) {
  if (text.find(':') != std::string_view::npos) {
    const auto m = base::parse_port_mapping(text);
    if (m) {
      out = m->published;
    }
    return m.has_value();
  }
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    if (text.substr(slash + 1) != "tcp") {
      return false;
    }
    text = text.substr(0, slash);
  }
  const auto port = base::parse_port(text);
  if (!port || *port == 0) {
    return false;
  }
  out = *port;
  return true;
}

}  // namespace

std::optional<std::string> check_update_flags(const ServiceUpdateArgs& args) {
  if (!has_update_flags(args)) {
    return std::string(
        "nothing to update: give --label-add, --label-rm, --publish-add, --publish-rm, "
        "--network-add, --network-rm or --mode");
  }
  for (const auto& text : args.label_add) {
    if (auto kv = parse_label("--label-add", text); !kv) {
      return kv.error();
    }
  }
  for (const auto& key : args.label_rm) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return "--label-rm: expected KEY, got '" + key + "'";
    }
  }
  for (const auto& text : args.publish_add) {
    if (auto p = parse_publish("--publish-add", text); !p) {
      return p.error();
    }
  }
  for (const auto& text : args.publish_rm) {
    std::uint16_t port = 0;
    if (!parse_published_port(text, port)) {
      return "--publish-rm: expected PUBLISHED (a port 1..65535), got '" + text + "'";
    }
  }
  for (const auto& n : args.network_add) {
    if (n.empty()) {
      return std::string("--network-add: expected a network name");
    }
  }
  for (const auto& n : args.network_rm) {
    if (n.empty()) {
      return std::string("--network-rm: expected a network name");
    }
  }
  if (!args.mode.empty() && args.mode != "vip" && args.mode != "dnsrr") {
    return std::string("--mode: expected vip or dnsrr");
  }
  return std::nullopt;
}

Result<ApiRequest> service_update_request(std::string_view name, const json::value& current,
                                          const ServiceUpdateArgs& args) {
  if (auto error = check_update_flags(args)) {
    return Result<ApiRequest>::failure(*error);
  }
  const json::object* found = unwrap(current, "service");
  if (found == nullptr || !found->contains("name")) {
    return Result<ApiRequest>::failure(unexpected("no service object"));
  }
  json::object spec = *found;
  spec.erase("vips");

  // Labels: removals, then additions.
  json::object labels;
  if (const json::value* v = spec.if_contains("labels"); v != nullptr && v->is_object()) {
    labels = v->get_object();
  }
  for (const auto& key : args.label_rm) {
    labels.erase(key);
  }
  for (const auto& text : args.label_add) {
    auto kv = parse_label("--label-add", text);
    labels[kv.value().first] = kv.value().second;
  }
  spec["labels"] = std::move(labels);

  // Ports, keyed by the published port (one service owns a published port).
  std::vector<json::object> ports;
  if (const json::value* v = spec.if_contains("ports"); v != nullptr && v->is_array()) {
    for (const json::value& p : v->get_array()) {
      if (p.is_object()) {
        ports.push_back(p.get_object());
      }
    }
  }
  auto published_of = [](const json::object& p) -> std::int64_t {
    const json::value* v = p.if_contains("published");
    if (v == nullptr) {
      return -1;
    }
    if (v->is_uint64()) {
      return static_cast<std::int64_t>(v->get_uint64());
    }
    return v->is_int64() ? v->get_int64() : -1;
  };
  for (const auto& text : args.publish_rm) {
    std::uint16_t port = 0;
    parse_published_port(text, port);
    std::erase_if(ports, [&](const json::object& p) { return published_of(p) == port; });
  }
  for (const auto& text : args.publish_add) {
    auto p = parse_publish("--publish-add", text);
    const std::int64_t published = published_of(p.value());
    std::erase_if(ports, [&](const json::object& q) { return published_of(q) == published; });
    ports.push_back(std::move(p.value()));
  }
  spec["ports"] = ports_json(ports);

  // Networks keep their order; additions go last, duplicates are ignored.
  std::vector<std::string> networks;
  if (const json::value* v = spec.if_contains("networks"); v != nullptr && v->is_array()) {
    for (const json::value& n : v->get_array()) {
      if (const json::string* s = n.if_string()) {
        networks.emplace_back(*s);
      }
    }
  }
  for (const auto& n : args.network_rm) {
    std::erase(networks, n);
  }
  for (const auto& n : args.network_add) {
    if (std::find(networks.begin(), networks.end(), n) == networks.end()) {
      networks.push_back(n);
    }
  }
  json::array network_array;
  for (const auto& n : networks) {
    network_array.push_back(json::string(n));
  }
  spec["networks"] = std::move(network_array);

  if (!args.mode.empty()) {
    spec["endpoint_mode"] = args.mode;
  }
  return ApiRequest{"PUT", "/v1/services/" + encode_path_segment(name), json::serialize(spec)};
}

Result<ApiRequest> network_create_request(const NetworkCreateArgs& args) {
  if (args.name.empty()) {
    return Result<ApiRequest>::failure("NAME: required (network create NAME [--subnet CIDR])");
  }
  json::object spec;
  spec["name"] = args.name;
  if (!args.subnet.empty()) {
    if (!base::parse_ipv4_cidr(args.subnet)) {
      return Result<ApiRequest>::failure(
          "--subnet: expected an IPv4 CIDR without host bits, e.g. 10.20.0.0/24, got '" +
          args.subnet + "'");
    }
    spec["subnet"] = args.subnet;
  }
  return ApiRequest{"POST", "/v1/networks", json::serialize(spec)};
}

Result<ApiRequest> task_add_request(const TaskAddArgs& args) {
  if (args.service.empty()) {
    return Result<ApiRequest>::failure("--service: required");
  }
  if (args.addr.empty()) {
    return Result<ApiRequest>::failure("--addr: required (IP:PORT)");
  }
  if (!base::parse_host_port(args.addr)) {
    return Result<ApiRequest>::failure("--addr: expected IP:PORT, got '" + args.addr + "'");
  }
  json::object body;
  body["service"] = args.service;
  if (!args.node.empty()) {
    body["node"] = args.node;
  }
  body["address"] = args.addr;
  return ApiRequest{"POST", "/v1/tasks", json::serialize(body)};
}

Result<ApiRequest> policy_add_request(const PolicyAddArgs& args) {
  using R = Result<ApiRequest>;
  if (args.from.empty()) {
    return R::failure("--from: required (network:NAME, service:NAME or cidr:CIDR)");
  }
  if (!discovery::parse_policy_peer(args.from)) {
    return R::failure("--from: expected network:NAME, service:NAME or cidr:CIDR, got '" +
                      args.from + "'");
  }
  if (args.to.empty()) {
    return R::failure("--to: required (service:NAME)");
  }
  const auto to = discovery::parse_policy_peer(args.to);
  if (!to || to->kind != discovery::PolicyPeerKind::service) {
    return R::failure("--to: expected service:NAME, got '" + args.to + "'");
  }
  if (args.allow == args.deny) {
    return R::failure("--allow/--deny: give exactly one");
  }
  json::object body;
  body["from"] = args.from;
  body["to"] = args.to;
  if (!args.port.empty()) {
    const auto port = base::parse_port(args.port);
    if (!port || *port == 0) {
      return R::failure("--port: expected 1..65535, got '" + args.port + "'");
    }
    body["port"] = *port;
  }
  body["action"] = args.allow ? "allow" : "deny";
  if (!args.priority.empty()) {
    const bool digits =
        args.priority.size() <= 7 && std::all_of(args.priority.begin(), args.priority.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoul(args.priority) > discovery::kMaxPolicyPriority) {
      return R::failure("--priority: expected 0.." + std::to_string(discovery::kMaxPolicyPriority) +
                        ", got '" + args.priority + "'");
    }
    body["priority"] = std::stoul(args.priority);
  }
  return ApiRequest{"POST", "/v1/policies", json::serialize(body)};
}

ApiRequest delete_request(std::string_view collection, std::string_view id) {
  return {"DELETE", "/v1/" + std::string(collection) + "/" + encode_path_segment(id), ""};
}

ApiRequest task_health_request(std::string_view id, std::string_view health) {
  return {"PUT", "/v1/tasks/" + encode_path_segment(id),
          boost::json::serialize(boost::json::object{{"health", health}})};
}

ApiRequest node_action_request(std::string_view id, std::string_view action) {
  return {"POST", "/v1/nodes/" + encode_path_segment(id) + "/" + std::string(action), ""};
}

bool looks_like_node_id(std::string_view text) {
  return text.size() == 16 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Result<std::string> resolve_node_id(const json::value& nodes_answer, std::string_view arg) {
  const json::array* nodes = list_of(nodes_answer, "nodes");
  if (nodes == nullptr) {
    return Result<std::string>::failure(unexpected("no \"nodes\" list"));
  }
  for (const json::value& item : *nodes) {
    const json::object* n = item.if_object();
    if (n == nullptr) {
      continue;
    }
    const json::value* name = n->if_contains("name");
    const json::value* id = n->if_contains("id");
    if (id == nullptr || !id->is_string()) {
      continue;
    }
    if (id->get_string() == arg ||
        (name != nullptr && name->is_string() && name->get_string() == arg)) {
      return std::string(id->get_string());
    }
  }
  return Result<std::string>::failure("no such node: " + std::string(arg));
}

// --- rendering ---

std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(headers.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(headers);
  for (const auto& row : rows) {
    measure(row);
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string text;
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      text += cell;
      if (i + 1 < widths.size()) {
        text.append(widths[i] - cell.size() + 3, ' ');
      }
    }
    // A trailing empty cell must not leave trailing spaces.
    while (!text.empty() && text.back() == ' ') {
      text.pop_back();
    }
    out += text;
    out += '\n';
  };
  line(headers);
  for (const auto& row : rows) {
    line(row);
  }
  return out;
}

Result<std::string> render_services(const json::value& answer) {
  const json::array* services = list_of(answer, "services");
  if (services == nullptr) {
    return Result<std::string>::failure(unexpected("no \"services\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *services) {
    const json::object* s = item.if_object();
    if (s == nullptr) {
      continue;
    }
    rows.push_back({field(*s, "name"), field(*s, "endpoint_mode"),
                    or_dash(join(string_list(*s, "networks"), ",")),
                    or_dash(join(port_list(*s), ",")), or_dash(join(label_list(*s), ",")),
                    field(*s, "version")});
  }
  std::sort(rows.begin(), rows.end());
  return render_table({"NAME", "MODE", "NETWORKS", "PUBLISHED", "LABELS", "VERSION"}, rows);
}

Result<std::string> render_service(const json::value& answer) {
  const json::object* s = unwrap(answer, "service");
  if (s == nullptr || !s->contains("name")) {
    return Result<std::string>::failure(unexpected("no service object"));
  }
  std::string out;
  out += "Name:      " + field(*s, "name") + "\n";
  out += "Mode:      " + field(*s, "endpoint_mode") + "\n";
  out += "Version:   " + field(*s, "version") + "\n";
  std::map<std::string, std::string> vips;
  if (const json::value* v = s->if_contains("vips"); v != nullptr && v->is_object()) {
    for (const auto& kv : v->get_object()) {
      vips[std::string(kv.key())] = text_of(&kv.value());
    }
  }
  const auto networks = string_list(*s, "networks");
  out += "Networks:";
  if (networks.empty()) {
    out += "  -\n";
  } else {
    out += "\n";
    for (const auto& n : networks) {
      auto vip = vips.find(n);
      out += "  " + n + (vip != vips.end() ? "  VIP " + vip->second : "") + "\n";
    }
  }
  // VIPs on networks not listed (the built-in ingress network of a service without networks).
  for (const auto& [network, vip] : vips) {
    if (std::find(networks.begin(), networks.end(), network) == networks.end()) {
      out += "  " + network + "  VIP " + vip + "\n";
    }
  }
  const auto ports = port_list(*s);
  out += "Ports:";
  out += ports.empty() ? "     -\n" : "\n";
  for (const auto& p : ports) {
    out += "  " + p + "\n";
  }
  const auto labels = label_list(*s);
  out += "Labels:";
  out += labels.empty() ? "    -\n" : "\n";
  for (const auto& l : labels) {
    out += "  " + l + "\n";
  }
  return out;
}

Result<std::string> render_networks(const json::value& answer) {
  const json::array* networks = list_of(answer, "networks");
  if (networks == nullptr) {
    return Result<std::string>::failure(unexpected("no \"networks\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *networks) {
    if (const json::object* n = item.if_object()) {
      // The DNS address is not stored: it is always the subnet's second address.
      const std::string subnet = field(*n, "subnet");
      rows.push_back({field(*n, "name"), subnet, field(*n, "gateway"),
                      discovery::dns_address_of(subnet).value_or("-"), field(*n, "builtin"),
                      field(*n, "version")});
    }
  }
  std::sort(rows.begin(), rows.end());
  return render_table({"NAME", "SUBNET", "GATEWAY", "DNS", "BUILTIN", "VERSION"}, rows);
}

Result<std::string> render_policies(const json::value& answer) {
  const json::array* policies = list_of(answer, "policies");
  if (policies == nullptr) {
    return Result<std::string>::failure(unexpected("no \"policies\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *policies) {
    if (const json::object* p = item.if_object()) {
      const std::string port = field(*p, "port");
      rows.push_back({field(*p, "to"), field(*p, "from"), field(*p, "id"), port == "0" ? "*" : port,
                      field(*p, "action"), field(*p, "priority"), field(*p, "version")});
    }
  }
  std::sort(rows.begin(), rows.end());
  for (auto& row : rows) {  // sorted by TO, FROM; shown as ID FROM TO ...
    std::swap(row[0], row[2]);
  }
  return render_table({"ID", "FROM", "TO", "PORT", "ACTION", "PRIORITY", "VERSION"}, rows);
}

Result<std::string> render_revoked(const json::value& answer) {
  const json::array* revoked = list_of(answer, "revoked");
  if (revoked == nullptr) {
    return Result<std::string>::failure(unexpected("no \"revoked\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *revoked) {
    if (const json::object* r = item.if_object()) {
      const std::string name = field(*r, "name");
      rows.push_back({field(*r, "serial"), name.empty() ? "-" : name, format_unix_time(*r, "at")});
    }
  }
  std::sort(rows.begin(), rows.end());
  return render_table({"SERIAL", "NAME", "REVOKED"}, rows);
}

Result<std::string> render_crl(const json::value& answer) {
  const json::object* o = answer.if_object();
  const json::value* crl = o != nullptr ? o->if_contains("crl") : nullptr;
  if (crl == nullptr || !crl->is_string() ||
      !crl->get_string().starts_with("-----BEGIN X509 CRL-----")) {
    return Result<std::string>::failure(unexpected("no \"crl\" in PEM"));
  }
  std::string text(crl->get_string());
  if (text.ends_with('\n')) {
    text.pop_back();  // the caller ends the output with a newline
  }
  return text;
}

Result<std::string> render_ingress_certs(const json::value& answer) {
  const json::array* certs = list_of(answer, "certs");
  if (certs == nullptr) {
    return Result<std::string>::failure(unexpected("no \"certs\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *certs) {
    if (const json::object* c = item.if_object()) {
      rows.push_back({field(*c, "host"), format_unix_time(*c, "not_after"), field(*c, "digest"),
                      field(*c, "version")});
    }
  }
  std::sort(rows.begin(), rows.end());
  return render_table({"HOST", "EXPIRES", "SHA256", "VERSION"}, rows);
}

Result<std::string> render_tasks(const json::value& answer) {
  const json::array* tasks = list_of(answer, "tasks");
  if (tasks == nullptr) {
    return Result<std::string>::failure(unexpected("no \"tasks\" list"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *tasks) {
    const json::object* t = item.if_object();
    if (t == nullptr) {
      continue;
    }
    // The store keeps address and port apart; port 0 means "the service's target port".
    std::string address = field(*t, "address");
    const std::string port = field(*t, "port");
    if (address != "-" && port != "-" && port != "0" && address.find(':') == std::string::npos) {
      address += ":" + port;
    } else if (address != "-" && port != "-" && port != "0") {
      address = "[" + address + "]:" + port;
    }
    rows.push_back(
        {field(*t, "id"), field(*t, "service"), field(*t, "node"), address, field(*t, "health")});
  }
  // By service, then id: a service's tasks stay together.
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::tie(a[1], a[0]) < std::tie(b[1], b[0]);
  });
  return render_table({"ID", "SERVICE", "NODE", "ADDRESS", "HEALTH"}, rows);
}

Result<std::string> render_nodes(const json::value& answer, const json::value* cluster) {
  const json::array* nodes = list_of(answer, "nodes");
  if (nodes == nullptr) {
    return Result<std::string>::failure(unexpected("no \"nodes\" list"));
  }
  // Voter and leader facts come from the node itself when the API puts them there, else from
  // GET /v1/cluster (Raft membership).
  std::map<std::string, bool> voters;
  std::string leader_id;
  bool have_cluster = false;
  if (cluster != nullptr && cluster->is_object()) {
    const json::object& c = cluster->get_object();
    have_cluster = true;
    if (const json::value* l = c.if_contains("leader"); l != nullptr && l->is_object()) {
      if (const json::value* id = l->get_object().if_contains("id");
          id != nullptr && id->is_string()) {
        leader_id = std::string(id->get_string());
      }
    }
    if (const json::value* m = c.if_contains("members"); m != nullptr && m->is_array()) {
      for (const json::value& item : m->get_array()) {
        const json::object* o = item.if_object();
        if (o == nullptr) {
          continue;
        }
        const json::value* id = o->if_contains("id");
        const json::value* voter = o->if_contains("voter");
        if (id != nullptr && id->is_string()) {
          voters[std::string(id->get_string())] =
              voter != nullptr && voter->is_bool() && voter->get_bool();
        }
      }
    }
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : *nodes) {
    const json::object* n = item.if_object();
    if (n == nullptr) {
      continue;
    }
    const std::string id = field(*n, "id");
    std::string voter = "-";
    std::string leader = "-";
    if (n->contains("voter")) {
      voter = field(*n, "voter");
    } else if (have_cluster) {
      auto it = voters.find(id);
      voter = it != voters.end() && it->second ? "yes" : "no";
    }
    if (n->contains("leader")) {
      leader = field(*n, "leader");
    } else if (have_cluster) {
      leader = id == leader_id ? "yes" : "no";
    }
    const std::string api = n->contains("api") ? field(*n, "api") : field(*n, "address");
    rows.push_back({id, field(*n, "name"), field(*n, "role"), field(*n, "status"), voter, leader,
                    api, field(*n, "peer")});
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::tie(a[1], a[0]) < std::tie(b[1], b[0]);
  });
  return render_table({"ID", "NAME", "ROLE", "STATUS", "VOTER", "LEADER", "API", "PEER"}, rows);
}

Result<std::string> render_autolock(const json::value& answer, bool off_is_error) {
  const json::object* o = answer.if_object();
  const json::value* enabled = o == nullptr ? nullptr : o->if_contains("enabled");
  if (enabled == nullptr || !enabled->is_bool()) {
    return Result<std::string>::failure(unexpected("no enabled"));
  }
  if (!enabled->get_bool()) {
    if (off_is_error) {
      return Result<std::string>::failure(
          "autolock is off: there is no unlock key (`cluster autolock enable`)");
    }
    return std::string("autolock is off: managers keep their keys in clear");
  }
  const json::value* key = o->if_contains("unlock_key");
  if (key == nullptr || !key->is_string()) {
    return Result<std::string>::failure(unexpected("no unlock_key"));
  }
  return "autolock is on. The unlock key:\n\n    " + std::string(key->get_string()) +
         "\n\nKeep it safe: a manager started from now on needs it (routemesh node "
         "--unlock-key-file FILE, or ROUTEMESH_UNLOCK_KEY).";
}

Result<std::string> render_cluster(const json::value& answer) {
  const json::object* c = answer.if_object();
  if (c == nullptr) {
    return Result<std::string>::failure(unexpected("not an object"));
  }
  std::string leader = "none";
  if (const json::value* l = c->if_contains("leader"); l != nullptr && l->is_object()) {
    const json::object& lo = l->get_object();
    const std::string name = field(lo, "name");
    const std::string id = field(lo, "id");
    if (id != "-" || name != "-") {
      leader = name + " (" + id + ")";
    }
  }
  std::string out;
  out += "Cluster:   " + field(*c, "id") + "\n";
  out += "Leader:    " + leader + "\n";
  out += "Term:      " + field(*c, "term") + "\n";
  out += "Commit:    " + field(*c, "commit") + "\n";
  out += "Applied:   " + field(*c, "applied") + "\n";
  out += "Revision:  " + field(*c, "revision") + "\n";
  std::vector<std::vector<std::string>> rows;
  if (const json::value* m = c->if_contains("members"); m != nullptr && m->is_array()) {
    for (const json::value& item : m->get_array()) {
      if (const json::object* o = item.if_object()) {
        rows.push_back({field(*o, "id"), field(*o, "name"), field(*o, "role"), field(*o, "voter"),
                        field(*o, "status"), field(*o, "api"), field(*o, "peer")});
      }
    }
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::tie(a[1], a[0]) < std::tie(b[1], b[0]);
  });
  out += "Members:   " + std::to_string(rows.size()) + "\n\n";
  out += render_table({"ID", "NAME", "ROLE", "VOTER", "STATUS", "API", "PEER"}, rows);
  return out;
}

std::string written_object_id(const json::value& answer, std::string_view kind,
                              std::string_view fallback) {
  if (const json::object* o = answer.if_object()) {
    if (const json::value* inner = o->if_contains(kind); inner != nullptr && inner->is_object()) {
      const json::object& obj = inner->get_object();
      for (std::string_view key : {"id", "serial", "host", "name"}) {
        if (const json::value* v = obj.if_contains(key); v != nullptr && v->is_string()) {
          return std::string(v->get_string());
        }
      }
    }
  }
  return std::string(fallback);
}

namespace {

const json::object* error_object(std::string_view body, json::value& storage) {
  boost::system::error_code ec;
  storage = json::parse(body, ec);
  if (ec) {
    return nullptr;
  }
  const json::object* o = storage.if_object();
  if (o == nullptr) {
    return nullptr;
  }
  const json::value* e = o->if_contains("error");
  return e != nullptr ? e->if_object() : nullptr;
}

}  // namespace

std::string format_api_error(unsigned status, std::string_view body) {
  json::value storage;
  if (const json::object* e = error_object(body, storage)) {
    std::string message = field(*e, "message");
    if (message == "-") {
      message = field(*e, "code");
    }
    const json::value* f = e->if_contains("field");
    if (f != nullptr && f->is_string() && !f->get_string().empty()) {
      message += " (field: " + std::string(f->get_string()) + ")";
    }
    return message;
  }
  std::string_view first_line = body.substr(0, body.find('\n'));
  if (first_line.size() > 200) {
    first_line = first_line.substr(0, 200);
  }
  std::string out = "HTTP " + std::to_string(status);
  if (!first_line.empty()) {
    out += ": " + std::string(first_line);
  }
  return out;
}

std::string api_error_code(std::string_view body) {
  json::value storage;
  if (const json::object* e = error_object(body, storage)) {
    if (const json::value* c = e->if_contains("code"); c != nullptr && c->is_string()) {
      return std::string(c->get_string());
    }
  }
  return "";
}

}  // namespace routemesh::cli
