#include "discovery/dns/cache.h"

#include <catch2/catch.hpp>

using namespace routemesh::discovery::dns;

TEST_CASE("cache: an entry lives for its TTL and reports its age in whole seconds") {
  Cache c(8);
  c.insert("k", Bytes{1, 2, 3}, 10, 1'000);
  auto hit = c.lookup("k", 1'000);
  REQUIRE(hit);
  CHECK(hit->reply == Bytes{1, 2, 3});
  CHECK(hit->age_s == 0);
  hit = c.lookup("k", 4'999);
  REQUIRE(hit);
  CHECK(hit->age_s == 3);
  CHECK(c.lookup("k", 10'999));
  CHECK_FALSE(c.lookup("k", 11'000));  // expired: removed
  CHECK(c.size() == 0);
  CHECK_FALSE(c.lookup("other", 0));
}

TEST_CASE("cache: the least recently used entry goes first when full") {
  Cache c(2);
  c.insert("a", Bytes{1}, 60, 0);
  c.insert("b", Bytes{2}, 60, 0);
  CHECK(c.lookup("a", 1));  // a is now the most recently used
  c.insert("c", Bytes{3}, 60, 2);
  CHECK(c.size() == 2);
  CHECK_FALSE(c.lookup("b", 3));
  CHECK(c.lookup("a", 3));
  CHECK(c.lookup("c", 3));
}

TEST_CASE("cache: replacing a key, TTL 0 and capacity 0 store nothing new") {
  Cache c(2);
  c.insert("a", Bytes{1}, 60, 0);
  c.insert("a", Bytes{9}, 60, 5'000);
  CHECK(c.size() == 1);
  CHECK(c.lookup("a", 5'000)->reply == Bytes{9});
  c.insert("z", Bytes{1}, 0, 0);
  CHECK_FALSE(c.lookup("z", 0));
  Cache none(0);
  none.insert("a", Bytes{1}, 60, 0);
  CHECK(none.size() == 0);
  CHECK_FALSE(none.lookup("a", 0));
}
