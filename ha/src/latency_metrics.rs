//! Issue 16's latency histograms and leader-change counter in `/v1/metrics`, with
//! `ha_build_info`.
//!
//! The names are a contract with the shipped Grafana dashboard and alert rules
//! (`deploy/`): rename nothing without changing those.

use ha_core::{HistogramSnapshot, LatencyHistogram};
use ha_replicate::driver::ReplicaMetrics;

use crate::metrics::PrometheusText;

/// `ha_propose_commit_seconds`.
pub const PROPOSE_COMMIT: &str = "ha_propose_commit_seconds";
/// `ha_commit_apply_seconds`.
pub const COMMIT_APPLY: &str = "ha_commit_apply_seconds";
/// `ha_wal_fsync_seconds`.
pub const WAL_FSYNC: &str = "ha_wal_fsync_seconds";
/// `ha_forward_round_trip_seconds`.
pub const FORWARD_ROUND_TRIP: &str = "ha_forward_round_trip_seconds";
/// `ha_read_index_round_trip_seconds`.
pub const READ_INDEX_ROUND_TRIP: &str = "ha_read_index_round_trip_seconds";
/// `ha_failover_leaderless_seconds`.
pub const FAILOVER_LEADERLESS: &str = "ha_failover_leaderless_seconds";
/// `ha_leader_changes_total`.
pub const LEADER_CHANGES: &str = "ha_leader_changes_total";
/// `ha_build_info`.
pub const BUILD_INFO: &str = "ha_build_info";

/// The crate version `ha_build_info` reports.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit `ha_build_info` reports (`HA_GIT_COMMIT` at build time, else what
/// `git rev-parse` said, else `unknown`: see `ha/build.rs`).
pub const BUILD_COMMIT: &str = env!("HA_GIT_COMMIT");

/// The histograms and the counter, read at one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// `ha_propose_commit_seconds`.
    pub propose_commit: HistogramSnapshot,
    /// `ha_commit_apply_seconds`.
    pub commit_apply: HistogramSnapshot,
    /// `ha_wal_fsync_seconds`.
    pub wal_fsync: HistogramSnapshot,
    /// `ha_forward_round_trip_seconds`.
    pub forward_round_trip: HistogramSnapshot,
    /// `ha_read_index_round_trip_seconds`.
    pub read_index_round_trip: HistogramSnapshot,
    /// `ha_failover_leaderless_seconds`.
    pub failover_leaderless: HistogramSnapshot,
    /// `ha_leader_changes_total`.
    pub leader_changes_total: u64,
}

impl Default for LatencySnapshot {
    /// Every histogram empty, the counter at zero.
    fn default() -> Self {
        let empty = LatencyHistogram::latency().snapshot();
        Self {
            propose_commit: empty.clone(),
            commit_apply: empty.clone(),
            wal_fsync: empty.clone(),
            forward_round_trip: empty.clone(),
            read_index_round_trip: empty,
            failover_leaderless: LatencyHistogram::failover().snapshot(),
            leader_changes_total: 0,
        }
    }
}

impl LatencySnapshot {
    /// Read the replica's histograms and the WAL's.
    pub fn capture(replica: &ReplicaMetrics, wal_fsync: &LatencyHistogram) -> Self {
        Self {
            propose_commit: replica.propose_commit.snapshot(),
            commit_apply: replica.commit_apply.snapshot(),
            wal_fsync: wal_fsync.snapshot(),
            forward_round_trip: replica.forward_round_trip.snapshot(),
            read_index_round_trip: replica.read_index_round_trip.snapshot(),
            failover_leaderless: replica.failover_leaderless.snapshot(),
            leader_changes_total: replica.leader_changes(),
        }
    }
}

