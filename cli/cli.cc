// The CLI's I/O half: CLI11 wiring, one blocking HTTP/1.1 exchange per API call (the one
// client, base/http_client.h), printing. The CLI is not on the data path, so each call gets its
// own io_context and connection (Connection: close) and the main thread simply runs that
// context until the exchange ends.

#include "cli/cli.h"

#include "base/file.h"
#include "base/http_client.h"
#include "base/spawn.h"
#include "cli/cli_format.h"
#include "tls/context.h"
#include "tls/credentials.h"
#include "tls/pki.h"

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/result.hpp>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace routemesh::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace sys = boost::system;

// One attempt: connect, send, answer. The API answers a write within 5 s (commit) or 8 s
// (forwarded), so this leaves room for a slow leader.
constexpr std::chrono::milliseconds kTimeout{10000};
// Retries: on 503 or no answer the next manager of the list is tried, for at most kRounds
// passes over the list, kBackoff before the second pass (doubling), all within kBudget.
constexpr int kRounds = 3;
constexpr std::chrono::milliseconds kBackoff{250};
constexpr std::chrono::milliseconds kBudget{25000};

class CliCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "routemesh.cli"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::unreachable:
        return "cannot reach the admin API";
      case errc::no_answer:
        return "no answer from the admin API";
      case errc::api_error:
        return "the admin API refused the request";
      case errc::unexpected_answer:
        return "unexpected answer from the admin API";
      case errc::unknown_node:
        return "no such node";
    }
    return "unknown CLI error " + std::to_string(value);
  }
};

// Where the exchange's outcome lands; shared with the coroutine, which owns its arguments.
struct Outcome {
  std::optional<base::CallResult> result;
};

asio::awaitable<void> exchange(std::shared_ptr<Outcome> out, std::string address,
                               base::ClientRequest request, std::chrono::milliseconds timeout,
                               base::TlsContext tls) {
  auto executor = co_await asio::this_coro::executor;
  out->result = co_await base::http_call(executor, std::move(address), std::move(request), timeout,
                                         std::move(tls));
}

// One exchange with one manager, blocking; nothing is printed. The main thread runs the
// exchange's io_context for at most `timeout` plus one second, which also bounds the
// resolver; an exchange still running then has not connected yet: nothing was sent.
base::CallResult call_once(const std::string& address, base::ClientRequest request,
                           std::chrono::milliseconds timeout, const base::TlsContext& tls) {
  auto outcome = std::make_shared<Outcome>();
  asio::io_context ioc;
  // Only std::bad_alloc and the like end the coroutine with an exception: a failed exchange.
  asio::co_spawn(ioc, exchange(outcome, address, std::move(request), timeout, tls),
                 base::log_and_count("cli: request", nullptr, [outcome] {
                   outcome->result = base::CallError{asio::error::no_memory, false};
                 }));
  ioc.run_for(timeout + std::chrono::seconds(1));
  if (!outcome->result) {
    return base::CallError{boost::beast::error::timeout, false};
  }
  return std::move(*outcome->result);
}

// Why an attempt got no answer, as the user reads it.
std::string transport_failure(const std::string& address, const base::CallError& error,
                              std::chrono::milliseconds timeout) {
  std::string why = error.code == boost::beast::error::timeout
                        ? "timed out after " + std::to_string(timeout.count() / 1000) + " s"
                        : error.message();
  return std::string(error.sent ? "no answer from" : "cannot reach") + " the admin API at " +
         address + ": " + why;
}

void print_out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (!text.empty() && text.back() != '\n') {
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
}

void print_error(const std::string& message) {
  std::fprintf(stderr, "routemesh: %s\n", message.c_str());
}

// A successful answer parsed as JSON (an empty body is null).
struct Answer {
  base::ClientResponse reply;
  json::value value;
};

class CliCommandsImpl final : public CliCommands {
 public:
  explicit CliCommandsImpl(CLI::App& app) : app_(app) {}

  void add_commands();

  bool selected() const override {
    for (const auto& leaf : leaves_) {
      if (leaf.app->parsed()) {
        return true;
      }
    }
    for (const CLI::App* group : own_groups_) {
      if (group->parsed()) {
        return true;
      }
    }
    return false;
  }

  int run() override {
    for (const auto& leaf : leaves_) {
      if (leaf.app->parsed()) {
        return run_leaf(leaf);
      }
    }
    for (CLI::App* group : own_groups_) {
      if (group->parsed()) {
        std::fprintf(stderr, "routemesh: %s: expected a command\n%s", group->get_name().c_str(),
                     group->help().c_str());
        return 2;
      }
    }
    return 2;
  }

 private:
  struct Leaf {
    CLI::App* app;
    std::function<int()> run;
  };

  CLI::App* group(const std::string& name, const std::string& description, bool shared);
  // `credential_flags`: the leaf takes --cert/--key/--ca for the client certificate (false
  // for `cert add`, whose --cert/--key name the HTTPS certificate; the top-level flags and the
  // default place still give the client's).
  CLI::App* leaf(CLI::App* parent, const std::string& name, const std::string& description,
                 std::function<int()> run, bool credential_flags = true);
  void add_credential_flags(CLI::App* app);
  int run_leaf(const Leaf& leaf);

  // Sends the request to the managers in turn: the first answer that is not a 503, or (printed
  // here) why the last attempt failed: unreachable, no_answer or api_error (a 503). A write
  // carries one Idempotency-Key in all its attempts; a GET gets stale=true with --stale.
  sys::result<base::ClientResponse> call(const cli::ApiRequest& request);
  // call(), then a non-2xx answer is printed and an api_error (every error means exit 1).
  sys::result<Answer> request(const cli::ApiRequest& request);
  // GET, then print either the raw JSON (--json) or render(answer).
  int show(const cli::ApiRequest& request,
           const std::function<cli::Result<std::string>(const json::value&)>& render);
  // A write: prints the raw JSON (--json) or the object's id/name.
  int write(const cli::ApiRequest& request, std::string_view kind, std::string_view fallback);
  // write() of a request the flags built, or the flag error that stopped it (printed, exit 2).
  int write_built(const cli::Result<cli::ApiRequest>& request, std::string_view kind,
                  std::string_view fallback);
  // A node argument (id or name) -> id; errors are printed.
  sys::result<std::string> node_id(const std::string& arg);

