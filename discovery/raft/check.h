#pragma once
// Always-on invariant check for the Raft core: a broken Raft invariant must stop the node
// rather than risk acknowledging or applying divergent state (STYLE.md §6, "RM_CHECK").
// Named RM_RAFT_CHECK so it cannot collide with a project-wide RM_CHECK added later.

#include <cstdio>
#include <cstdlib>

#define RM_RAFT_CHECK(cond, what)                                                                  \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "raft invariant broken at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   what);                                                                          \
      std::abort();                                                                                \
    }                                                                                              \
  } while (false)
