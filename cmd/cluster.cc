// Cluster mode wiring. A manager: identity (or join) -> Store (RaftNode + StoreStateMachine) ->
// REST API on the admin server (+ the first start's bootstrap); a worker: identity (or join) ->
// watch client. Both: every new state -> RoutePublisher (route_publisher.h: compile_route_table
// on its own thread, one compile at a time, of the newest state) -> proxy publish. The
// join client and the list of managers are discovery/agent/'s, the bootstrap and the API
// discovery/manager/'s: this file only connects them.
//
// Everything below runs on the control thread's io_context (one thread): Raft's Ready loop
// and its WAL fdatasync (group commit: whatever queues up while one Ready is being persisted
// goes into the next one), the store, the API and the watch. The route compilation runs on the
// RoutePublisher's thread, so none of these waits for it. The proxy threads only see the
// published RouteTable (atomic pointer swap).

#include "cmd/cluster.h"

#include "admin/admin_server.h"
#include "base/check.h"
#include "base/http_client.h"
#include "base/metrics.h"
#include "base/spawn.h"
#include "cmd/cluster_tls.h"
#include "cmd/data_plane.h"
#include "cmd/route_publisher.h"
#include "cmd/unlock.h"
#include "config/config.h"
#include "discovery/agent/join_client.h"
#include "discovery/agent/watch_client.h"
#include "discovery/dns/server.h"
#include "discovery/manager/api.h"
#include "discovery/manager/bootstrap.h"
#include "discovery/manager/liveness.h"
#include "discovery/manager/request.h"
#include "discovery/raft/identity.h"
#include "discovery/raft/metrics.h"
#include "discovery/store/state_machine.h"
#include "discovery/store/store.h"
#include "proxy/firewall.h"
#include "proxy/health/health_checker.h"
#include "proxy/loopback_addresses.h"
#include "proxy/metrics.h"
#include "proxy/server.h"
#include "tls/context.h"
#include "tls/pki.h"
#include "tls/token.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <set>

namespace routemesh::cmd {
namespace {

namespace asio = boost::asio;
namespace agent = discovery::agent;
namespace manager = discovery::manager;
namespace raft = discovery::raft;
namespace store = discovery::store;

std::uint64_t random_id() {
  std::random_device rd;
  std::uint64_t v = 0;
  while (v == 0) {
    v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }
  return v;
}

// Everything a cluster node owns. Lives in run_cluster_node's frame, which blocks in
// io_context::run() for as long as any coroutine below can run; the coroutines therefore take
// it by reference (the exception to docs/style.md's rule of owned coroutine parameters, for this
// one frame).
struct ClusterNode {
  const config::NodeConfig& cfg;
  std::string join;                          // a manager's admin address ("" = none)
  std::optional<tls::JoinToken> join_token;  // for a node without an identity
  std::string unlock_key;                    // autolock: opens data_dir/tls ("" = none given)
  asio::io_context& control;
  admin::AdminServer& admin;
  std::string admin_address;  // "IP:PORT" actually bound
  RoutePublisher& publisher;
  prometheus::Registry& registry;
  proxy::HealthChecker& checker;
  proxy::ProxyServer* proxy = nullptr;
  std::optional<NodeTls> tls;  // from data_dir/tls, once joined
  std::optional<raft::Metrics> raft_metrics;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<discovery::manager::Api> api;
  std::unique_ptr<discovery::agent::WatchClient> watcher;
  std::unique_ptr<discovery::manager::Liveness> liveness;
  raft::Identity identity;
  int exit_code = 0;
  bool stopping = false;
  std::function<void()> shutdown;
  std::vector<std::string> last_managers;
  discovery::ClusterCa ca;              // the state's CA record, as last seen
  std::optional<tls::Role> state_role;  // this node's role in the state, as last seen
  // reissue_now's memory: what it found for this certificate under this CA record version.
  struct {
    std::string cert;
    std::uint64_t ca_version = 0;
    bool new_root_needed = false;
    std::optional<tls::Role> role;
  } reissue_seen;
  asio::steady_timer* renewal_pause = nullptr;  // renew_certificates' wait, to cut it short
  bool told_removed = false;  // the state said this node was removed, and the log said so