  int service_update();
  int cert_issue();
  int cert_add();
  int cert_renew();
  // A new key made here, certified by POST `path` {body..., "csr"} (CN `common_name`), and
  // written with the answer's certificate and CA into `out`; errors are printed (nullopt).
  std::optional<Answer> certify(const std::string& path, const std::string& common_name,
                                json::object body, const std::string& out);
  int token_rotate();
  int manager_key_rotate();
  // `cluster autolock enable|disable`, `cluster unlock-key [--rotate]`: sends `request` and
  // prints the unlock key, or that autolock is off (an error when `off_is_error`).
  int autolock(const cli::ApiRequest& request, bool off_is_error) {
    return show(request, [off_is_error](const json::value& answer) {
      return cli::render_autolock(answer, off_is_error);
    });
  }
  // POSTs to `path` (no body) and prints line(the answer's string `field`), or, with --json,
  // the answer. 1 when it fails or has no such field.
  int post_and_print(const std::string& path, const char* field,
                     const std::function<std::string(const std::string&)>& line);
  int ca_rotate();
  int ca_status();
  // The client certificate, key and CA from --cert/--key/--ca or the default place
  // (tls/credentials.h); errors are printed (exit 2).
  bool load_credentials();
  // Renews the CLI's own certificate once two thirds of its lifetime have passed, when it
  // came from the default place (not --cert/--key/--ca); notes on stderr, never fails the
  // command it runs before.
  void renew_own_certificate_if_due();
  void add_policy_commands();

  CLI::App& app_;
  std::vector<Leaf> leaves_;
  std::vector<CLI::App*> own_groups_;

  std::string api_flag_;
  std::string cert_flag_;
  std::string key_flag_;
  std::string ca_flag_;
  base::TlsContext tls_;      // built in run_leaf
  std::string own_cert_pem_;  // the certificate tls_ presents
  std::string own_dir_;       // the default place it came from ("" = flags, or no place)
  bool json_ = false;
  bool stale_ = false;
  bool unlock_rotate_ = false;
  std::vector<std::string> addresses_;  // resolved in run_leaf
  std::size_t next_ = 0;                // the manager to try first: the one that answered last
  bool consistent_ = false;             // accepted; reads are linearizable anyway

  cli::ServiceCreateArgs create_;
  cli::ServiceUpdateArgs update_;
  cli::NetworkCreateArgs network_;
  cli::PolicyAddArgs policy_;
  cli::TaskAddArgs task_;
  std::string task_service_filter_;
  std::string name_;  // NAME or ID positional
  std::string cert_role_;
  std::string cert_name_;
  std::string cert_out_;
  std::string https_host_;        // cert add --host
  std::string https_cert_file_;   // cert add --cert
  std::string https_key_file_;    // cert add --key
  bool https_default_ = false;    // cert add --default
  std::string ca_grace_ = "24h";  // cluster ca rotate --grace
  std::string ca_cert_file_;      // cluster ca rotate --ca-cert
  std::string ca_key_file_;       // cluster ca rotate --ca-key
};

CLI::App* CliCommandsImpl::group(const std::string& name, const std::string& description,
                                 bool shared) {
  if (shared) {
    for (CLI::App* existing :
         app_.get_subcommands([&](CLI::App* a) { return a->get_name() == name; })) {
      return existing;
    }
  }
  CLI::App* g = app_.add_subcommand(name, description);
  if (!shared) {
    own_groups_.push_back(g);
  }
  return g;
}

void CliCommandsImpl::add_credential_flags(CLI::App* app) {
  const std::string place =
      " (default: in $ROUTEMESH_CERT_DIR, else $XDG_CONFIG_HOME/routemesh, "
      "else ~/.config/routemesh, where `cluster init` puts them)";
  app->add_option("--cert", cert_flag_, "client certificate (PEM) from the cluster CA" + place);
  app->add_option("--key", key_flag_, "its private key (PEM)" + place);
  app->add_option("--ca", ca_flag_, "the cluster CA's certificate (PEM)" + place);
}

CLI::App* CliCommandsImpl::leaf(CLI::App* parent, const std::string& name,
                                const std::string& description, std::function<int()> run,
                                bool credential_flags) {
  CLI::App* sub = parent->add_subcommand(name, description);
  // Unknown flags and stray arguments are reported by run() with exit 2 (CLI11's own errors
  // use other exit codes).
  sub->allow_extras();
  sub->add_option("--api", api_flag_,
                  "admin API addresses HOST:PORT[,HOST:PORT...], tried in turn (default "
                  "$ROUTEMESH_API or " +
                      std::string(cli::kDefaultApiAddress) + ")");
  sub->add_flag("--json", json_, "print the API's JSON");
  if (credential_flags) {
    add_credential_flags(sub);
  }
  sub->add_flag("--stale", stale_,
                "read the answering manager's own copy (may be old) instead of a linearizable "
                "read through the leader");
  leaves_.push_back({sub, std::move(run)});
  return sub;
}

