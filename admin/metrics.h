#pragma once
// Metrics of the admin server, declared once (docs/style.md, "Metrics"). Built from the
// process registry (prometheus::Registry merges families with the same name, so building this
// struct twice from one registry yields the same families) and passed by reference. Names follow
// routemesh_<capability>_<name>_<unit>; the admin server uses "admin" as its capability prefix.
// Every metric is listed in admin/README.md.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

namespace routemesh::admin {

struct Metrics {
  explicit Metrics(prometheus::Registry& registry);

  // routemesh_admin_requests_total{path,code}: requests answered by the admin server. `path`
  // is a registered path, "/metrics", "/healthz" or "other" (bounded cardinality); `code` is
  // the numeric status.
  prometheus::Family<prometheus::Counter>& admin_requests;
  // routemesh_admin_session_errors_total: exceptions caught by an admin session's co_spawn
  // handler (a bug or resource exhaustion, never a normal client error).
  prometheus::Counter& admin_session_errors;
};

}  // namespace routemesh::admin
