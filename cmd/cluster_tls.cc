#include "cmd/cluster_tls.h"

#include "base/address.h"
#include "base/file.h"
#include "tls/cluster_pki.h"
#include "tls/context.h"
#include "tls/token.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <set>

namespace routemesh::cmd {
namespace {

std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

// The IP of "IP:PORT" for a certificate's SANs; "" for a host name or an unspecified address.
std::string san_ip(const std::string& address) {
  auto hp =
      base::parse_host_port(address, {.host_names = true, .empty_host = true, .port_zero = true});
  if (!hp || !base::is_ip_literal(hp->host) || base::is_unspecified_ip(hp->host)) {
    return {};
  }
  return hp->host;
}

}  // namespace

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? std::string{} : text.substr(first, last - first + 1);
}

std::optional<InitPki> init_cluster_pki(const config::NodeConfig& cfg,
                                        const std::string& cluster_id, const std::string& node_id,
                                        const std::string& cert_dir, tls::RootChoice root,
                                        bool autolock) {
  tls::Subject node{{cluster_id, tls::Role::manager, node_id}, {}, {}};
  for (const std::string& address : {cfg.node.admin, cfg.cluster.peer}) {
    const std::string ip = san_ip(address);
    if (!ip.empty() && (node.ips.empty() || node.ips.front() != ip)) {
      node.ips.push_back(ip);
    }
  }
  if (base::is_host_name(cfg.node.name)) {
    node.names.push_back(cfg.node.name);
  }
  auto pki = tls::new_cluster_pki(node, "admin", unix_now(), cfg.cluster.cert_lifetime_s,
                                  cfg.cluster.user_cert_lifetime_s, root);
  if (!pki) {
    std::fprintf(stderr, "routemesh: cannot create the cluster CA: %s\n",
                 pki.error().message().c_str());
    return std::nullopt;
  }
  std::string unlock_key;
  std::string unlock_key_wrapped;
  if (autolock) {
    auto key = tls::new_manager_key();
    auto wrapped = key ? tls::wrap_manager_key(*key, pki->manager_key) : key;
    if (!wrapped) {
      std::fprintf(stderr, "routemesh: cannot make an unlock key: %s\n",
                   wrapped.error().message().c_str());
      return std::nullopt;
    }
    unlock_key = std::move(*key);
    unlock_key_wrapped = std::move(*wrapped);
  }
  const std::string& dir = cfg.cluster.data_dir;
  const tls::ClientCredentials admin{pki->ca_pem, pki->admin_cert_pem, pki->admin_key_pem};
  if (auto w = tls::write_node_credentials(dir, {pki->ca_pem, pki->node_cert_pem, pki->node_key_pem,
                                                 pki->manager_key, pki->ca_key_pem, unlock_key});
      !w) {
    std::fprintf(stderr, "routemesh: cannot write %s: %s\n", tls::tls_dir(dir).c_str(),
                 w.error().message().c_str());
    return std::nullopt;
  }
  if (auto w = tls::write_client_credentials(tls::tls_dir(dir) + "/admin", admin); !w) {
    std::fprintf(stderr, "routemesh: cannot write %s/admin: %s\n", tls::tls_dir(dir).c_str(),
                 w.error().message().c_str());
    return std::nullopt;
  }
  if (!cert_dir.empty()) {
    if (auto w = tls::write_client_credentials(cert_dir, admin); !w) {
      std::fprintf(stderr, "routemesh: cannot write the CLI's credentials to %s: %s\n",
                   cert_dir.c_str(), w.error().message().c_str());
      return std::nullopt;
    }
  }
  InitPki out;
  out.worker_token = tls::format_token(pki->worker_token);
  out.manager_token = tls::format_token(pki->manager_token);
  out.worker_token_hash = tls::secret_hash(pki->worker_token.secret);
  out.manager_token_hash = tls::secret_hash(pki->manager_token.secret);
  out.cert_dir = cert_dir;
  out.ca_root = pki->ca_pem;
  out.sealed_ca_key = pki->sealed_ca_key;
  out.unlock_key = std::move(unlock_key);
  out.unlock_key_wrapped = std::move(unlock_key_wrapped);
  return out;
}

