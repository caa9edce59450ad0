#pragma once
// StateIndex: lookup tables over one ClusterState, so that checking or applying a change costs
// what the change touches instead of a pass over the whole state. It answers "who else holds
// this": a host+path claim, a published port, a node name, a service's tasks, the tasks of a
// node, the services on a network, the VIPs taken on a network.
//
// An index describes exactly one state. Whoever owns both (the store's state machine and the
// watch replica, discovery/store/) builds it once from the state (StateIndex(state), O(n log n))
// and then mirrors every change it makes to the state's maps with the add_/remove_ calls below,
// in O(log n) each. An index that missed a change gives wrong answers; equality with a freshly
// built index is what the tests check after every command. Pure value type, no I/O.

#include "discovery/model/types.h"

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace routemesh::discovery {

// A host pattern plus path prefix that one HTTP route of a service claims (labels.h
// HostPattern, HttpExposure::path_prefix). Two services may not claim the same one.
struct HttpClaim {
  std::string host;  // lower-case host, or the suffix (with its leading '.') of a wildcard
  bool wildcard = false;
  std::string path;  // path prefix, "/" when none
  auto operator<=>(const HttpClaim&) const = default;
};

// A published port: (protocol "tcp"/"udp", port). Only one service may publish each.
struct PublishedPort {
  std::string protocol;
  std::uint16_t port = 0;
  auto operator<=>(const PublishedPort&) const = default;
};

// The HTTP claims of a service's labels, in label order (the mesh.http route first, then UCP
// routes by key; hosts in the order written), duplicates kept. Labels that fail to parse
// contribute what parse_labels could still read, as the validator sees them.
std::vector<HttpClaim> http_claims(const Service& service);

// The published ports a service holds: those with both ports non-zero and protocol tcp or udp,
// in order, duplicates kept.
std::vector<PublishedPort> published_ports(const Service& service);

namespace detail {

// A set of IPv4 addresses (host byte order) with multiplicities, kept as merged ranges too, so
// that the lowest address not in the set at or above a bound is found in O(log n).
class AddressSet {
 public:
  void insert(std::uint32_t address);
  void erase(std::uint32_t address);  // one occurrence; no-op when absent
  // The lowest address >= `from` that is not in the set (may be 2^32 when every address from
  // `from` up is taken).
  std::uint64_t first_free(std::uint64_t from) const;
  bool empty() const { return counts_.empty(); }
  bool operator==(const AddressSet&) const = default;

 private:
  std::map<std::uint32_t, std::size_t> counts_;    // address -> how many hold it
  std::map<std::uint64_t, std::uint64_t> ranges_;  // first -> last, disjoint, not adjacent
};

}  // namespace detail

class StateIndex {
 public:
  // The index of an empty state.
  StateIndex() = default;
  // The index of `state`: O(n log n) over its services, tasks and nodes.
  explicit StateIndex(const ClusterState& state);

  // Mirroring changes. Each call describes one object entering or leaving the state's maps; a
  // replaced object is removed (with its old value) and then added (with its new one). The
  // value passed to remove_* must equal the one that was added.
  void add_service(const Service& service);
  void remove_service(const Service& service);
  void add_task(const Task& task);
  void remove_task(const Task& task);
  void add_node(const Node& node);
  void remove_node(const Node& node);

  // The service (smallest name first, ignoring `self`) that claims `claim`, or nullptr.
  const std::string* claim_owner(const HttpClaim& claim, std::string_view self) const;
  // The service (smallest name first, ignoring `self`) that publishes `port`, or nullptr.
  const std::string* port_owner(const PublishedPort& port, std::string_view self) const;

  // Tasks whose `service` field names `service` (known service or not), and how many of them
  // carry their own port.
  struct TaskCounts {
    std::size_t tasks = 0;
    std::size_t with_port = 0;
  };
  TaskCounts task_counts(const std::string& service) const;
  // Their ids, in id order.
  std::vector<std::string> task_ids(const std::string& service) const;
  // How many tasks name node `node_name`.
  std::size_t tasks_on_node(const std::string& node_name) const;

  // The node (smallest id first, ignoring `self_id`) named `name`, or nullptr.
  const std::string* node_named(const std::string& name, std::string_view self_id) const;
  // Whether some node is named `name`.
  bool has_node_named(const std::string& name) const;

  // The service (smallest name first) that lists network `network`, or nullptr.
  const std::string* service_on_network(const std::string& network) const;

  // The lowest IPv4 address (host byte order) >= `from` that no service holds as its VIP on
  // `network` (Service::vips; values that are not IPv4 literals are not counted).
  std::uint64_t first_free_vip(const std::string& network, std::uint64_t from) const;

  bool operator==(const StateIndex&) const = default;

 private:
  struct ServiceTasks {
    std::set<std::string> ids;
    std::size_t with_port = 0;
    bool operator==(const ServiceTasks&) const = default;
  };

  std::map<HttpClaim, std::set<std::string>> claims_;                 // -> services
  std::map<PublishedPort, std::set<std::string>> published_;          // -> services
  std::map<std::string, ServiceTasks> tasks_by_service_;              // service name -> its tasks
  std::map<std::string, std::size_t> tasks_by_node_;                  // node name -> task count
  std::map<std::string, std::set<std::string>> nodes_by_name_;        // node name -> ids
  std::map<std::string, std::set<std::string>> services_by_network_;  // network -> services
  std::map<std::string, detail::AddressSet> vips_;                    // network -> VIPs taken
};

}  // namespace routemesh::discovery
