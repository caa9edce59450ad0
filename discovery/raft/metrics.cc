#include "discovery/raft/metrics.h"

#include "base/metrics.h"

namespace routemesh::discovery::raft {

using base::counter;
using base::gauge;

Metrics::Metrics(prometheus::Registry& r)
    : term(gauge(r, "routemesh_raft_term", "Current Raft term of this node.")),
      commit_index(gauge(r, "routemesh_raft_commit_index", "Highest log index known committed.")),
      applied_index(gauge(r, "routemesh_raft_applied_index", "Highest log index applied.")),
      is_leader(gauge(r, "routemesh_raft_is_leader", "1 when this node is the Raft leader.")),
      proposals(base::counter_family(r, "routemesh_raft_proposals_total",
                                     "Proposals made through this node, by result.")),
      fsync_duration(base::histogram(
          r, "routemesh_raft_fsync_duration_seconds",
          "Duration of the WAL fdatasync per Ready (group commit).",
          {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1})),
      messages_sent(counter(r, "routemesh_raft_messages_sent_total",
                            "Raft messages written to peer connections.")),
      messages_dropped(counter(r, "routemesh_raft_messages_dropped_total",
                               "Raft messages dropped (peer queue full or peer unknown).")),
      leader_changes(counter(r, "routemesh_raft_leader_changes_total",
                             "Times the leader seen by this node changed.")),
      malformed_frames(counter(r, "routemesh_raft_malformed_frames_total",
                               "Inbound peer frames that failed to decode.")),
      snapshots(counter(r, "routemesh_raft_snapshots_total",
                        "Local snapshots written (log compactions).")),
      peers_refused(counter(r, "routemesh_raft_peers_refused_total",
                            "Peer connections refused: failed TLS handshake, or a certificate "
                            "that names no member allowed to speak Raft.")) {}

}  // namespace routemesh::discovery::raft
