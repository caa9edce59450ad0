#pragma once
// Value types of the cluster state model. The same ClusterState is produced from the config
// file outside cluster mode (cmd::state_from_config, cmd/static_state.h) and by the Raft
// store's state machine in cluster mode; mesh::compile_route_table turns it into a RouteTable.
// Depends on base/ only.

#include "base/port_mapping.h"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace routemesh::discovery {

enum class NodeRole { manager, worker };
enum class NodeStatus { ready, down, unknown };
enum class EndpointMode { vip, dnsrr };
enum class TaskHealth { unknown, healthy, unhealthy, draining };

struct Node {
  std::string id;    // store: 16 lower-case hex digits (a random uint64 chosen by the proposer)
  std::string name;  // unique
  NodeRole role = NodeRole::manager;
  std::string address;  // admin API address "IP:PORT" (also where writes are forwarded)
  std::string peer;     // Raft transport address "IP:PORT" (managers; "" for workers)
  std::string overlay;  // overlay listener "IP:PORT" for streams to its tasks ("" = none)
  NodeStatus status = NodeStatus::ready;
  std::uint64_t version = 0;
};

struct Network {
  std::string name;
  std::string subnet;   // CIDR, e.g. "10.0.0.0/24"
  std::string gateway;  // first host address of the subnet (never given to a service)
  bool builtin = false;
  std::uint64_t version = 0;
};

struct Service {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<std::string> networks;
  std::vector<base::PortMapping> ports;  // published ports
  EndpointMode endpoint_mode = EndpointMode::vip;
  std::map<std::string, std::string> vips;  // network -> VIP
  std::uint64_t version = 0;
};

struct Task {
  std::string id;
  std::string service;
  std::string node;        // node name the task runs on ("" = this node)
  std::string address;     // IP literal
  std::uint16_t port = 0;  // 0 = use the service's target port for each kind of traffic
  TaskHealth health = TaskHealth::unknown;
  std::uint64_t version = 0;
};

enum class PolicyAction { allow, deny };

// A service-to-service rule, like a Consul intention: connections from `from` to the service
// named by `to` (on `port`, or any port) are allowed or denied. Grammar and meaning:
// discovery/model/policy.h; the decision: mesh/policy/policy.h.
struct Policy {
  std::string id;          // store: 16 lower-case hex digits, chosen by the proposer
  std::string from;        // "network:NAME", "service:NAME" or "cidr:ADDRESS/LEN"
  std::string to;          // "service:NAME"
  std::uint16_t port = 0;  // 0 = every port
  PolicyAction action = PolicyAction::allow;
  std::uint32_t priority = 0;  // higher wins among rules of equal specificity
  std::uint64_t version = 0;
};

// A revoked certificate: every node's TLS server refuses it at the handshake from then on.
struct Revocation {
  std::string serial;   // lower-case hex, no leading zeros (tls::serial_of)
  std::string name;     // who held it, as the operator said ("" = not given)
  std::int64_t at = 0;  // when it was revoked, seconds since the epoch (set by the proposer)
  std::uint64_t version = 0;
};

// A certificate the HTTPS port presents for a host (TLS termination, chosen by SNI). The
// manager that accepts it checks the chain, the key and the host before proposing; the state
// keeps the certificate as given and the key sealed with the secrets key (ClusterCa), or as given
// where there is none (an external CA, a configuration file). Every node gets the key in clear,
// because every node terminates TLS on its HTTPS port: the watch stream opens it and is only
// ever sent over the cluster's mutual TLS, and the API never shows keys.
struct IngressCert {
  std::string host;    // lower-case host, "*.suffix" (wildcard) or "*" (the default certificate)
  std::string cert;    // PEM: the leaf first, then any intermediates
  std::string key;     // PEM private key, sealed (encrypted PKCS #8) in a manager's state
  std::string digest;  // SHA-256 of the leaf's DER, 64 lower-case hex digits
  std::int64_t not_after = 0;  // the leaf's expiry, seconds since the epoch
  std::uint64_t version = 0;
};

