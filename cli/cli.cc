// The CLI's I/O half: CLI11 wiring, one blocking HTTP/1.1 exchange per API call (the one
// client, base/http_client.h), printing. The CLI is not on the data path, so each call gets its
// own io_context and connection (Connection: close) and the main thread simply runs that
// context until the exchange ends.

#include "cli/cli.h"

#include "base/http_client.h"
#include "base/spawn.h"
#include "cli/cli_format.h"

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace routemesh::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace sys = boost::system;

constexpr std::chrono::seconds kTimeout{10};

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
                               base::ClientRequest request) {
  auto executor = co_await asio::this_coro::executor;
  out->result =
      co_await base::http_call(executor, std::move(address), std::move(request), kTimeout);
}

// One request, blocking. A transport failure is printed here and returned as unreachable
// (nothing was sent) or no_answer (the outcome is unknown).
sys::result<base::ClientResponse> call_api(const std::string& address,
                                           const cli::ApiRequest& request) {
  base::ClientRequest out;
  out.method = request.method;
  out.target = request.target;
  out.body = request.body;
  out.headers = {{"accept", "application/json"}, {"user-agent", "routemesh-cli"}};
  auto outcome = std::make_shared<Outcome>();
  asio::io_context ioc;
  // Only std::bad_alloc and the like end the coroutine with an exception: a failed exchange.
  asio::co_spawn(ioc, exchange(outcome, address, std::move(out)),
                 base::log_and_count("cli: request", nullptr, [outcome] {
                   outcome->result = base::CallError{asio::error::no_memory, false};
                 }));
  // The deadline covers connect, write and read once the address is resolved; this bounds the
  // resolver too. An exchange that is still running has not connected yet: nothing was sent.
  ioc.run_for(kTimeout + std::chrono::seconds(1));
  const bool done = outcome->result.has_value();
  if (done && *outcome->result) {
    return std::move(**outcome->result);
  }
  const bool sent = done && outcome->result->error().sent;
  if (!done || outcome->result->error().code == boost::beast::error::timeout) {
    std::fprintf(stderr, "routemesh: %s the admin API at %s: timed out after %lld s\n",
                 sent ? "no answer from" : "cannot reach", address.c_str(),
                 static_cast<long long>(kTimeout.count()));
    return sent ? errc::no_answer : errc::unreachable;
  }
  const std::string why = outcome->result->error().message();
  if (sent) {
    std::fprintf(stderr, "routemesh: no answer from the admin API at %s: %s%s\n", address.c_str(),
                 why.c_str(), request.method == "GET" ? "" : " (the change may have been applied)");
    return errc::no_answer;
  }
  std::fprintf(stderr, "routemesh: cannot reach the admin API at %s: %s\n", address.c_str(),
               why.c_str());
  return errc::unreachable;
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
  CLI::App* leaf(CLI::App* parent, const std::string& name, const std::string& description,
                 std::function<int()> run);
  int run_leaf(const Leaf& leaf);

  // Sends the request; prints API and transport errors (every error means exit 1).
  sys::result<Answer> request(const cli::ApiRequest& request);
  // GET, then print either the raw JSON (--json) or render(answer).
  int show(const cli::ApiRequest& request,
           const std::function<cli::Result<std::string>(const json::value&)>& render);
  // A write: prints the raw JSON (--json) or the object's id/name.
  int write(const cli::ApiRequest& request, std::string_view kind, std::string_view fallback);
  // A node argument (id or name) -> id; errors are printed.
  sys::result<std::string> node_id(const std::string& arg);

  int service_update();

  CLI::App& app_;
  std::vector<Leaf> leaves_;
  std::vector<CLI::App*> own_groups_;

  std::string api_flag_;
  bool json_ = false;
  std::string address_;  // resolved in run_leaf
  bool consistent_ = false;

  cli::ServiceCreateArgs create_;
  cli::ServiceUpdateArgs update_;
  cli::NetworkCreateArgs network_;
  cli::TaskAddArgs task_;
  std::string task_service_filter_;
  std::string name_;  // NAME or ID positional
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

CLI::App* CliCommandsImpl::leaf(CLI::App* parent, const std::string& name,
                                const std::string& description, std::function<int()> run) {
  CLI::App* sub = parent->add_subcommand(name, description);
  // Unknown flags and stray arguments are reported by run() with exit 2 (CLI11's own errors
  // use other exit codes).
  sub->allow_extras();
  sub->add_option("--api", api_flag_,
                  "admin API address HOST:PORT (default $ROUTEMESH_API or " +
                      std::string(cli::kDefaultApiAddress) + ")");
  sub->add_flag("--json", json_, "print the API's JSON");
  leaves_.push_back({sub, std::move(run)});
  return sub;
}

void CliCommandsImpl::add_commands() {
  app_.add_option("--api", api_flag_,
                  "admin API address HOST:PORT for CLI commands (default $ROUTEMESH_API or " +
                      std::string(cli::kDefaultApiAddress) + ")");
  app_.add_flag("--json", json_, "CLI commands print the API's JSON");

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
    auto req = cli::service_create_request(create_);
    if (!req) {
      print_error(req.error());
      return 2;
    }
    return write(req.value(), "service", create_.name);
  });
  create->add_option("--name", create_.name, "service name");
  many(create, "--label", create_.labels, "label KEY=VALUE (repeatable)");
  many(create, "--publish,-p", create_.publish, "published port PUBLISHED:TARGET[/tcp]");
  many(create, "--network", create_.networks, "network to attach (repeatable)");
  create->add_option("--mode", create_.mode, "endpoint mode: vip or dnsrr");

  CLI::App* ls = leaf(service, "ls", "list services", [this] {
    return show(
        cli::get_request(std::string("/v1/services") + (consistent_ ? "?consistent=1" : "")),
        cli::render_services);
  });
  ls->add_flag("--consistent", consistent_, "linearizable read (through the leader)");
  CLI::App* inspect = leaf(service, "inspect", "show one service", [this] {
    return show(cli::get_request("/v1/services/" + cli::encode_path_segment(name_) +
                                 (consistent_ ? "?consistent=1" : "")),
                cli::render_service);
  });
  one(inspect, "NAME");
  inspect->add_flag("--consistent", consistent_, "linearizable read (through the leader)");
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
    auto req = cli::network_create_request(network_);
    if (!req) {
      print_error(req.error());
      return 2;
    }
    return write(req.value(), "network", network_.name);
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

  // task
  CLI::App* task = group("task", "manage tasks, the backends of services (admin API)", false);
  CLI::App* task_add = leaf(task, "add", "add a task to a service", [this] {
    auto req = cli::task_add_request(task_);
    if (!req) {
      print_error(req.error());
      return 2;
    }
    return write(req.value(), "task", "");
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
    if (auto c = call_api(address_, cli::get_request("/v1/cluster"));
        c && c->status >= 200 && c->status < 300) {
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
  auto address =
      cli::api_address(api_flag_.empty() ? std::nullopt : std::optional<std::string>(api_flag_),
                       std::getenv("ROUTEMESH_API"));
  if (!address) {
    print_error(address.error());
    return 2;
  }
  address_ = address.value();
  return leaf.run();
}

sys::result<Answer> CliCommandsImpl::request(const cli::ApiRequest& req) {
  auto reply = call_api(address_, req);
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
  auto reply = call_api(address_, req.value());
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