std::variant<std::string, std::string> unlock_key_of(const std::string& file) {
  std::string text;
  std::string source;
  if (!file.empty()) {
    auto read = base::read_file(file);
    if (!read) {
      return std::variant<std::string, std::string>(std::in_place_index<1>,
                                                    "--unlock-key-file: cannot read " + file);
    }
    text = std::move(*read);
    source = "--unlock-key-file " + file;
  } else if (const char* env = std::getenv("ROUTEMESH_UNLOCK_KEY"); env != nullptr) {
    text = env;
    source = "ROUTEMESH_UNLOCK_KEY";
  }
  text = trimmed(text);
  if (!text.empty() && !tls::is_manager_key(text)) {
    return std::variant<std::string, std::string>(
        std::in_place_index<1>, source +
                                    ": not an unlock key (64 hexadecimal digits, as "
                                    "`routemesh cluster unlock-key` shows it)");
  }
  return std::variant<std::string, std::string>(std::in_place_index<0>, std::move(text));
}

std::optional<std::string> check_unlock(const std::string& data_dir,
                                        const std::string& unlock_key) {
  auto read = tls::read_node_credentials(data_dir, unlock_key);
  if (read || (read.error() != tls::errc::locked && read.error() != tls::errc::wrong_unlock_key)) {
    return std::nullopt;  // other errors are load_node_tls's to report
  }
  if (read.error() == tls::errc::locked) {
    return "this manager is locked (cluster autolock): its keys in " + tls::tls_dir(data_dir) +
           " are encrypted; start it with --unlock-key-file FILE or ROUTEMESH_UNLOCK_KEY (the "
           "key `routemesh cluster unlock-key` shows)";
  }
  return "the unlock key given does not open this manager's keys in " + tls::tls_dir(data_dir) +
         " (a key from before `cluster unlock-key --rotate`? `routemesh cluster unlock-key` on "
         "another manager shows the current one)";
}

std::optional<std::string> read_hidden_line(const char* prompt) {
  std::fprintf(stderr, "%s", prompt);
  std::fflush(stderr);
  termios before{};
  const bool quiet = ::tcgetattr(STDIN_FILENO, &before) == 0;
  if (quiet) {
    termios no_echo = before;
    no_echo.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &no_echo);
  }
  std::string line;
  const bool got = static_cast<bool>(std::getline(std::cin, line));
  if (quiet) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &before);
  }
  std::fprintf(stderr, "\n");
  if (!got) {
    return std::nullopt;
  }
  return trimmed(line);
}

std::optional<std::string> prompt_unlock_key(const std::string& data_dir, const std::string& why) {
  if (::isatty(STDIN_FILENO) == 0) {
    return std::nullopt;
  }
  std::fprintf(stderr, "routemesh: %s\n", why.c_str());
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto typed = read_hidden_line("unlock key: ");
    if (!typed) {
      return std::nullopt;
    }
    std::string line = std::move(*typed);
    if (!tls::is_manager_key(line)) {
      std::fprintf(stderr, "routemesh: not an unlock key (64 hexadecimal digits)\n");
      continue;
    }
    if (auto refused = check_unlock(data_dir, line)) {
      std::fprintf(stderr, "routemesh: %s\n", refused->c_str());
      continue;
    }
    return line;
  }
  return std::nullopt;
}

