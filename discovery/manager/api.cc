#include "discovery/manager/api.h"

#include "base/address.h"
#include "base/http_client.h"
#include "base/metrics.h"
#include "base/spawn.h"
#include "discovery/manager/access.h"
#include "discovery/manager/request.h"
#include "discovery/model/join.h"
#include "discovery/model/state.h"
#include "discovery/raft/identity.h"
#include "discovery/store/commands.h"
#include "discovery/store/state_json.h"
#include "discovery/store/state_machine.h"
#include "tls/ingress.h"
#include "tls/token.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <ctime>
#include <exception>
#include <limits>
#include <random>
#include <utility>

namespace routemesh::discovery::manager {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using admin::Request;
using admin::Response;
using raft::node_errc;

// Why a leader cannot sign: the state's key is sealed with a manager key this node lacks (it
// has not seen the state since it was promoted), or an external CA's key is not in its files.
constexpr const char* kNoCaKey =
    "this leader holds no CA key (with an external CA, put the key in data_dir/tls/ca-key.pem "
    "of the managers that should sign)";

// An HTTPS certificate's key as the watch stream sends it: opened with the secrets key when
// the state holds it sealed. One that does not open (this manager has not adopted the current
// manager key yet) goes as it is; the node then leaves the certificate out, logged and counted,
// until the next state.
void open_ingress_key(json::value* cert, std::string_view secrets_key) {
  json::value* key =
      cert != nullptr && cert->is_object() ? cert->as_object().if_contains("key") : nullptr;
  if (key == nullptr || !key->is_string() || !tls::is_sealed_key(key->get_string())) {
    return;
  }
  if (auto opened = tls::unseal_key(key->get_string(), secrets_key)) {
    *key = std::move(*opened);
  }
}

// What the watch stream sends of a state or a command: all of it but the CA record's wrapped
// manager, unlock and secrets keys, which only managers use (they read the state from Raft),
// with the HTTPS certificates' keys opened (`secrets_key`, "" = none) for the nodes that serve
// them.
void for_subscribers(json::object& state_or_command, std::string_view secrets_key) {
  if (auto* ca = state_or_command.if_contains("ca"); ca != nullptr && ca->is_object()) {
    ca->as_object().erase("manager_key_wrapped");
    ca->as_object().erase("unlock_key_wrapped");
    ca->as_object().erase("secrets_key_wrapped");
  }
  if (secrets_key.empty()) {
    return;
  }
  open_ingress_key(state_or_command.if_contains("cert"), secrets_key);  // ingress.cert.set
  if (auto* certs = state_or_command.if_contains("ingress_certs");
      certs != nullptr && certs->is_array()) {
    for (auto& cert : certs->as_array()) {
      open_ingress_key(&cert, secrets_key);
    }
  }
}

// Whether for_subscribers may change `command`: it carries a CA record or an ingress
// certificate (whatever the secrets key, so that the answer does not depend on it).
bool subscriber_view_differs(const json::object& command) {
  return command.contains("ca") || command.contains("cert") || command.contains("ingress_certs");
}

// A new CA record of a root rotation keeps the manager key's fields, autolock's and the secrets
// key as they were.
void keep_manager_keys(ClusterCa& next, const ClusterCa& current) {
  next.manager_key_id = current.manager_key_id;
  next.manager_key_wrapped = current.manager_key_wrapped;
  next.unlock_key_wrapped = current.unlock_key_wrapped;
  next.secrets_key_wrapped = current.secrets_key_wrapped;
}

Response json_response(unsigned status, const json::value& value) {
  std::string body = json::serialize(value);
  body += '\n';
  return Response{status, "application/json", std::move(body)};
}

Response error_response(const ApiError& error) {
  return Response{error.status, "application/json", error_body(error)};
}

Response unavailable(std::string message) {
  return error_response(ApiError{503, "unavailable", std::move(message), ""});
}

Response not_allowed(const Request& req, const char* allow) {
  Response r = error_response(
      ApiError{405, "method_not_allowed",
               req.method + " not allowed on " + req.path + " (allowed: " + allow + ")", ""});
  return r;
}

Response not_found(const std::string& what) {
  return error_response(ApiError{404, "not_found", what, ""});
}

// Why Raft did not apply a write, as the API reports it (503: the client may retry).
Response raft_failure(const raft::NodeError& e) {
  switch (e.code) {
    case node_errc::timeout:
      return unavailable("the write was not committed within 5 s (no quorum?); it may still apply");
    case node_errc::not_leader:
      return unavailable("leadership changed during the write; retry");
    case node_errc::busy:
      return unavailable("a membership change or leadership transfer is in progress; retry");
    case node_errc::stopped:
      return unavailable("this node is shutting down");
    case node_errc::invalid_argument:
      return error_response(ApiError{409, "conflict", e.message(), ""});
  }
  return unavailable(e.message());
}

// Why a linearizable read could not be answered (503: the client may retry, or read this
// node's copy with ?stale=true).
Response read_failure(const raft::NodeError& e) {
  switch (e.code) {
    case node_errc::timeout:
      return unavailable(
          "no quorum confirmed the leader within 5 s; not answering from a copy that may be old "
          "(?stale=true reads it)");
    case node_errc::not_leader:
      return unavailable("leadership changed during the read; retry");
    case node_errc::stopped:
      return unavailable("this node is shutting down");
    case node_errc::busy:
    case node_errc::invalid_argument:
      break;
  }
  return unavailable(e.message());
}

std::optional<raft::NodeId> raft_id(const std::string& node_id) {
  return raft::parse_node_id(node_id);
}

std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

// The host part of an "IP:PORT" (for a certificate's IP SANs); "" when it is not one.
std::string ip_of(const std::string& address) {
  auto hp = base::parse_host_port(address);
  return hp && base::is_ip_literal(hp->host) ? hp->host : std::string{};
}

class ApiImpl final : public Api {
 public:
  ApiImpl(asio::any_io_executor executor, store::Store& store, ApiOptions options)
      : executor_(std::move(executor)),
        store_(store),
        options_(std::move(options)),
        rng_(std::random_device{}()),
        reconcile_timer_(executor_),
        forward_client_(executor_, options_.client_tls) {
    if (!options_.ca_pem.empty()) {
      auto digest = tls::certificate_digest(options_.ca_pem);
      ca_digest_ = digest ? *digest : std::string{};
    }
    ca_ = options_.ca;
    manager_key_ = options_.manager_key;
    if (options_.registry != nullptr) {
      join_refusals_ = &base::counter_family(
          *options_.registry, "routemesh_cluster_join_refusals_total",
          "Join requests this manager refused, by reason (malformed_token, ca_mismatch, "
          "bad_secret, bad_csr).");
    }
  }

  ~ApiImpl() override { stop(); }

  void register_handlers(admin::AdminServer& server) override {
    auto add = [&](const char* path, Handler handler) {
      server.handle_async(path,
                          [this, handler](Request r) { return checked(std::move(r), handler); });
    };
    auto add_prefix = [&](const char* prefix, Handler handler) {
      server.handle_prefix(prefix,
                           [this, handler](Request r) { return checked(std::move(r), handler); });
    };
    add("/v1/cluster", &ApiImpl::cluster);
    add("/v1/services", &ApiImpl::services);
    add_prefix("/v1/services/", &ApiImpl::service);
    add("/v1/networks", &ApiImpl::networks);
    add_prefix("/v1/networks/", &ApiImpl::network);
    add("/v1/tasks", &ApiImpl::tasks);
    add_prefix("/v1/tasks/", &ApiImpl::task);
    add("/v1/nodes", &ApiImpl::nodes);
    add("/v1/nodes/join", &ApiImpl::join);
    add_prefix("/v1/nodes/", &ApiImpl::node);
    add("/v1/ca", &ApiImpl::ca);
    add("/v1/ca/rotate", &ApiImpl::rotate_ca);
    add("/v1/certs", &ApiImpl::certs);
    add("/v1/certs/renew", &ApiImpl::renew_certificate);
    add("/v1/certs/revoke", &ApiImpl::revoke_certificate);
    add("/v1/certs/revoked", &ApiImpl::revoked_certificates);
    add("/v1/certs/crl", &ApiImpl::revocation_list);
    add("/v1/ingress/certs", &ApiImpl::ingress_certs);
    add_prefix("/v1/ingress/certs/", &ApiImpl::ingress_cert);
    add_prefix("/v1/cluster/tokens/", &ApiImpl::tokens);
    add("/v1/cluster/manager-key/rotate", &ApiImpl::rotate_manager_key);
    add("/v1/cluster/autolock", &ApiImpl::autolock);
    add("/v1/cluster/autolock/rotate", &ApiImpl::rotate_unlock_key);
    add("/v1/policies", &ApiImpl::policies);
    add_prefix("/v1/policies/", &ApiImpl::policy);
    server.handle_stream(
        "/v1/watch", [this](Request r, admin::ChunkWriter& w) { return watch(std::move(r), w); });
    // A joining node has no certificate yet: it fetches the CA it pins and sends its token.
    server.allow_anonymous("/v1/ca");
    server.allow_anonymous("/v1/nodes/join");
  }

  void start() override {
    stopped_ = false;
    asio::co_spawn(executor_, reconcile_loop(), base::log_and_count("api: membership reconciler"));
  }

  void stop() override {
    stopped_ = true;
    reconcile_timer_.cancel();
  }

 private:
  using Handler = asio::awaitable<Response> (ApiImpl::*)(Request);

  const ClusterState& state() const { return store_.state(); }

  // The caller of a request (access.h); errors are 403s.
  std::variant<Caller, ApiError> resolve(const Request& req) const {
    return resolve_caller(req.caller, req.headers, state(), options_.cluster_id);
  }

  // The caller of a request that checked() let through.
  Caller caller_of(const Request& req) const {
    auto c = resolve(req);
    auto* caller = std::get_if<Caller>(&c);
    return caller == nullptr ? Caller{} : *caller;
  }

  // Who is calling and whether they may: a refusal, or nullopt.
  std::optional<Response> refuse_unauthorized(const Request& req) const {
    auto c = resolve(req);
    if (auto* e = std::get_if<ApiError>(&c)) {
      return error_response(*e);
    }
    if (auto denied = authorize(std::get<Caller>(c), req.method, req.path)) {
      return error_response(*denied);
    }
    return std::nullopt;
  }

