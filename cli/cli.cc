// The CLI's I/O half: CLI11 wiring, one blocking HTTP/1.1 exchange per API call, printing.
// The CLI is not on the data path, so each call gets its own io_context and connection
// (Connection: close) and the main thread simply runs that context until the exchange ends.

#include "cli/cli.h"

#include "cli/cli_format.h"

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace routemesh::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using asio::ip::tcp;

constexpr std::chrono::seconds kTimeout{10};
// List answers grow with the cluster; this only bounds a misbehaving server.
constexpr std::uint64_t kBodyLimit = 64ull << 20;

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

// Everything one exchange needs, owned by the coroutine (docs/style.md, "Async": owned parameters).
struct Exchange {
  std::string address;  // as given, for the Host header and messages
  std::string host;
  std::string port;
  cli::ApiRequest request;
  // Results.
  bool done = false;
  bool sent = false;  // the request was written completely
  boost::system::error_code error;
  HttpReply reply;
};

asio::awaitable<void> exchange(std::shared_ptr<Exchange> x) {
  auto token = asio::as_tuple(asio::use_awaitable);
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(x->host, x->port, token);
  if (resolve_ec) {
    x->error = resolve_ec;
    x->done = true;
    co_return;
  }
  beast::tcp_stream stream(executor);
  stream.expires_after(kTimeout);
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, token);
  (void)endpoint;
  if (connect_ec) {
    x->error = connect_ec;
    x->done = true;
    co_return;
  }
  http::request<http::string_body> req;
  req.method(http::string_to_verb(x->request.method));
  req.target(x->request.target);
  req.version(11);
  req.set(http::field::host, x->address);
  req.set(http::field::user_agent, "routemesh-cli");
  req.set(http::field::accept, "application/json");
  if (!x->request.body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = x->request.body;
  }
  req.keep_alive(false);
  req.prepare_payload();
  auto [write_ec, written] = co_await http::async_write(stream, req, token);
  (void)written;
  if (write_ec) {
    x->error = write_ec;
    x->done = true;
    co_return;
  }
  x->sent = true;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, token);
  (void)read;
  if (read_ec) {
    x->error = read_ec;
    x->done = true;
    co_return;
  }
  x->reply.status = parser.get().result_int();
  x->reply.body = std::move(parser.get().body());
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  x->done = true;
}

// One request, blocking. On a transport failure prints the reason and returns nullopt.
std::optional<HttpReply> call_api(const std::string& address, const cli::ApiRequest& request) {
  auto x = std::make_shared<Exchange>();
  x->address = address;
  std::tie(x->host, x->port) = cli::split_host_port(address);
  x->request = request;
  asio::io_context ioc;
  asio::co_spawn(ioc, exchange(x), [x](std::exception_ptr e) {
    if (e) {
      // Only std::bad_alloc and the like end here; report it as a failed exchange.
      x->error = asio::error::no_memory;
      x->done = true;
    }
  });
  // The stream deadline covers connect, write and read; this bounds name resolution too.
  ioc.run_for(kTimeout + std::chrono::seconds(1));
  if (!x->done || x->error == beast::error::timeout) {
    std::fprintf(stderr, "routemesh: %s the admin API at %s: timed out after %lld s\n",
                 x->sent ? "no answer from" : "cannot reach", address.c_str(),
                 static_cast<long long>(kTimeout.count()));
    return std::nullopt;
  }
  if (x->error) {
    if (x->sent) {
      std::fprintf(stderr, "routemesh: no answer from the admin API at %s: %s%s\n", address.c_str(),
                   x->error.message().c_str(),
                   request.method == "GET" ? "" : " (the change may have been applied)");
    } else {
      std::fprintf(stderr, "routemesh: cannot reach the admin API at %s: %s\n", address.c_str(),
                   x->error.message().c_str());
    }
    return std::nullopt;
  }
  return std::move(x->reply);
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
  HttpReply reply;
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

  // Sends the request; prints API and transport errors. nullopt = exit 1.
  std::optional<Answer> request(const cli::ApiRequest& request);
  // GET, then print either the raw JSON (--json) or render(answer).
  int show(const cli::ApiRequest& request,
           const std::function<cli::Result<std::string>(const json::value&)>& render);
  // A write: prints the raw JSON (--json) or the object's id/name.
  int write(const cli::ApiRequest& request, std::string_view kind, std::string_view fallback);
  // A node argument (id or name) -> id; nullopt after printing the error.
  std::optional<std::string> node_id(const std::string& arg);

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

std::optional<Answer> CliCommandsImpl::request(const cli::ApiRequest& req) {
  auto reply = call_api(address_, req);
  if (!reply) {
    return std::nullopt;
  }
  if (reply->status < 200 || reply->status >= 300) {
    print_error(cli::format_api_error(reply->status, reply->body));
    return std::nullopt;
  }
  Answer answer{std::move(*reply), nullptr};
  if (!answer.reply.body.empty()) {
    boost::system::error_code ec;
    answer.value = json::parse(answer.reply.body, ec);
    if (ec) {
      print_error("unexpected answer from the admin API (HTTP " +
                  std::to_string(answer.reply.status) + "): not JSON");
      return std::nullopt;
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

std::optional<std::string> CliCommandsImpl::node_id(const std::string& arg) {
  if (cli::looks_like_node_id(arg)) {
    return arg;
  }
  auto nodes = request(cli::get_request("/v1/nodes"));
  if (!nodes) {
    return std::nullopt;
  }
  auto id = cli::resolve_node_id(nodes->value, arg);
  if (!id) {
    print_error(id.error());
    return std::nullopt;
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

std::unique_ptr<CliCommands> add_cli_commands(CLI::App& app) {
  auto commands = std::make_unique<CliCommandsImpl>(app);
  commands->add_commands();
  return commands;
}

}  // namespace routemesh::cli
