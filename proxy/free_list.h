#pragma once
// A bounded free list: what a finished request gives back for the next one to take, so that
// the request path reuses memory instead of allocating it, and an idle connection holds none.
// One per worker thread; no locks.

#include <cstddef>
#include <utility>
#include <vector>

namespace routemesh::proxy {

template <class T>
class FreeList {
 public:
  explicit FreeList(std::size_t capacity) : capacity_(capacity) { items_.reserve(capacity); }

  // The most recently given item (its memory is the likeliest to be in cache), or make().
  template <class Make>
  T take(Make make) {
    if (items_.empty()) {
      return make();
    }
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }

  // Keeps `item` for reuse; destroys it when the list is full.
  void give(T item) {
    if (items_.size() < capacity_) {
      items_.push_back(std::move(item));
    }
  }

  void clear() { items_.clear(); }

 private:
  std::vector<T> items_;
  std::size_t capacity_;
};

}  // namespace routemesh::proxy
