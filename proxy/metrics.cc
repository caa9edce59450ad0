#include "proxy/metrics.h"

#include "base/metrics.h"
#include "proxy/upstream_pool.h"

namespace routemesh::proxy {

using base::counter;
using base::counter_family;

Metrics::Metrics(prometheus::Registry& r)
    : registry(r),
      requests(counter_family(r, "routemesh_proxy_requests_total",
                              "HTTP requests answered, by service and status class")),
      request_duration(base::histogram_family(
          r, "routemesh_proxy_request_duration_seconds",
          "Time from the first byte of a request to its last response byte")),
      upstream_connect_errors(counter_family(r, "routemesh_proxy_upstream_connect_errors_total",
                                             "Failed connects to an endpoint")),
      upstream_errors(counter_family(r, "routemesh_proxy_upstream_errors_total",
                                     "Exchanges broken by the upstream (reset, timeout, invalid "
                                     "or truncated response)")),
      local_resource_errors(counter(r, "routemesh_proxy_local_resource_errors_total",
                                    "Upstream connects that failed for want of local "
                                    "descriptors, memory or ports")),
      upstream_retries(counter_family(r, "routemesh_proxy_upstream_retries_total",
                                      "Idempotent requests retried on another endpoint")),
      ejections(counter_family(r, "routemesh_proxy_endpoint_ejections_total",
                               "Endpoints ejected by passive health checking")),
      downstream_active(base::gauge(r, "routemesh_proxy_downstream_connections_active",
                                    "Open downstream (client) connections")),
      downstream_total(counter(r, "routemesh_proxy_downstream_connections_total",
                               "Accepted downstream (client) connections")),
      bytes_in(counter(r, "routemesh_proxy_bytes_received_total",
                       "Bytes received from downstream clients")),
      bytes_out(counter(r, "routemesh_proxy_bytes_sent_total", "Bytes sent to downstream clients")),
      l4_connections(counter_family(r, "routemesh_proxy_l4_connections_total",
                                    "Connections forwarded at layer 4")),
      l4_bytes(counter_family(r, "routemesh_proxy_l4_bytes_total",
                              "Bytes forwarded at layer 4, both directions")),
      bad_requests(counter_family(r, "routemesh_proxy_bad_requests_total",
                                  "Requests rejected with 4xx for framing or limits")),
      listener_errors(counter(r, "routemesh_proxy_listener_errors_total",
                              "Published ports that could not be bound or accepted on")),
      session_errors(counter(r, "routemesh_proxy_session_errors_total",
                             "Exceptions caught at a session boundary")),
      downstream_rejected(counter(r, "routemesh_proxy_downstream_connections_rejected_total",
                                  "Connections closed at once: per-thread connection limit")),
      overlay_streams_out(
          counter_family(r, "routemesh_overlay_streams_total",
                         "Overlay streams: out = to a task on another node, in = for a task here")
              .Add({{"direction", "out"}})),
      overlay_streams_in(
          counter_family(r, "routemesh_overlay_streams_total",
                         "Overlay streams: out = to a task on another node, in = for a task here")
              .Add({{"direction", "in"}})),
      overlay_refused(counter_family(r, "routemesh_overlay_refused_total",
                                     "Overlay streams refused, by direction and reason")),
      overlay_key_updates(counter_family(
          r, "routemesh_overlay_key_updates_total",
          "TLS key updates sent on overlay connections: epoch = the cluster's key epoch rose, "
          "bytes = cluster.overlay_rekey_bytes sent")),
      overlay_connect_errors(counter(r, "routemesh_overlay_connect_errors_total",
                                     "Failed connections to another node's overlay port")),
      overlay_spare_hits(counter(r, "routemesh_overlay_spare_connections_used_total",
                                 "Overlay streams opened on a pre-established connection")),
      overlay_spare_misses(counter(r, "routemesh_overlay_spare_connections_missed_total",
                                   "Overlay streams that had to connect first (no spare)")),
      drain_closed(counter(r, "routemesh_proxy_drain_closed_connections_total",
                           "Connections to a drained or removed task closed after its grace")),
      udp_datagrams(counter_family(r, "routemesh_proxy_udp_datagrams_total",
                                   "UDP datagrams relayed, by direction")),
      udp_dropped(counter_family(r, "routemesh_proxy_udp_dropped_total",
                                 "UDP datagrams dropped, by reason")),
      policy_denied(counter_family(r, "routemesh_policy_denied_total",
                                   "Connections (l4, overlay) and requests (l7) refused by network "
                                   "isolation or a policy, by destination service")),
      udp_flows(base::gauge(r, "routemesh_proxy_udp_flows_active",
                            "UDP flows (client addresses) being relayed")),
      upstream_pool_closed_family(
          counter_family(r, "routemesh_proxy_upstream_pool_closed_total",
                         "Idle pooled upstream connections closed, by reason")),
      tls_connections(counter_family(r, "routemesh_proxy_tls_connections_total",
                                     "Connections to the HTTPS port, by outcome")),
      tls_terminated(tls_connections.Add({{"outcome", "terminated"}})),
      tls_resumed(tls_connections.Add({{"outcome", "resumed"}})),
      tls_passthrough(tls_connections.Add({{"outcome", "passthrough"}})),
      tls_not_tls(tls_connections.Add({{"outcome", "not_tls"}})),
      tls_no_certificate(tls_connections.Add({{"outcome", "no_certificate"}})),
      tls_handshake_failed(tls_connections.Add({{"outcome", "handshake_failed"}})),
      tls_certificate_errors(counter(r, "routemesh_proxy_tls_certificate_errors_total",
                                     "Stored HTTPS certificates that did not load")) {
  static_assert(std::tuple_size_v<decltype(upstream_pool_closed)> == UpstreamPool::kCloseReasons);
  for (std::size_t i = 0; i < UpstreamPool::kCloseReasons; ++i) {
    upstream_pool_closed[i] =
        &upstream_pool_closed_family.Add({{"reason", UpstreamPool::kCloseReasonNames[i]}});
  }
}

}  // namespace routemesh::proxy
