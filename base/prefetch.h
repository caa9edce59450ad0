#pragma once
// Asking the CPU for memory before it is read, for loops over objects scattered in memory
// (the nodes of a std::map, pointers to them): issued a few objects ahead, the cache misses of
// those objects overlap instead of being waited for one after another.

#include <cstddef>

namespace routemesh::base {

// Every cache line of *p (sizeof(T) bytes from p).
template <class T>
inline void prefetch_object(const T* p) {
  constexpr std::size_t kLine = 64;
  const char* bytes = reinterpret_cast<const char*>(p);
  for (std::size_t offset = 0; offset < sizeof(T); offset += kLine) {
    __builtin_prefetch(bytes + offset);
  }
}

}  // namespace routemesh::base
