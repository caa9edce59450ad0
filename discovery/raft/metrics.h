#pragma once
// Metrics of the Raft driver (docs/style.md, "Metrics"), built from the process registry and handed
// to RaftNode through RaftNodeOptions::metrics (optional: tests omit it). Listed in README.md.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace routemesh::discovery::raft {

struct Metrics {
  explicit Metrics(prometheus::Registry& registry);

  prometheus::Gauge& term;           // routemesh_raft_term
  prometheus::Gauge& commit_index;   // routemesh_raft_commit_index
  prometheus::Gauge& applied_index;  // routemesh_raft_applied_index
  prometheus::Gauge& is_leader;      // routemesh_raft_is_leader (0/1)
  // routemesh_raft_proposals_total{result}: ok|not_leader|timeout|stopped|busy|invalid_argument
  prometheus::Family<prometheus::Counter>& proposals;
  prometheus::Histogram& fsync_duration;  // routemesh_raft_fsync_duration_seconds
  prometheus::Counter& messages_sent;     // routemesh_raft_messages_sent_total
  prometheus::Counter& messages_dropped;  // routemesh_raft_messages_dropped_total (queue full)
  prometheus::Counter& leader_changes;    // routemesh_raft_leader_changes_total
  // routemesh_raft_malformed_frames_total: inbound frames that failed to decode (conn closed)
  prometheus::Counter& malformed_frames;
  prometheus::Counter& snapshots;  // routemesh_raft_snapshots_total (local compactions)
  // routemesh_raft_peers_refused_total: peer connections closed because the TLS handshake
  // failed or the certificate does not name a member that may speak Raft (transport.h)
  prometheus::Counter& peers_refused;
};

}  // namespace routemesh::discovery::raft
