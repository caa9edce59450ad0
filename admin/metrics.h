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
  // routemesh_admin_tls_handshakes_total{result}: TLS handshakes on a TLS admin port, `result`
  // "ok" or "failed" (plain HTTP to the TLS port, a client certificate the cluster CA did not
  // issue or that expired, a protocol below TLS 1.3, a timeout) or "not_ready" (the node has
  // no certificate yet: it is still joining, and the connection was closed unanswered).
  prometheus::Family<prometheus::Counter>& tls_handshakes;
  // routemesh_admin_connections_cut_total{reason}: TLS connections closed at a request because
  // their client certificate is no longer good since the handshake: "revoked", "removed"
  // (a node removed from the cluster), "expired", "retired_root" (AdminServer::recheck_peers).
  prometheus::Family<prometheus::Counter>& connections_cut;
};

}  // namespace routemesh::admin