std::optional<NodeTls> load_node_tls(const std::string& data_dir, const std::string& cluster_id,
                                     const std::string& node_id, const std::string& unlock_key) {
  const std::string dir = tls::tls_dir(data_dir);
  auto credentials = tls::read_node_credentials(data_dir, unlock_key);
  if (!credentials) {
    spdlog::error(
        "cluster: no node certificate in {} ({}): this data_dir has an identity but no "
        "credentials (made before the cluster had a CA?); join the node again with a fresh "
        "data_dir",
        dir, credentials.error().message());
    return std::nullopt;
  }
  const auto& c = *credentials;
  if (auto checked = tls::check_certificate(c.cert_pem, c.ca_pem, c.key_pem, unix_now());
      !checked) {
    spdlog::error("cluster: {}/node.pem is not usable: {}", dir, checked.error().message());
    return std::nullopt;
  }
  auto identity = tls::identity_of(c.cert_pem);
  if (!identity || identity->cluster_id != cluster_id || identity->id != node_id) {
    spdlog::error("cluster: {}/node.pem names {}, not node {} of cluster {}", dir,
                  identity ? tls::identity_uri(*identity) : std::string("no node"), node_id,
                  cluster_id);
    return std::nullopt;
  }
  NodeTls out;
  auto server = tls::server_context(c, out.revoked);
  auto client = tls::client_context(c.ca_pem, c.cert_pem, c.key_pem);
  if (!server || !client) {
    spdlog::error("cluster: the credentials in {} do not load: {}", dir,
                  (!server ? server.error() : client.error()).message());
    return std::nullopt;
  }
  out.server = *server;
  out.client = *client;
  if (!c.ca_key_pem.empty()) {
    // The key's root: the first of ca.pem, unless a rotation was cut short between the writes
    // of ca.pem and ca-key.pem (the state's record brings the key up to date again).
    auto ca = tls::CertificateAuthority::load(c.ca_pem, c.ca_key_pem);
    if (auto roots = tls::split_certificates(c.ca_pem); !ca && roots) {
      for (const auto& root : *roots) {
        if (auto other = tls::CertificateAuthority::load(root, c.ca_key_pem)) {
          ca = std::move(other);
          break;
        }
      }
    }
    if (!ca) {
      spdlog::error("cluster: {}/ca-key.pem does not go with ca.pem: {}", dir,
                    ca.error().message());
      return std::nullopt;
    }
    out.ca = std::make_shared<const tls::CertificateAuthority>(std::move(*ca));
  }
  out.credentials = std::move(*credentials);
  return out;
}