  bool manager() const { return cfg.cluster.role == config::ClusterRole::manager; }
};

// Gives the proxy threads the overlay's TLS contexts from the node's current certificate
// (cluster.overlay_encryption: without them no overlay stream opens either way).
void give_overlay_tls(ClusterNode& n) {
  if (!n.cfg.cluster.overlay_encryption || n.proxy == nullptr || !n.tls) {
    return;
  }
  if (auto t = overlay_tls(*n.tls, n.identity.cluster_id, n.cfg.cluster.overlay_rekey_bytes)) {
    n.proxy->set_overlay_tls(std::move(t));
  }
}

// The state's revoked certificates, refused from now on by every TLS listener of the node;
// connections already made with one end too: the admin API's (a watch stream included) and
// the overlay's. A node that reads its own removal says so once: from then on every other
// node refuses it, and its own attempts fail. (A manager reads it in the Raft log; a worker's
// watch stream is usually cut before the removal reaches it, and the watch client says why.)
void follow_revocations(ClusterNode& n, const discovery::ClusterState& s) {
  if (!n.told_removed && s.removed_nodes.contains(raft::format_node_id(n.identity.node_id))) {
    n.told_removed = true;
    spdlog::error(
        "cluster: this node was removed from the cluster (node rm): every node refuses its "
        "certificate from now on; to take part again, stop it and join again with a fresh "
        "data_dir");
  }
  std::set<std::string, std::less<>> raft_members;
  if (n.store) {
    for (const auto& m : n.store->raft().status().members) {
      raft_members.insert(raft::format_node_id(m.id));
    }
  }
  if (!set_revocations(*n.tls, s, raft_members)) {
    return;
  }
  n.admin.cut_untrusted();
  if (n.proxy != nullptr) {
    n.proxy->recheck_overlay_peers();
  }
  if (n.store) {  // a manager: Raft connections made before the revocation
    n.store->raft().recheck_peers();
  }
}

prometheus::Gauge& trusted_roots(ClusterNode& n) {
  return base::gauge(n.registry, "routemesh_tls_trusted_roots",
                     "Root CAs this node trusts: 2 while a root rotation runs, else 1.");
}

// Whether this node's certificate must be re-issued now rather than at two thirds of its
// lifetime: a root rotation wants one of the new root (needs_new_root), or the state gave the
// node another role than its certificate names (promote, demote).
// Runs on every state the node sees: the certificate is parsed (and, while rotating, its
// signature checked) only when it or the CA record changed.
bool reissue_now(ClusterNode& n) {
  if (!n.tls) {
    return false;
  }
  auto& seen = n.reissue_seen;
  if (seen.cert != n.tls->credentials.cert_pem || seen.ca_version != n.ca.version) {
    seen.cert = n.tls->credentials.cert_pem;
    seen.ca_version = n.ca.version;
    seen.new_root_needed = needs_new_root(*n.tls, n.ca);
    auto named = tls::identity_of(seen.cert);
    seen.role = named ? std::optional<tls::Role>(named->role) : std::nullopt;
  }
  return seen.new_root_needed || n.tls->manager_key_behind ||
         (n.state_role && seen.role && *seen.role != *n.state_role);
}

// Follows the state for this node's certificate: the CA record (cluster_tls.h,
// follow_cluster_ca) and the node's role; wakes the renewal loop when the certificate must be
// re-issued (reissue_now).
void follow_ca(ClusterNode& n, const discovery::ClusterState& s) {
  if (!n.tls) {
    return;
  }
  if (auto self = s.nodes.find(raft::format_node_id(n.identity.node_id)); self != s.nodes.end()) {
    n.state_role =
        self->second.role == discovery::NodeRole::manager ? tls::Role::manager : tls::Role::worker;
  }
  if (!s.ca.roots.empty()) {
    n.ca = s.ca;
    const CaChange change = follow_cluster_ca(*n.tls, s.ca, n.cfg.cluster.data_dir);
    if (n.api) {
      // The API uses the CA only while it is the signing root's.
      n.api->set_signing(n.tls->ca, n.tls->credentials.manager_key);
    }
    if (change.trust || change.chain) {
      give_overlay_tls(n);  // streams opened from now on trust and present the new ones
    }
    if (change.trust) {
      trusted_roots(n).Set(static_cast<double>(s.ca.roots.size()));
      n.admin.cut_untrusted();  // users of a root retired just now
    }
  }
  if (reissue_now(n) && n.renewal_pause != nullptr) {
    n.renewal_pause->cancel();
  }
}

// Logs "cluster ready" once: a manager that knows a leader and finds itself in the state, a
// worker with its first snapshot.
asio::awaitable<void> announce_ready(ClusterNode& n) {
  asio::steady_timer pause(n.control.get_executor());
  const std::string id = raft::format_node_id(n.identity.node_id);
  while (!n.stopping) {
    bool ready = false;
    if (n.manager()) {
      ready =
          n.store->raft().status().leader != raft::kNoNode && n.store->state().nodes.count(id) != 0;
    } else {
      ready = n.watcher->synced();
    }
    if (ready) {
      spdlog::info("cluster ready: role={} id={}", n.manager() ? "manager" : "worker", id);
      co_return;
    }
    pause.expires_after(std::chrono::milliseconds(20));
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// One heartbeat; the answer does not matter (the manager only records the time).
asio::awaitable<void> heartbeat_once(asio::any_io_executor ex, std::string address,
                                     base::ClientRequest req, std::chrono::milliseconds timeout,
                                     base::TlsContext tls) {
  co_await base::http_call(std::move(ex), std::move(address), std::move(req), timeout,
                           std::move(tls));
}

// Tells every manager this node is alive, every cluster.heartbeat_ms (see liveness.h). Each
// call is bounded by the interval, so a dead manager never delays the others.
asio::awaitable<void> send_heartbeats(ClusterNode& n) {
  auto ex = n.control.get_executor();
  asio::steady_timer pause(ex);
  const auto interval = std::chrono::milliseconds(n.cfg.cluster.heartbeat_ms);
  const std::string body = "{\"node\":\"" + raft::format_node_id(n.identity.node_id) + "\"}";
  while (!n.stopping) {
    const std::vector<std::string> managers =
        n.manager() ? agent::manager_addresses(n.store->state()) : n.last_managers;
    if (n.store) {
      // A Raft configuration change brings no new state: a removed manager leaves Raft after
      // it left the state, and only then are its certificates refused (follow_revocations).
      follow_revocations(n, n.store->state());
    }
    for (const auto& address : managers) {
      base::ClientRequest req;
      req.method = "POST";
      req.target = "/v1/heartbeat";
      req.body = body;
      asio::co_spawn(ex, heartbeat_once(ex, address, std::move(req), interval, n.tls->client),
                     asio::detached);
    }
    pause.expires_after(interval);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// Keeps this node's certificate fresh: renews it once two thirds of its lifetime have passed
// (cluster_tls.h), and after a failed attempt tries again after a tenth of the time left (1 to
// 30 s). Counted in routemesh_tls_certificate_renewals_total{result}; the current
// certificate's end is routemesh_tls_certificate_expiry_timestamp_seconds.
asio::awaitable<void> renew_certificates(ClusterNode& n) {
  auto ex = n.control.get_executor();
  auto& renewals = base::counter_family(n.registry, "routemesh_tls_certificate_renewals_total",
                                        "Renewals of this node's certificate, by result.");
  auto& expiry = base::gauge(n.registry, "routemesh_tls_certificate_expiry_timestamp_seconds",
                             "When this node's certificate expires (unix time).");
  const std::string node_id = raft::format_node_id(n.identity.node_id);
  if (auto roots = tls::split_certificates(n.tls->credentials.ca_pem)) {
    trusted_roots(n).Set(static_cast<double>(roots->size()));
  }
  asio::steady_timer pause(ex);
  n.renewal_pause = &pause;
  std::int64_t retry_at = 0;
  while (!n.stopping) {
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    const auto end = tls::not_after(n.tls->credentials.cert_pem);
    expiry.Set(end ? static_cast<double>(*end) : 0.0);
    // A root rotation or a role change wants a new certificate now (follow_ca cuts the wait
    // short).
    const std::int64_t wanted = reissue_now(n) ? now : renewal_time(*n.tls);
    const std::int64_t due = std::max(wanted, retry_at);
    if (now < due) {
      pause.expires_after(std::chrono::seconds(std::min<std::int64_t>(due - now, 3600)));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    std::vector<std::string> managers =
        n.manager() ? agent::manager_addresses(n.store->state()) : n.last_managers;
    const bool ok = co_await renew_node_certificate(ex, *n.tls, n.cfg.cluster.data_dir, node_id,
                                                    std::move(managers));
    renewals.Add({{"result", ok ? "ok" : "failed"}}).Increment();
    if (ok) {
      give_overlay_tls(n);  // streams opened from now on present the new certificate
      if (n.manager()) {
        // A manager key that came with it opens the CA now, and the HTTPS keys sealed in the
        // state (the routes are compiled again).
        follow_ca(n, n.store->state());
        n.publisher.schedule(n.store->state());
      }
      // A manager that had not seen the rotation (or the role) yet signed the old way: again
      // soon.
      retry_at = reissue_now(n) ? now + 1 : 0;
    } else {
      const std::int64_t left = end ? *end - now : 0;
      retry_at = now + std::clamp<std::int64_t>(left / 10, 1, 30);
    }
  }
  n.renewal_pause = nullptr;
}

asio::awaitable<void> start_cluster(ClusterNode& n) {
  const auto& cl = n.cfg.cluster;
  auto ex = n.control.get_executor();

  auto identity = raft::read_identity(cl.data_dir);
  if (identity) {
    n.identity = *identity;
  } else {
    discovery::JoinRequest request;
    request.name = n.cfg.node.name;
    request.role = n.manager() ? discovery::NodeRole::manager : discovery::NodeRole::worker;
    request.api = n.admin_address;
    if (n.manager()) {
      request.peer = cl.peer;
    }
    request.overlay = n.cfg.node.overlay;
    spdlog::info("cluster: joining via {} as {}", n.join, n.manager() ? "manager" : "worker");
    // Named arguments, no temporaries in the co_await: see api.cc commit() on GCC 12.
    std::string address = n.join;
    tls::JoinToken token = *n.join_token;
    auto joined =
        co_await agent::secure_join(ex, std::move(address), std::move(token), std::move(request));
    if (n.stopping) {
      co_return;
    }
    if (!joined) {
      n.exit_code = 2;
      n.shutdown();
      co_return;
    }
    // The credentials before the identity: a node with an identity always has them.
    if (auto w = tls::write_node_credentials(cl.data_dir, joined->credentials); !w) {
      spdlog::error("cluster: cannot write {}: {}", tls::tls_dir(cl.data_dir), w.error().message());
      n.exit_code = 1;
      n.shutdown();
      co_return;
    }
    const discovery::JoinReply* reply = &joined->reply;
    const auto node_id = raft::parse_node_id(reply->node_id);
    RM_CHECK(node_id && *node_id != 0, "decode_join_reply accepts only valid node ids");
    n.identity = raft::Identity{reply->cluster_id, *node_id, n.cfg.node.name};
    if (auto w = raft::write_identity(cl.data_dir, n.identity); !w) {
      spdlog::error("cluster: cannot write {}: {}", raft::identity_path(cl.data_dir),
                    w.error().message());
      n.exit_code = 1;
      n.shutdown();
      co_return;
    }
    if (!n.manager()) {
      auto managers = agent::managers_after_join(*reply, n.join);
      agent::write_managers(cl.data_dir, managers);
      n.last_managers = managers;
    }
    spdlog::info("cluster: joined cluster {} as {}", n.identity.cluster_id,
                 raft::format_node_id(n.identity.node_id));
  }

  n.tls = load_node_tls(cl.data_dir, n.identity.cluster_id,
                        raft::format_node_id(n.identity.node_id), n.unlock_key);
  if (!n.tls) {
    n.exit_code = 2;
    n.shutdown();
    co_return;
  }
  n.admin.use_tls(n.tls->server);
  n.admin.recheck_peers(n.tls->revoked);
  n.checker.use_tls(n.tls->client);
  give_overlay_tls(n);

  if (n.manager()) {
    auto marker = manager::read_bootstrap_marker(cl.data_dir);
    store::StoreOptions so;
    so.raft.id = n.identity.node_id;
    so.raft.peer_address = cl.peer;
    so.raft.data_dir = cl.data_dir + "/raft";
    so.raft.tick_ms = cl.tick_ms;
    so.raft.election_ticks = cl.election_ticks;
    so.raft.heartbeat_ticks = cl.heartbeat_ticks;
    so.raft.snapshot_entries = cl.snapshot_entries;
    n.raft_metrics.emplace(n.registry);
    so.raft.metrics = &*n.raft_metrics;
    so.registry = &n.registry;
    // Raft between managers is mutual TLS: the peer's certificate must be a node certificate
    // of this cluster, of a manager (by its certificate, or by the state for a promoted
    // worker); the transport then checks the id against the claim and the configuration.
    so.raft.tls.server = n.tls->server;
    so.raft.tls.client = n.tls->client;
    // Revocation is checked here too: the client side of a connection has no other check of
    // it, and follow_revocations() asks again about connections made before a revocation.
    so.raft.tls.authenticate = [&n](const ssl_st* ssl) -> std::optional<raft::NodeId> {
      auto who = tls::verified_peer(ssl);
      if (!who || who->cluster_id != n.identity.cluster_id || !tls::is_node_role(who->role) ||
          n.tls->revoked->peer_revoked(ssl)) {
        return std::nullopt;
      }
      auto id = raft::parse_node_id(who->id);
      if (!id || who->role == tls::Role::manager) {
        return id;
      }
      if (n.store) {  // a worker certificate: only for a node the state knows as a manager
        auto it = n.store->state().nodes.find(who->id);
        if (it != n.store->state().nodes.end() && it->second.role == discovery::NodeRole::manager) {
          return id;
        }
      }
      return std::nullopt;
    };
    if (marker) {
      so.bootstrap.conf.voters.insert(n.identity.node_id);
      so.bootstrap.peers[n.identity.node_id] = cl.peer;
    }
    auto opened = store::Store::open(ex, std::move(so));
    if (!opened) {
      spdlog::error("cluster: cannot open the store in {}: {}", cl.data_dir,
                    opened.error().message());
      n.exit_code = 1;
      n.shutdown();
      co_return;
    }
    n.store = std::move(*opened);
    n.store->on_state([&n](const discovery::ClusterState& s) {
      follow_revocations(n, s);
      follow_ca(n, s);
      n.publisher.schedule(s);
    });
    // The route compile thread follows the store by its deltas, not by copies of the state.
    n.publisher.use_deltas([&n](std::uint64_t after) { return n.store->deltas_since(after); });
    // ... and opens the HTTPS keys the state holds sealed with the state's secrets key.
    n.publisher.use_secrets([&n] {
      return n.store && n.tls
                 ? manager::secrets_key_of(n.store->state().ca, n.tls->credentials.manager_key)
                 : std::string{};
    });
    manager::ApiOptions ao;
    ao.cluster_id = n.identity.cluster_id;
    ao.client_tls = n.tls->client;
    ao.ca_pem = n.tls->credentials.ca_pem;
    ao.ca = n.tls->ca;
    ao.manager_key = n.tls->credentials.manager_key;
    ao.node_cert_lifetime = std::chrono::seconds(cl.cert_lifetime_s);
    ao.user_cert_lifetime = std::chrono::seconds(cl.user_cert_lifetime_s);
    ao.registry = &n.registry;
    n.api = manager::make_api(ex, *n.store, std::move(ao));
    n.api->register_handlers(n.admin);
    n.api->start();
    manager::LivenessOptions lo;
    lo.down_after = std::chrono::milliseconds(cl.node_down_after_ms);
    lo.self_id = raft::format_node_id(n.identity.node_id);
    lo.cluster_id = n.identity.cluster_id;
    lo.overlay_rekey = std::chrono::seconds(cl.overlay_rekey_s);
    lo.registry = &n.registry;
    n.liveness = manager::make_liveness(ex, *n.store, std::move(lo));
    n.liveness->register_handlers(n.admin);
    n.liveness->start();
    set_revocations(*n.tls, n.store->state());
    follow_ca(n, n.store->state());
    n.publisher.schedule(n.store->state());
    if (marker) {
      manager::BootstrapOptions bo;
      bo.data_dir = cl.data_dir;
      bo.cluster_id = n.identity.cluster_id;
      bo.subnet_pool = marker->subnet_pool.empty() ? cl.subnet_pool : marker->subnet_pool;
      bo.worker_token_hash = marker->worker_token_hash;
      bo.manager_token_hash = marker->manager_token_hash;
      bo.ca_root = marker->ca_root;
      bo.sealed_ca_key = marker->sealed_ca_key;
      bo.unlock_key_wrapped = marker->unlock_key_wrapped;
      bo.self.id = raft::format_node_id(n.identity.node_id);
      bo.self.name = n.cfg.node.name;
      bo.self.role = discovery::NodeRole::manager;
      bo.self.address = n.admin_address;
      bo.self.peer = n.store->raft().peer_address();
      bo.self.overlay = n.cfg.node.overlay;
      bo.self.status = discovery::NodeStatus::ready;
      asio::co_spawn(ex, manager::bootstrap_cluster(*n.store, std::move(bo)),
                     base::log_and_count("cluster: bootstrap"));
    }
  } else {
    agent::WatchOptions wo;
    wo.managers = agent::read_managers(cl.data_dir);
    if (!n.join.empty() &&
        std::find(wo.managers.begin(), wo.managers.end(), n.join) == wo.managers.end()) {
      wo.managers.push_back(n.join);
    }
    if (wo.managers.empty()) {
      spdlog::error("cluster: worker {} knows no manager: give --join ADDR", n.cfg.node.name);
      n.exit_code = 2;
      n.shutdown();
      co_return;
    }
    n.last_managers = wo.managers;
    wo.registry = &n.registry;
    wo.tls = n.tls->client;
    n.watcher = agent::make_watch_client(ex, std::move(wo));
    n.watcher->on_state([&n](const discovery::ClusterState& s) {
      follow_revocations(n, s);
      follow_ca(n, s);
      n.publisher.schedule(s);
      // Remember the managers, so a restarted worker finds one even if its join address died.
      auto managers = agent::manager_addresses(s);
      if (!managers.empty() && managers != n.last_managers) {
        n.last_managers = managers;
        agent::write_managers(n.cfg.cluster.data_dir, managers);
      }
    });
    n.watcher->start();
  }
  asio::co_spawn(ex, send_heartbeats(n), base::log_and_count("cluster: heartbeats"));
  asio::co_spawn(ex, renew_certificates(n), base::log_and_count("cluster: certificate renewal"));
  co_await announce_ready(n);
}

}  // namespace

int run_cluster_init(const ClusterInitOptions& options) {
  auto parsed = config::load_file(options.config_path);
  if (auto* errors = std::get_if<std::vector<config::FieldError>>(&parsed)) {
    for (const auto& e : *errors) {
      std::fprintf(stderr, "routemesh: %s: %s%s%s\n", options.config_path.c_str(), e.path.c_str(),
                   e.path.empty() ? "" : ": ", e.message.c_str());
    }
    return 2;
  }
  const auto& cfg = std::get<config::NodeConfig>(parsed);
  if (!cfg.cluster_mode || cfg.cluster.role != config::ClusterRole::manager) {
    std::fprintf(stderr,
                 "routemesh: %s: cluster: `cluster init` needs a cluster section with role: "
                 "manager\n",
                 options.config_path.c_str());
    return 2;
  }
  const std::string& dir = cfg.cluster.data_dir;
  if (raft::read_identity(dir) || std::filesystem::exists(raft::identity_path(dir))) {
    std::fprintf(stderr, "routemesh: %s already holds a cluster (%s); not touching it\n",
                 dir.c_str(), raft::identity_path(dir).c_str());
    return 1;
  }
  std::error_code ec;
  if (std::filesystem::exists(dir + "/raft", ec) && !std::filesystem::is_empty(dir + "/raft", ec)) {
    std::fprintf(stderr, "routemesh: %s/raft already holds Raft state; not touching it\n",
                 dir.c_str());
    return 1;
  }
  // The operator's own root, checked before anything is written.
  std::optional<tls::CertificateAuthority> own_root;
  if (!options.ca_cert.empty() || !options.ca_key.empty()) {
    auto cert = tls::read_credential_file(options.ca_cert);
    auto key = tls::read_credential_file(options.ca_key);
    if (!cert || !key) {
      const bool cert_bad = !cert;
      std::fprintf(stderr, "routemesh: %s %s: %s\n", cert_bad ? "--ca-cert" : "--ca-key",
                   (cert_bad ? options.ca_cert : options.ca_key).c_str(),
                   (cert_bad ? cert.error() : key.error()).message().c_str());
      return 2;
    }
    auto root = tls::CertificateAuthority::import(*cert, *key,
                                                  static_cast<std::int64_t>(std::time(nullptr)));
    if (!root) {
      // Name the flag the error is about: the key for a key that is not the certificate's
      // (or not a key), the certificate otherwise.
      const bool about_key =
          root.error() == tls::errc::key_mismatch || root.error() == tls::errc::unsupported_key ||
          (root.error() == tls::errc::malformed_pem && tls::certificate_digest(*cert).has_value());
      std::fprintf(stderr, "routemesh: %s %s: %s\n", about_key ? "--ca-key" : "--ca-cert",
                   (about_key ? options.ca_key : options.ca_cert).c_str(),
                   root.error().message().c_str());
      return 2;
    }
    own_root.emplace(std::move(*root));
  }
  if (options.autolock && options.external_ca) {
    std::fprintf(stderr,
                 "routemesh: --autolock: an external CA has no manager key to lock (its key "
                 "stays in files the operator places)\n");
    return 2;
  }
  raft::Identity identity{manager::hex_id(random_id()), random_id(), cfg.node.name};
  // The credentials, then the marker (it holds the tokens' hashes): an identity without them
  // would start as a member of nothing.
  auto pki = init_cluster_pki(
      cfg, identity.cluster_id, raft::format_node_id(identity.node_id), options.cert_dir,
      tls::RootChoice{own_root ? &*own_root : nullptr, options.external_ca}, options.autolock);
  if (!pki) {
    return 1;
  }
  if (auto w = manager::write_bootstrap_marker(
          dir,
          {identity.cluster_id, cfg.cluster.subnet_pool, pki->worker_token_hash,
           pki->manager_token_hash, pki->ca_root, pki->sealed_ca_key, pki->unlock_key_wrapped});
      !w) {
    std::fprintf(stderr, "routemesh: cannot write %s: %s\n",
                 manager::bootstrap_marker_path(dir).c_str(), w.error().message().c_str());
    return 1;
  }
  if (auto w = raft::write_identity(dir, identity); !w) {
    std::fprintf(stderr, "routemesh: cannot write %s: %s\n", raft::identity_path(dir).c_str(),
                 w.error().message().c_str());
    return 1;
  }
  std::printf(
      "cluster %s initialized in %s\n"
      "  this node: %s (id %s), first manager, Raft peer %s\n"
      "  CA, node certificate and keys: %s\n"
      "start it:\n"
      "  routemesh node --config %s\n"
      "join other nodes (the token must match the role in their config's cluster.role):\n"
      "  workers:  routemesh node --config OTHER.yaml --join %s@%s\n"
      "  managers: routemesh node --config OTHER.yaml --join %s@%s\n"
      "  (shown once: the cluster keeps only their hashes; `routemesh cluster token rotate "
      "worker|manager` makes new ones)\n",
      identity.cluster_id.c_str(), dir.c_str(), cfg.node.name.c_str(),
      raft::format_node_id(identity.node_id).c_str(), cfg.cluster.peer.c_str(),
      tls::tls_dir(dir).c_str(), options.config_path.c_str(), pki->worker_token.c_str(),
      cfg.node.admin.c_str(), pki->manager_token.c_str(), cfg.node.admin.c_str());
  if (!pki->unlock_key.empty()) {
    std::printf(
        "autolock is on: this manager's keys are encrypted with the unlock key (shown once; "
        "`routemesh cluster unlock-key` shows it to an admin):\n\n    %s\n\n"
        "start this node with it: routemesh node --config %s --unlock-key-file FILE (or "
        "ROUTEMESH_UNLOCK_KEY)\n",
        pki->unlock_key.c_str(), options.config_path.c_str());
  }
  if (pki->cert_dir.empty()) {
    std::printf(
        "the admin client certificate is in %s/admin (no $HOME: give the CLI --cert, "
        "--key and --ca, or set ROUTEMESH_CERT_DIR)\n",
        tls::tls_dir(dir).c_str());
  } else {
    std::printf("the CLI's admin certificate: %s (ca.pem, cert.pem, key.pem; also in %s/admin)\n",
                pki->cert_dir.c_str(), tls::tls_dir(dir).c_str());
  }
  return 0;
}

int run_cluster_node(const NodeOptions& options, const config::NodeConfig& cfg) {
  const auto& cl = cfg.cluster;
  // --join TOKEN@ADDR (or an address alone: cluster.join, or a node that already joined).
  std::string join = options.join.empty() ? cl.join : options.join;
  std::optional<tls::JoinToken> join_token;
  if (join.find('@') != std::string::npos) {
    auto target = tls::parse_join_target(join);
    if (auto* e = std::get_if<std::string>(&target)) {
      spdlog::error("cluster: --join: {}", *e);
      return 2;
    }
    join_token = std::get<tls::JoinTarget>(target).token;
    join = std::get<tls::JoinTarget>(target).address;
  }
  auto identity = raft::read_identity(cl.data_dir);
  if (!identity && std::filesystem::exists(raft::identity_path(cl.data_dir))) {
    spdlog::error("cluster: {} is malformed; not starting", raft::identity_path(cl.data_dir));
    return 2;
  }
  if (!identity && join.empty()) {
    spdlog::error(
        "cluster: {} holds no cluster: run `routemesh cluster init --config FILE` on the first "
        "manager, or join one with --join TOKEN@ADDR",
        cl.data_dir);
    return 2;
  }
  if (!identity && !join_token) {
    spdlog::error(
        "cluster: joining needs a join token: --join TOKEN@{} (the token is printed by `cluster "
        "init` and by `cluster token rotate worker|manager`)",
        join);
    return 2;
  }
  if (identity && identity->name != cfg.node.name) {
    spdlog::error("cluster: {} belongs to node {}, not {}; not starting",
                  raft::identity_path(cl.data_dir), identity->name, cfg.node.name);
    return 2;
  }
  if (identity && !options.join.empty()) {
    spdlog::info("cluster: {} already joined cluster {}; --join ignored", cfg.node.name,
                 identity->cluster_id);
  }
  auto unlock_key = unlock_key_of(options.unlock_key_file);
  if (auto* e = std::get_if<1>(&unlock_key)) {
    spdlog::error("cluster: {}", *e);
    return 2;
  }
  if (identity) {
    if (auto locked = check_unlock(cl.data_dir, std::get<0>(unlock_key))) {
      // On a terminal the operator types the key. Otherwise (a service manager), with no key
      // given, the manager waits for `routemesh cluster unlock` (unlock.h); a key given that
      // does not open the keys ends the start.
      std::optional<std::string> typed;
      if (::isatty(STDIN_FILENO) != 0) {
        typed = prompt_unlock_key(cl.data_dir, *locked);
      } else if (std::get<0>(unlock_key).empty()) {
        auto waited = wait_for_unlock(cl.data_dir, *locked);
        if (waited.outcome == UnlockWait::stopped) {
          return 0;
        }
        if (waited.outcome == UnlockWait::unlocked) {
          typed = std::move(waited.key);
        }
      }
      if (!typed) {
        spdlog::error("cluster: {}", *locked);
        return 2;
      }
      std::get<0>(unlock_key) = std::move(*typed);
    }
  }

  auto registry = std::make_shared<prometheus::Registry>();
  proxy::Metrics proxy_metrics(*registry);
  auto& revision = route_table_revision(*registry);

  asio::io_context control(1);
  auto dp = start_data_plane(cfg, proxy_metrics, registry, control.get_executor(),
                             store::initial_state());
  if (!dp) {
    return 1;
  }
  auto& proxy = dp->proxy;
  auto& admin = dp->admin;
  const std::uint16_t admin_port = dp->admin_port;

  proxy::HealthChecker checker(control.get_executor(), *registry);
  std::optional<proxy::LoopbackAddresses> vips;  // removed from lo when this frame ends
  if (cfg.node.vips) {
    vips.emplace(*registry);
  }
  // The embedded DNS server: each network's DNS address on lo (removed when this frame ends).
  std::optional<proxy::LoopbackAddresses> dns_addresses;
  std::unique_ptr<discovery::dns::Server> dns;
  if (cfg.node.dns) {
    dns_addresses.emplace(*registry);
    dns = discovery::dns::make_server(
        control.get_executor(), cfg.dns, *registry,
        [&dns_addresses](const std::set<std::string>& want) { dns_addresses->reconcile(want); });
  }
  // The kernel backend of network policy: the table `inet routemesh`, removed when this frame
  // ends (and by shutdown, before the proxy drains).
  std::optional<proxy::Firewall> firewall;
  if (cfg.firewall.backend == config::FirewallBackend::nftables) {
    firewall.emplace(cfg.firewall, cfg.node.proxy_protocol_from, *registry);
  }
  // Compiles every new state on its own thread (route_publisher.h); stopped, and its thread
  // joined, by node.shutdown before the proxy shuts down.
  RoutePublisher publisher(control.get_executor(), cfg.node.name,
                           {*proxy, revision, checker, vips ? &*vips : nullptr, dns.get(),
                            firewall ? &*firewall : nullptr},
                           *registry);
  // TLS only, from the first turn of the control loop: a node still joining has no certificate
  // yet and answers nothing until it has one.
  admin->use_tls(nullptr);
  ClusterNode node{cfg,       join,   join_token, std::get<0>(std::move(unlock_key)),
                   control,   *admin, {},         publisher,
                   *registry, checker};
  node.proxy = proxy.get();
  // Until the API is registered (a manager still joining or opening its store) the cluster
  // paths answer 503, so a node joining through this one retries; a worker never serves them.
  admin->handle_prefix("/v1/", [&node](admin::Request req) -> asio::awaitable<admin::Response> {
    manager::ApiError e{503, "unavailable", "this manager has not joined the cluster yet", ""};
    if (!node.manager()) {
      e = {404, "not_found", "workers do not serve the cluster API; ask a manager", ""};
    } else if (node.api) {
      e = {404, "not_found", "no such path " + req.path, ""};
    }
    co_return admin::Response{e.status, "application/json", manager::error_body(e)};
  });
  if (node.manager()) {
    // ... that 503 included for a node that has no certificate yet (it retries on 503 only).
    admin->allow_anonymous("/v1/ca");
    admin->allow_anonymous("/v1/nodes/join");
  }
  node.admin_address =
      cfg.node.admin.substr(0, cfg.node.admin.rfind(':')) + ":" + std::to_string(admin_port);

  asio::signal_set reload_signal(control, SIGHUP);
  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) {
        return;
      }
      spdlog::warn(
          "SIGHUP: services come from the store in cluster mode; node settings in {} "
          "apply after a restart",
          options.config_path);
      wait_reload();
    });
  };
  wait_reload();

  asio::signal_set stop_signals(control, SIGTERM, SIGINT);
  node.shutdown = [&] {
    if (node.stopping) {
      return;
    }
    node.stopping = true;
    stop_signals.cancel();
    reload_signal.cancel();
    admin->stop();
    if (dp->metrics) {
      dp->metrics->stop();
    }
    if (node.api) {
      node.api->stop();
    }
    if (node.liveness) {
      node.liveness->stop();
    }
    if (node.watcher) {
      node.watcher->stop();
    }
    if (node.store) {
      node.store->stop();
    }
    publisher.stop();
    if (firewall) {
      firewall->remove();
    }
    if (dns) {
      dns->stop();
    }
    checker.stop();
    proxy->shutdown();
    control.stop();
  };
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    spdlog::info("signal {}: draining (up to {} ms)", signo, cfg.timeouts.drain_ms);
    node.shutdown();
  });

  dp->log_ready(cfg);

  asio::co_spawn(control, start_cluster(node),
                 base::log_and_count("cluster: start", nullptr, [&node] {
                   node.exit_code = 1;
                   node.shutdown();
                 }));
  control.run();
  spdlog::info("node {} stopped", cfg.node.name);
  return node.exit_code;
}

}  // namespace routemesh::cmd