void CliCommandsImpl::add_commands() {
  app_.add_option("--api", api_flag_,
                  "admin API addresses HOST:PORT[,HOST:PORT...] for CLI commands, tried in turn "
                  "(default $ROUTEMESH_API or " +
                      std::string(cli::kDefaultApiAddress) + ")");
  app_.add_flag("--json", json_, "CLI commands print the API's JSON");
  add_credential_flags(&app_);
  app_.add_flag("--stale", stale_,
                "CLI reads answer from the manager's own copy (may be old) instead of a "
                "linearizable read through the leader");

  auto one = [this](CLI::App* sub, const std::string& what) {
    sub->add_option(what, name_, what)->allow_extra_args(false);
  };
  auto many = [](CLI::App* sub, const std::string& flag, std::vector<std::string>& out,
                 const std::string& text) {
    sub->add_option(flag, out, text)->allow_extra_args(false);
  };

  // service
  CLI::App* service = group("service", "manage services (admin API)", false);
  CLI::App* create = leaf(service, "create", "create a service", [this] {
    return write_built(cli::service_create_request(create_), "service", create_.name);
  });
  create->add_option("--name", create_.name, "service name");
  many(create, "--label", create_.labels, "label KEY=VALUE (repeatable)");
  many(create, "--publish,-p", create_.publish, "published port PUBLISHED:TARGET[/tcp]");
  many(create, "--network", create_.networks, "network to attach (repeatable)");
  create->add_option("--mode", create_.mode, "endpoint mode: vip or dnsrr");

  CLI::App* ls = leaf(service, "ls", "list services", [this] {
    return show(cli::get_request("/v1/services"), cli::render_services);
  });
  ls->add_flag("--consistent", consistent_, "linearizable read (the default; kept for scripts)");
  CLI::App* inspect = leaf(service, "inspect", "show one service", [this] {
    return show(cli::get_request("/v1/services/" + cli::encode_path_segment(name_)),
                cli::render_service);
  });
  one(inspect, "NAME");
  inspect->add_flag("--consistent", consistent_,
                    "linearizable read (the default; kept for scripts)");
  CLI::App* update = leaf(service, "update", "change a service (compare-and-swap)",
                          [this] { return service_update(); });
  one(update, "NAME");
  many(update, "--label-add", update_.label_add, "add or replace a label KEY=VALUE");
  many(update, "--label-rm", update_.label_rm, "remove a label KEY");
  many(update, "--publish-add", update_.publish_add, "add a port PUBLISHED:TARGET[/tcp]");
  many(update, "--publish-rm", update_.publish_rm, "remove the port PUBLISHED");
  many(update, "--network-add", update_.network_add, "attach a network");
  many(update, "--network-rm", update_.network_rm, "detach a network");
  update->add_option("--mode", update_.mode, "endpoint mode: vip or dnsrr");
  CLI::App* service_rm = leaf(service, "rm", "remove a service", [this] {
    return write(cli::delete_request("services", name_), "service", name_);
  });
  one(service_rm, "NAME");

  // network
  CLI::App* network = group("network", "manage networks (admin API)", false);
  CLI::App* network_create = leaf(network, "create", "create a network", [this] {
    network_.name = name_;
    return write_built(cli::network_create_request(network_), "network", network_.name);
  });
  one(network_create, "NAME");
  network_create->add_option("--subnet", network_.subnet,
                             "IPv4 CIDR (default: a /24 from the cluster's pool)");
  leaf(network, "ls", "list networks",
       [this] { return show(cli::get_request("/v1/networks"), cli::render_networks); });
  CLI::App* network_rm = leaf(network, "rm", "remove a network", [this] {
    return write(cli::delete_request("networks", name_), "network", name_);
  });
  one(network_rm, "NAME");

  add_policy_commands();

  // task
  CLI::App* task = group("task", "manage tasks, the backends of services (admin API)", false);
  CLI::App* task_add = leaf(task, "add", "add a task to a service", [this] {
    return write_built(cli::task_add_request(task_), "task", "");
  });
  task_add->add_option("--service", task_.service, "service name");
  task_add->add_option("--node", task_.node, "node name the task runs on");
  task_add->add_option("--addr", task_.addr, "task address IP:PORT");
  CLI::App* task_ls = leaf(task, "ls", "list tasks", [this] {
    std::string target = "/v1/tasks";
    if (!task_service_filter_.empty()) {
      target += "?service=" + cli::encode_path_segment(task_service_filter_);
    }
    return show(cli::get_request(target), cli::render_tasks);
  });
  task_ls->add_option("--service", task_service_filter_, "only this service's tasks");
  CLI::App* task_rm = leaf(task, "rm", "remove a task", [this] {
    return write(cli::delete_request("tasks", name_), "task", name_);
  });
  one(task_rm, "ID");
  CLI::App* task_drain = leaf(
      task, "drain", "stop sending new requests and connections to a task (in-flight ones finish)",
      [this] { return write(cli::task_health_request(name_, "draining"), "task", name_); });
  one(task_drain, "ID");
  CLI::App* task_undrain =
      leaf(task, "undrain", "route to a drained task again (after its health check passes)",
           [this] { return write(cli::task_health_request(name_, "unknown"), "task", name_); });
  one(task_undrain, "ID");

  // node (shared with `routemesh node --config`, which runs a node)
  CLI::App* node = group("node", "run a node of the mesh", true);
  std::vector<CLI::App*> node_leaves;
  node_leaves.push_back(leaf(node, "ls", "list nodes", [this]() -> int {
    auto nodes = request(cli::get_request("/v1/nodes"));
    if (!nodes) {
      return 1;
    }
    if (json_) {
      print_out(nodes->reply.body);
      return 0;
    }
    // VOTER and LEADER come from Raft membership; the table is still useful without it.
    std::optional<json::value> cluster;
    if (auto c = call(cli::get_request("/v1/cluster")); c && c->status >= 200 && c->status < 300) {
      boost::system::error_code ec;
      json::value v = json::parse(c->body, ec);
      if (!ec) {
        cluster = std::move(v);
      }
    }
    auto text = cli::render_nodes(nodes->value, cluster ? &*cluster : nullptr);
    if (!text) {
      print_error(text.error());
      return 1;
    }
    print_out(text.value());
    return 0;
  }));
  for (const char* action : {"promote", "demote"}) {
    const std::string description = std::string(action) + " a node (manager voter <-> worker)";
    CLI::App* sub = leaf(node, action, description, [this, action]() -> int {
      auto id = node_id(name_);
      if (!id) {
        return 1;
      }
      return write(cli::node_action_request(*id, action), "node", *id);
    });
    one(sub, "ID");
    node_leaves.push_back(sub);
  }
  CLI::App* node_rm = leaf(node, "rm", "remove a node from the cluster", [this]() -> int {
    auto id = node_id(name_);
    if (!id) {
      return 1;
    }
    return write(cli::delete_request("nodes", *id), "node", *id);
  });
  one(node_rm, "ID");
  node_leaves.push_back(node_rm);

  // `routemesh node --config FILE` requires --config; `routemesh node ls` must not. Required
  // options of the shared group are checked here instead, only when no CLI command was given.
  std::vector<CLI::Option*> deferred;
  for (CLI::Option* opt : node->get_options()) {
    if (opt->get_required()) {
      opt->required(false);
      deferred.push_back(opt);
    }
  }
  if (!deferred.empty()) {
    node->parse_complete_callback([deferred, node_leaves] {
      for (const CLI::App* sub : node_leaves) {
        if (sub->parsed()) {
          return;
        }
      }
      for (const CLI::Option* opt : deferred) {
        if (opt->count() == 0) {
          throw CLI::RequiredError(opt->get_name());
        }
      }
    });
  }

  // cluster (shared with `routemesh cluster init`)
  const bool had_cluster =
      !app_.get_subcommands([](CLI::App* a) { return a->get_name() == "cluster"; }).empty();
  CLI::App* cluster = group("cluster", "cluster commands", true);
  if (!had_cluster) {
    cluster->require_subcommand(1);
  }
  leaf(cluster, "status", "leader, term, commit index and members",
       [this] { return show(cli::get_request("/v1/cluster"), cli::render_cluster); });
  CLI::App* token = cluster->add_subcommand("token", "join tokens");
  token->require_subcommand(1);
  CLI::App* rotate = leaf(token, "rotate",
                          "make a new join token for ROLE (worker|manager) and print it; the old "
                          "one stops working at once (nodes already joined are unaffected)",
                          [this] { return token_rotate(); });
  one(rotate, "ROLE");
  CLI::App* manager_key = cluster->add_subcommand(
      "manager-key", "the key that seals the root CA's key in the cluster state");
  manager_key->require_subcommand(1);
  leaf(manager_key, "rotate",
       "seal the root's key with a new manager key; every manager takes the new key from the "
       "state, and the old one opens nothing written from then on",
       [this] { return manager_key_rotate(); });
  CLI::App* autolock_group = cluster->add_subcommand(
      "autolock", "keep the managers' keys on disk encrypted with an unlock key (admin only)");
  autolock_group->require_subcommand(1);
  leaf(autolock_group, "enable",
       "turn autolock on and print the unlock key: a manager started from then on needs it "
       "(routemesh node --unlock-key-file FILE, or ROUTEMESH_UNLOCK_KEY)",
       [this] {
         return autolock({"POST", "/v1/cluster/autolock", R"({"enabled":true})"}, false);
       });
  leaf(autolock_group, "disable", "turn autolock off: managers keep their keys in clear again",
       [this] {
         return autolock({"POST", "/v1/cluster/autolock", R"({"enabled":false})"}, false);
       });
  CLI::App* unlock_key =
      leaf(cluster, "unlock-key", "print the unlock key of autolock (admin only)", [this] {
        return unlock_rotate_ ? autolock({"POST", "/v1/cluster/autolock/rotate", ""}, true)
                              : autolock(cli::get_request("/v1/cluster/autolock"), true);
      });
  unlock_key->add_flag("--rotate", unlock_rotate_,
                       "make a new unlock key and print it; the old one no longer opens the "
                       "managers' keys once they have seen the new one");
  CLI::App* ca = cluster->add_subcommand("ca", "the cluster's root CA");
  ca->require_subcommand(1);
  CLI::App* ca_rotate =
      leaf(ca, "rotate",
           "replace the root CA: every node gets a certificate of a new root, the old root is "
           "retired once all have one and --grace has passed; prints the new join tokens (the "
           "old ones stop working at once) and renews this command's own certificate (admin only)",
           [this] { return this->ca_rotate(); });
  ca_rotate->add_option("--grace", ca_grace_,
                        "how long the old root stays trusted at least, so that users can renew "
                        "their certificates with `cert renew`: 90, 90s, 30m, 24h, 7d (default "
                        "24h)");
  ca_rotate->add_option("--ca-cert", ca_cert_file_,
                        "the new root: your own self-signed CA certificate (PEM) with the "
                        "current root's subject (default: a new P-256 root made by the leader)");
  ca_rotate->add_option("--ca-key", ca_key_file_, "the key of --ca-cert (PEM, not encrypted)");
  leaf(ca, "status", "the signing root and a running rotation's progress",
       [this] { return ca_status(); });

  // cert
  CLI::App* cert = group("cert", "client certificates from the cluster CA (admin API)", false);
  CLI::App* issue = leaf(cert, "issue",
                         "make a key here and have the cluster CA certify it for a role; writes "
                         "ca.pem, cert.pem and key.pem into --out",
                         [this] { return cert_issue(); });
  issue->add_option("--role", cert_role_, "operator (services, networks, tasks) or viewer (reads)");
  issue->add_option("--name", cert_name_, "who holds it (default: the role)");
  issue->add_option("--out", cert_out_,
                    "directory for the files (give it to the CLI as ROUTEMESH_CERT_DIR)");
  CLI::App* revoke =
      leaf(cert, "revoke",
           "revoke a certificate by its SERIAL (as `cert issue` printed it, or `openssl x509 "
           "-serial`): every node refuses it at the handshake from then on (admin only)",
           [this] {
             json::object body{{"serial", name_}};
             if (!cert_name_.empty()) {
               body["name"] = cert_name_;
             }
             return write({"POST", "/v1/certs/revoke", json::serialize(body)}, "revocation", name_);
           });
  one(revoke, "SERIAL");
  revoke->add_option("--name", cert_name_, "who held it (kept with the revocation)");
  leaf(cert, "revoked", "list the revoked certificates",
       [this] { return show(cli::get_request("/v1/certs/revoked"), cli::render_revoked); });
  leaf(cert, "crl",
       "the revoked certificates as a CRL (PEM) signed by the cluster CA, valid a day, for "
       "software outside the cluster",
       [this] { return show(cli::get_request("/v1/certs/crl"), cli::render_crl); });
  CLI::App* renew = leaf(cert, "renew",
                         "a new key and certificate for the certificate this command uses (same "
                         "role and name, a year from now), written over it (or into --out DIR)",
                         [this] { return cert_renew(); });
  renew->add_option("--out", cert_out_,
                    "directory for ca.pem, cert.pem and key.pem (default: the CLI's place, "
                    "required with --cert/--key)");
  CLI::App* add = leaf(
      cert, "add",
      "store the certificate the HTTPS port presents for --host (chosen by SNI; replaces the "
      "host's certificate) or, with --default, for any name no other certificate covers (admin "
      "only)",
      [this] { return cert_add(); }, false);
  add->add_option("--host", https_host_, "a host name or *.SUFFIX (a wildcard)");
  add->add_flag("--default", https_default_, "the default certificate (host *)");
  add->add_option("--cert", https_cert_file_, "PEM file: the certificate, then intermediates");
  add->add_option("--key", https_key_file_, "PEM file: its private key (unencrypted)");
  CLI::App* rm =
      leaf(cert, "rm", "remove the HTTPS certificate of HOST (* for the default)", [this] {
        return write(cli::ApiRequest{"DELETE", "/v1/ingress/certs/" + name_, ""}, "cert", name_);
      });
  one(rm, "HOST");
  leaf(cert, "ls", "list the HTTPS port's certificates (host, expiry, SHA-256)",
       [this] { return show(cli::get_request("/v1/ingress/certs"), cli::render_ingress_certs); });
}