  // Every request passes here first: the caller must be allowed to make it (access.h), and a
  // write with a malformed Idempotency-Key is refused before anything else (reads ignore the
  // header).
  asio::awaitable<Response> checked(Request req, Handler handler) {
    if (auto refusal = refuse_unauthorized(req)) {
      co_return std::move(*refusal);
    }
    if (req.method != "GET" && req.method != "HEAD") {
      auto key = request_key(req.headers, req.method, req.target, req.body);
      if (auto* e = std::get_if<ApiError>(&key)) {
        co_return error_response(*e);
      }
    }
    co_return co_await (this->*handler)(std::move(req));
  }

  // The request key of a write that checked() let through (nullopt without the header).
  static std::optional<store::RequestKey> key_of(const Request& req) {
    auto key = request_key(req.headers, req.method, req.target, req.body);
    auto* k = std::get_if<std::optional<store::RequestKey>>(&key);
    return k == nullptr ? std::nullopt : std::move(*k);
  }

  // ---- leader routing -------------------------------------------------------------------------

  // Sends the request to the leader's admin address (over a kept-alive connection, with this
  // node's certificate and the original caller: access.h) and relays its answer.
  asio::awaitable<Response> forward(Request req) {
    if (req.headers.count(std::string(kForwardedHeader)) != 0) {
      co_return unavailable("this node is not the leader (request was already forwarded)");
    }
    const auto status = store_.raft().status();
    if (status.leader == raft::kNoNode) {
      co_return unavailable("no leader elected (no quorum?)");
    }
    auto it = state().nodes.find(raft::format_node_id(status.leader));
    if (it == state().nodes.end() || it->second.address.empty()) {
      co_return unavailable("the leader's admin address is not known here yet");
    }
    const std::string address = it->second.address;
    base::ClientRequest out;
    out.method = req.method;
    out.target = req.target;
    out.body = std::move(req.body);
    out.headers[std::string(kForwardedHeader)] = "1";
    add_caller_headers(caller_of(req), out.headers);
    // The leader puts the key into the Raft entry: a retry through any manager finds it there.
    if (auto key = req.headers.find(std::string(kIdempotencyKeyHeader)); key != req.headers.end()) {
      out.headers["Idempotency-Key"] = key->second;
    }
    auto res = co_await forward_client_.call(address, std::move(out), options_.forward_timeout);
    if (!res) {
      co_return unavailable("leader " + it->second.name + " at " + address +
                            " did not answer: " + res.error().message());
    }
    co_return Response{res->status,
                       res->content_type.empty() ? "application/json" : res->content_type,
                       std::move(res->body)};
  }

  // Proposes a command on the leader and renders the reply: {"revision", key: object}.
  // Rule for every co_await in this directory: no temporary with a non-trivial destructor in
  // the co_await's full-expression (build named locals and move them in) — GCC 12 destroys
  // such temporaries twice (double frees seen with a converted Command, a capturing lambda and
  // an ApiError inside an argument).
  asio::awaitable<Response> commit(store::Command command, unsigned ok_status, const char* key,
                                   std::optional<store::RequestKey> request) {
    auto result = co_await store_.propose(std::move(command), std::move(request));
    if (!result) {
      co_return raft_failure(result.error());
    }
    if (!result->ok) {
      co_return error_response(from_store_error(result->error));
    }
    co_return json_response(ok_status,
                            json::object{{"revision", result->revision}, {key, result->object}});
  }

  // Proposes `command` and waits until it is applied here: the state machine's result, or
  // the response for a command that was not committed (raft_failure) or that the state
  // machine refused.
  asio::awaitable<std::variant<store::ApplyResult, Response>> applied(store::Command command) {
    auto result = co_await store_.propose(std::move(command));
    if (!result) {
      co_return raft_failure(result.error());
    }
    if (!result->ok) {
      co_return error_response(from_store_error(result->error));
    }
    co_return std::move(*result);
  }

