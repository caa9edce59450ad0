#pragma once
// Network isolation and service-to-service policy decisions. Pure: no I/O, no clocks, no
// allocation on the decision path. compile() turns the cluster state into a Compiled value that
// the route table carries (RouteTable::policy); the proxy asks check() on each accepted VIP
// connection, each HTTP request on a published HTTP port and each overlay stream it receives.
// The rules (README.md in this folder):
//   - a rule applies when its `to` service is the destination, its port is 0 or the
//     destination port (a published port: only rules naming that port apply), and its `from`
//     matches the source;
//   - among matching rules the most specific wins: source kind service > network > cidr, a
//     longer prefix before a shorter one, a rule naming a port before one for every port; then
//     the higher priority; then deny before allow;
//   - no rule: a VIP connection is allowed when the source belongs to the VIP's network (an
//     address in its subnet, or a task of a service on it) and denied otherwise; a published
//     port is open (traffic from outside the cluster enters there).

#include "base/address.h"
#include "discovery/model/policy.h"
#include "discovery/model/types.h"

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace routemesh::mesh::policy {

using discovery::PolicyAction;

// One policy of the store, parsed.
struct Rule {
  std::string id;
  discovery::PolicyPeer from;
  std::string service;     // the destination (`to`)
  std::uint16_t port = 0;  // 0 = every port
  PolicyAction action = PolicyAction::allow;
  std::uint32_t priority = 0;
};

struct NetworkRange {
  std::string name;
  base::IpRange subnet;
};

// A source address and what the state says about it. `address` points at 4 (IPv4) or 16
// (IPv6) bytes in network order; IPv4-mapped IPv6 peers must be given as IPv4.
struct Source {
  const std::uint8_t* address = nullptr;
  bool v6 = false;
  std::span<const std::string> networks;  // networks it is on as a task (its services' networks)
  std::span<const std::string> services;  // services it is a task of
};

enum class Entry { vip, published };

struct Destination {
  std::string_view service;
  std::uint16_t port = 0;  // the VIP port or the published port
  Entry entry = Entry::vip;
  std::string_view network;  // Entry::vip: the VIP's network
};

enum class Reason {
  rule,           // `rule` decided
  same_network,   // no rule; the source is on the VIP's network
  other_network,  // no rule; the source is not on the VIP's network
  published,      // no rule; a published port is open
};

struct Decision {
  bool allowed = true;
  const Rule* rule = nullptr;  // set when reason == rule; points into the rules given
  Reason reason = Reason::published;
};

// The decision for one connection or request. `rules` may hold rules of other services (they
// are skipped); `networks` is every network of the state (for "network:NAME" and isolation by
// subnet). O(rules + networks of the source).
Decision decide(const Source& source, const Destination& destination, std::span<const Rule> rules,
                std::span<const NetworkRange> networks);

// Whether `a` wins over `b` when both apply (decide()'s order): source kind service > network >
// cidr, a longer prefix, a rule naming a port, a higher priority, then deny. Neither outranks
// the other only when they agree in all of these (and so in their action).
bool outranks(const Rule& a, const Rule& b);

// "rule 0123456789abcdef", "same network", ... for logs.
std::string describe(const Decision& decision);
std::string_view to_string(Reason reason);

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// What one address is as a task.
struct SourceInfo {
  std::vector<std::string> networks;  // sorted, unique
  std::vector<std::string> services;  // sorted, unique
};

// A task address: 4 (IPv4) or 16 (IPv6) bytes in network order.
struct AddressKey {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t size = 0;

  bool operator==(const AddressKey&) const = default;
  std::string_view view() const { return {reinterpret_cast<const char*>(bytes.data()), size}; }
};

// Task addresses to small numbers, in flat arrays (open addressing, linear probing): compiled
// again for every new state, and at 100,000 tasks a node-based map's allocations were most of
// a route compile. IPv4 addresses, nearly all of them, take 8 bytes a slot with an integer
// hash; IPv6 ones a table of their own. Each grows to keep at most half its slots used.
class AddressIndex {
 public:
  // Room for `n` addresses without growing (IPv4; IPv6 tables start small).
  void reserve(std::size_t n);
  // The value of `key`, inserted as `value` when it was not there (true then). `value` must
  // be below kEmpty.
  std::pair<std::uint32_t*, bool> try_emplace(const AddressKey& key, std::uint32_t value);
  const std::uint32_t* find(const AddressKey& key) const;
  // Asks the CPU to bring `key`'s first IPv4 slot into the cache: a loop of inserts calls it
  // for an address a few ahead, so their cache misses overlap.
  void prefetch(const AddressKey& key) const;
  std::size_t size() const { return v4_size_ + v6_size_; }
  // f(key, value) for every address, in no particular order; `key` lives for the call only.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& slot : v4_) {
      if (slot.value != kEmpty) {
        AddressKey key;
        key.size = 4;
        for (int i = 0; i < 4; ++i) {
          key.bytes[i] = static_cast<std::uint8_t>(slot.key >> (24 - 8 * i));
        }
        f(key, slot.value);
      }
    }
    for (const auto& slot : v6_) {
      if (slot.key.size != 0) {
        f(slot.key, slot.value);
      }
    }
  }

  static constexpr std::uint32_t kEmpty = 0xffffffff;

 private:
  struct V4Slot {
    std::uint32_t key = 0;  // the address, host order
    std::uint32_t value = kEmpty;
  };
  struct V6Slot {
    AddressKey key;  // size 0: empty
    std::uint32_t value = 0;
  };
  // Where the key is, or the empty slot it goes to; where its probe starts.
  std::size_t v4_slot(std::uint32_t key) const;
  std::size_t v4_slot_hint(std::uint32_t key) const;
  std::size_t v6_slot(const AddressKey& key) const;
  void grow_v4(std::size_t capacity);
  void grow_v6(std::size_t capacity);

  std::vector<V4Slot> v4_;  // a power of two in size (or empty)
  std::vector<V6Slot> v6_;  // the same
  std::size_t v4_size_ = 0;
  std::size_t v6_size_ = 0;
};

