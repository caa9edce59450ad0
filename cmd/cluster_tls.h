#pragma once
// The TLS of a cluster node (wiring; tls/ does the work): what `routemesh cluster init` creates
// and where it writes it, and what a node loads from data_dir/tls when it starts. The layout
// of the files is tls/credentials.h.

#include "base/http_client.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <vector>
#include "config/types.h"
#include "discovery/model/types.h"
#include "proxy/overlay/overlay.h"
#include "tls/cluster_pki.h"
#include "tls/context.h"
#include "tls/credentials.h"
#include "tls/pki.h"

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>

namespace routemesh::cmd {

// What `cluster init` made: the tokens it prints (once; the store keeps only their hashes,
// which go into the bootstrap marker) and where the CLI's credentials went.
struct InitPki {
  std::string worker_token;
  std::string manager_token;
  std::string worker_token_hash;
  std::string manager_token_hash;
  std::string cert_dir;       // "" = no default place (no $HOME): only data_dir/tls/admin has them
  std::string ca_root;        // PEM: the root, for the bootstrap marker
  std::string sealed_ca_key;  // its key sealed with the manager key ("" = external CA)
  // --autolock: the unlock key (printed once) and it sealed with the manager key (marker).
  std::string unlock_key;
  std::string unlock_key_wrapped;
};

// Creates the PKI of a new cluster whose first manager is node `node_id` of cluster
// `cluster_id` (tls/cluster_pki.h; `root` says whose root and where its key goes) and writes
// data_dir/tls (the CA, the manager key or, for an external CA, the CA's key, the node's
// certificate and key, and tls/admin/ with the admin credentials) and the admin credentials
// into `cert_dir` too (files there are replaced). Errors are printed to stderr; nullopt then.
std::optional<InitPki> init_cluster_pki(const config::NodeConfig& cfg,
                                        const std::string& cluster_id, const std::string& node_id,
                                        const std::string& cert_dir, tls::RootChoice root = {},
                                        bool autolock = false);

// The TLS of a running node.
struct NodeTls {
  tls::NodeCredentials credentials;
  base::TlsContext server;  // the admin server: the node certificate, client certificates
  base::TlsContext client;  // calls to managers: the node certificate, the CA only
  // The CA this manager signs with: opened from the state's sealed key with
  // credentials.manager_key (follow_cluster_ca), or loaded from ca-key.pem (an external CA).
  // Null on a worker, and on a manager until it has seen the state.
  std::shared_ptr<const tls::CertificateAuthority> ca;
  // The cluster's revoked certificates, consulted by `server` at every handshake; the node
  // replaces the set from every state it sees (set_revocations).
  std::shared_ptr<tls::PeerTrust> revoked = std::make_shared<tls::PeerTrust>();
  // follow_cluster_ca's memory: the CA record version and certificate it last looked at.
  std::uint64_t ca_version = 0;
  std::string ca_seen_cert;
  // A manager whose manager key is older than the one before the state's current key (it
  // missed two rotations), so it cannot open the new one: it asks for the key with a
  // certificate renewal, whose answer carries it. Cleared by that renewal.
  bool manager_key_behind = false;
};

// The overlay's mutual TLS contexts from `t`'s current credentials (proxy/overlay/overlay.h):
// new contexts each time, so proxy threads never share one that renewal changes in place. The
// server side refuses `t`'s revoked certificates. nullptr (logged) if they do not load.
// `rekey_bytes`: cluster.overlay_rekey_bytes.
std::shared_ptr<const proxy::OverlayTls> overlay_tls(const NodeTls& t,
                                                     const std::string& cluster_id,
                                                     std::uint64_t rekey_bytes);

// Gives `t`'s server context the revoked serials and the removed nodes of `state` (logged when
// they changed); true when they changed. `raft_members` (node ids) are left out of the removed
// nodes: a manager removed from the state is still a Raft member until the configuration
// change that removes it commits, and with two voters (or one down) that change needs its own
// vote, so its Raft connections must not be refused before.
bool set_revocations(NodeTls& t, const discovery::ClusterState& state,
                     const std::set<std::string, std::less<>>& raft_members = {});

// What the state's CA record changed for this node (follow_cluster_ca).
struct CaChange {
  bool trust = false;  // the trusted roots changed (the node's contexts trust the new set)
  bool chain = false;  // the chain this node presents changed (its certificate and a cross one)
  // This manager opened the new root's key (now in NodeTls::ca), or took the state's new
  // manager key (credentials.manager_key, written to data_dir/tls/manager-key).
  bool key = false;
  // Autolock went on or off, or has a new unlock key: this manager's key files were written
  // anew, encrypted with the state's unlock key or in clear (credentials.unlock_key).
  bool lock = false;
};

// On every state a node sees: makes `t` trust the state's roots, present its certificate with
// the cross certificate to the other root while a rotation runs (none otherwise), and, on a
// manager holding the manager key, takes the state's new manager key after a `cluster
// manager-key rotate` (sealed in the state with the key it replaced) and opens the signing
// root's key sealed in the state. Files in
// data_dir/tls follow (the opened key stays in memory). Nothing happens when the state has no
// roots (a cluster made before the state kept them, until its first rotation) or when the
// record did not change since the last call (set ca_version to 0 to look again).
CaChange follow_cluster_ca(NodeTls& t, const discovery::ClusterCa& ca, const std::string& data_dir);

// Whether `t`'s certificate must be re-issued now: a rotation runs and the new root did not
// sign it.
bool needs_new_root(const NodeTls& t, const discovery::ClusterCa& ca);

// Loads data_dir/tls and checks that the node certificate was issued by the CA, is valid now,
// pairs with its key and names node `node_id` of cluster `cluster_id`. Errors are logged
// (naming the file and what to do); nullopt then.
std::optional<NodeTls> load_node_tls(const std::string& data_dir, const std::string& cluster_id,
                                     const std::string& node_id, const std::string& unlock_key);

// The unlock key a node was started with: the text of `file` (surrounding white space
// dropped), else $ROUTEMESH_UNLOCK_KEY, else "". An error message naming the flag or the
// variable when it cannot be read or is not an unlock key (64 hex digits).
std::variant<std::string, std::string> unlock_key_of(const std::string& file);

// Whether the manager keys in data_dir/tls open with `unlock_key` (autolock): an error message
// saying how to start this node when they are locked and it is "" or another key.
std::optional<std::string> check_unlock(const std::string& data_dir, const std::string& unlock_key);

// `text` without white space at either end (an unlock key as a file, a terminal or the unlock
// socket gives it).
std::string trimmed(const std::string& text);

// Reads a line from standard input with echo off (a terminal's), after printing `prompt` on
// standard error; white space around it dropped. nullopt at the end of input.
std::optional<std::string> read_hidden_line(const char* prompt);

// When standard input is a terminal: prints `why` (check_unlock's message) and asks for the
// unlock key, echo off, until one opens data_dir/tls (three tries, each refusal printed). The
// key, or nullopt (not a terminal, end of input, three refusals).
std::optional<std::string> prompt_unlock_key(const std::string& data_dir, const std::string& why);

// When to renew `t`'s certificate: once two thirds of its lifetime (from its issue, notBefore
// plus tls::kBackdate, to notAfter) have passed (unix time).
std::int64_t renewal_time(const NodeTls& t);

// Renews the node certificate: a new key, a request signed by the first of `managers` that
// answers (POST /v1/certs/renew over the current certificate), the new pair written to
// data_dir/tls (tls::renew_node_credentials) and swapped into `t`'s contexts in place, so
// connections made from now on present it and no open one drops. A manager's answer carries the
// manager key, which `t` keeps from then on; a certificate naming a worker (a demoted manager)
// drops the manager key and the CA from `t` and data_dir/tls. When either changes, `t`'s
// ca_version goes back to 0 so that the next follow_cluster_ca opens the key. Run on the thread
// that uses the contexts. false (each failure logged) leaves `t` and the files as they were.
boost::asio::awaitable<bool> renew_node_certificate(boost::asio::any_io_executor ex, NodeTls& t,
                                                    std::string data_dir, std::string node_id,
                                                    std::vector<std::string> managers);

}  // namespace routemesh::cmd
