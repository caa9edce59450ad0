#pragma once
// The `routemesh` CLI for the admin REST API (docker-style):
//
//   routemesh [--api ADDR[,ADDR...]] [--json] [--stale]
//                                   service create --name N [--label K=V]... [--publish P:T]...
//                                          [--network NET]... [--mode vip|dnsrr]
//                                   service ls | inspect NAME | rm NAME
//                                   service update NAME [--label-add K=V]... [--label-rm K]...
//                                          [--publish-add P:T]... [--publish-rm P]...
//                                          [--network-add NET]... [--network-rm NET]... [--mode M]
//                                   network create NAME [--subnet CIDR] | ls | rm NAME
//                                   task add --service S [--node N] --addr IP:PORT
//                                   task ls [--service S] | rm ID
//                                   node ls | rm ID|NAME | promote ID|NAME | demote ID|NAME
//                                   policy add --from network:N|service:S|cidr:C --to service:S
//                                          [--port P] --allow|--deny [--priority N]
//                                   policy ls | rm ID
//                                   cluster status
//
// --api, --json and --stale may also follow the command. ADDR is a comma-separated list of
// managers (default $ROUTEMESH_API, else 127.0.0.1:9901): on a 503 or a connection error the
// next is tried, for a few passes over the list; a write carries one Idempotency-Key in all
// its attempts, so it applies once. Reads are linearizable; --stale reads a manager's own copy.
// Exit codes: 0 ok; 1 API error (printed as "routemesh: <message> (field: F)"), no manager
// reachable or answering, or an unexpected answer; 2 bad flags (the message names the flag).
// Requests and rendering live in cli/cli_format.h (pure); this part does the HTTP (the one
// client, base/http_client.h: one connection per request, blocking the main thread) and the
// printing.

#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <type_traits>

namespace CLI {
class App;
}

namespace routemesh::cli {

// Why a command that was given valid arguments failed (exit code 1). The message for the user
// is printed where the failure is found; the code tells the steps in between what happened.
enum class errc {
  unreachable = 1,    // the request was not sent: no connection, or none within the timeout
  no_answer,          // the request was sent but no complete answer came (it may have applied)
  api_error,          // the API answered with a status other than 2xx
  unexpected_answer,  // a 2xx answer that is not what the command expects (e.g. not JSON)
  unknown_node,       // a node argument that names no node
};

// Name "routemesh.cli".
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

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

template <>
struct boost::system::is_error_code_enum<routemesh::cli::errc> : std::true_type {};
