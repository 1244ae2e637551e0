//! The shared map's figures for `GET /v1/metrics` (issue 15).

use ha_gossip::shared_state::SharedStateStats;

use crate::metrics::PrometheusText;

/// The `ha_shared_state_*` families of one node's shared map.
///
/// ```
/// use ha::shared_state_metrics::render_metrics;
/// use ha::{SharedState, NodeId};
/// use ha_gossip::shared_state::SharedStateSettings;
/// let state = SharedState::open(NodeId::new("n1").unwrap(), SharedStateSettings::default(), 1).unwrap();
/// let text = render_metrics(&state.stats());
/// assert!(text.contains("ha_shared_state_keys 0\n"));
/// ```
pub fn render_metrics(stats: &SharedStateStats) -> String {
    let map = &stats.map;
    let replicator = &stats.replicator;
    let mut out = PrometheusText::default();
    out.single(
        "ha_shared_state_keys",
        "gauge",
        "Live keys (values and counters) in this node's shared map.",
        map.live as f64,
    );
    out.single(
        "ha_shared_state_tombstones",
        "gauge",
        "Deleted keys remembered until their grace period ends.",
        map.tombstones as f64,
    );
    out.single(
        "ha_shared_state_sent_bytes_total",
        "counter",
        "Bytes of shared map messages sent (payloads, before the gossip envelope).",
        replicator.bytes_sent as f64,
    );
    out.single(
        "ha_shared_state_received_bytes_total",
        "counter",
        "Bytes of shared map messages received.",
        replicator.bytes_received as f64,
    );
    out.single(
        "ha_shared_state_merged_deltas_total",
        "counter",
        "Deltas from peers that changed this node's shared map.",
        replicator.deltas_merged as f64,
    );
    out.single(
        "ha_shared_state_anti_entropy_rounds_total",
        "counter",
        "Anti-entropy rounds (digest exchanges) this node started.",
        replicator.anti_entropy_rounds as f64,
    );
    out.single(
        "ha_shared_state_refused_total",
        "counter",
        "Entries from peers refused (invalid, over twice the limits, clock ahead).",
        map.remote_refused as f64,
    );
    out.single(
        "ha_shared_state_log_bytes",
        "gauge",
        "Size of the shared map's log file (0 in memory).",
        stats.log_bytes as f64,
    );
    out.single(
        "ha_shared_state_storage_failed",
        "gauge",
        "1 when the shared map's log failed and local writes are refused until restart.",
        if stats.storage_problem.is_some() {
            1.0
        } else {
            0.0
        },
    );
    out.finish()
}
