#pragma once
// The forwarder's cache (pure): upstream replies by query (cache_key, message.h), each kept
// for the TTL inspect_upstream_reply allowed, least recently used dropped first. Time comes
// in as milliseconds of a monotonic clock; the server's control thread owns the only one.

#include "discovery/dns/message.h"
#include "discovery/dns/wire.h"

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

namespace routemesh::discovery::dns {

class Cache {
 public:
  // `capacity` 0 caches nothing.
  explicit Cache(std::size_t capacity) : capacity_(capacity) {}

  struct Hit {
    Bytes reply;              // as the upstream sent it: reply_from_upstream makes it the client's
    std::uint32_t age_s = 0;  // whole seconds since it was stored: lower its TTLs by this much
  };
  // A live entry (and marks it recently used); an expired one is removed and misses.
  std::optional<Hit> lookup(const std::string& key, std::uint64_t now_ms);
  // The same without copying: the stored reply as written for the client (store_reply,
  // wire.h) when insert was given one, else nullopt (as for a miss).
  struct Stored {
    const StoredReply* reply = nullptr;
    std::uint32_t age_s = 0;
  };
  std::optional<Stored> lookup_stored(const std::string& key, std::uint64_t now_ms);
  // Stores (or replaces) `key` for `ttl_s` seconds, with `stored` (the reply made the
  // client's, for the fast path) when there is one; evicts the least recently used entry when
  // full. A ttl of 0 stores nothing.
  void insert(const std::string& key, Bytes reply, std::uint32_t ttl_s, std::uint64_t now_ms,
              std::optional<StoredReply> stored = std::nullopt);
  std::size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::string key;
    Bytes reply;
    std::uint64_t stored_ms = 0;
    std::uint64_t expires_ms = 0;
    std::optional<StoredReply> stored;
  };
  // The live entry of `key` marked recently used; null when there is none (an expired one is
  // removed).
  Entry* live(const std::string& key, std::uint64_t now_ms);
  std::size_t capacity_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace routemesh::discovery::dns
