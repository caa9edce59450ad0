#include "admin/metrics.h"

#include "base/metrics.h"

namespace routemesh::admin {

Metrics::Metrics(prometheus::Registry& registry)
    : admin_requests(
          base::counter_family(registry, "routemesh_admin_requests_total",
                               "Requests answered by the admin HTTP server, by path and status.")),
      admin_session_errors(base::counter(registry, "routemesh_admin_session_errors_total",
                                         "Exceptions that ended an admin HTTP session.")),
      tls_handshakes(base::counter_family(registry, "routemesh_admin_tls_handshakes_total",
                                          "TLS handshakes on the admin port, by result.")),
      connections_cut(base::counter_family(
          registry, "routemesh_admin_connections_cut_total",
          "Admin TLS connections closed because their client certificate was revoked, expired, "
          "its root retired or its node removed after the handshake, by reason.")) {}

}  // namespace routemesh::admin
