#pragma once
// Value types of the embedded DNS server: a client's query as the server reads it, what the
// pure core decides to answer, and the per-network view of the cluster state it answers
// from. No ldns types here (message.h converts to and from the wire), no sockets.

#include "base/address.h"
#include "discovery/model/types.h"

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace routemesh::discovery::dns {

// RFC 1035 §3.2.2, §3.2.4; RFC 3596 (AAAA), RFC 2782 (SRV), RFC 6891 (OPT).
inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeNs = 2;
inline constexpr std::uint16_t kTypeCname = 5;
inline constexpr std::uint16_t kTypeSoa = 6;
inline constexpr std::uint16_t kTypePtr = 12;
inline constexpr std::uint16_t kTypeMx = 15;
inline constexpr std::uint16_t kTypeTxt = 16;
inline constexpr std::uint16_t kTypeAaaa = 28;
inline constexpr std::uint16_t kTypeSrv = 33;
inline constexpr std::uint16_t kTypeOpt = 41;
inline constexpr std::uint16_t kTypeHttps = 65;
inline constexpr std::uint16_t kTypeIxfr = 251;
inline constexpr std::uint16_t kTypeAxfr = 252;
inline constexpr std::uint16_t kTypeAny = 255;
inline constexpr std::uint16_t kClassIn = 1;
inline constexpr std::uint16_t kClassAny = 255;

// RFC 1035 §4.1.1 (the 4-bit header RCODE).
enum class Rcode : std::uint8_t {
  noerror = 0,
  formerr = 1,
  servfail = 2,
  nxdomain = 3,
  notimp = 4,
  refused = 5,
};

// A domain name as the labels of its wire form (RFC 1035 §3.1), in the case the client wrote
// them: the question is echoed back unchanged, since clients that randomise the case of their
// queries compare it. The root name is the empty list.
using Labels = std::vector<std::string>;

struct Question {
  Labels name;
  std::uint16_t type = kTypeA;
  std::uint16_t klass = kClassIn;
};

// A client's query, as decode_query (message.h) read it: opcode QUERY, exactly one question.
struct Query {
  std::uint16_t id = 0;
  bool rd = false;  // recursion desired (RFC 1035 §4.1.1)
  bool cd = false;  // checking disabled (RFC 4035 §3.2.2): passed on to upstreams
  Question question;
  bool edns = false;           // the query carried an OPT record (RFC 6891 §6.1.1)
  std::uint16_t udp_size = 0;  // its advertised UDP payload size (edns only)
  bool dnssec_ok = false;      // its DO bit (RFC 3225)
};

enum class Transport { udp, tcp };

// An IPv4 (first 4 bytes) or IPv6 address in network byte order.
struct Address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};
  auto operator<=>(const Address&) const = default;
  bool operator==(const Address&) const = default;
};

struct SrvData {
  std::uint16_t priority = 0;
  std::uint16_t weight = 0;
  std::uint16_t port = 0;
  Labels target;
  bool operator==(const SrvData&) const = default;
};

// One resource record of an answer: A/AAAA (Address), SRV (SrvData) or PTR (Labels, the
// target name).
struct Record {
  Labels name;
  std::uint16_t type = kTypeA;
  std::uint32_t ttl = 0;
  std::variant<Address, SrvData, Labels> data;
  bool operator==(const Record&) const = default;
};

// What the core decided for one query (answer.h). `forward`: the name is not the cluster's;
// the driver asks the upstream resolvers.
struct Answer {
  enum class Action { reply, forward };
  Action action = Action::reply;
  Rcode rcode = Rcode::noerror;
  std::vector<Record> answers;
  std::vector<Record> additional;
};

// How one query ended, for routemesh_dns_queries_total{result}.
enum class Outcome {
  local,      // answered from the cluster state, with records
  nodata,     // a cluster name without records of the asked type (NOERROR, empty)
  nxdomain,   // a cluster name that does not exist in the asking network
  forwarded,  // an upstream answered
  cached,     // answered from the forwarding cache
  servfail,   // every upstream failed (or none is configured)
  formerr,    // malformed query, answered with FORMERR (or BADVERS)
  notimp,     // an opcode other than QUERY
  refused,    // zone transfers, or too many queries in flight
  dropped,    // not answered at all (no readable header, or a response)
};

// ---- the view the core answers from -----------------------------------------------------------

struct TaskView {
  std::string id;
  Address address;
  std::uint16_t port = 0;  // the task's own port (0 = the service's target port)
  bool healthy = true;     // takes traffic, by the same rules as the route table
};

struct ServiceView {
  std::string name;
  EndpointMode mode = EndpointMode::vip;
  std::optional<Address> vip;               // on this network
  std::vector<std::uint16_t> target_ports;  // sorted, unique: the VIP's ports
  std::vector<TaskView> tasks;              // ordered by id
};

// The names of one network, served at its DNS address.
struct NetworkView {
  std::string name;
  std::string dns_address;
  std::optional<base::Ipv4Cidr> subnet;
  std::map<std::string, ServiceView> services;  // the services attached to this network
  // Reverse names: each VIP on this network and each task address of its services.
  std::map<Address, std::vector<Labels>> ptr;
};

// Everything the server answers from; compile_view (view.h) builds it from a ClusterState.
struct View {
  std::uint64_t revision = 0;
  std::map<std::string, NetworkView> by_address;  // DNS address -> network
  // Cluster-wide names and addresses: a query for one of them that the asking network does
  // not have is NXDOMAIN, never forwarded (another network's names do not leak upstream).
  std::set<std::string> network_names;
  std::set<std::string> service_names;
  std::set<Address> addresses;  // every VIP and task address
  std::vector<base::Ipv4Cidr> subnets;
};

}  // namespace routemesh::discovery::dns