int CliCommandsImpl::run_leaf(const Leaf& leaf) {
  for (const std::string& extra : leaf.app->remaining()) {
    if (extra.starts_with("-")) {
      print_error("unknown flag " + extra + " (see --help)");
    } else {
      print_error("unexpected argument '" + extra + "' (see --help)");
    }
    return 2;
  }
  // Every positional (NAME or ID) is required; checked here so the exit code is 2.
  for (const CLI::Option* opt : leaf.app->get_options()) {
    if (opt->get_positional() && opt->count() == 0) {
      print_error(leaf.app->get_parent()->get_name() + " " + leaf.app->get_name() + ": " +
                  opt->get_name() + " required");
      return 2;
    }
  }
  if (stale_ && consistent_) {
    print_error("--stale and --consistent contradict each other; give one");
    return 2;
  }
  auto addresses =
      cli::api_addresses(api_flag_.empty() ? std::nullopt : std::optional<std::string>(api_flag_),
                         std::getenv("ROUTEMESH_API"));
  if (!addresses) {
    print_error(addresses.error());
    return 2;
  }
  addresses_ = std::move(addresses.value());
  if (!load_credentials()) {
    return 2;
  }
  const bool renews_itself =
      (leaf.app->get_name() == "renew" && leaf.app->get_parent()->get_name() == "cert") ||
      (leaf.app->get_name() == "rotate" && leaf.app->get_parent()->get_name() == "ca");
  if (!renews_itself) {
    renew_own_certificate_if_due();
  }
  return leaf.run();
}

