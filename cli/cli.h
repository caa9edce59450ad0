#pragma once
// The `routemesh` CLI for the admin REST API (docker-style):
//
//   routemesh [--api ADDR] [--json] service create --name N [--label K=V]... [--publish
//   P:T[/tcp]]...
//                                          [--network NET]... [--mode vip|dnsrr]
//                                   service ls | inspect NAME | rm NAME
//                                   service update NAME [--label-add K=V]... [--label-rm K]...
//                                          [--publish-add P:T]... [--publish-rm P]...
//                                          [--network-add NET]... [--network-rm NET]... [--mode M]
//                                   network create NAME [--subnet CIDR] | ls | rm NAME
//                                   task add --service S [--node N] --addr IP:PORT
//                                   task ls [--service S] | rm ID
//                                   node ls | rm ID|NAME | promote ID|NAME | demote ID|NAME
//                                   cluster status
//
// --api and --json may also follow the command. ADDR defaults to $ROUTEMESH_API, else
// 127.0.0.1:9901. Exit codes: 0 ok; 1 API error (printed as "routemesh: <message> (field: F)"),
// unreachable API, timeout (10 s) or unexpected answer; 2 bad flags (the message names the flag).
// Requests and rendering live in cmd/cli_format.h (pure); this part does the HTTP (Beast,
// one connection per request, blocking the main thread) and the printing.

#include <memory>

namespace CLI {
class App;
}

namespace routemesh::cli {

class CliCommands {
 public:
  virtual ~CliCommands() = default;
  CliCommands() = default;
  CliCommands(const CliCommands&) = delete;
  CliCommands& operator=(const CliCommands&) = delete;

  // After app.parse(): true when the command line selected one of the CLI's commands (or one
  // of its own command groups without a command, which run() answers with usage and exit 2).
  virtual bool selected() const = 0;

  // Runs the selected command on the calling (main) thread; returns the exit code. Prints
  // results to stdout and errors to stderr. Does not throw for network or API errors.
  virtual int run() = 0;
};

// Adds the CLI's subcommands and the global --api/--json options to `app`. Call it after main()
// has added its own subcommands: `node` and `cluster` are shared — when they already exist the
// CLI's commands (`node ls|rm|promote|demote`, `cluster status`) are attached to them, otherwise
// they are created (with require_subcommand for `cluster`), and code adding `cluster init`
// later should use app.get_subcommand("cluster") when present. Options of an existing `node`
// that are ->required() (e.g. --config) are re-checked only when no CLI command under `node`
// is given, via a parse-complete callback on `node` (so `routemesh node ls` needs no --config).
// The returned object must outlive parsing (options are bound to it).
std::unique_ptr<CliCommands> add_cli_commands(CLI::App& app);

}  // namespace routemesh::cli
