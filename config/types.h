#pragma once
// Value types for node configuration. Parsed and validated by config/config.h;
// defaults live in one place (config.cc, fill_defaults). Durations are milliseconds.

#include "base/address.h"
#include "base/port_mapping.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace routemesh::config {

enum class AccessLogFormat { json, combined };

struct AccessLogSettings {
  bool enabled = true;
  AccessLogFormat format = AccessLogFormat::json;
  std::string path = "-";  // "-" is stdout
};

// Settings of this node's process.
struct NodeSettings {
  std::string name = "node1";
  std::string listen = "127.0.0.1";  // address every published port and HRM port binds
  std::uint16_t http_port = 8080;    // HRM HTTP port (0 = pick a free one; printed at start)
  // The HTTPS port on node.listen: TLS terminated with the cluster's certificates (`routemesh
  // cert add`), or passed through by SNI to mesh.sni services. 0 (default) = none.
  std::uint16_t https_port = 0;
  std::string admin = "127.0.0.1:9901";  // admin server host:port (port 0 = any)
  // A second, plain-HTTP server for GET /metrics and /healthz only, host:port (port 0 = any;
  // "" = none, the default). In cluster mode the admin port is TLS: a scraper then needs the
  // cluster's ca.pem, or this address.
  std::string metrics;
  unsigned threads = 0;  // proxy threads; 0 = number of cores
  bool via = false;      // add a Via header
  AccessLogSettings access_log;
  // Peers whose X-Forwarded-For / Forwarded / X-Real-IP / X-Forwarded-Port headers are
  // believed (a load balancer in front). From any other peer they are replaced or dropped.
  // IP ranges ("10.0.0.0/8", "2001:db8::/32") or single addresses.
  std::vector<base::IpRange> trusted_proxies;
  // Peers (a load balancer in front) that must start every connection to the HRM port and
  // the published ports with a PROXY protocol header (v1 or v2); its source address is then
  // the client's. A connection from these peers without a valid header is closed. IPv4 CIDRs
  // or single addresses, IPv4 or IPv6.
  std::vector<base::IpRange> proxy_protocol_from;
  // The overlay listener "IP:PORT" other nodes send streams for this node's tasks to; "" =
  // none. In cluster mode it defaults to node.listen:4789 (the port Swarm's overlay uses) when
  // node.listen is a specific address; "off" turns it off (remote tasks are then dialled
  // directly).
  std::string overlay;
  bool overlay_off = false;  // "off" was written
  // Service VIPs: "on" = this node adds every service VIP to its loopback interface (removed
  // on exit) and accepts on VIP:port for each target port; "off" = neither; "auto" (default)
  // = on in cluster mode when node.listen is a specific address outside 127.0.0.0/8 (several
  // nodes sharing one host's loopback, as in local tests and the plain demo, cannot all own
  // the same VIPs). Resolved at load: `vips` is the answer.
  std::string vips_mode = "auto";
  bool vips = false;
  // The embedded DNS server (cluster mode only: names come from the cluster state): "on" =
  // this node serves every network's names on the network's DNS address (the subnet's second
  // address, added to its loopback and removed on exit); "off" = not; "auto" (default) = on
  // under the same condition as vips. Resolved at load: `dns` is the answer.
  std::string dns_mode = "auto";
  bool dns = false;
};

// The `dns:` section: settings of the embedded DNS server (node.dns).
struct DnsSettings {
  std::uint16_t port = 53;  // UDP and TCP port on each DNS address (another one for tests)
  std::uint32_t ttl_s = 5;  // TTL of the cluster's own records
  // Resolvers for every other name: "IP", "IP:PORT", "[IPv6]:PORT". Empty = the nameservers
  // of /etc/resolv.conf when the node starts.
  std::vector<std::string> upstreams;
  std::uint32_t upstream_timeout_ms = 2'000;  // per upstream and attempt; then the next one
  std::uint32_t cache_entries = 4'096;        // forwarded replies kept; 0 = no cache
};

enum class FirewallBackend { none, nftables };

// The `firewall:` section: an optional kernel backend for network isolation and policies
// (mesh/policy/README.md). The proxy's own checks stay on whatever the backend.
struct FirewallSettings {
  // none (default): policy is enforced by the proxy only. nftables: the node also renders it
  // into the table `inet routemesh` of its network namespace and keeps it current (cluster
  // mode only: policies come from the store).
  FirewallBackend backend = FirewallBackend::none;
  std::string nft = "nft";  // the nft command: a name looked up in PATH, or a path
};

inline constexpr std::uint16_t kDefaultOverlayPort = 4789;

struct Timeouts {
  std::uint32_t request_head_ms = 10'000;       // 408 after this without a full head
  std::uint32_t idle_ms = 60'000;               // keep-alive idle downstream
  std::uint32_t upstream_connect_ms = 2'000;    // 502/503 retry after this
  std::uint32_t upstream_response_ms = 30'000;  // 504 when no response head by then
  std::uint32_t upstream_idle_ms = 30'000;      // pooled upstream connection lifetime unused
  std::uint32_t l4_idle_ms = 300'000;           // L4 splice idle timeout
  std::uint32_t udp_idle_ms = 30'000;           // a UDP flow (client address) forgotten after
  std::uint32_t drain_ms = 10'000;              // SIGTERM: in-flight deadline
  // Request bodies (0 = off): the whole body within request_body_ms of its head; after
  // body_min_rate_grace_ms, at least body_min_rate_bps bytes per second on average. 408 (or
  // a close, once a response started) otherwise.
  std::uint32_t request_body_ms = 0;
  std::uint32_t body_min_rate_bps = 0;
  std::uint32_t body_min_rate_grace_ms = 5'000;
};