std::shared_ptr<const proxy::OverlayTls> overlay_tls(const NodeTls& t,
                                                     const std::string& cluster_id,
                                                     std::uint64_t rekey_bytes) {
  const auto& c = t.credentials;
  auto server = tls::server_context(c, t.revoked);
  auto client = tls::client_context(c.ca_pem, c.cert_pem, c.key_pem);
  if (!server || !client) {
    spdlog::error("cluster: the overlay's TLS contexts do not load: {}",
                  (!server ? server.error() : client.error()).message());
    return nullptr;
  }
  // Both ends are routemesh: AES-128-GCM (the fastest TLS 1.3 suite with AES-NI), ChaCha20
  // for a CPU without it.
  for (const auto& ctx : {*server, *client}) {
    SSL_CTX_set_ciphersuites(ctx->native_handle(),
                             "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
  }
  // Overlay connections are long-lived and never resumed: no session tickets, which would
  // also be bytes arriving on a spare connection that nothing reads yet.
  SSL_CTX_set_num_tickets((*server)->native_handle(), 0);
  auto out = std::make_shared<proxy::OverlayTls>();
  out->server = *server;
  out->client = *client;
  out->cluster_id = cluster_id;
  out->rekey_bytes = rekey_bytes;
  out->trust = t.revoked;
  return out;
}

CaChange follow_cluster_ca(NodeTls& t, const discovery::ClusterCa& ca,
                           const std::string& data_dir) {
  CaChange out;
  if (ca.roots.empty() ||
      (ca.version == t.ca_version && t.credentials.cert_pem == t.ca_seen_cert)) {
    return out;
  }
  std::string bundle;
  for (const auto& root : ca.roots) {
    bundle += root;
  }
  auto signing = tls::certificate_digest(ca.roots.front());
  if (!signing) {
    spdlog::error("cluster: the state's CA root does not parse; keeping this node's roots");
    return out;
  }
  // A manager whose key is not the state's current one learns the new key from the state,
  // where it is sealed with the key it replaced (this manager's, unless it missed two
  // rotations), before it opens the root's key with it.
  if (!t.credentials.manager_key.empty() && !ca.manager_key_id.empty() &&
      tls::manager_key_id(t.credentials.manager_key) != ca.manager_key_id) {
    auto next = tls::unwrap_manager_key(ca.manager_key_wrapped, t.credentials.manager_key);
    if (next && tls::manager_key_id(*next) == ca.manager_key_id) {
      t.credentials.manager_key = std::move(*next);
      t.manager_key_behind = false;
      out.key = true;
      if (auto w = tls::write_node_credentials(data_dir, t.credentials); !w) {
        spdlog::error("cluster: cannot write the new manager key to {}: {}", tls::tls_dir(data_dir),
                      w.error().message());
      }
      spdlog::info("cluster: this manager holds manager key {} from now on", ca.manager_key_id);
    } else {
      t.manager_key_behind = true;
      spdlog::warn(
          "cluster: the state's manager key {} is not sealed with this manager's key (it missed "
          "more than one rotation): asking a manager for it with a certificate renewal",
          ca.manager_key_id);
    }
  }
  // Autolock: a manager holding the state's manager key keeps its keys on disk encrypted with
  // the state's unlock key (opened with the manager key), or in clear when autolock is off.
  if (!t.credentials.manager_key.empty() && !t.manager_key_behind) {
    std::optional<std::string> unlock = std::string{};
    if (!ca.unlock_key_wrapped.empty()) {
      auto opened = tls::unwrap_manager_key(ca.unlock_key_wrapped, t.credentials.manager_key);
      if (opened) {
        unlock = std::move(*opened);
      } else {
        unlock.reset();
        spdlog::warn(
            "cluster: this manager's key does not open the state's unlock key: its keys on disk "
            "stay as they are");
      }
    }
    if (unlock && *unlock != t.credentials.unlock_key) {
      const bool was_locked = !t.credentials.unlock_key.empty();
      t.credentials.unlock_key = std::move(*unlock);
      out.lock = true;
      spdlog::info("cluster: autolock {}: this manager's keys in {} are {} from now on",
                   t.credentials.unlock_key.empty() ? "off"
                   : was_locked                     ? "has a new unlock key"
                                                    : "on",
                   tls::tls_dir(data_dir),
                   t.credentials.unlock_key.empty() ? "in clear" : "encrypted with the unlock key");
    }
  }
  // A manager opens the signing root's key with its manager key (the key stays in memory).
  if ((!t.ca || t.ca->digest() != *signing) && !ca.sealed_key.empty() &&
      !t.credentials.manager_key.empty()) {
    if (auto opened =
            tls::open_sealed_ca(ca.roots.front(), ca.sealed_key, t.credentials.manager_key)) {
      t.ca = std::make_shared<const tls::CertificateAuthority>(std::move(*opened));
      out.key = true;
      spdlog::info("cluster: this manager signs with root {}", *signing);
    } else {
      spdlog::warn(
          "cluster: cannot open the state's CA key with this node's manager key ({}): this "
          "manager does not sign",
          opened.error().message());
    }
  }
  // The chain: the certificate, then (while rotating) the cross certificate to the other root.
  auto own = tls::split_certificates(t.credentials.cert_pem);
  if (own) {
    std::string chain = own->front();
    if (ca.rotating()) {
      chain += tls::signed_by(own->front(), ca.roots.front()) ? ca.cross_new : ca.cross_old;
    }
    if (chain != t.credentials.cert_pem) {
      bool ok = true;
      for (const auto& ctx : {t.server, t.client}) {
        if (auto r = tls::replace_certificate(*ctx, chain, t.credentials.key_pem); !r) {
          spdlog::error("cluster: cannot present the new certificate chain: {}",
                        r.error().message());
          ok = false;
        }
      }
      if (ok) {
        t.credentials.cert_pem = chain;
        out.chain = true;
      }
    }
  }
  if (bundle != t.credentials.ca_pem) {
    bool ok = true;
    for (const auto& ctx : {t.server, t.client}) {
      if (auto r = tls::replace_trusted_roots(*ctx, bundle); !r) {
        spdlog::error("cluster: cannot trust the state's CA roots: {}", r.error().message());
        ok = false;
      }
    }
    if (ok) {
      // Roots trusted until now and not any more were retired: connections made with their
      // certificates are refused from their next request (tls::PeerTrust::recheck).
      std::vector<std::string> retired;
      if (auto before = tls::split_certificates(t.credentials.ca_pem)) {
        for (auto& root : *before) {
          auto d = tls::certificate_digest(root);
          bool kept = false;
          for (const auto& now : ca.roots) {
            kept = kept || (d && tls::certificate_digest(now) == *d);
          }
          if (!kept) {
            retired.push_back(std::move(root));
          }
        }
      }
      if (!retired.empty()) {
        t.revoked->add_retired_roots(retired);
      }
      t.credentials.ca_pem = bundle;
      out.trust = true;
      spdlog::info("cluster: trusting {} CA root(s) from now on (signing: {})", ca.roots.size(),
                   *signing);
    }
  }
  if (out.trust || out.chain || out.key || out.lock) {
    if (auto w = tls::write_node_credentials(data_dir, t.credentials); !w) {
      spdlog::error("cluster: cannot write {}: {}", tls::tls_dir(data_dir), w.error().message());
    }
  }
  t.ca_version = ca.version;
  t.ca_seen_cert = t.credentials.cert_pem;
  return out;
}

bool needs_new_root(const NodeTls& t, const discovery::ClusterCa& ca) {
  if (!ca.rotating()) {
    return false;
  }
  auto own = tls::split_certificates(t.credentials.cert_pem);
  return !own || !tls::signed_by(own->front(), ca.roots.front());
}

bool set_revocations(NodeTls& t, const discovery::ClusterState& state,
                     const std::set<std::string, std::less<>>& raft_members) {
  std::set<std::string> serials;
  for (const auto& [serial, r] : state.revoked) {
    serials.insert(serial);
  }
  std::set<std::string, std::less<>> removed;
  for (const auto& [id, name] : state.removed_nodes) {
    if (!raft_members.contains(id)) {
      removed.insert(id);
    }
  }
  const std::size_t revoked = serials.size();
  const std::size_t nodes = removed.size();
  if (!t.revoked->set(std::move(serials), std::move(removed))) {
    return false;
  }
  spdlog::info(
      "cluster: {} revoked certificate(s) and the certificates of {} removed node(s) refused "
      "from now on",
      revoked, nodes);
  return true;
}

std::int64_t renewal_time(const NodeTls& t) {
  auto start = tls::not_before(t.credentials.cert_pem);
  auto end = tls::not_after(t.credentials.cert_pem);
  if (!start || !end || *end <= *start + tls::kBackdate) {
    return unix_now();  // unreadable: renew now
  }
  const std::int64_t issued = *start + tls::kBackdate;  // notBefore is backdated for clock skew
  return issued + (*end - issued) * 2 / 3;
}

boost::asio::awaitable<bool> renew_node_certificate(boost::asio::any_io_executor ex, NodeTls& t,
                                                    std::string data_dir, std::string node_id,
                                                    std::vector<std::string> managers) {
  auto key = tls::generate_key();
  if (!key) {
    spdlog::error("cluster: certificate renewal: cannot make a key: {}", key.error().message());
    co_return false;
  }
  auto csr = tls::make_request(*key, node_id);
  if (!csr) {
    spdlog::error("cluster: certificate renewal: cannot make a request: {}", csr.error().message());
    co_return false;
  }
  const auto current = tls::identity_of(t.credentials.cert_pem);
  for (const auto& address : managers) {
    base::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/certs/renew";
    req.body = boost::json::serialize(boost::json::object{{"csr", *csr}});
    auto res =
        co_await base::http_call(ex, address, std::move(req), std::chrono::seconds(5), t.client);
    if (!res) {
      spdlog::warn("cluster: certificate renewal via {}: {}", address, res.error().code.message());
      continue;
    }
    if (res->status != 201) {
      spdlog::warn("cluster: certificate renewal via {}: HTTP {} {}", address, res->status,
                   res->body.substr(0, 200));
      continue;
    }
    boost::system::error_code ec;
    auto body = boost::json::parse(res->body, ec);
    const auto* cert =
        !ec && body.is_object() ? body.as_object().if_contains("certificate") : nullptr;
    if (cert == nullptr || !cert->is_string()) {
      spdlog::warn("cluster: certificate renewal via {}: no certificate in the answer", address);
      continue;
    }
    const std::string cert_pem(cert->get_string());
    auto identity = tls::identity_of(cert_pem);
    if (auto ok = tls::check_certificate(cert_pem, t.credentials.ca_pem, *key, unix_now());
        !ok || !identity || !current || identity->id != current->id ||
        identity->cluster_id != current->cluster_id) {
      spdlog::error(
          "cluster: certificate renewal via {}: the new certificate is not this "
          "node's ({}); keeping the current one",
          address, ok ? "another identity" : ok.error().message());
      continue;
    }
    if (auto w = tls::renew_node_credentials(data_dir, cert_pem, *key, t.credentials.unlock_key);
        !w) {
      spdlog::error("cluster: certificate renewal: cannot write {}: {}", tls::tls_dir(data_dir),
                    w.error().message());
      co_return false;
    }
    for (const auto& ctx : {t.server, t.client}) {
      if (auto r = tls::replace_certificate(*ctx, cert_pem, *key); !r) {
        spdlog::error("cluster: certificate renewal: cannot load the new certificate: {}",
                      r.error().message());
        co_return false;
      }
    }
    t.credentials.cert_pem = cert_pem;
    t.credentials.key_pem = std::move(*key);
    // The keys a manager holds follow the role the certificate names.
    std::string manager_key;
    if (const auto* mk = body.as_object().if_contains("manager_key");
        mk != nullptr && mk->is_string() && tls::is_manager_key(mk->get_string())) {
      manager_key = std::string(mk->get_string());
    }
    const bool manager = identity->role == tls::Role::manager;
    t.manager_key_behind = false;  // at most one renewal per CA record asks for the key
    if (manager && !manager_key.empty() && manager_key != t.credentials.manager_key) {
      t.credentials.manager_key = std::move(manager_key);
      t.ca_version = 0;  // the next follow_cluster_ca opens the state's key with it
      spdlog::info("cluster: this node holds the manager key now (it may sign)");
    } else if (!manager && (!t.credentials.manager_key.empty() || t.ca)) {
      t.credentials.manager_key.clear();
      t.credentials.ca_key_pem.clear();
      t.credentials.unlock_key.clear();  // autolock is for managers: a worker's key is in clear
      t.ca.reset();
      t.ca_version = 0;
      spdlog::info("cluster: this node is a worker now: it dropped the manager key and the CA");
    }
    if (auto w = tls::write_node_credentials(data_dir, t.credentials); !w) {
      spdlog::error("cluster: cannot write {}: {}", tls::tls_dir(data_dir), w.error().message());
    }
    auto end = tls::not_after(cert_pem);
    spdlog::info("cluster: renewed this node's certificate via {} ({} until {})", address,
                 tls::to_string(identity->role), end ? *end : 0);
    co_return true;
  }
  co_return false;
}

}  // namespace routemesh::cmd
