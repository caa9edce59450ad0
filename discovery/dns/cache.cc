#include "discovery/dns/cache.h"

namespace routemesh::discovery::dns {

std::optional<Cache::Hit> Cache::lookup(const std::string& key, std::uint64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return std::nullopt;
  }
  auto entry = it->second;
  if (now_ms >= entry->expires_ms) {
    lru_.erase(entry);
    index_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, entry);
  const std::uint64_t age_ms = now_ms > entry->stored_ms ? now_ms - entry->stored_ms : 0;
  return Hit{entry->reply, static_cast<std::uint32_t>(age_ms / 1000)};
}

void Cache::insert(const std::string& key, Bytes reply, std::uint32_t ttl_s, std::uint64_t now_ms) {
  if (capacity_ == 0 || ttl_s == 0) {
    return;
  }
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
  while (index_.size() >= capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, std::move(reply), now_ms, now_ms + std::uint64_t{ttl_s} * 1000});
  index_[key] = lru_.begin();
}

}  // namespace routemesh::discovery::dns
