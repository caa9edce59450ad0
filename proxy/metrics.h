#pragma once
// Metrics of the data plane, declared once (docs/style.md, "Metrics"). Built from the process
// registry by cmd/ and passed by reference. Names follow routemesh_proxy_<name>_<unit>.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <string>

namespace routemesh::proxy {

struct Metrics {
  explicit Metrics(prometheus::Registry& registry);

  prometheus::Registry& registry;
  // routemesh_proxy_requests_total{service,code_class}; service "" for no route.
  prometheus::Family<prometheus::Counter>& requests;
  // routemesh_proxy_request_duration_seconds{service}
  prometheus::Family<prometheus::Histogram>& request_duration;
  // routemesh_proxy_upstream_connect_errors_total{service}
  prometheus::Family<prometheus::Counter>& upstream_connect_errors;
  // routemesh_proxy_upstream_errors_total{service}: exchanges the upstream broke (closed or
  // reset before or during the response, timed out, sent an invalid response)
  prometheus::Family<prometheus::Counter>& upstream_errors;
  // routemesh_proxy_local_resource_errors_total: connects that failed for want of descriptors,
  // kernel memory or local ports (503 local_resources; the endpoint is not blamed)
  prometheus::Counter& local_resource_errors;
  // routemesh_proxy_upstream_retries_total{service}
  prometheus::Family<prometheus::Counter>& upstream_retries;
  // routemesh_proxy_endpoint_ejections_total{service}
  prometheus::Family<prometheus::Counter>& ejections;
  // routemesh_proxy_downstream_connections_active / _total
  prometheus::Gauge& downstream_active;
  prometheus::Counter& downstream_total;
  // routemesh_proxy_bytes_received_total / routemesh_proxy_bytes_sent_total (downstream side)
  prometheus::Counter& bytes_in;
  prometheus::Counter& bytes_out;
  // routemesh_proxy_l4_connections_total{service}, routemesh_proxy_l4_bytes_total{service}
  prometheus::Family<prometheus::Counter>& l4_connections;
  prometheus::Family<prometheus::Counter>& l4_bytes;
  // routemesh_proxy_bad_requests_total{reason}: framing/limit errors answered 4xx
  prometheus::Family<prometheus::Counter>& bad_requests;
  // routemesh_proxy_listener_errors_total
  prometheus::Counter& listener_errors;
  // routemesh_proxy_session_errors_total: exceptions caught by a session's co_spawn handler
  prometheus::Counter& session_errors;
  // routemesh_proxy_downstream_connections_rejected_total: accepted then closed at once because
  // the thread was at limits.max_connections_per_thread (added by the proxy driver).
  prometheus::Counter& downstream_rejected;

  // The overlay (routemesh_overlay_*).
  // streams_total{direction="out|in"}: streams opened to another node / accepted for a task here
  prometheus::Counter& overlay_streams_out;
  prometheus::Counter& overlay_streams_in;
  // refused_total{reason}: incoming preambles refused (malformed, unknown_target,
  // task_connect_failed) and, with direction out, answers other nodes gave
  prometheus::Family<prometheus::Counter>& overlay_refused;
  prometheus::Family<prometheus::Counter>& overlay_key_updates;
  // connect_errors_total: connections to another node's overlay port that failed
  prometheus::Counter& overlay_connect_errors;
  // spare_connections_used_total / _missed_total: streams that found a pre-established
  // connection to the peer, or had to connect first
  prometheus::Counter& overlay_spare_hits;
  prometheus::Counter& overlay_spare_misses;
  // routemesh_proxy_drain_closed_connections_total: connections to a task that was drained or
  // removed, closed when its drain grace (mesh.drain.grace_ms) ran out
  prometheus::Counter& drain_closed;
  // UDP published ports: routemesh_proxy_udp_datagrams_total{direction}, _dropped_total{reason},
  // routemesh_proxy_udp_flows_active
  prometheus::Family<prometheus::Counter>& udp_datagrams;
  prometheus::Family<prometheus::Counter>& udp_dropped;
  // routemesh_policy_denied_total{service,layer}: connections (layer l4, overlay) and HTTP
  // requests (l7) refused by network isolation or a policy (mesh/policy)
  prometheus::Family<prometheus::Counter>& policy_denied;
  prometheus::Gauge& udp_flows;
  // routemesh_proxy_upstream_pool_closed_total{reason}: idle pooled upstream connections
  // closed, indexed by UpstreamPool::CloseReason (stray_bytes, eof, error, idle_timeout, full,
  // orphaned, stale, revoked); children resolved once here
  prometheus::Family<prometheus::Counter>& upstream_pool_closed_family;
  std::array<prometheus::Counter*, 8> upstream_pool_closed{};
  // The HTTPS port: routemesh_proxy_tls_connections_total{outcome}: terminated (handshake
  // done), resumed (of those, a resumed session), passthrough (spliced by SNI), and the
  // refusals: not_tls (no ClientHello, or a malformed one), no_certificate (no certificate
  // stored at all), handshake_failed (including an SNI nothing covers, TLS < 1.2, no common
  // ALPN protocol or cipher).
  prometheus::Family<prometheus::Counter>& tls_connections;
  prometheus::Counter& tls_terminated;
  prometheus::Counter& tls_resumed;
  prometheus::Counter& tls_passthrough;
  prometheus::Counter& tls_not_tls;
  prometheus::Counter& tls_no_certificate;
  prometheus::Counter& tls_handshake_failed;
  // routemesh_proxy_tls_certificate_errors_total: stored certificates that did not load into a
  // TLS context (left out; the others serve)
  prometheus::Counter& tls_certificate_errors;
};

}  // namespace routemesh::proxy
