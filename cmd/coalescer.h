#pragma once
// Single flight, newest input wins (pure: no threads, no clock). A node compiles its route
// table with it: at most one compile runs; states that arrive while it runs only replace the
// one waiting, and when the run ends the newest of them is compiled next, so a burst of writes
// costs at most two compiles, however long the burst. The owner calls every member from one
// thread (the control thread); the run itself may happen elsewhere.

#include "base/check.h"

#include <cstdint>
#include <optional>
#include <utility>

namespace routemesh::cmd {

template <typename T>
class Coalescer {
 public:
  // A new input. Returns true when no run is in flight: the caller starts one now, taking its
  // input with begin(). Otherwise the input waits, replacing any input already waiting, and
  // runs after the current run (see finished()).
  bool offer(T input) {
    if (waiting_) {
      ++replaced_;
    }
    waiting_ = std::move(input);
    if (running_) {
      return false;
    }
    running_ = true;
    return true;
  }

  // The input of the run being started: the newest offered. Only after offer() or finished()
  // returned true, once.
  T begin() {
    RM_CHECK(running_ && waiting_, "Coalescer::begin without a run to start");
    T input = std::move(*waiting_);
    waiting_.reset();
    return input;
  }

  // The run in flight ended. Returns true when inputs were offered since its begin(): the
  // caller starts the next run at once (begin() gives the newest of them). Returns false when
  // there were none: nothing runs until the next offer().
  bool finished() {
    RM_CHECK(running_, "Coalescer::finished without a run in flight");
    if (waiting_) {
      return true;
    }
    running_ = false;
    return false;
  }

  bool running() const { return running_; }
  // Inputs that were replaced by a newer one before a run took them.
  std::uint64_t replaced() const { return replaced_; }

 private:
  std::optional<T> waiting_;
  bool running_ = false;
  std::uint64_t replaced_ = 0;
};

}  // namespace routemesh::cmd