void CliCommandsImpl::renew_own_certificate_if_due() {
  if (own_dir_.empty()) {
    return;
  }
  auto start = tls::not_before(own_cert_pem_);
  auto end = tls::not_after(own_cert_pem_);
  if (!start || !end) {
    return;
  }
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t issued = *start + tls::kBackdate;
  if (now >= *end) {
    print_error("note: this CLI's certificate (" + own_dir_ +
                "/cert.pem) has expired; an admin can issue a new one (`cert issue`)");
    return;
  }
  if (*end <= issued || now < issued + (*end - issued) * 2 / 3) {
    return;
  }
  if (!certify("/v1/certs/renew", "renewal", {}, own_dir_)) {
    print_error("note: could not renew this CLI's certificate (" + own_dir_ +
                "/cert.pem); it expires at unix time " + std::to_string(*end));
    return;
  }
  print_error("note: renewed this CLI's certificate in " + own_dir_ +
              " (two thirds of its lifetime had passed)");
  load_credentials();  // the command runs with the new one
}

bool CliCommandsImpl::load_credentials() {
  const std::string dir = tls::default_client_dir(
      std::getenv("ROUTEMESH_CERT_DIR"), std::getenv("XDG_CONFIG_HOME"), std::getenv("HOME"));
  const tls::ClientFiles defaults = tls::client_files(dir);
  std::string pems[3];
  const struct {
    const char* flag;
    const std::string& given;
    const std::string& fallback;
  } files[3] = {{"--ca", ca_flag_, defaults.ca},
                {"--cert", cert_flag_, defaults.cert},
                {"--key", key_flag_, defaults.key}};
  for (int i = 0; i < 3; ++i) {
    if (files[i].given.empty() && dir.empty()) {
      print_error(std::string("no ") + files[i].flag +
                  " given and no default place ($ROUTEMESH_CERT_DIR, $XDG_CONFIG_HOME and $HOME "
                  "are unset)");
      return false;
    }
    const std::string& path = files[i].given.empty() ? files[i].fallback : files[i].given;
    auto text = tls::read_credential_file(path);
    if (!text) {
      print_error(std::string(files[i].flag) + ": cannot read " + path + ": " +
                  text.error().message() +
                  (files[i].given.empty()
                       ? " (`cluster init` writes it; or give " + std::string(files[i].flag) + ")"
                       : std::string{}));
      return false;
    }
    pems[i] = std::move(*text);
  }
  auto ctx = tls::client_context(pems[0], pems[1], pems[2]);
  if (!ctx) {
    print_error("--cert/--key/--ca: " + ctx.error().message());
    return false;
  }
  tls_ = std::move(*ctx);
  own_cert_pem_ = pems[1];
  own_dir_ = ca_flag_.empty() && cert_flag_.empty() && key_flag_.empty() ? dir : std::string();
  return true;
}

