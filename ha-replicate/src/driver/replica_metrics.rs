//! What the driver measures about its replica (issue 16): latency histograms and the
//! leader-change counter, shared with whoever renders them (the `ha` node's `/v1/metrics`).
//!
//! The driver measures, not the sans-IO core: the core reads no clock. Every node owns its
//! own [`ReplicaMetrics`] (no global registry), so several nodes in one process stay apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ha_core::LatencyHistogram;

/// The replica's latency histograms (seconds) and counters. Cloning shares them.
#[derive(Clone, Debug)]
pub struct ReplicaMetrics {
    /// `ha_propose_commit_seconds`: on the leader, from an entry's append (the round that
    /// proposed it) to the round that saw it committed.
    pub propose_commit: Arc<LatencyHistogram>,
    /// `ha_commit_apply_seconds`: on every data node, from the round that learned an index
    /// committed to the round that applied it.
    pub commit_apply: Arc<LatencyHistogram>,
    /// `ha_forward_round_trip_seconds`: on a follower, a forwarded request from sending it
    /// to the leader to the leader's answer.
    pub forward_round_trip: Arc<LatencyHistogram>,
    /// `ha_read_index_round_trip_seconds`: on the leader, a linearizable read from its
    /// arrival (local or forwarded) to its answer: the confirmation round with a majority
    /// (none under a valid lease) and the wait for the applied index.
    pub read_index_round_trip: Arc<LatencyHistogram>,
    /// `ha_failover_leaderless_seconds`: one observation per failover this node applied
    /// since it started (the failover record's leaderless time).
    pub failover_leaderless: Arc<LatencyHistogram>,
    leader_changes: Arc<AtomicU64>,
}

impl Default for ReplicaMetrics {
    fn default() -> Self {
        Self {
            propose_commit: Arc::new(LatencyHistogram::latency()),
            commit_apply: Arc::new(LatencyHistogram::latency()),
            forward_round_trip: Arc::new(LatencyHistogram::latency()),
            read_index_round_trip: Arc::new(LatencyHistogram::latency()),
            failover_leaderless: Arc::new(LatencyHistogram::failover()),
            leader_changes: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl ReplicaMetrics {
    /// Empty histograms, a zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ha_leader_changes_total`: how many times this node saw the leader change from one
    /// known node to another (not the first leader it learned after starting, not the same
    /// node winning again).
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Count one leader change.
    pub(crate) fn count_leader_change(&self) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }
}
