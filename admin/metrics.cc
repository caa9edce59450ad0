#include "admin/metrics.h"

namespace routemesh::admin {

Metrics::Metrics(prometheus::Registry& registry)
    : admin_requests(prometheus::BuildCounter()
                         .Name("routemesh_admin_requests_total")
                         .Help("Requests answered by the admin HTTP server, by path and status.")
                         .Register(registry)),
      admin_session_errors(prometheus::BuildCounter()
                               .Name("routemesh_admin_session_errors_total")
                               .Help("Exceptions that ended an admin HTTP session.")
                               .Register(registry)
                               .Add({})) {}

}  // namespace routemesh::admin