sys::result<base::ClientResponse> CliCommandsImpl::call(const cli::ApiRequest& request) {
  base::ClientRequest out;
  out.method = request.method;
  out.target = request.method == "GET" ? cli::read_target(request.target, stale_) : request.target;
  out.body = request.body;
  out.headers = {{"accept", "application/json"}, {"user-agent", "routemesh-cli"}};
  const bool write = request.method != "GET";
  if (write) {
    std::random_device random;
    auto bits = [&random] {
      return (static_cast<std::uint64_t>(random()) << 32) | static_cast<std::uint64_t>(random());
    };
    const std::uint64_t high = bits();
    out.headers["idempotency-key"] = cli::idempotency_key(high, bits());
  }
  const auto deadline = std::chrono::steady_clock::now() + kBudget;
  const std::size_t n = addresses_.size();
  const std::size_t attempts = n * kRounds;
  bool sent = false;  // some attempt reached a manager: a write may have been applied
  std::optional<base::ClientResponse> unavailable;  // the last attempt's 503
  std::optional<base::CallError> failed;            // or its transport failure
  std::string last_address;
  std::chrono::milliseconds last_timeout = kTimeout;
  for (std::size_t k = 0; k < attempts; ++k) {
    if (k > 0 && k % n == 0) {
      // Another pass over the list: give an election (or a restarting manager) a moment.
      const auto pause = kBackoff * (1 << (k / n - 1));
      if (std::chrono::steady_clock::now() + pause >= deadline) {
        break;
      }
      std::this_thread::sleep_for(pause);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left < std::chrono::seconds(1)) {
      break;
    }
    const std::size_t index = (next_ + k) % n;
    last_address = addresses_[index];
    const auto timeout = std::min(kTimeout, left);
    last_timeout = timeout;
    auto reply = call_once(last_address, out, timeout, tls_);
    std::string why;
    if (reply) {
      if (!cli::retry_status(reply->status)) {
        next_ = index;
        return std::move(*reply);
      }
      sent = true;
      why = last_address + ": " + cli::format_api_error(reply->status, reply->body);
      unavailable = std::move(*reply);
      failed.reset();
    } else {
      sent = sent || reply.error().sent;
      why = transport_failure(last_address, reply.error(), timeout);
      failed = reply.error();
      unavailable.reset();
    }
    if (k + 1 < attempts) {
      const std::string& after = addresses_[(index + 1) % n];
      std::fprintf(stderr, "routemesh: %s; trying %s\n", why.c_str(),
                   after == last_address ? "again" : after.c_str());
    }
  }
  if (unavailable) {
    print_error(last_address + ": " +
                cli::format_api_error(unavailable->status, unavailable->body));
    return errc::api_error;
  }
  if (!failed) {
    print_error("no manager answered within " + std::to_string(kBudget.count() / 1000) + " s");
    return sent ? errc::no_answer : errc::unreachable;
  }
  const std::string why = transport_failure(last_address, *failed, last_timeout);
  print_error(why + (write && sent ? " (the change may have been applied)" : ""));
  return sent ? errc::no_answer : errc::unreachable;
}

sys::result<Answer> CliCommandsImpl::request(const cli::ApiRequest& req) {
  auto reply = call(req);
  if (!reply) {
    return reply.error();
  }
  if (reply->status < 200 || reply->status >= 300) {
    print_error(cli::format_api_error(reply->status, reply->body));
    return errc::api_error;
  }
  Answer answer{std::move(*reply), nullptr};
  if (!answer.reply.body.empty()) {
    boost::system::error_code ec;
    answer.value = json::parse(answer.reply.body, ec);
    if (ec) {
      print_error("unexpected answer from the admin API (HTTP " +
                  std::to_string(answer.reply.status) + "): not JSON");
      return errc::unexpected_answer;
    }
  }
  return answer;
}

int CliCommandsImpl::show(
    const cli::ApiRequest& req,
    const std::function<cli::Result<std::string>(const json::value&)>& render) {
  auto answer = request(req);
  if (!answer) {
    return 1;
  }
  if (json_) {
    print_out(answer->reply.body);
    return 0;
  }
  auto text = render(answer->value);
  if (!text) {
    print_error(text.error());
    return 1;
  }
  print_out(text.value());
  return 0;
}

int CliCommandsImpl::write(const cli::ApiRequest& req, std::string_view kind,
                           std::string_view fallback) {
  auto answer = request(req);
  if (!answer) {
    return 1;
  }
  if (json_) {
    if (!answer->reply.body.empty()) {
      print_out(answer->reply.body);
    }
    return 0;
  }
  const std::string id = cli::written_object_id(answer->value, kind, fallback);
  if (!id.empty()) {
    print_out(id);
  }
  return 0;
}

int CliCommandsImpl::write_built(const cli::Result<cli::ApiRequest>& req, std::string_view kind,
                                 std::string_view fallback) {
  if (!req) {
    print_error(req.error());
    return 2;
  }
  return write(req.value(), kind, fallback);
}

sys::result<std::string> CliCommandsImpl::node_id(const std::string& arg) {
  if (cli::looks_like_node_id(arg)) {
    return arg;
  }
  auto nodes = request(cli::get_request("/v1/nodes"));
  if (!nodes) {
    return nodes.error();
  }
  auto id = cli::resolve_node_id(nodes->value, arg);
  if (!id) {
    print_error(id.error());
    return errc::unknown_node;
  }
  return id.value();
}

void CliCommandsImpl::add_policy_commands() {
  CLI::App* policy =
      group("policy", "manage network policies: who may reach a service (admin API)", false);
  CLI::App* add =
      leaf(policy, "add", "add a rule allowing or denying traffic to a service",
           [this] { return write_built(cli::policy_add_request(policy_), "policy", ""); });
  add->add_option("--from", policy_.from, "source: network:NAME, service:NAME or cidr:CIDR");
  add->add_option("--to", policy_.to, "destination: service:NAME");
  add->add_option("--port", policy_.port, "destination port (default: every port)");
  add->add_flag("--allow", policy_.allow, "allow the traffic");
  add->add_flag("--deny", policy_.deny, "deny the traffic");
  add->add_option("--priority", policy_.priority,
                  "higher wins among rules equally specific (default 0)");
  leaf(policy, "ls", "list policies",
       [this] { return show(cli::get_request("/v1/policies"), cli::render_policies); });
  CLI::App* rm = leaf(policy, "rm", "remove a policy", [this] {
    return write(cli::delete_request("policies", name_), "policy", name_);
  });
  rm->add_option("ID", name_, "ID")->allow_extra_args(false);
}