/// Append `ha_build_info`, the six histograms and `ha_leader_changes_total`.
pub fn render_metrics(out: &mut PrometheusText, snapshot: &LatencySnapshot) {
    out.family(
        BUILD_INFO,
        "gauge",
        "Always 1; the labels say which build of ha this node runs.",
    )
    .sample(
        BUILD_INFO,
        &[("version", BUILD_VERSION), ("commit", BUILD_COMMIT)],
        1.0,
    );
    out.histogram(
        PROPOSE_COMMIT,
        "Seconds from an entry's append on the leader to its commit (leader only).",
        &snapshot.propose_commit,
    );
    out.histogram(
        COMMIT_APPLY,
        "Seconds from learning an index committed to applying it to the state machine (every data node).",
        &snapshot.commit_apply,
    );
    out.histogram(
        WAL_FSYNC,
        "Seconds each fsync of the write-ahead log took (nodes with a data directory).",
        &snapshot.wal_fsync,
    );
    out.histogram(
        FORWARD_ROUND_TRIP,
        "Seconds from a follower forwarding a write to the leader to the leader's answer.",
        &snapshot.forward_round_trip,
    );
    out.histogram(
        READ_INDEX_ROUND_TRIP,
        "Seconds from a linearizable read's arrival at the leader to its answer: the read-index confirmation round (none under a valid lease) and the wait for the applied index.",
        &snapshot.read_index_round_trip,
    );
    out.histogram(
        FAILOVER_LEADERLESS,
        "Seconds the cluster had no leader, one observation per failover this node applied since it started.",
        &snapshot.failover_leaderless,
    );
    out.single(
        LEADER_CHANGES,
        "counter",
        "Times this node saw the leader change from one known node to another since it started.",
        snapshot.leader_changes_total as f64,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rendered(snapshot: &LatencySnapshot) -> String {
        let mut out = PrometheusText::default();
        render_metrics(&mut out, snapshot);
        out.finish()
    }

    /// One test per histogram: the family, its buckets, `_sum` and `_count` as observed.
    #[test]
    fn each_histogram_renders_its_buckets_sum_and_count() {
        let replica = ReplicaMetrics::new();
        let wal = LatencyHistogram::latency();
        replica.propose_commit.observe(Duration::from_micros(800));
        replica.commit_apply.observe(Duration::from_micros(50));
        wal.observe(Duration::from_millis(4));
        replica
            .forward_round_trip
            .observe(Duration::from_millis(20));
        replica
            .read_index_round_trip
            .observe(Duration::from_millis(300));
        replica.failover_leaderless.observe(Duration::from_secs(20));
        let text = rendered(&LatencySnapshot::capture(&replica, &wal));
        for (name, first_bucket_holding, sum) in [
            (PROPOSE_COMMIT, "0.001", "0.0008"),
            (COMMIT_APPLY, "0.0001", "0.00005"),
            (WAL_FSYNC, "0.005", "0.004"),
            (FORWARD_ROUND_TRIP, "0.025", "0.02"),
            (READ_INDEX_ROUND_TRIP, "0.5", "0.3"),
            (FAILOVER_LEADERLESS, "30", "20"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram\n")),
                "{name}: {text}"
            );
            let bounds: Vec<&str> = text
                .lines()
                .filter(|line| line.starts_with(&format!("{name}_bucket{{")))
                .collect();
            let buckets = if name == FAILOVER_LEADERLESS { 19 } else { 17 };
            assert_eq!(bounds.len(), buckets, "{name}: {bounds:?}");
            // Below the bucket: 0; from it on (and +Inf): 1.
            let holding = bounds
                .iter()
                .position(|line| line.contains(&format!("le=\"{first_bucket_holding}\"")))
                .unwrap_or_else(|| panic!("{name}: no bucket {first_bucket_holding}"));
            for (position, line) in bounds.iter().enumerate() {
                let expected = if position < holding { " 0" } else { " 1" };
                assert!(line.ends_with(expected), "{name}: {line}");
            }
            assert!(
                bounds[buckets - 1].starts_with(&format!("{name}_bucket{{le=\"+Inf\"}}")),
                "{name}"
            );
            assert!(
                text.contains(&format!("\n{name}_sum {sum}\n")),
                "{name}_sum {sum}: {text}"
            );
            assert!(text.contains(&format!("\n{name}_count 1\n")), "{name}");
        }
    }

    #[test]
    fn build_info_and_leader_changes_are_present_from_the_start() {
        let text = rendered(&LatencySnapshot::default());
        assert!(
            text.contains(&format!(
                "# TYPE ha_build_info gauge\nha_build_info{{version=\"{BUILD_VERSION}\",commit=\"{BUILD_COMMIT}\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ha_leader_changes_total counter\nha_leader_changes_total 0\n"),
            "{text}"
        );
        assert!(!BUILD_COMMIT.is_empty());
    }
}
