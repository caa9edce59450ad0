#pragma once
// Broken invariants (never expected failures, which are values: see docs/style.md, "Errors").
//
//   RM_CHECK(cond, what)   always checked; prints the place, the condition and `what`, aborts.
//                          For invariants whose violation would corrupt state or acknowledge
//                          something false (Raft's log and commit rules, the store's apply).
//   RM_ASSERT(cond, what)  checked in builds without NDEBUG (the sanitizer build), compiled out
//                          of release builds. For cheap-to-state, costly-to-check internals.
//
// Neither is recovery code: a failure means a bug, and the process stops where it found it.

#include <cstdio>
#include <cstdlib>

#define RM_CHECK(cond, what)                                                                  \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "invariant broken at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   what);                                                                     \
      std::abort();                                                                           \
    }                                                                                         \
  } while (false)

#ifdef NDEBUG
#define RM_ASSERT(cond, what) \
  do {                        \
    (void)sizeof(cond);       \
  } while (false)
#else
#define RM_ASSERT(cond, what) RM_CHECK(cond, what)
#endif