int CliCommandsImpl::service_update() {
  if (auto error = cli::check_update_flags(update_)) {
    print_error(*error);
    return 2;
  }
  auto current = request(cli::get_request("/v1/services/" + cli::encode_path_segment(name_)));
  if (!current) {
    return 1;
  }
  auto req = cli::service_update_request(name_, current->value, update_);
  if (!req) {
    print_error(req.error());
    return 1;
  }
  auto reply = call(req.value());
  if (!reply) {
    return 1;
  }
  if (reply->status == 409 && cli::api_error_code(reply->body) == "version_mismatch") {
    print_error("service " + name_ +
                " changed concurrently (after it was read, before it was written); nothing was "
                "changed, run the update again");
    return 1;
  }
  if (reply->status < 200 || reply->status >= 300) {
    print_error(cli::format_api_error(reply->status, reply->body));
    return 1;
  }
  if (json_) {
    print_out(reply->body);
    return 0;
  }
  boost::system::error_code ec;
  json::value value = json::parse(reply->body, ec);
  print_out(cli::written_object_id(value, "service", name_));
  return 0;
}

int CliCommandsImpl::cert_add() {
  if (https_default_ == !https_host_.empty()) {
    print_error("cert add: give either --host HOST or --default");
    return 2;
  }
  for (const auto& [flag, path] :
       {std::pair{"--cert", &https_cert_file_}, std::pair{"--key", &https_key_file_}}) {
    if (path->empty()) {
      print_error(std::string("cert add: ") + flag + " FILE required");
      return 2;
    }
  }
  const auto cert = base::read_file(https_cert_file_);
  if (!cert) {
    print_error("cert add: --cert: cannot read " + https_cert_file_);
    return 2;
  }
  const auto key = base::read_file(https_key_file_);
  if (!key) {
    print_error("cert add: --key: cannot read " + https_key_file_);
    return 2;
  }
  const std::string host = https_default_ ? "*" : https_host_;
  json::object body{{"cert", *cert}, {"key", *key}};
  return write(cli::ApiRequest{"PUT", "/v1/ingress/certs/" + host, json::serialize(body)}, "cert",
               host);
}

std::optional<Answer> CliCommandsImpl::certify(const std::string& path,
                                               const std::string& common_name, json::object body,
                                               const std::string& out) {
  auto key = tls::generate_key();
  auto csr =
      key ? tls::make_request(*key, common_name) : boost::system::result<std::string>(key.error());
  if (!csr) {
    print_error("cannot make a key: " + csr.error().message());
    return std::nullopt;
  }
  body["csr"] = *csr;
  auto answer = request({"POST", path, json::serialize(body)});
  if (!answer) {
    return std::nullopt;
  }
  const json::object* o = answer->value.if_object();
  const json::value* cert = o != nullptr ? o->if_contains("certificate") : nullptr;
  const json::value* ca = o != nullptr ? o->if_contains("ca") : nullptr;
  if (cert == nullptr || !cert->is_string() || ca == nullptr || !ca->is_string()) {
    print_error("unexpected answer from the admin API: no certificate");
    return std::nullopt;
  }
  tls::ClientCredentials files{std::string(ca->get_string()), std::string(cert->get_string()),
                               *key};
  if (auto w = tls::write_client_credentials(out, files); !w) {
    print_error("cannot write " + out + ": " + w.error().message());
    return std::nullopt;
  }
  return std::move(*answer);
}

int CliCommandsImpl::cert_renew() {
  std::string out = cert_out_;
  if (out.empty()) {
    if (!cert_flag_.empty() || !key_flag_.empty()) {
      print_error("cert renew: --out DIR required with --cert/--key (where the new files go)");
      return 2;
    }
    out = tls::default_client_dir(std::getenv("ROUTEMESH_CERT_DIR"), std::getenv("XDG_CONFIG_HOME"),
                                  std::getenv("HOME"));
    if (out.empty()) {
      print_error("cert renew: --out DIR required (no default place: set ROUTEMESH_CERT_DIR)");
      return 2;
    }
  }
  auto answer = certify("/v1/certs/renew", "renewal", {}, out);
  if (!answer) {
    return 1;
  }
  const json::object* o = answer->value.if_object();
  if (json_) {
    print_out(answer->reply.body);
    return 0;
  }
  print_out("renewed: a " + cli::field(*o, "role") + " certificate for " + cli::field(*o, "name") +
            " until " + cli::format_unix_time(*o, "not_after") + " is in " + out + "; serial " +
            cli::field(*o, "serial"));
  return 0;
}

int CliCommandsImpl::token_rotate() {
  if (name_ != "worker" && name_ != "manager") {
    print_error("cluster token rotate: ROLE must be worker or manager, not '" + name_ + "'");
    return 2;
  }
  return post_and_print("/v1/cluster/tokens/" + name_ + "/rotate", "token",
                        [](const std::string& token) { return token; });
}

int CliCommandsImpl::manager_key_rotate() {
  return post_and_print(
      "/v1/cluster/manager-key/rotate", "manager_key_id", [](const std::string& id) {
        return "manager key rotated: its id is " + id + "; every manager takes it from the state";
      });
}

int CliCommandsImpl::post_and_print(const std::string& path, const char* field,
                                    const std::function<std::string(const std::string&)>& line) {
  auto answer = request({"POST", path, ""});
  if (!answer) {
    return 1;
  }
  if (json_) {
    print_out(answer->reply.body);
    return 0;
  }
  const json::value* value =
      answer->value.is_object() ? answer->value.as_object().if_contains(field) : nullptr;
  if (value == nullptr || !value->is_string()) {
    print_error(std::string("unexpected answer from the admin API: no ") + field);
    return 1;
  }
  print_out(line(std::string(value->get_string())));
  return 0;
}

