#pragma once
// Transport: how RaftNode exchanges raft::Message with the other managers (docs/style.md, "Seams"
// seam). The TCP implementation listens on this node's peer address and keeps one outbound
// connection per peer:
//   frame   = [u32 length, little-endian][payload], payload <= kMaxFrame (64 MiB: snapshots)
//   first frame on every outbound connection: hello = "RMRAFT1" 0x00, varint from-id, string
//   advertised address (lets a fresh learner answer a leader it has no address for yet);
//   every later frame is codec::encode_message().
// Outbound messages wait in a bounded per-peer queue (oldest dropped when full; Raft tolerates
// loss); a peer that cannot be reached is retried with capped exponential backoff and its queue
// is dropped meanwhile. Malformed inbound frames close that connection (logged + counted).
// Messages from unknown ids are still delivered: the core decides.
//
// Mutual TLS (TransportOptions::tls, both contexts set): every connection, inbound and
// outbound, is TLS 1.3 with certificates of the cluster CA, and identity is checked against
// the claim. After the handshake `authenticate` maps the peer's verified certificate to the
// node id it speaks for (nullopt: refused). Inbound, that id must pass `admit` (a member of
// the Raft configuration), the hello must carry it as its from-id, and every message must come
// from it; outbound, the server's certificate must name the peer that was dialled. Anything
// else closes the connection, logged and counted (routemesh_raft_peers_refused_total). A
// handshake that takes longer than connect_timeout is abandoned. Without contexts the
// transport is plain TCP (unit tests and simulations only).
//
// Threading: everything runs on the executor passed to make_tcp_transport() (the control
// thread); the handler is called there. After stop() the handler is never called again.

#include "base/address.h"
#include "discovery/raft/types.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

struct ssl_st;  // OpenSSL's SSL

namespace routemesh::discovery::raft {

struct Metrics;

inline constexpr std::size_t kMaxFrame = 64u << 20;

class Transport {
 public:
  Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  virtual ~Transport() = default;

  // Queues `m` for m.to. Dropped (and counted) when m.to has no known address or its queue
  // is full. Never blocks.
  virtual void send(Message m) = 0;
  // Sets or changes the address of `id` (a change reconnects). Addresses learned from a hello
  // fill only unknown peers and never override one set here.
  virtual void set_peer(NodeId id, std::string address) = 0;
  virtual void remove_peer(NodeId id) = 0;
  virtual bool has_peer(NodeId id) const = 0;
  // With TLS: asks `authenticate` again about every established connection, inbound and
  // outbound, and closes those whose peer certificate it now refuses or finds speaking for
  // another node (a revocation since the handshake); logged and counted as refusals. Returns
  // how many were closed. Without TLS: nothing. Call it when what `authenticate` consults
  // changed.
  virtual std::size_t recheck_peers() = 0;
  // The bound listen address ("IP:PORT", port 0 resolved).
  virtual std::string local_address() const = 0;
  // Closes the listener and every connection; pending messages are dropped. Idempotent.
  virtual void stop() = 0;
};

struct TransportTls {
  std::shared_ptr<boost::asio::ssl::context> server;  // must request client certificates
  std::shared_ptr<boost::asio::ssl::context> client;  // presents this node's certificate
  // The node id a connection's verified peer certificate speaks for, if it may speak Raft at
  // all (a manager certificate of this cluster, not revoked); nullopt refuses the connection.
  // Called after each handshake and by recheck_peers(). Outbound, it is the only check of the
  // server's certificate beyond the chain (the client context knows no revocations).
  std::function<std::optional<NodeId>(const ssl_st*)> authenticate;
  bool enabled() const { return server && client && authenticate; }
};

struct TransportOptions {
  NodeId self = kNoNode;
  std::string listen_address;  // "IP:PORT"
  std::size_t queue_limit = 4096;
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{2000};
  std::chrono::milliseconds connect_timeout{2000};
  Metrics* metrics = nullptr;
  TransportTls tls;  // not enabled: plain TCP
  // With TLS: whether an authenticated inbound peer may talk to this node (RaftNode: a member
  // of the configuration, or anyone while this node knows no configuration yet). Unset: all.
  std::function<bool(NodeId)> admit;
};

using MessageHandler = std::function<void(Message)>;

// Binds the listener. Errors: bad address (invalid_argument) or the bind/listen error.
boost::system::result<std::unique_ptr<Transport>> make_tcp_transport(
    boost::asio::any_io_executor ex, TransportOptions options, MessageHandler on_message);

// What a peer or listen address may be: "IP:PORT", "[IPv6]:PORT" or "NAME:PORT" (a name is
// resolved when dialling), port 0 allowed (a listener on any free port). Parsed with
// base::parse_host_port; add_member rejects a peer address that does not parse.
inline constexpr base::HostPortRules kPeerAddressRules{.host_names = true, .port_zero = true};

}  // namespace routemesh::discovery::raft