// The state's policies and address facts, compiled for the data path.
struct Compiled {
  std::unordered_map<std::string, std::vector<Rule>, KeyHash, std::equal_to<>>
      rules;  // by destination service, in id order
  std::vector<NetworkRange> networks;
  // What a task address is: one entry per service (its name and networks), then one per
  // address that tasks of several services share (the union). Tasks point at their service's
  // entry, so the facts cost O(services) and each address one slot of `sources`.
  std::vector<SourceInfo> facts;
  AddressIndex sources;  // task address -> index in facts

  // The facts of the task address `address` (4 or 16 bytes); null when no task has it.
  const SourceInfo* source(const std::uint8_t* address, bool v6) const;
};

// A task's address parsed (inet_pton: dotted-quad IPv4 or RFC 4291 IPv6); false when it is
// neither.
bool parse_address(const std::string& text, AddressKey& key);

// The state as compile() reads it, from one walk of each of its maps: the services in name
// order, and every task of a known service with an address that parses, in id order, its
// address parsed and its service given by position. The route compile builds its clusters from
// the same walk: at 100,000 tasks, each walk of the state's maps is a cache miss per node.
struct StateView {
  struct TaskFact {
    AddressKey address;
    std::uint32_t service = 0;  // index in `services`
  };
  std::vector<const discovery::Service*> services;
  std::vector<TaskFact> facts;
  std::vector<const discovery::Task*> tasks;  // the task of each fact
};
StateView view(const discovery::ClusterState& state);

// Pure, deterministic. Policies whose from/to do not parse and networks whose subnet does not
// parse are left out (validation rejects them before they reach the state).
Compiled compile(const discovery::ClusterState& state);
// The same, from a view of `state` made by view().
Compiled compile(const discovery::ClusterState& state, const StateView& view);

// decide() for an address as the data path sees it: looks the address up in `compiled`.
// `address` is 4 or 16 bytes (IPv4-mapped IPv6 given as IPv4).
Decision check(const Compiled& compiled, const std::uint8_t* address, bool v6,
               const Destination& destination);

}  // namespace routemesh::mesh::policy
