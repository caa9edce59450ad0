#pragma once
// UDP published ports and UDP ports of service VIPs: a relay per flow. A flow is one client address
// (IP and port) on one published port of one proxy thread (SO_REUSEPORT hashes a client's datagrams
// to one thread). Its first datagram picks an endpoint with the balancer; later datagrams of the
// flow go to the same endpoint, and the endpoint's answers go back to the client from the published
// port. A flow is forgotten after timeouts.udp_idle_ms without a datagram either way.
//
// A local task gets the datagrams from a UDP socket connected to it. A task on another node
// is reached over the overlay: one stream per flow (preamble protocol `udp`), carrying each
// datagram as a 2-byte big-endian length and the payload, both ways; the task's node relays
// them to the task from a connected UDP socket (run_overlay_udp).
//
// Datagrams are dropped, never queued without bound: when a socket would block, or when a
// flow's stream has kMaxQueued datagrams waiting. That is UDP's contract; it is counted.

#include "proxy/worker.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace routemesh::proxy {

struct UdpFlow;

// One published UDP port on one proxy thread.
class UdpPort : public std::enable_shared_from_this<UdpPort> {
 public:
  // `address`: the address bound when not the node's listen address ("" otherwise). `vip`: a
  // service VIP this socket is bound to (then `port` is a target port of the service, and a
  // flow must pass network isolation and the policies like a VIP connection).
  UdpPort(Worker& w, boost::asio::ip::udp::socket socket, std::uint16_t port,
          std::string address = {}, std::string vip = {});
  ~UdpPort();
  UdpPort(const UdpPort&) = delete;
  UdpPort& operator=(const UdpPort&) = delete;

  // The receive loop (co_spawned by the worker); ends when close() is called.
  boost::asio::awaitable<void> run();
  // Stops receiving and ends every flow.
  void close();
  // Ends flows idle since before `now - idle`.
  void sweep(Clock::time_point now, milliseconds idle);

  std::uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  std::size_t flows() const { return flows_.size(); }

  static constexpr std::size_t kMaxFlows = 65'536;
  static constexpr std::size_t kMaxQueued = 256;

 private:
  friend struct UdpFlow;
  void on_datagram(const boost::asio::ip::udp::endpoint& client, std::string_view data);
  // nullptr when there is no route or no endpoint, or (`denied` set) a policy refuses the
  // client.
  std::shared_ptr<UdpFlow> start_flow(const boost::asio::ip::udp::endpoint& client, bool& denied);
  void end_flow(const std::shared_ptr<UdpFlow>& flow);
  // Sends an answer to the client from the published port (dropped if it would block).
  void reply(const boost::asio::ip::udp::endpoint& client, std::string_view data);

  Worker& w_;
  boost::asio::ip::udp::socket socket_;
  std::uint16_t port_;
  std::string address_;
  std::string vip_;
  bool closed_ = false;
  std::map<boost::asio::ip::udp::endpoint, std::shared_ptr<UdpFlow>> flows_;
};

// The receiving end of an overlay stream for a UDP flow: relays frames to `task` and the
// task's datagrams back as frames, until either side ends or the flow is idle for
// timeouts.udp_idle_ms. `pending` holds stream bytes already read past the preamble. The
// caller has answered '+' already.
boost::asio::awaitable<void> run_overlay_udp(Worker& w, LiveConn& conn, tcp::socket& stream,
                                             const boost::asio::ip::udp::endpoint& task,
                                             std::string pending);

}  // namespace routemesh::proxy
