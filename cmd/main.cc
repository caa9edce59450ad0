// Entry point: subcommands parsed with CLI11. Exceptions end at this boundary and become exit
// codes (docs/style.md, "Errors").

#include "cli/cli.h"
#include "cmd/cluster.h"
#include "cmd/node.h"
#include "cmd/unlock.h"
#include "discovery/raft/wal.h"
#include "tls/credentials.h"
#include "tools/whoami/whoami.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#ifndef RM_VERSION
#define RM_VERSION "0.1.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{"routemesh: a layer-7 HTTP routing mesh"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  routemesh::cmd::NodeOptions node_options;
  auto* node = app.add_subcommand("node", "run a node of the mesh");
  node->add_option("--config,-c", node_options.config_path, "node configuration (YAML)")
      ->required()
      ->check(CLI::ExistingFile);

  std::string check_path;
  auto* check = app.add_subcommand("check", "validate a configuration file and exit");
  check->add_option("--config,-c", check_path, "node configuration (YAML)")->required();

  routemesh::tools::WhoamiOptions whoami_options;
  auto* whoami = app.add_subcommand("whoami", "a tiny test backend that describes each request");
  whoami->add_option("--listen", whoami_options.listen, "HOST:PORT to listen on (port 0 = any)")
      ->required();
  whoami->add_option("--name", whoami_options.name, "name to report");
  whoami->add_option("--threads", whoami_options.threads, "worker threads")
      ->check(CLI::Range(1u, 64u));

  node->add_option("--join", node_options.join,
                   "cluster mode: TOKEN@IP:PORT, a join token (from `cluster init` or `cluster "
                   "token rotate`) and a manager's admin address (first start only)");

  node->add_option("--unlock-key-file", node_options.unlock_key_file,
                   "cluster mode with autolock: a file holding the unlock key that opens this "
                   "manager's keys (`routemesh cluster unlock-key` shows it; default: "
                   "$ROUTEMESH_UNLOCK_KEY)");

  routemesh::cmd::ClusterInitOptions init_options;
  auto* cluster = app.add_subcommand("cluster", "cluster commands");
  cluster->require_subcommand(1);
  auto* cluster_init = cluster->add_subcommand(
      "init", "create a new cluster with this node as its first manager, and print how to join");
  cluster_init->add_option("--config,-c", init_options.config_path, "node configuration (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cluster_init->add_option("--cert-dir", init_options.cert_dir,
                           "where the CLI's admin certificate goes (default: $ROUTEMESH_CERT_DIR, "
                           "else $XDG_CONFIG_HOME/routemesh, else ~/.config/routemesh)");
  auto* ca_cert_flag = cluster_init->add_option(
      "--ca-cert", init_options.ca_cert,
      "use this root CA (PEM, self-signed, CA:TRUE) instead of making a new one");
  auto* ca_key_flag = cluster_init->add_option("--ca-key", init_options.ca_key,
                                               "the private key of --ca-cert (PEM, unencrypted)");
  ca_cert_flag->needs(ca_key_flag);
  ca_key_flag->needs(ca_cert_flag);
  cluster_init
      ->add_flag("--external-ca", init_options.external_ca,
                 "keep the root's key in files (data_dir/tls/ca-key.pem on the managers you put "
                 "it on), never in the cluster's state; needs --ca-cert and --ca-key")
      ->needs(ca_cert_flag);
  cluster_init->add_flag("--autolock", init_options.autolock,
                         "encrypt this manager's keys on disk with a new unlock key (printed "
                         "once), which every manager then needs to start (cluster autolock)");

  std::string unlock_config;
  std::string unlock_key_file;
  auto* cluster_unlock = cluster->add_subcommand(
      "unlock", "hand a locked manager on this host, waiting at start, its unlock key");
  cluster_unlock->add_option("--config,-c", unlock_config, "the node's configuration (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cluster_unlock->add_option("--unlock-key-file", unlock_key_file,
                             "a file holding the unlock key (default: $ROUTEMESH_UNLOCK_KEY, "
                             "else asked on the terminal)");

  auto* version = app.add_subcommand("version", "print the version");

  std::string wal_dir;
  auto* wal = app.add_subcommand("wal", "inspect a Raft write-ahead log");
  wal->require_subcommand(1);
  auto* wal_check = wal->add_subcommand(
      "check", "report a WAL's segments, records, last index and torn tail; exit 1 if corrupt");
  wal_check->add_option("DIR", wal_dir, "the WAL directory (a manager's DATA_DIR/raft)")
      ->required()
      ->check(CLI::ExistingDirectory);

  // service/network/task/node ls.../cluster status: the admin API client (after the other
  // subcommands: it attaches to `node` and `cluster` when they exist).
  auto cli = routemesh::cli::add_cli_commands(app);

  // Every usage error exits 2 (CLI11's own codes differ per kind); --help and --version exit 0.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto logger = spdlog::stderr_logger_mt("routemesh");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  try {
    if (cli->selected()) {
      return cli->run();
    }
    if (*cluster_init) {
      if (init_options.cert_dir.empty()) {
        init_options.cert_dir = routemesh::tls::default_client_dir(
            std::getenv("ROUTEMESH_CERT_DIR"), std::getenv("XDG_CONFIG_HOME"), std::getenv("HOME"));
      }
      return routemesh::cmd::run_cluster_init(init_options);
    }
    if (*cluster_unlock) {
      return routemesh::cmd::run_cluster_unlock(unlock_config, unlock_key_file);
    }
    if (*wal_check) {
      auto report = routemesh::discovery::raft::check_wal(wal_dir);
      std::fputs(routemesh::discovery::raft::format_wal_report(report).c_str(), stdout);
      return report.ok() ? 0 : 1;
    }
    if (*version) {
      std::printf("routemesh %s\n", RM_VERSION);
      return 0;
    }
    if (*check) {
      return routemesh::cmd::check_config(check_path);
    }
    if (*whoami) {
      return routemesh::tools::run_whoami(whoami_options);
    }
    if (*node) {
      return routemesh::cmd::run_node(node_options);
    }
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return 1;
  }
  return 0;
}
