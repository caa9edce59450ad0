#include "discovery/dns/cache.h"

namespace routemesh::discovery::dns {

Cache::Entry* Cache::live(const std::string& key, std::uint64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return nullptr;
  }
  auto entry = it->second;
  if (now_ms >= entry->expires_ms) {
    lru_.erase(entry);
    index_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, entry);
  return &*entry;
}

namespace {

std::uint32_t age_of(std::uint64_t stored_ms, std::uint64_t now_ms) {
  return static_cast<std::uint32_t>((now_ms > stored_ms ? now_ms - stored_ms : 0) / 1000);
}

}  // namespace

std::optional<Cache::Hit> Cache::lookup(const std::string& key, std::uint64_t now_ms) {
  const Entry* e = live(key, now_ms);
  if (e == nullptr) {
    return std::nullopt;
  }
  return Hit{e->reply, age_of(e->stored_ms, now_ms)};
}

std::optional<Cache::Stored> Cache::lookup_stored(const std::string& key, std::uint64_t now_ms) {
  const Entry* e = live(key, now_ms);
  if (e == nullptr || !e->stored) {
    return std::nullopt;
  }
  return Stored{&*e->stored, age_of(e->stored_ms, now_ms)};
}

void Cache::insert(const std::string& key, Bytes reply, std::uint32_t ttl_s, std::uint64_t now_ms,
                   std::optional<StoredReply> stored) {
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
  lru_.push_front(Entry{key, std::move(reply), now_ms, now_ms + std::uint64_t{ttl_s} * 1000,
                        std::move(stored)});
  index_[key] = lru_.begin();
}

}  // namespace routemesh::discovery::dns