struct Limits {
  std::uint32_t max_header_bytes = 16 * 1024;  // 431 over this
  std::uint32_t max_uri_bytes = 8 * 1024;      // 414 over this
  std::uint32_t max_headers = 100;             // 431 over this
  std::uint32_t max_connections_per_thread = 10'000;
  std::uint32_t max_idle_upstream_per_endpoint = 256;  // per thread
  std::uint64_t max_request_body_bytes = 0;  // 413 over this (Content-Length or chunked); 0 = none
};

// Passive health (outlier detection) settings, applied per proxy thread.
struct HealthSettings {
  std::uint32_t max_failures = 3;          // consecutive connect failures or 5xx before ejection
  std::uint32_t base_ejection_ms = 1'000;  // first ejection; doubles each time
  std::uint32_t max_ejection_ms = 30'000;
};

// A service as written in the config file's `services:` list: the source of ClusterState
// outside cluster mode (cmd::state_from_config, cmd/static_state.h).
struct ServiceConfig {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<base::PortMapping> published;  // "published:target[/tcp]"
  // "IP:PORT", "IP", "[IPv6]:PORT", "[IPv6]" or a bare IPv6 literal (without a port, the
  // target port is used).
  std::vector<std::string> tasks;
};

enum class ClusterRole { manager, worker };

// The `cluster:` section. Its presence switches the node into cluster mode
// (NodeConfig::cluster_mode): services then come from the Raft store, not from `services:`.
struct ClusterSettings {
  ClusterRole role = ClusterRole::manager;  // required in the file
  std::string data_dir;                     // WAL, snapshots, identity (required)
  std::string peer;                         // "IP:PORT" Raft transport address (managers: required)
  std::string join;                         // "IP:PORT" admin address of a manager ("" = none)
  std::uint32_t tick_ms = 100;              // one Raft tick
  std::uint32_t election_ticks = 10;        // election timeout base, in ticks
  std::uint32_t heartbeat_ticks = 1;        // < election_ticks
  std::string subnet_pool = "10.10.0.0/16";  // IPAM pool (IPv4 CIDR, prefix <= 24)
  std::uint64_t snapshot_entries = 10'000;   // compact the log after this many applied entries
  // Failure detection: every node tells every manager it is alive each heartbeat_ms; the
  // leader marks a node down after node_down_after_ms without one, ready when it is back.
  std::uint32_t heartbeat_ms = 1'000;
  std::uint32_t node_down_after_ms = 5'000;
  // Lifetime of the node certificates this manager issues (join, renewal; `cluster init` for
  // the first manager). Nodes renew theirs when two thirds of it have passed. 90 days; down to
  // 10 s for tests. Set it alike on every manager.
  std::uint32_t cert_lifetime_s = 90 * 24 * 3600;
  // Lifetime of the user certificates this manager issues (`cert issue`, `cert renew`, the
  // admin's at `cluster init`). The CLI renews its own when two thirds have passed. A year;
  // down to 10 s for tests. Set it alike on every manager.
  std::uint32_t user_cert_lifetime_s = 365 * 24 * 3600;
  // Overlay streams between nodes run inside mutual TLS with the node certificates (on by
  // default). false: plain TCP, for a network the operator trusts (and for measuring the
  // cost). Set it alike on every node: an encrypted node refuses plain streams and the other
  // way round.
  bool overlay_encryption = true;
  // Rekeying of encrypted overlay connections (TLS 1.3 KeyUpdate, no stream dropped): the
  // leader raises the cluster's key epoch every overlay_rekey_s (managers; 0 = never), and
  // every connection also rekeys after sending overlay_rekey_bytes (0 = never).
  std::uint32_t overlay_rekey_s = 3600;
  std::uint64_t overlay_rekey_bytes = std::uint64_t{1} << 30;
};

// An HTTPS certificate as written in the config file's `certificates:` list (outside cluster
// mode; a cluster stores them with `routemesh cert add`). The files are read, and the pair
// checked, when the node loads the file (cmd/node.cc), at start and on SIGHUP.
struct CertificateConfig {
  std::string host;  // a lower-case host, "*.suffix" or "*" (the default certificate)
  std::string cert;  // path of the PEM chain, leaf first
  std::string key;   // path of the PEM private key
};

struct NodeConfig {
  NodeSettings node;
  Timeouts timeouts;
  Limits limits;
  HealthSettings health;
  std::vector<ServiceConfig> services;
  std::vector<CertificateConfig> certificates;
  ClusterSettings cluster;
  DnsSettings dns;
  FirewallSettings firewall;
  bool cluster_mode = false;  // true when the file has a `cluster:` section
};

// One validation problem, with the key path where it was found,
// e.g. {"services[1].labels.mesh.http", "empty host"}.
struct FieldError {
  std::string path;
  std::string message;
};

}  // namespace routemesh::config
