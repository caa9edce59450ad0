#include "cmd/coalescer.h"

#include <catch2/catch.hpp>

#include <vector>

namespace {

using routemesh::cmd::Coalescer;

// Plays a transcript against a Coalescer the way the route publisher drives it, with the runs
// (compiles) done by hand: returns the inputs that ran, in order.
struct Driver {
  Coalescer<int> gate;
  std::vector<int> ran;
  bool in_flight = false;
  int current = 0;

  void offer(int v) {
    if (gate.offer(v)) {
      REQUIRE_FALSE(in_flight);
      start();
    }
  }
  void start() {
    current = gate.begin();
    in_flight = true;
  }
  void complete() {
    REQUIRE(in_flight);
    ran.push_back(current);
    in_flight = false;
    if (gate.finished()) {
      start();
    }
  }
};

TEST_CASE("an offer with nothing in flight starts a run at once", "[coalescer]") {
  Driver d;
  d.offer(1);
  CHECK(d.in_flight);
  CHECK(d.current == 1);
  d.complete();
  CHECK(d.ran == std::vector<int>{1});
  CHECK_FALSE(d.in_flight);
  CHECK_FALSE(d.gate.running());
}

TEST_CASE("N offers during a run give exactly one more run, of the newest input", "[coalescer]") {
  Driver d;
  d.offer(1);
  for (int v = 2; v <= 100; ++v) {
    d.offer(v);
    CHECK(d.current == 1);  // never a second run while one is in flight
  }
  d.complete();
  REQUIRE(d.in_flight);
  CHECK(d.current == 100);
  d.complete();
  CHECK_FALSE(d.in_flight);
  CHECK(d.ran == std::vector<int>{1, 100});
  CHECK(d.gate.replaced() == 98);  // 2..99 never ran
}

TEST_CASE("offers after the last run started are not lost", "[coalescer]") {
  Driver d;
  d.offer(1);
  d.offer(2);
  d.complete();  // 2 starts
  d.offer(3);    // arrives while 2 runs
  d.complete();  // 3 starts
  d.complete();
  CHECK(d.ran == std::vector<int>{1, 2, 3});
  CHECK_FALSE(d.gate.running());
  d.offer(4);  // idle again: runs at once
  CHECK(d.current == 4);
  d.complete();
  CHECK(d.ran == std::vector<int>{1, 2, 3, 4});
  CHECK(d.gate.replaced() == 0);
}

}  // namespace