  // A read. Linearizable by default (thesis §6.4): the leader confirms with a quorum that it
  // still leads (read_index) and renders once its state machine applied that point; another
  // manager forwards the read to the leader. ?stale=true renders this replica's state as it
  // is, marked X-Routemesh-Stale (with its revision also in X-Routemesh-Revision). A node that
  // cannot reach a quorum answers 503, never its possibly old copy.
  template <class Render>
  asio::awaitable<Response> read(Request req, Render render) {
    auto mode = read_mode(req.query);
    if (auto* e = std::get_if<ApiError>(&mode)) {
      co_return error_response(*e);
    }
    if (std::get<ReadMode>(mode) == ReadMode::stale) {
      Response r = render();
      r.headers.emplace_back("X-Routemesh-Stale", "true");
      r.headers.emplace_back("X-Routemesh-Revision", std::to_string(state().revision));
      co_return r;
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto index = co_await store_.raft().read_index();
    if (!index) {
      co_return read_failure(index.error());
    }
    co_return render();
  }

  // GET of a collection: {"revision", key: [to_json(x) for each x in map that keep(x)]}.
  template <class Map, class Keep, class ToJson>
  Response list_response(const Map& map, const char* key, Keep keep, ToJson to_json) const {
    json::array list;
    for (const auto& [name, x] : map) {
      if (keep(x)) {
        list.push_back(to_json(x));
      }
    }
    return json_response(200, json::object{{"revision", state().revision}, {key, std::move(list)}});
  }

  template <class Map>
  Response list_response(const Map& map, const char* key) const {
    return list_response(
        map, key, [](const auto&) { return true; },
        [](const auto& x) { return store::to_json(x); });
  }

  // GET of one object: {"revision", kind: to_json(map[name])}, or 404 naming `field`.
  template <class Map, class ToJson>
  Response get_response(const Map& map, const std::string& name, const char* kind,
                        const char* field, ToJson to_json) const {
    auto it = map.find(name);
    if (it == map.end()) {
      return error_response(
          ApiError{404, "not_found", fmt::format("no {} \"{}\"", kind, name), field});
    }
    return json_response(200,
                         json::object{{"revision", state().revision}, {kind, to_json(it->second)}});
  }

  template <class Map>
  Response get_response(const Map& map, const std::string& name, const char* kind,
                        const char* field) const {
    return get_response(map, name, kind, field, [](const auto& x) { return store::to_json(x); });
  }

  // A write of the CRUD kind: a follower forwards it to the leader; the leader parses it
  // (`parse(req)` gives a Parsed<T>; a parse error is its 400) and commits `make(value)` under
  // the request's idempotency key.
  template <class Parse, class Make>
  asio::awaitable<Response> write(Request req, Parse parse, Make make, unsigned ok_status,
                                  const char* key) {
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto parsed = parse(req);
    if (auto* e = std::get_if<ApiError>(&parsed)) {
      co_return error_response(*e);
    }
    store::Command command = make(std::get<0>(parsed));
    auto request = key_of(req);
    co_return co_await commit(std::move(command), ok_status, key, std::move(request));
  }

  // A DELETE of one object, with the optional `?version=` precondition.
  template <class Make>
  asio::awaitable<Response> remove(Request req, Make make, const char* key) {
    auto parse = [](const Request& r) { return version_param(r.query); };
    co_return co_await write(std::move(req), std::move(parse), std::move(make), 200, key);
  }

  // The one path segment after `prefix` (an object's name or id), or nothing for any other path.
  static std::optional<std::string> object_name(const Request& req, std::string_view prefix) {
    auto segments = path_segments(req.path, prefix);
    if (segments.size() != 1) {
      return std::nullopt;
    }
    return std::move(segments[0]);
  }

  // ---- /v1/cluster ----------------------------------------------------------------------------

  json::object cluster_json() const {
    const auto status = store_.raft().status();
    const ClusterState& s = state();
    json::object o;
    o["id"] = s.cluster_id;
    if (status.leader != raft::kNoNode) {
      const std::string id = raft::format_node_id(status.leader);
      auto it = s.nodes.find(id);
      o["leader"] = json::object{{"id", id}, {"name", it == s.nodes.end() ? "" : it->second.name}};
    } else {
      o["leader"] = nullptr;
    }
    o["term"] = status.term;
    o["commit"] = status.commit;
    o["applied"] = status.applied;
    o["revision"] = s.revision;
    std::map<std::string, json::object> members;
    for (const auto& [id, n] : s.nodes) {
      members[id] = json::object{{"id", id},
                                 {"name", n.name},
                                 {"role", store::to_string(n.role)},
                                 {"voter", false},
                                 {"api", n.address},
                                 {"peer", n.peer},
                                 {"status", store::to_string(n.status)}};
    }
    for (const auto& m : status.members) {
      const std::string id = raft::format_node_id(m.id);
      auto& entry = members[id];
      if (entry.empty()) {
        entry = json::object{{"id", id},  {"name", ""},     {"role", "manager"},  {"voter", false},
                             {"api", ""}, {"peer", m.peer}, {"status", "unknown"}};
      }
      entry["voter"] = m.voter;
    }
    json::array list;
    for (auto& [id, m] : members) {
      list.push_back(std::move(m));
    }
    o["members"] = std::move(list);
    return o;
  }

  asio::awaitable<Response> cluster(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    auto render = [this] { return json_response(200, cluster_json()); };
    co_return co_await read(std::move(req), std::move(render));
  }

  // ---- services -------------------------------------------------------------------------------

  asio::awaitable<Response> services(Request req) {
    if (req.method == "GET") {
      auto render = [this] { return list_response(state().services, "services"); };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "POST") {
      co_return not_allowed(req, "GET, POST");
    }
    auto parse = [](const Request& r) { return parse_service_spec(r.body, std::nullopt); };
    auto make = [](ServiceSpec& s) { return store::ServiceCreate{std::move(s.service)}; };
    co_return co_await write(std::move(req), std::move(parse), std::move(make), 201, "service");
  }

  asio::awaitable<Response> service(Request req) {
    auto name = object_name(req, "/v1/services/");
    if (!name) {
      co_return not_found("no such path " + req.path);
    }
    if (req.method == "GET") {
      auto render = [this, name] {
        return get_response(state().services, *name, "service", "name");
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method == "PUT") {
      auto parse = [name](const Request& r) { return parse_service_spec(r.body, *name); };
      auto make = [](ServiceSpec& s) {
        return store::ServiceUpdate{std::move(s.service), s.version};
      };
      co_return co_await write(std::move(req), std::move(parse), std::move(make), 200, "service");
    }
    if (req.method != "DELETE") {
      co_return not_allowed(req, "GET, PUT, DELETE");
    }
    auto make = [name](std::optional<std::uint64_t> v) { return store::ServiceDelete{*name, v}; };
    co_return co_await remove(std::move(req), std::move(make), "service");
  }

  // ---- networks -------------------------------------------------------------------------------

  // A network as the API shows it: the stored object and its DNS address (derived from the
  // subnet, dns_address_of; absent when the subnet has none).
  static json::object network_json(const Network& n) {
    json::object o = store::to_json(n);
    if (auto dns = dns_address_of(n.subnet)) {
      o["dns_address"] = *dns;
    }
    return o;
  }

  asio::awaitable<Response> networks(Request req) {
    if (req.method == "GET") {
      auto render = [this] {
        return list_response(
            state().networks, "networks", [](const Network&) { return true; }, network_json);
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "POST") {
      co_return not_allowed(req, "GET, POST");
    }
    auto parse = [](const Request& r) { return parse_network_spec(r.body); };
    auto make = [](Network& n) { return store::NetworkCreate{std::move(n)}; };
    co_return co_await write(std::move(req), std::move(parse), std::move(make), 201, "network");
  }

  asio::awaitable<Response> network(Request req) {
    auto name = object_name(req, "/v1/networks/");
    if (!name) {
      co_return not_found("no such path " + req.path);
    }
    if (req.method == "GET") {
      auto render = [this, name] {
        return get_response(state().networks, *name, "network", "name", network_json);
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "DELETE") {
      co_return not_allowed(req, "GET, DELETE");
    }
    auto make = [name](std::optional<std::uint64_t> v) { return store::NetworkDelete{*name, v}; };
    co_return co_await remove(std::move(req), std::move(make), "network");
  }

  // ---- policies -------------------------------------------------------------------------------

  asio::awaitable<Response> policies(Request req) {
    if (req.method == "GET") {
      auto render = [this] { return list_response(state().policies, "policies"); };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "POST") {
      co_return not_allowed(req, "GET, POST");
    }
    auto id = hex_id(rng_());
    auto parse = [id](const Request& r) { return parse_policy_spec(r.body, id); };
    auto make = [](Policy& p) { return store::PolicyCreate{std::move(p)}; };
    co_return co_await write(std::move(req), std::move(parse), std::move(make), 201, "policy");
  }

  asio::awaitable<Response> policy(Request req) {
    auto id = object_name(req, "/v1/policies/");
    if (!id) {
      co_return not_found("no such path " + req.path);
    }
    if (req.method == "GET") {
      auto render = [this, id] { return get_response(state().policies, *id, "policy", "id"); };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "DELETE") {
      co_return not_allowed(req, "GET, DELETE");
    }
    auto make = [id](std::optional<std::uint64_t> v) { return store::PolicyDelete{*id, v}; };
    co_return co_await remove(std::move(req), std::move(make), "policy");
  }

  // ---- tasks ----------------------------------------------------------------------------------

  asio::awaitable<Response> tasks(Request req) {
    if (req.method == "GET") {
      std::string service_filter;
      if (auto it = req.query.find("service"); it != req.query.end()) {
        service_filter = it->second;
      }
      auto render = [this, service_filter] {
        return list_response(
            state().tasks, "tasks",
            [&](const Task& t) { return service_filter.empty() || t.service == service_filter; },
            [](const Task& t) { return store::to_json(t); });
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "POST") {
      co_return not_allowed(req, "GET, POST");
    }
    auto id = hex_id(rng_());
    auto parse = [id](const Request& r) { return parse_task_spec(r.body, id); };
    auto make = [](Task& t) { return store::TaskAdd{std::move(t)}; };
    co_return co_await write(std::move(req), std::move(parse), std::move(make), 201, "task");
  }

  asio::awaitable<Response> task(Request req) {
    auto id = object_name(req, "/v1/tasks/");
    if (!id) {
      co_return not_found("no such path " + req.path);
    }
    if (req.method == "GET") {
      auto render = [this, id] { return get_response(state().tasks, *id, "task", "id"); };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "PUT" && req.method != "DELETE") {
      co_return not_allowed(req, "GET, PUT, DELETE");
    }
    if (auto denied = authorize_task_write(caller_of(req), state(), *id)) {
      co_return error_response(*denied);
    }
    if (req.method == "PUT") {
      auto parse = [id](const Request& r) { return parse_task_update(r.body, *id); };
      auto make = [](store::TaskUpdate& u) { return u; };
      co_return co_await write(std::move(req), std::move(parse), std::move(make), 200, "task");
    }
    auto make = [id](std::optional<std::uint64_t> v) { return store::TaskRemove{*id, v}; };
    co_return co_await remove(std::move(req), std::move(make), "task");
  }

  // ---- nodes ----------------------------------------------------------------------------------

  json::object node_json(const Node& n, const raft::NodeStatus& status) const {
    json::object o = store::to_json(n);
    o["api"] = n.address;
    bool voter = false;
    bool learner = false;
    if (auto id = raft_id(n.id)) {
      for (const auto& m : status.members) {
        if (m.id == *id) {
          voter = m.voter;
          learner = !m.voter;
        }
      }
      o["leader"] = status.leader == *id;
    } else {
      o["leader"] = false;
    }
    o["voter"] = voter;
    o["learner"] = learner;
    return o;
  }

  asio::awaitable<Response> nodes(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    auto render = [this] {
      const auto status = store_.raft().status();
      return list_response(
          state().nodes, "nodes", [](const Node&) { return true; },
          [&](const Node& n) { return node_json(n, status); });
    };
    co_return co_await read(std::move(req), std::move(render));
  }

  // The voters other than `except`, for leadership transfer.
  std::optional<raft::NodeId> other_voter(raft::NodeId except) const {
    for (const auto& m : store_.raft().status().members) {
      if (m.voter && m.id != except) {
        return m.id;
      }
    }
    return std::nullopt;
  }

  std::size_t voter_count() const {
    std::size_t n = 0;
    for (const auto& m : store_.raft().status().members) {
      n += m.voter ? 1 : 0;
    }
    return n;
  }

  // A pointer into `status`: keep it in a named variable for as long as the pointer is used.
  const raft::Member* member(raft::NodeId id, const raft::NodeStatus& status) const {
    for (const auto& m : status.members) {
      if (m.id == id) {
        return &m;
      }
    }
    return nullptr;
  }
  // A temporary status would be gone before the pointer is used.
  const raft::Member* member(raft::NodeId id, const raft::NodeStatus&& status) const = delete;

  // Removing or demoting the leader itself: hand leadership to another voter first, then let
  // the new leader do it (thesis §3.10: transfer, so the cluster does not wait an election).
  asio::awaitable<std::optional<Response>> step_aside_if_target(raft::NodeId target, Request& req) {
    if (target != store_.raft().status().id) {
      co_return std::nullopt;
    }
    auto other = other_voter(target);
    if (!other) {
      co_return error_response(
          ApiError{409, "conflict", "this node is the only voter; the cluster needs it", "id"});
    }
    auto r = co_await store_.raft().transfer_leadership(*other);
    if (!r) {
      co_return raft_failure(r.error());
    }
    co_return co_await forward(std::move(req));
  }

  asio::awaitable<Response> node(Request req) {
    auto segments = path_segments(req.path, "/v1/nodes/");
    if (segments.empty() || segments.size() > 2) {
      co_return not_found("no such path " + req.path);
    }
    const std::string id = segments[0];
    if (segments.size() == 1 && req.method == "GET") {
      auto render = [this, id] {
        const auto status = store_.raft().status();
        return get_response(state().nodes, id, "node", "id",
                            [&](const Node& n) { return node_json(n, status); });
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    const std::string action = segments.size() == 2 ? segments[1] : "";
    if (segments.size() == 1 && req.method != "DELETE") {
      co_return not_allowed(req, "GET, DELETE");
    }
    if (segments.size() == 2 && action != "promote" && action != "demote") {
      co_return not_found("no such path " + req.path);
    }
    if (segments.size() == 2 && req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto rid = raft_id(id);
    if (!rid) {
      co_return error_response(ApiError{400, "invalid", "node ids are 16 hex digits", "id"});
    }
    if (action.empty()) {
      co_return co_await remove_node(std::move(req), id, *rid);
    }
    co_return co_await change_role(std::move(req), id, *rid, action == "promote");
  }

  asio::awaitable<Response> remove_node(Request req, std::string id, raft::NodeId rid) {
    const auto status = store_.raft().status();
    const raft::Member* m = member(rid, status);
    if (m != nullptr && m->voter && voter_count() <= 1) {
      co_return error_response(ApiError{
          409, "conflict", "node " + id + " is the only voter; the cluster needs it", "id"});
    }
    if (m != nullptr) {
      if (auto answer = co_await step_aside_if_target(rid, req)) {
        co_return std::move(*answer);
      }
    }
    const bool known = state().nodes.count(id) != 0;
    // A retry of a removal whose node.remove already applied: the state machine answers it with
    // the first outcome (and the Raft removal below runs again if it did not finish).
    auto request = key_of(req);
    const bool replay =
        request.has_value() && store_.machine().request_outcome(request->key).has_value();
    if (!known && !replay && m == nullptr) {
      co_return error_response(ApiError{404, "not_found", "no node \"" + id + "\"", "id"});
    }
    // The state first: node.remove is refused while tasks run there, and then Raft is untouched.
    Response reply;
    if (known || replay) {
      store::Command command = store::NodeRemove{id, std::nullopt};
      reply = co_await commit(std::move(command), 200, "node", std::move(request));
      if (reply.status != 200) {
        co_return reply;
      }
    } else {
      reply = json_response(
          200, json::object{{"revision", state().revision}, {"node", json::object{{"id", id}}}});
    }
    if (m != nullptr) {
      auto r = co_await store_.raft().remove_member(rid);
      if (!r) {
        spdlog::warn("api: node {} removed from the state but not from Raft: {}", id,
                     r.error().message());
        co_return raft_failure(r.error());
      }
      spdlog::info("api: node {} removed from Raft", id);
    }
    co_return reply;
  }

  // promote: role manager in the state, then a voter (waits for the catch-up here; the
  // reconciler finishes it if that times out). demote: role worker in the state, then out of
  // the voters and back as a learner: the node keeps a full replica and its API (reads,
  // forwarded writes) but no longer votes.
  asio::awaitable<Response> change_role(Request req, std::string id, raft::NodeId rid,
                                        bool promote) {
    auto it = state().nodes.find(id);
    if (it == state().nodes.end()) {
      co_return error_response(ApiError{404, "not_found", "no node \"" + id + "\"", "id"});
    }
    if (!promote) {
      // A named copy: member() points into it (a temporary would be gone at the `;`).
      const raft::NodeStatus status = store_.raft().status();
      const raft::Member* m = member(rid, status);
      if (m != nullptr && m->voter) {
        if (voter_count() <= 1) {
          co_return error_response(ApiError{
              409, "conflict", "node " + id + " is the only voter; the cluster needs it", "id"});
        }
        if (auto answer = co_await step_aside_if_target(rid, req)) {
          co_return std::move(*answer);
        }
      }
    }
    store::NodeUpdate update;
    update.id = id;
    update.role = promote ? NodeRole::manager : NodeRole::worker;
    store::Command command = update;
    auto request = key_of(req);
    Response reply = co_await commit(std::move(command), 200, "node", std::move(request));
    if (reply.status != 200) {
      co_return reply;
    }
    co_await reconcile_once();
    co_return reply;
  }

  // ---- join -----------------------------------------------------------------------------------

  // The reply to a join: the model's message plus the node's certificate, the CA and, for a
  // manager, the manager key (none with an external CA).
  Response join_reply(const std::string& node_id, const JoinRequest& j, std::string certificate) {
    JoinReply reply = make_join_reply(state(), node_id);
    reply.certificate = std::move(certificate);
    reply.ca = roots_pem();
    if (j.role == NodeRole::manager) {
      reply.manager_key = manager_key_;
    }
    return Response{200, "application/json", encode_join_reply(reply)};
  }

  // A refused join: one log line, one count, and nothing else happened.
  Response refuse_join(const JoinRequest& j, const char* reason, const ApiError& error) {
    spdlog::warn("api: join of {} as {} (api {}) refused ({}): {}", j.name,
                 store::to_string(j.role), j.api, reason, error.message);
    if (join_refusals_ != nullptr) {
      join_refusals_->Add({{"reason", reason}}).Increment();
    }
    return error_response(error);
  }

  // The token of a join: nullopt when it lets `j` in as the role it asks for.
  std::optional<Response> check_join_token(const JoinRequest& j) {
    auto token = tls::parse_token(j.token);
    if (!token) {
      return refuse_join(
          j, "malformed_token",
          ApiError{401, "unauthenticated",
                   j.token.empty() ? "no join token (RMTKN-1-...; cluster init printed them)"
                                   : token.error().message(),
                   "token"});
    }
    if (token->ca_digest != signing_digest()) {
      return refuse_join(
          j, "ca_mismatch",
          ApiError{401, "unauthenticated",
                   "the token pins CA " + token->ca_digest.substr(0, 16) +
                       "..., this cluster's CA is " + signing_digest().substr(0, 16) + "...",
                   "token"});
    }
    const std::string& hash =
        j.role == NodeRole::manager ? state().manager_token_hash : state().worker_token_hash;
    if (!tls::secret_matches(token->secret, hash)) {
      return refuse_join(j, "bad_secret",
                         ApiError{401, "unauthenticated",
                                  std::string("not the cluster's current ") +
                                      (j.role == NodeRole::manager ? "manager" : "worker") +
                                      " token (wrong, rotated, or for the other role)",
                                  "token"});
    }
    return std::nullopt;
  }

  // The certificate of node `id` for the join `j`, or the refusal.
  std::variant<std::string, Response> issue_node_certificate(const JoinRequest& j,
                                                             const std::string& id) {
    tls::Subject subject;
    subject.identity =
        tls::Identity{state().cluster_id.empty() ? options_.cluster_id : state().cluster_id,
                      j.role == NodeRole::manager ? tls::Role::manager : tls::Role::worker, id};
    for (const std::string& address : {j.api, j.peer}) {
      const std::string ip = ip_of(address);
      if (!ip.empty() &&
          std::find(subject.ips.begin(), subject.ips.end(), ip) == subject.ips.end()) {
        subject.ips.push_back(ip);
      }
    }
    if (base::is_host_name(j.name)) {
      subject.names.push_back(j.name);
    }
    auto cert =
        signing_ca()->issue(j.csr, subject, unix_now(), options_.node_cert_lifetime.count());
    if (!cert) {
      return refuse_join(
          j, "bad_csr",
          ApiError{400, "invalid",
                   j.csr.empty() ? "no certificate request (PEM) for the node's key"
                                 : "certificate request refused: " + cert.error().message(),
                   "csr"});
    }
    return with_chain(std::move(*cert));
  }

  asio::awaitable<Response> join(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto parsed = parse_join_request(req.body);
    if (!parsed) {
      co_return error_response(from_state_error(parsed.error()));
    }
    const JoinRequest& j = *parsed;
    if (auto refusal = check_join_token(j)) {
      co_return std::move(*refusal);
    }
    if (!signing_ca()) {
      co_return unavailable(
          "this leader holds no CA key: it cannot sign the node's certificate (with an "
          "external CA, the managers that should sign need its key in data_dir/tls/ca-key.pem)");
    }
    for (const auto& [id, n] : state().nodes) {
      if (n.name != j.name) {
        continue;
      }
      // The same node asking again (its first answer was lost): same id, idempotent; the new
      // key of its request gets a certificate of its own.
      if (n.role == j.role && n.address == j.api && n.peer == j.peer && n.overlay == j.overlay) {
        auto again = issue_node_certificate(j, id);
        if (auto* refusal = std::get_if<Response>(&again)) {
          co_return std::move(*refusal);
        }
        if (auto failed = co_await record_reissue(id)) {
          co_return std::move(*failed);
        }
        spdlog::info("api: node {} ({}) joined again", j.name, id);
        co_return join_reply(id, j, std::move(std::get<std::string>(again)));
      }
      co_return error_response(ApiError{
          409, "conflict", "node name \"" + j.name + "\" is already used by node " + id, "name"});
    }
    std::string id;
    do {
      id = hex_id(rng_());
    } while (id == "0000000000000000" || state().nodes.count(id) != 0 ||
             state().removed_nodes.count(id) != 0);
    // The certificate before the state: a request it cannot sign leaves the state unchanged.
    auto issued = issue_node_certificate(j, id);
    if (auto* refusal = std::get_if<Response>(&issued)) {
      co_return std::move(*refusal);
    }

    Node n;
    n.id = id;
    n.name = j.name;
    n.role = j.role;
    n.address = j.api;
    n.peer = j.peer;
    n.overlay = j.overlay;
    n.status = NodeStatus::ready;
    store::Command command = store::NodeAdd{n};
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    if (j.role == NodeRole::manager) {
      // Reply once the node is a learner, so it can start and receive the log; the reconciler
      // promotes it when it caught up (the join does not wait for that).
      auto r = co_await store_.raft().add_member(*raft_id(id), j.peer, false);
      if (!r) {
        spdlog::warn("api: node {} joined the state but is not a learner yet: {}", id,
                     r.error().message());
      }
      kick_reconciler();
    }
    if (auto failed = co_await record_reissue(id)) {
      co_return std::move(*failed);
    }
    spdlog::info("api: node {} joined as {} ({}, api {})", j.name, store::to_string(j.role), id,
                 j.api);
    co_return join_reply(id, j, std::move(std::get<std::string>(issued)));
  }

  // ---- PKI: the CA, user certificates, join tokens -------------------------------------------

  // GET /v1/ca: the root that signs (what join tokens pin), every trusted root's digest (the
  // signing one first) and, while a rotation runs, its progress.
  asio::awaitable<Response> ca(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    if (signing_pem().empty()) {
      co_return unavailable("this manager has no CA certificate");
    }
    json::array roots;
    auto file_roots = tls::split_certificates(options_.ca_pem);
    const std::vector<std::string>& trusted = !state().ca.roots.empty() ? state().ca.roots
                                              : file_roots              ? *file_roots
                                                           : std::vector<std::string>{};
    for (const auto& root : trusted) {
      auto digest = tls::certificate_digest(root);
      roots.emplace_back(digest ? *digest : std::string("?"));
    }
    const ClusterCa& ca = state().ca;
    json::object body{{"certificate", signing_pem()},
                      {"digest", signing_digest()},
                      {"roots", std::move(roots)},
                      {"key", ca.sealed_key.empty() ? "file" : "state"}};
    if (!ca.manager_key_id.empty()) {
      body["manager_key_id"] = ca.manager_key_id;  // after a `cluster manager-key rotate`
    }
    if (ca.rotating()) {
      auto old = tls::certificate_digest(ca.roots[1]);
      json::array waiting;
      json::array waiting_names;
      json::array down;  // waiting nodes the state has as down: they hold the rotation back
      for (const auto& [id, node] : state().nodes) {
        if (ca.reissued.count(id) == 0) {
          waiting.emplace_back(id);
          waiting_names.emplace_back(node.name);
          if (node.status == NodeStatus::down) {
            down.emplace_back(node.name);
          }
        }
      }
      body["rotation"] = json::object{
          {"old", old ? *old : std::string("?")},      {"started", ca.started},
          {"retire_after", ca.retire_after},           {"waiting", std::move(waiting)},
          {"waiting_names", std::move(waiting_names)}, {"waiting_down", std::move(down)}};
    }
    co_return json_response(200, std::move(body));
  }

  // POST /v1/ca/rotate {"grace_s"?, "cert"?, "key"?}: a new root. Every node trusts both roots
  // and has its certificate re-issued by the new one; the reconciler retires the old root once
  // every node holds a new certificate and grace_s (default 0) have passed. The join tokens
  // change with the root they pin: the answer carries the new ones, the old ones stop working
  // at once. The new root is made here (the current root's subject, a P-256 key), or is the
  // operator's: `cert` and `key` (PEM, both or neither), a root tls::CertificateAuthority::
  // import takes, with the current root's subject (the cross certificates are self-issued).
  asio::awaitable<Response> rotate_ca(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto body = parse_object(req.body.empty() ? std::string("{}") : req.body);
    if (!body) {
      co_return error_response(from_state_error(body.error()));
    }
    std::int64_t grace = 0;
    std::string given_cert;
    std::string given_key;
    for (const auto& kv : *body) {
      if (kv.key() == "cert" || kv.key() == "key") {
        if (!kv.value().is_string() || kv.value().get_string().empty()) {
          co_return error_response(
              ApiError{400, "invalid", "expected PEM text", std::string(kv.key())});
        }
        (kv.key() == "cert" ? given_cert : given_key) = std::string(kv.value().get_string());
        continue;
      }
      if (kv.key() != "grace_s") {
        co_return error_response(ApiError{400, "invalid", "unknown field", std::string(kv.key())});
      }
      const auto* n = kv.value().if_int64();
      const auto* u = kv.value().if_uint64();
      const std::int64_t v = n                            ? *n
                             : u && *u <= 3650ULL * 86400 ? static_cast<std::int64_t>(*u)
                                                          : -1;
      if (v < 0 || v > 3650LL * 86400) {
        co_return error_response(ApiError{
            400, "invalid", "expected whole seconds from 0 to 315360000 (ten years)", "grace_s"});
      }
      grace = v;
    }
    const ClusterCa& current = state().ca;
    if (current.rotating()) {
      co_return error_response(ApiError{409, "conflict",
                                        "a CA rotation is already running (GET /v1/ca shows which "
                                        "nodes it waits for)",
                                        ""});
    }
    if (auto refused = cannot_reseal(
            "the managers could not open a new root's key, so `cluster ca rotate` is not "
            "possible")) {
      co_return std::move(*refused);
    }
    if (given_cert.empty() != given_key.empty()) {
      co_return error_response(ApiError{400, "invalid", "cert and key go together",
                                        given_cert.empty() ? "cert" : "key"});
    }
    const auto* old_ca = signing_ca();
    const std::int64_t now = unix_now();
    // The old root's subject: the cross certificates are self-issued (tls/pki.h).
    auto fresh = given_cert.empty() ? old_ca->successor(now)
                                    : tls::CertificateAuthority::import(given_cert, given_key, now);
    if (!fresh && !given_cert.empty()) {
      const auto e = fresh.error();
      const bool key_problem = e == tls::errc::key_mismatch || e == tls::errc::unsupported_key;
      co_return error_response(ApiError{400, "invalid",
                                        "not a root this cluster can take: " + e.message(),
                                        key_problem ? "key" : "cert"});
    }
    if (!fresh) {
      co_return unavailable("cannot make a new root: " + fresh.error().message());
    }
    if (!given_cert.empty()) {
      if (fresh->digest() == old_ca->digest()) {
        co_return error_response(
            ApiError{400, "invalid", "that is the current root; give a new one", "cert"});
      }
      if (!tls::same_subject(fresh->certificate_pem(), old_ca->certificate_pem())) {
        co_return error_response(ApiError{
            400, "invalid",
            "the new root must have the current root's subject (`openssl x509 -subject`): the "
            "cross certificates between the two are self-issued",
            "cert"});
      }
    }
    auto cross_new = old_ca->cross_sign(fresh->certificate_pem(), now);
    auto cross_old = fresh->cross_sign(old_ca->certificate_pem(), now);
    auto sealed = tls::seal_key(fresh->key_pem(), manager_key_);
    auto worker_secret = tls::new_secret();
    auto manager_secret = tls::new_secret();
    if (!cross_new || !cross_old || !sealed || !worker_secret || !manager_secret) {
      co_return unavailable("cannot cross-sign the new root or seal its key");
    }
    store::CaSet set;
    set.version = current.version;
    set.ca.roots = {fresh->certificate_pem(), old_ca->certificate_pem()};
    set.ca.sealed_key = std::move(*sealed);
    set.ca.cross_new = std::move(*cross_new);
    set.ca.cross_old = std::move(*cross_old);
    set.ca.started = now;
    set.ca.retire_after = now + grace;
    keep_manager_keys(set.ca, current);  // the key that sealed it, and autolock's
    set.worker_token_hash = tls::secret_hash(*worker_secret);
    set.manager_token_hash = tls::secret_hash(*manager_secret);
    const std::string digest = fresh->digest();
    // The new CA signs here from now on (the node's state hook gives it to the other managers
    // by unsealing its key, and to this one again).
    auto fresh_ca = std::make_shared<const tls::CertificateAuthority>(std::move(*fresh));
    store::Command command = std::move(set);
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    const store::ApplyResult* result = &std::get<store::ApplyResult>(outcome);
    ca_ = std::move(fresh_ca);
    spdlog::info(
        "api: CA rotation started by {}: new root {}, old root retires after {} s and "
        "once every node holds a new certificate; the join tokens changed",
        describe(caller_of(req)), digest, grace);
    co_return json_response(
        201,
        json::object{{"digest", digest},
                     {"retire_after", now + grace},
                     {"worker_token", tls::format_token(tls::JoinToken{digest, *worker_secret})},
                     {"manager_token", tls::format_token(tls::JoinToken{digest, *manager_secret})},
                     {"revision", result->revision}});
  }

  asio::awaitable<Response> certs(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!signing_ca()) {
      if (!store_.is_leader()) {
        co_return co_await forward(std::move(req));
      }
      co_return unavailable(kNoCaKey);
    }
    auto body = parse_object(req.body);
    if (!body) {
      co_return error_response(from_state_error(body.error()));
    }
    std::string role_text;
    std::string name;
    std::string csr;
    for (const auto& kv : *body) {
      std::string* out = kv.key() == "role"   ? &role_text
                         : kv.key() == "name" ? &name
                         : kv.key() == "csr"  ? &csr
                                              : nullptr;
      if (out == nullptr) {
        co_return error_response(ApiError{400, "invalid", "unknown field", std::string(kv.key())});
      }
      if (!kv.value().is_string()) {
        co_return error_response(
            ApiError{400, "invalid", "expected a string", std::string(kv.key())});
      }
      *out = std::string(kv.value().get_string());
    }
    auto role = tls::parse_role(role_text);
    if (!role || tls::is_node_role(*role)) {
      co_return error_response(
          ApiError{400, "invalid", "expected admin, operator or viewer", "role"});
    }
    if (!base::is_object_name(name)) {
      co_return error_response(ApiError{
          400, "invalid", "expected a name of [a-z0-9][a-z0-9_.-]{0,62} (who holds it)", "name"});
    }
    tls::Subject subject;
    subject.identity = tls::Identity{
        state().cluster_id.empty() ? options_.cluster_id : state().cluster_id, *role, name};
    auto cert = signing_ca()->issue(csr, subject, unix_now(), options_.user_cert_lifetime.count());
    if (!cert) {
      co_return error_response(ApiError{
          400, "invalid", "certificate request refused: " + cert.error().message(), "csr"});
    }
    auto end = tls::not_after(*cert);
    auto serial = tls::serial_of(*cert);
    spdlog::info("api: issued a {} certificate for {} (serial {}) to {}", role_text, name,
                 serial ? *serial : "?", describe(caller_of(req)));
    co_return json_response(201, json::object{{"role", role_text},
                                              {"name", name},
                                              {"serial", serial ? *serial : ""},
                                              {"certificate", with_chain(*cert)},
                                              {"ca", roots_pem()},
                                              {"not_after", end ? *end : 0}});
  }

  // POST /v1/certs/revoke {"serial", "name"?}: every node's TLS servers refuse the certificate
  // from the moment they see the new state (connections already open keep going until closed).
  // Admin only (access.h: users other than admin may not write here).
  asio::awaitable<Response> revoke_certificate(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto body = parse_object(req.body);
    if (!body) {
      co_return error_response(from_state_error(body.error()));
    }
    Revocation revocation;
    bool have_serial = false;
    for (const auto& kv : *body) {
      if (kv.key() != "serial" && kv.key() != "name") {
        co_return error_response(ApiError{400, "invalid", "unknown field", std::string(kv.key())});
      }
      if (!kv.value().is_string()) {
        co_return error_response(
            ApiError{400, "invalid", "expected a string", std::string(kv.key())});
      }
      if (kv.key() == "serial") {
        auto serial = tls::normalize_serial(kv.value().get_string());
        if (!serial) {
          co_return error_response(ApiError{
              400, "invalid",
              "expected a certificate serial: 1 to 40 hex digits (colons allowed), not zero",
              "serial"});
        }
        revocation.serial = std::move(*serial);
        have_serial = true;
      } else {
        revocation.name = std::string(kv.value().get_string());
      }
    }
    if (!have_serial) {
      co_return error_response(ApiError{400, "invalid", "required", "serial"});
    }
    revocation.at = unix_now();
    spdlog::info("api: certificate {} ({}) revoked by {}", revocation.serial,
                 revocation.name.empty() ? "no name given" : revocation.name,
                 describe(caller_of(req)));
    auto request = key_of(req);
    // A named command: no temporary with a destructor in the co_await expression (GCC 12).
    store::Command command = store::CertRevoke{std::move(revocation)};
    co_return co_await commit(std::move(command), 201, "revocation", std::move(request));
  }

  // GET /v1/certs/revoked: the revoked certificates, by serial.
  asio::awaitable<Response> revoked_certificates(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    auto render = [this] { return list_response(state().revoked, "revoked"); };
    co_return co_await read(std::move(req), std::move(render));
  }

  // GET /v1/certs/crl: {"revision", "crl", "next_update"}: the revoked certificates as a CRL
  // (PEM) signed by the signing root, for software outside the cluster that checks our
  // certificates (`openssl verify -crl_check`, a web server's CRL file). Its number is the
  // state's revision; it is valid for a day from now, so whoever uses it fetches it again at
  // least daily. Rendered by the leader like every read (503 where the key cannot be opened).
  asio::awaitable<Response> revocation_list(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    auto render = [this]() -> Response {
      const tls::CertificateAuthority* ca = signing_ca();
      if (ca == nullptr) {
        return unavailable("this manager cannot sign (it holds no key of the signing root)");
      }
      std::vector<tls::CertificateAuthority::RevokedSerial> list;
      list.reserve(state().revoked.size());
      for (const auto& [serial, r] : state().revoked) {
        list.push_back({serial, r.at});
      }
      const std::int64_t now = unix_now();
      auto crl = ca->crl(list, now, kCrlValidity, state().revision);
      if (!crl) {
        spdlog::error("api: cannot make the revocation list: {}", crl.error().message());
        return unavailable("cannot make the revocation list: " + crl.error().message());
      }
      return json_response(200, json::object{{"revision", state().revision},
                                             {"crl", std::move(*crl)},
                                             {"next_update", now + kCrlValidity}});
    };
    co_return co_await read(std::move(req), std::move(render));
  }
  static constexpr std::int64_t kCrlValidity = 24 * 3600;

  // ---- HTTPS certificates ---------------------------------------------------------------------

  // GET /v1/ingress/certs: the HTTPS port's certificates, without their keys.
  asio::awaitable<Response> ingress_certs(Request req) {
    if (req.method != "GET") {
      co_return not_allowed(req, "GET");
    }
    auto render = [this] {
      return list_response(
          state().ingress_certs, "certs", [](const auto&) { return true; },
          [](const IngressCert& c) { return store::public_json(c); });
    };
    co_return co_await read(std::move(req), std::move(render));
  }

  // GET / PUT {"cert", "key"} / DELETE /v1/ingress/certs/HOST. HOST: a host name, *.SUFFIX or
  // * (the default certificate). PUT checks the pair and the host here (the state machine does
  // not parse certificates) and replaces any certificate the host had (?version=N: only that
  // one). Admin only (access.h), like every write outside services, networks and tasks.
  asio::awaitable<Response> ingress_cert(Request req) {
    auto name = object_name(req, "/v1/ingress/certs/");
    if (!name) {
      co_return not_found("no such path " + req.path);
    }
    std::string host = std::move(*name);
    std::transform(host.begin(), host.end(), host.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (req.method == "GET") {
      auto render = [this, host] {
        return get_response(state().ingress_certs, host, "cert", "host",
                            [](const IngressCert& c) { return store::public_json(c); });
      };
      co_return co_await read(std::move(req), std::move(render));
    }
    if (req.method != "PUT" && req.method != "DELETE") {
      co_return not_allowed(req, "GET, PUT, DELETE");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto version = version_param(req.query);
    if (auto* e = std::get_if<ApiError>(&version)) {
      co_return error_response(*e);
    }
    const std::optional<std::uint64_t> expected = std::get<std::optional<std::uint64_t>>(version);
    auto request = key_of(req);
    if (req.method == "DELETE") {
      store::Command command = store::IngressCertDelete{host, expected};
      co_return co_await commit(std::move(command), 200, "cert", std::move(request));
    }
    auto body = parse_object(req.body);
    if (!body) {
      co_return error_response(from_state_error(body.error()));
    }
    IngressCert cert;
    cert.host = host;
    for (const char* field : {"cert", "key"}) {
      const json::value* v = body->if_contains(field);
      if (v == nullptr) {
        co_return error_response(ApiError{400, "invalid", "required (PEM text)", field});
      }
      if (!v->is_string()) {
        co_return error_response(ApiError{400, "invalid", "expected a string", field});
      }
      (std::string_view(field) == "cert" ? cert.cert : cert.key) = v->get_string();
    }
    for (const auto& kv : *body) {
      if (kv.key() != "cert" && kv.key() != "key") {
        co_return error_response(ApiError{400, "invalid", "unknown field", std::string(kv.key())});
      }
    }
    auto checked = tls::check_ingress_certificate(
        cert.cert, cert.key, host == "*" ? std::string_view("*") : host, unix_now());
    if (auto* p = std::get_if<tls::IngressCertProblem>(&checked)) {
      spdlog::info("api: HTTPS certificate for {} refused ({}: {}) from {}", host, p->field,
                   p->message, describe(caller_of(req)));
      co_return error_response(ApiError{400, "invalid", p->message, p->field});
    }
    auto& info = std::get<tls::IngressCertInfo>(checked);
    cert.digest = info.digest;
    cert.not_after = info.not_after;
    cert.version = expected.value_or(0);
    // The key goes into the state sealed (ClusterCa::secrets_key_wrapped), where there is a
    // manager key to seal the secrets key with.
    auto secrets = co_await secrets_key_for_writing();
    if (auto* refused = std::get_if<Response>(&secrets)) {
      co_return std::move(*refused);
    }
    if (const auto& key = std::get<std::string>(secrets); !key.empty()) {
      auto sealed = tls::seal_key(cert.key, key);
      if (!sealed) {
        co_return unavailable("cannot seal the certificate's key: " + sealed.error().message());
      }
      cert.key = std::move(*sealed);
    }
    spdlog::info("api: HTTPS certificate for {} (sha256 {}) set by {}", host, cert.digest,
                 describe(caller_of(req)));
    // A named command: no temporary with a destructor in the co_await expression (GCC 12).
    store::Command command = store::IngressCertSet{std::move(cert)};
    co_return co_await commit(std::move(command), 200, "cert", std::move(request));
  }

  // POST /v1/certs/renew {"csr"}: a node's new certificate for itself, before its current one
  // expires. The caller is the node (its verified certificate, a member of the state); the new
  // certificate names the same node with its role and addresses as the state has them now.
  asio::awaitable<Response> renew_certificate(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (auto refused = refuse_unauthorized(req)) {
      co_return std::move(*refused);
    }
    const Caller caller = caller_of(req);
    // While a root rotation runs, node certificates are signed by the leader, which records
    // each one in the state (the old root retires once every node has one). A manager that has
    // not taken the state's current manager key yet leaves the answer, which carries that key
    // to a manager, to the leader too.
    if (!signing_ca() ||
        (caller.kind == Caller::Kind::node && (state().ca.rotating() || manager_key_behind()))) {
      if (!store_.is_leader()) {
        co_return co_await forward(std::move(req));
      }
      if (!signing_ca()) {
        co_return unavailable(kNoCaKey);
      }
    }
    auto body = parse_object(req.body);
    if (!body) {
      co_return error_response(from_state_error(body.error()));
    }
    const json::value* csr = body->if_contains("csr");
    if (csr == nullptr || !csr->is_string() || body->size() != 1) {
      co_return error_response(
          ApiError{400, "invalid", "expected {\"csr\": PEM certificate request}", "csr"});
    }
    if (caller.kind == Caller::Kind::user) {
      // A user's certificate for the same role and name, a new year from now. The current one
      // stays valid until it expires (revoke it by its serial to end it sooner).
      tls::Subject user;
      user.identity =
          tls::Identity{state().cluster_id.empty() ? options_.cluster_id : state().cluster_id,
                        caller.role, caller.id};
      auto cert = signing_ca()->issue(std::string(csr->get_string()), user, unix_now(),
                                      options_.user_cert_lifetime.count());
      if (!cert) {
        co_return error_response(ApiError{
            400, "invalid", "certificate request refused: " + cert.error().message(), "csr"});
      }
      auto end = tls::not_after(*cert);
      auto serial = tls::serial_of(*cert);
      spdlog::info("api: renewed the {} certificate of {} (serial {}) until {}",
                   tls::to_string(caller.role), caller.id, serial ? *serial : "?", end ? *end : 0);
      co_return json_response(201, json::object{{"role", tls::to_string(caller.role)},
                                                {"name", caller.id},
                                                {"serial", serial ? *serial : ""},
                                                {"certificate", with_chain(*cert)},
                                                {"ca", roots_pem()},
                                                {"not_after", end ? *end : 0}});
    }
    auto node = state().nodes.find(caller.id);
    if (node == state().nodes.end()) {  // resolve_caller checked it; the state may have moved
      co_return error_response(ApiError{403, "forbidden", "not a member of this cluster", ""});
    }
    tls::Subject subject;
    subject.identity = tls::Identity{
        state().cluster_id.empty() ? options_.cluster_id : state().cluster_id,
        node->second.role == NodeRole::manager ? tls::Role::manager : tls::Role::worker, caller.id};
    for (const std::string& address : {node->second.address, node->second.peer}) {
      const std::string ip = ip_of(address);
      if (!ip.empty() &&
          std::find(subject.ips.begin(), subject.ips.end(), ip) == subject.ips.end()) {
        subject.ips.push_back(ip);
      }
    }
    if (base::is_host_name(node->second.name)) {
      subject.names.push_back(node->second.name);
    }
    auto cert = signing_ca()->issue(std::string(csr->get_string()), subject, unix_now(),
                                    options_.node_cert_lifetime.count());
    if (!cert) {
      co_return error_response(ApiError{
          400, "invalid", "certificate request refused: " + cert.error().message(), "csr"});
    }
    if (auto failed = co_await record_reissue(caller.id)) {
      co_return std::move(*failed);
    }
    auto end = tls::not_after(*cert);
    spdlog::info("api: renewed the certificate of {} node {} ({}) until {}",
                 tls::to_string(subject.identity.role), node->second.name, caller.id,
                 end ? *end : 0);
    json::object answer{
        {"certificate", with_chain(*cert)}, {"ca", roots_pem()}, {"not_after", end ? *end : 0}};
    // A manager (one just promoted too) gets the manager key, which opens the state's sealed
    // CA key; a worker's answer has none, and a demoted node drops its copy.
    if (subject.identity.role == tls::Role::manager && !manager_key_.empty()) {
      answer["manager_key"] = manager_key_;
    }
    co_return json_response(201, std::move(answer));
  }

  // POST /v1/cluster/tokens/ROLE/rotate.
  asio::awaitable<Response> tokens(Request req) {
    auto segments = path_segments(req.path, "/v1/cluster/tokens/");
    if (segments.size() != 2 || segments[1] != "rotate" ||
        (segments[0] != "worker" && segments[0] != "manager")) {
      co_return not_found("no such path " + req.path +
                          " (POST /v1/cluster/tokens/worker|manager/rotate)");
    }
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    if (signing_digest().empty()) {
      co_return unavailable("this manager has no CA certificate");
    }
    auto secret = tls::new_secret();
    if (!secret) {
      co_return unavailable("no randomness for a new token: " + secret.error().message());
    }
    store::ClusterSettingsUpdate update;
    const std::string role = segments[0];
    (role == "manager" ? update.manager_token_hash : update.worker_token_hash) =
        tls::secret_hash(*secret);
    store::Command command = update;
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    const store::ApplyResult* result = &std::get<store::ApplyResult>(outcome);
    spdlog::info("api: the {} join token was rotated by {}; the old one no longer joins", role,
                 describe(caller_of(req)));
    const std::string token = tls::format_token(tls::JoinToken{signing_digest(), *secret});
    co_return json_response(
        200, json::object{{"role", role}, {"token", token}, {"revision", result->revision}});
  }

  // Whether the state names a manager key (`cluster manager-key rotate`) other than the one
  // this manager holds: it has not taken the new one from the state yet.
  bool manager_key_behind() const {
    const std::string& id = state().ca.manager_key_id;
    return !id.empty() && tls::manager_key_id(manager_key_) != id;
  }

  // The state's secrets key, opened with this manager's manager key (secrets_key_of).
  std::string secrets_key() const { return secrets_key_of(state().ca, manager_key_); }

  // Leader: the secrets key a new HTTPS certificate's key is sealed with; the first one is made
  // and committed now. "" where the CA key is kept in files (no manager key: keys stay as given).
  asio::awaitable<std::variant<std::string, Response>> secrets_key_for_writing() {
    using Out = std::variant<std::string, Response>;
    if (state().ca.sealed_key.empty()) {
      co_return Out(std::string{});
    }
    if (manager_key_.empty() || manager_key_behind()) {
      co_return Out(unavailable("this leader has not adopted the current manager key yet"));
    }
    if (auto key = secrets_key(); !key.empty()) {
      co_return Out(std::move(key));
    }
    if (!state().ca.secrets_key_wrapped.empty()) {
      co_return Out(unavailable("this leader's manager key does not open the secrets key"));
    }
    auto made = tls::new_manager_key();
    auto wrapped = made ? tls::wrap_manager_key(*made, manager_key_) : made;
    if (!wrapped) {
      co_return Out(unavailable("no secrets key: " + wrapped.error().message()));
    }
    store::CaSet set;
    set.version = state().ca.version;
    set.ca = state().ca;
    set.ca.secrets_key_wrapped = std::move(*wrapped);
    store::Command command = std::move(set);
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return Out(std::move(*refused));
    }
    spdlog::info("api: the state's secrets are sealed with a new secrets key from revision {}",
                 std::get<store::ApplyResult>(outcome).revision);
    co_return Out(std::move(*made));
  }

  // Why this leader cannot seal the root's key anew (a root or a manager key rotation), if it
  // cannot: 409 when the key is kept in files (`consequence` says what that rules out), 503
  // when this leader does not hold it.
  std::optional<Response> cannot_reseal(std::string_view consequence) {
    if (state().ca.sealed_key.empty()) {
      return error_response(ApiError{
          409, "conflict",
          "this cluster's CA key is kept in files (an external CA, or a cluster made before the "
          "state kept the key): " +
              std::string(consequence),
          ""});
    }
    if (signing_ca() == nullptr || manager_key_.empty()) {
      return unavailable(kNoCaKey);
    }
    return std::nullopt;
  }

  // POST /v1/cluster/manager-key/rotate: a new manager key seals the signing root's key from
  // now on. The key itself never enters the state in clear: the state carries its id and the
  // key sealed with the one it replaces, which every manager holding that one opens (cmd/).
  asio::awaitable<Response> rotate_manager_key(Request req) {
    if (req.method != "POST") {
      co_return not_allowed(req, "POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    const ClusterCa& current = state().ca;
    if (auto refused = cannot_reseal("there is no manager key to rotate")) {
      co_return std::move(*refused);
    }
    const auto* ca = signing_ca();
    if (manager_key_behind()) {
      co_return unavailable(
          "this leader has not adopted the current manager key yet; try again in a moment");
    }
    auto next = tls::new_manager_key();
    if (!next) {
      co_return unavailable("no randomness for a new manager key: " + next.error().message());
    }
    auto sealed = tls::seal_key(ca->key_pem(), *next);
    auto wrapped = tls::wrap_manager_key(*next, manager_key_);
    if (!sealed || !wrapped) {
      co_return unavailable("cannot seal the CA key with the new manager key");
    }
    store::CaSet set;
    set.version = current.version;
    set.ca = current;
    set.ca.sealed_key = std::move(*sealed);
    set.ca.manager_key_id = tls::manager_key_id(*next);
    set.ca.manager_key_wrapped = std::move(*wrapped);
    // Autolock stays on with the same unlock key, and the HTTPS keys stay sealed with the same
    // secrets key: each is sealed with the new manager key now.
    for (auto [field, what] : {std::pair{&set.ca.unlock_key_wrapped, "unlock"},
                               std::pair{&set.ca.secrets_key_wrapped, "secrets"}}) {
      if (field->empty()) {
        continue;
      }
      auto opened = tls::unwrap_manager_key(*field, manager_key_);
      auto rewrapped = opened ? tls::wrap_manager_key(*opened, *next) : opened;
      if (!rewrapped) {
        co_return unavailable(std::string("cannot seal the ") + what +
                              " key with the new manager key");
      }
      *field = std::move(*rewrapped);
    }
    const std::string id = set.ca.manager_key_id;
    store::Command command = std::move(set);
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    const store::ApplyResult* result = &std::get<store::ApplyResult>(outcome);
    spdlog::info("api: the manager key was rotated by {}; it is {} from revision {}",
                 describe(caller_of(req)), id, result->revision);
    co_return json_response(200,
                            json::object{{"manager_key_id", id}, {"revision", result->revision}});
  }

  // ---- autolock -------------------------------------------------------------------------------

  // The unlock key of the state, opened with this leader's manager key ("" = autolock is off),
  // or why it cannot be opened here (409 for a CA key in files, with no manager key).
  std::variant<std::string, Response> current_unlock_key() {
    if (auto refused = cannot_reseal("its key is in files, with no manager key to lock")) {
      return std::move(*refused);
    }
    const ClusterCa& ca = state().ca;
    if (ca.unlock_key_wrapped.empty()) {
      return std::string{};
    }
    if (manager_key_.empty() || manager_key_behind()) {
      return unavailable("this leader has not adopted the current manager key yet");
    }
    auto key = tls::unwrap_manager_key(ca.unlock_key_wrapped, manager_key_);
    if (!key) {
      return unavailable("this leader's manager key does not open the unlock key");
    }
    return std::move(*key);
  }

  static Response autolock_response(const std::string& unlock_key, std::uint64_t revision) {
    json::object o{{"enabled", !unlock_key.empty()}, {"revision", revision}};
    if (!unlock_key.empty()) {
      o["unlock_key"] = unlock_key;
    }
    return json_response(200, o);
  }

  // Commits `unlock_key` ("" = off) sealed with the manager key into the CA record.
  asio::awaitable<Response> commit_unlock_key(std::string unlock_key, const Caller& caller) {
    const ClusterCa& current = state().ca;
    store::CaSet set;
    set.version = current.version;
    set.ca = current;
    if (!unlock_key.empty()) {
      auto wrapped = tls::wrap_manager_key(unlock_key, manager_key_);
      if (!wrapped) {
        co_return unavailable("cannot seal the unlock key with the manager key");
      }
      set.ca.unlock_key_wrapped = std::move(*wrapped);
    } else {
      set.ca.unlock_key_wrapped.clear();
    }
    store::Command command = std::move(set);
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    const std::uint64_t revision = std::get<store::ApplyResult>(outcome).revision;
    spdlog::info("api: autolock {} by {} at revision {}",
                 unlock_key.empty() ? "disabled" : "enabled with a new unlock key",
                 describe(caller), revision);
    co_return autolock_response(unlock_key, revision);
  }

  // GET /v1/cluster/autolock: {"enabled", "unlock_key"?}. POST {"enabled": true|false}: turns
  // autolock on (a new unlock key; the answer shows it; on already: the current one) or off.
  // Admin only (access.h); served by the leader, which holds the manager key that opens it.
  asio::awaitable<Response> autolock(Request req) {
    co_return co_await change_autolock(std::move(req), false);
  }

  // POST /v1/cluster/autolock/rotate: a new unlock key (409 when autolock is off). Managers
  // encrypt their keys with it as they see it; the previous one no longer opens them.
  asio::awaitable<Response> rotate_unlock_key(Request req) {
    co_return co_await change_autolock(std::move(req), true);
  }

  asio::awaitable<Response> change_autolock(Request req, bool rotate) {
    if (rotate ? req.method != "POST" : req.method != "GET" && req.method != "POST") {
      co_return not_allowed(req, rotate ? "POST" : "GET, POST");
    }
    if (!store_.is_leader()) {
      co_return co_await forward(std::move(req));
    }
    auto current = current_unlock_key();
    if (auto* refused = std::get_if<Response>(&current)) {
      co_return std::move(*refused);
    }
    const std::string& key = std::get<std::string>(current);
    if (req.method == "GET") {
      co_return autolock_response(key, state().revision);
    }
    bool on = true;
    if (rotate && key.empty()) {
      co_return error_response(ApiError{409, "conflict",
                                        "autolock is off: `routemesh cluster autolock enable` "
                                        "turns it on with a new unlock key",
                                        ""});
    }
    if (!rotate) {
      auto body = parse_object(req.body);
      if (!body) {
        co_return error_response(from_state_error(body.error()));
      }
      const json::value* enabled = body->if_contains("enabled");
      if (enabled == nullptr || !enabled->is_bool()) {
        co_return error_response(ApiError{400, "invalid", "required: true or false", "enabled"});
      }
      on = enabled->get_bool();
      if (on == !key.empty()) {
        co_return autolock_response(key, state().revision);  // already so
      }
    }
    std::string next;
    if (on) {
      auto fresh = tls::new_manager_key();
      if (!fresh) {
        co_return unavailable("no randomness for an unlock key: " + fresh.error().message());
      }
      next = std::move(*fresh);
    }
    co_return co_await commit_unlock_key(std::move(next), caller_of(req));
  }

  // ---- the CA this manager signs with ---------------------------------------------------------

 public:
  void set_signing(std::shared_ptr<const tls::CertificateAuthority> ca,
                   std::string manager_key) override {
    ca_ = std::move(ca);
    manager_key_ = std::move(manager_key);
  }

 private:
  // The root that signs: the state's first root once a rotation happened, else the CA of this
  // node's data_dir.
  const std::string& signing_pem() const {
    return state().ca.roots.empty() ? options_.ca_pem : state().ca.roots.front();
  }
  // SHA-256 of signing_pem(): what join tokens pin.
  const std::string& signing_digest() {
    const ClusterCa& ca = state().ca;
    if (ca.roots.empty()) {
      return ca_digest_;
    }
    if (digest_version_ != ca.version) {
      auto digest = tls::certificate_digest(ca.roots.front());
      signing_digest_ = digest ? *digest : std::string{};
      digest_version_ = ca.version;
    }
    return signing_digest_;
  }
  // Every trusted root (the signing one first), as join replies and certificates carry them.
  std::string roots_pem() const {
    if (state().ca.roots.empty()) {
      return options_.ca_pem;
    }
    std::string bundle;
    for (const auto& root : state().ca.roots) {
      bundle += root;
    }
    return bundle;
  }
  // The CA to sign with: null unless this manager holds the key of the signing root.
  const tls::CertificateAuthority* signing_ca() {
    return ca_ && ca_->digest() == signing_digest() ? ca_.get() : nullptr;
  }
  // An issued certificate as its holder presents it: while a rotation runs, followed by the
  // cross certificate that lets nodes still trusting only the old root verify it.
  std::string with_chain(std::string cert) const {
    if (state().ca.rotating()) {
      cert += state().ca.cross_new;
    }
    return cert;
  }
  // While a rotation runs: records that node `id` received a certificate of the new root
  // (the leader's signing_ca() just issued one). The error answer when that did not commit.
  asio::awaitable<std::optional<Response>> record_reissue(std::string id) {
    const ClusterCa& ca = state().ca;
    if (!ca.rotating() || ca.reissued.count(id) != 0) {
      co_return std::nullopt;
    }
    store::Command command = store::CaReissued{id, ca.started};
    auto outcome = co_await applied(std::move(command));
    if (auto* refused = std::get_if<Response>(&outcome)) {
      co_return std::move(*refused);
    }
    co_return std::nullopt;
  }
  // The end of a rotation: once every node holds a certificate of the new root and the grace
  // period passed, the old root is trusted no more (leader only).
  asio::awaitable<void> retire_old_root() {
    const ClusterCa& ca = state().ca;
    if (!store_.is_leader() || !ca.rotating() || unix_now() < ca.retire_after) {
      co_return;
    }
    for (const auto& [id, node] : state().nodes) {
      if (ca.reissued.count(id) == 0) {
        co_return;
      }
    }
    // The cross certificates first: they stay valid for years, and the old root's key
    // certified by the new root (cross_old) would otherwise let the old root's certificates
    // verify against the new root alone. Nodes build their chains from the roots they trust
    // first, so no chain in use needs a cross certificate once every node trusts both roots.
    // Copies: the state (and `ca` with it) may be replaced while a proposal is awaited.
    const std::uint64_t version = ca.version;
    const std::array<std::pair<std::string, const char*>, 2> crosses{
        std::pair{ca.cross_new, "root-rotation.cross-new"},
        std::pair{ca.cross_old, "root-rotation.cross-old"}};
    for (const auto& [cross, name] : crosses) {
      auto serial = tls::serial_of(cross);
      if (!serial || serial->empty() || state().revoked.count(*serial) != 0) {
        continue;
      }
      Revocation revocation;
      revocation.serial = std::move(*serial);
      revocation.name = name;
      revocation.at = unix_now();
      store::Command revoke = store::CertRevoke{std::move(revocation)};
      auto revoked = co_await store_.propose(std::move(revoke));
      if (!revoked || (!revoked->ok && revoked->error.code != store::errc::conflict)) {
        spdlog::warn("api: revoking a cross certificate before retiring the old root failed: {}",
                     revoked ? revoked->error.message : revoked.error().message());
        co_return;
      }
    }
    const ClusterCa& now = state().ca;
    if (now.version != version) {
      co_return;  // the record moved meanwhile (another leader retired it)
    }
    store::CaSet set;
    set.version = now.version;
    set.ca.roots = {now.roots.front()};
    set.ca.sealed_key = now.sealed_key;
    keep_manager_keys(set.ca, now);
    const std::string digest = signing_digest();
    store::Command command = std::move(set);
    auto result = co_await store_.propose(std::move(command));
    if (result && result->ok) {
      spdlog::info(
          "api: CA rotation done: every node holds a certificate of root {}; the old "
          "root is no longer trusted",
          digest);
    } else {
      spdlog::warn("api: retiring the old root failed: {}",
                   result ? result->error.message : result.error().message());
    }
  }

  // ---- membership reconciler ------------------------------------------------------------------

  void kick_reconciler() { reconcile_timer_.cancel(); }

  asio::awaitable<void> reconcile_loop() {
    while (!stopped_) {
      reconcile_timer_.expires_after(options_.reconcile_interval);
      co_await reconcile_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (stopped_ || store_.stopped()) {
        co_return;
      }
      co_await reconcile_once();
      co_await retire_old_root();
    }
  }

  // One membership change towards the state's roles, if this node leads and none is running.
  asio::awaitable<void> reconcile_once() {
    if (reconciling_ || !store_.is_leader()) {
      co_return;
    }
    reconciling_ = true;
    const auto status = store_.raft().status();
    for (const auto& [id, n] : state().nodes) {
      auto rid = raft_id(id);
      if (!rid || n.peer.empty() || *rid == status.id) {
        continue;
      }
      const raft::Member* m = member(*rid, status);
      const std::string peer = n.peer;
      const std::string name = n.name;
      raft::NodeResult<void> r;
      const char* what = nullptr;
      if (n.role == NodeRole::manager) {
        if (m == nullptr) {
          what = "add as learner";
          r = co_await store_.raft().add_member(*rid, peer, false);
        } else if (!m->voter) {
          what = "promote to voter";
          r = co_await store_.raft().promote_member(*rid);
        }
      } else if (m == nullptr) {
        what = "add as learner (demoted)";
        r = co_await store_.raft().add_member(*rid, peer, false);
      } else if (m->voter) {
        what = "remove from voters (demoted)";
        r = co_await store_.raft().remove_member(*rid);
      }
      if (what == nullptr) {
        continue;
      }
      if (r) {
        spdlog::info("api: membership: {} {} ({}): done", what, name, id);
      } else if (r.error().code != node_errc::timeout) {
        spdlog::warn("api: membership: {} {} ({}): {}", what, name, id, r.error().message());
      }
      break;  // one change at a time; the state may have changed meanwhile
    }
    reconciling_ = false;
  }

  // ---- watch ----------------------------------------------------------------------------------

  asio::awaitable<void> watch(Request req, admin::ChunkWriter& writer) {
    if (auto refusal = refuse_unauthorized(req)) {
      co_await writer.respond(std::move(*refusal));
      co_return;
    }
    if (req.method != "GET") {
      Response refusal = not_allowed(req, "GET");
      co_await writer.respond(std::move(refusal));
      co_return;
    }
    std::uint64_t from = 0;
    if (auto it = req.query.find("from"); it != req.query.end()) {
      auto v = version_param({{"version", it->second}});
      auto* n = std::get_if<std::optional<std::uint64_t>>(&v);
      if (n == nullptr || !*n) {
        Response refusal =
            error_response(ApiError{400, "invalid", "expected a revision number", "from"});
        co_await writer.respond(std::move(refusal));
        co_return;
      }
      from = **n;
    }
    std::string head_only;
    bool alive = co_await writer.write(std::move(head_only));
    if (!alive) {
      co_return;
    }
    bool need_snapshot = from == 0;
    std::uint64_t sent = from;
    while (!store_.stopped()) {
      const ClusterState& s = state();
      const std::string secrets = secrets_key();
      std::string out;
      if (!need_snapshot && s.revision > sent) {
        auto deltas = store_.deltas_since(sent);
        if (!deltas) {
          need_snapshot = true;
        } else {
          for (const auto& d : *deltas) {
            // The line is {"type":"delta","revision":N,"command":...}, written around the
            // command's own text: a copy of the command only when the subscriber's view of it
            // differs (for_subscribers), and no object built around it.
            out += R"({"type":"delta","revision":)";
            out += std::to_string(d.revision);
            out += R"(,"command":)";
            if (subscriber_view_differs(*d.command)) {
              json::object command = *d.command;
              for_subscribers(command, secrets);
              out += json::serialize(command);
            } else {
              out += json::serialize(*d.command);
            }
            out += "}\n";
            sent = d.revision;
          }
        }
      }
      if (need_snapshot) {
        json::object whole = store::to_json(s);
        for_subscribers(whole, secrets);
        out = json::serialize(json::object{
            {"type", "snapshot"}, {"revision", s.revision}, {"state", std::move(whole)}});
        out += '\n';
        sent = s.revision;
        need_snapshot = false;
      }
      if (!out.empty()) {
        alive = co_await writer.write(std::move(out));
        if (!alive) {
          co_return;
        }
      }
      const bool changed =
          co_await store_.wait_for_change(state().revision, options_.ping_interval);
      if (store_.stopped()) {
        co_return;
      }
      if (!changed) {
        std::string ping = "{\"type\":\"ping\"}\n";
        alive = co_await writer.write(std::move(ping));
        if (!alive) {
          co_return;
        }
      }
    }
  }

  asio::any_io_executor executor_;
  store::Store& store_;
  ApiOptions options_;
  std::mt19937_64 rng_;
  asio::steady_timer reconcile_timer_;
  base::KeepAliveClient forward_client_;  // follower -> leader: one connection, not one per write
  std::string ca_digest_;                 // of options_.ca_pem: what join tokens must pin
  std::shared_ptr<const tls::CertificateAuthority> ca_;  // options_.ca, then set_signing's
  std::string manager_key_;     // options_.manager_key, then set_signing's ("" = none)
  std::string signing_digest_;  // of the state's first root, at digest_version_
  std::uint64_t digest_version_ = std::numeric_limits<std::uint64_t>::max();
  prometheus::Family<prometheus::Counter>* join_refusals_ = nullptr;
  bool reconciling_ = false;
  bool stopped_ = false;
};

}  // namespace

std::string secrets_key_of(const ClusterCa& ca, const std::string& manager_key) {
  if (ca.secrets_key_wrapped.empty() || manager_key.empty()) {
    return {};
  }
  auto key = tls::unwrap_manager_key(ca.secrets_key_wrapped, manager_key);
  return key ? std::move(*key) : std::string{};
}

std::unique_ptr<Api> make_api(asio::any_io_executor executor, store::Store& store,
                              ApiOptions options) {
  return std::make_unique<ApiImpl>(std::move(executor), store, options);
}

}  // namespace routemesh::discovery::manager