int CliCommandsImpl::ca_rotate() {
  auto grace = cli::parse_duration_s("--grace", ca_grace_, 3650LL * 86400);
  if (!grace) {
    print_error("cluster ca rotate: " + grace.error());
    return 2;
  }
  json::object body{{"grace_s", grace.value()}};
  if (ca_cert_file_.empty() != ca_key_file_.empty()) {
    print_error(std::string("cluster ca rotate: ") +
                (ca_cert_file_.empty() ? "--ca-cert" : "--ca-key") + " FILE required with " +
                (ca_cert_file_.empty() ? "--ca-key" : "--ca-cert"));
    return 2;
  }
  for (const auto& [flag, path, field] : {std::tuple{"--ca-cert", &ca_cert_file_, "cert"},
                                          std::tuple{"--ca-key", &ca_key_file_, "key"}}) {
    if (path->empty()) {
      continue;
    }
    const auto text = base::read_file(*path);
    if (!text) {
      print_error(std::string("cluster ca rotate: ") + flag + ": cannot read " + *path);
      return 2;
    }
    body[field] = *text;
  }
  auto answer = request({"POST", "/v1/ca/rotate", json::serialize(body)});
  if (!answer) {
    return 1;
  }
  const json::object* o = answer->value.if_object();
  if (o == nullptr || o->if_contains("digest") == nullptr) {
    print_error("unexpected answer from the admin API: no new root");
    return 1;
  }
  const std::string digest = cli::field(*o, "digest");
  if (json_) {
    print_out(answer->reply.body);
  } else {
    print_out("new root: " + digest);
    print_out("worker token: " + cli::field(*o, "worker_token"));
    print_out("manager token: " + cli::field(*o, "manager_token"));
    print_out(
        "every node now trusts both roots and gets a certificate of the new one; the old "
        "root is retired once all have one, not before " +
        cli::format_unix_time(*o, "retire_after") +
        " (`routemesh cluster ca status`); the old join tokens no longer work");
  }
  // This command's own certificate, from the new root (a manager that has not seen the rotation
  // yet still signs with the old one: ask again).
  if (!cert_flag_.empty() || !key_flag_.empty()) {
    print_error(
        "note: renew the certificate given with --cert/--key (`cert renew --out DIR`) "
        "before the old root retires");
    return 0;
  }
  const std::string out = tls::default_client_dir(
      std::getenv("ROUTEMESH_CERT_DIR"), std::getenv("XDG_CONFIG_HOME"), std::getenv("HOME"));
  for (int attempt = 0; attempt < 20 && !out.empty(); ++attempt) {
    auto renewed = certify("/v1/certs/renew", "renewal", {}, out);
    if (!renewed) {
      return 1;
    }
    const json::object* r = renewed->value.if_object();
    auto roots = tls::split_certificates(r != nullptr ? cli::field(*r, "ca") : std::string());
    auto issuer = roots ? tls::certificate_digest(roots->front()) : tls::certificate_digest("");
    if (issuer && *issuer == digest) {
      if (!json_) {
        print_out("this command's certificate was renewed by the new root: " + out);
      }
      return 0;
    }
    usleep(500'000);
  }
  print_error(
      "could not renew this command's certificate from the new root; run `routemesh "
      "cert renew` before the old root retires");
  return 1;
}

int CliCommandsImpl::ca_status() {
  auto answer = request(cli::get_request("/v1/ca"));
  if (!answer) {
    return 1;
  }
  const json::object* o = answer->value.if_object();
  if (json_ || o == nullptr) {
    print_out(answer->reply.body);
    return 0;
  }
  print_out("root: " + cli::field(*o, "digest"));
  const std::string key = cli::field(*o, "key");
  print_out(key == "file"    ? "key: in files (external CA: the managers holding ca-key.pem sign)"
            : key == "state" ? "key: sealed in the cluster state (every manager signs)"
                             : "key: " + key);
  if (o->contains("manager_key_id")) {
    print_out("manager key: " + cli::field(*o, "manager_key_id") + " (rotated)");
  }
  const json::value* rotation = o->if_contains("rotation");
  if (rotation == nullptr || !rotation->is_object()) {
    print_out("rotating: no");
    return 0;
  }
  const json::object& r = rotation->as_object();
  print_out("rotating: yes");
  print_out("old root: " + cli::field(r, "old"));
  print_out("retires: not before " + cli::format_unix_time(r, "retire_after"));
  std::set<std::string> down;
  if (const json::value* names = r.if_contains("waiting_down"); names && names->is_array()) {
    for (const auto& name : names->as_array()) {
      if (name.is_string()) {
        down.emplace(name.get_string());
      }
    }
  }
  std::string waiting;
  if (const json::value* names = r.if_contains("waiting_names"); names && names->is_array()) {
    for (const auto& name : names->as_array()) {
      if (name.is_string()) {
        const std::string n(name.get_string());
        waiting += (waiting.empty() ? "" : ", ") + n + (down.count(n) != 0 ? " (down)" : "");
      }
    }
  }
  print_out("waiting for: " + waiting);
  if (!down.empty()) {
    print_out(
        "a node that is down holds the rotation back until it is back, or removed with "
        "`routemesh node rm`");
  }
  return 0;
}

int CliCommandsImpl::cert_issue() {
  if (cert_role_ != "operator" && cert_role_ != "viewer" && cert_role_ != "admin") {
    print_error("cert issue: --role must be operator or viewer (or admin), not '" + cert_role_ +
                "'");
    return 2;
  }
  if (cert_out_.empty()) {
    print_error("cert issue: --out DIR required (where ca.pem, cert.pem and key.pem go)");
    return 2;
  }
  const std::string name = cert_name_.empty() ? cert_role_ : cert_name_;
  auto answer = certify("/v1/certs", name, {{"role", cert_role_}, {"name", name}}, cert_out_);
  if (!answer) {
    return 1;
  }
  const json::object* o = answer->value.if_object();
  if (json_) {
    print_out(answer->reply.body);
    return 0;
  }
  const json::value* serial = o->if_contains("serial");
  print_out("a " + cert_role_ + " certificate for " + name + " is in " + cert_out_ +
            " (use it with ROUTEMESH_CERT_DIR=" + cert_out_ + " or --cert/--key/--ca); serial " +
            (serial != nullptr && serial->is_string() ? std::string(serial->get_string())
                                                      : std::string("-")));
  return 0;
}

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const CliCategory category;
  return category;
}

std::unique_ptr<CliCommands> add_cli_commands(CLI::App& app) {
  auto commands = std::make_unique<CliCommandsImpl>(app);
  commands->add_commands();
  return commands;
}

}  // namespace routemesh::cli
