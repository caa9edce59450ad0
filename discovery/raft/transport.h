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
// Threading: everything runs on the executor passed to make_tcp_transport() (the control
// thread); the handler is called there. After stop() the handler is never called again.

#include "base/address.h"
#include "discovery/raft/types.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

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
  // The bound listen address ("IP:PORT", port 0 resolved).
  virtual std::string local_address() const = 0;
  // Closes the listener and every connection; pending messages are dropped. Idempotent.
  virtual void stop() = 0;
};

struct TransportOptions {
  NodeId self = kNoNode;
  std::string listen_address;  // "IP:PORT"
  std::size_t queue_limit = 4096;
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{2000};
  std::chrono::milliseconds connect_timeout{2000};
  Metrics* metrics = nullptr;
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