// The cluster's root CA in the state, from the first `cluster ca rotate` on (before it `roots` is
// empty and every node trusts the CA in its data_dir). roots[0] signs. While a rotation runs,
// roots is {new, old}: every node trusts both, sends the cross certificate that links its own
// certificate's root to the other one, and has its certificate re-issued by the new root; the
// leader retires the old root once every node holds a new certificate (tls/README.md).
struct ClusterCa {
  std::vector<std::string> roots;  // PEM certificates
  // roots[0]'s private key, sealed with the key of the root it replaced (PKCS #8, encrypted:
  // tls::CertificateAuthority::seal_key), so that every manager holding that key can sign.
  std::string sealed_key;
  std::string cross_new;           // while rotating: roots[0]'s key certified by roots[1]
  std::string cross_old;           // while rotating: roots[1]'s key certified by roots[0]
  std::int64_t started = 0;        // when the rotation started (unix time); 0 = none running
  std::int64_t retire_after = 0;   // the old root is trusted at least until then (unix time)
  std::set<std::string> reissued;  // nodes (ids) that received a certificate of roots[0]
  // The manager key that seals `sealed_key`, once `cluster manager-key rotate` replaced the one
  // `cluster init` made ("" before): its id (tls::manager_key_id), and the key sealed with the
  // key it replaced (tls::wrap_manager_key), from which every manager holding that one learns
  // it. The watch stream leaves `manager_key_wrapped` out: no node but a manager needs it.
  std::string manager_key_id;
  std::string manager_key_wrapped;
  // Autolock (`cluster autolock enable`): the unlock key sealed with the current manager key
  // (tls::wrap_manager_key), "" when autolock is off. Every manager holding the manager key
  // opens it and keeps its own keys on disk encrypted with it; the watch stream leaves it out.
  std::string unlock_key_wrapped;
  // The secrets key: it seals the state's secrets at rest, which are the HTTPS certificates'
  // private keys (IngressCert::key then holds an encrypted PKCS #8 key, tls::seal_key). Sealed
  // with the current manager key (tls::wrap_manager_key); "" until the first `cert add` in a
  // cluster whose CA key is in the state. Managers open it to compile their own routes and to
  // stream the state to other nodes, over mutual TLS, with the keys in clear; the watch stream
  // leaves this field out. So a copy of a manager's disk holds no private key it can read
  // without the manager key, which autolock in turn locks.
  std::string secrets_key_wrapped;
  std::uint64_t version = 0;

  bool rotating() const { return started != 0; }
};

// The whole replicated state. Containers are ordered by name/id so that compiling it is
// deterministic.
struct ClusterState {
  std::uint64_t revision = 0;
  std::string cluster_id;                    // set by `cluster init` (cluster.settings)
  std::string subnet_pool = "10.10.0.0/16";  // IPAM pool for networks without a subnet
  // SHA-256 (64 lower-case hex digits) of the secrets of the current join tokens, one per role
  // a joining node asks for ("" = no such token: nobody joins as that role). Written by the
  // first start after `cluster init` and by `cluster token rotate`; the secrets themselves are
  // never stored, so the hashes may travel with the state (watch streams) without letting
  // anyone join.
  std::string worker_token_hash;
  std::string manager_token_hash;
  // The overlay's key epoch: the leader raises it every cluster.overlay_rekey_s, and every
  // node then updates the keys of its encrypted overlay connections (TLS 1.3 KeyUpdate) before
  // they carry more data. `overlay_key_epoch_at`: when it was raised, seconds since the epoch.
  std::uint64_t overlay_key_epoch = 0;
  std::int64_t overlay_key_epoch_at = 0;
  std::map<std::string, Node> nodes;
  std::map<std::string, Network> networks;
  std::map<std::string, Service> services;
  std::map<std::string, Task> tasks;
  std::map<std::string, Policy> policies;     // by id
  std::map<std::string, Revocation> revoked;  // revoked certificates, by serial
  // Nodes removed from the cluster (`node rm`), id -> name: every TLS server of the cluster
  // refuses their node certificates at the handshake, and no node joins again under their
  // ids. Kept for good, as revocations: a node certificate can be renewed for years.
  std::map<std::string, std::string> removed_nodes;
  std::map<std::string, IngressCert> ingress_certs;  // HTTPS certificates, by host
  ClusterCa ca;
};

// One validation problem with its key path (cmd/ prints it like a config file error).
// `conflict` marks errors caused by another object (a name, host+path, published port or
// subnet already taken) as opposed to a value that is wrong on its own; the store maps it to
// the "conflict" error code (HTTP 409), everything else to "invalid" (400).
struct StateError {
  std::string path;
  std::string message;
  bool conflict = false;
};

}  // namespace routemesh::discovery
