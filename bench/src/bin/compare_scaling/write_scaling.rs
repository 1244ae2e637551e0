//! QUORUM write throughput of a loopback cluster of `voters` real nodes.

use std::time::Duration;

use ha_bench::{Kv, LatencySummary, Put, run_write_load, start_loopback_cluster, wait_for_leader};
use ha_core::Consistency;
use serde::{Deserialize, Serialize};

/// One voter count's figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteRow {
    /// When the row was measured (an HTTP date, UTC); empty in files written before it.
    #[serde(default)]
    pub measured_at: String,
    /// Voters in the cluster.
    pub voters: usize,
    /// Concurrent clients, all writing to the leader.
    pub clients: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Acknowledged writes.
    pub writes: usize,
    /// Failed writes.
    pub errors: usize,
    /// Measured duration.
    pub seconds: f64,
    /// Acknowledged writes per second.
    pub writes_per_second: f64,
    /// Latency of acknowledged writes.
    pub latency: LatencySummary,
    /// Writes/s of every round, in the order run, when the row is the median of several
    /// (each round a fresh cluster); empty for a single run and in files written before.
    #[serde(default)]
    pub rounds_per_second: Vec<f64>,
}

/// Start `voters` nodes, wait for a leader, drive `clients` QUORUM writers for `duration`,
/// shut the nodes down.
///
/// # Panics
/// When the cluster cannot start or elect a leader (nothing to measure then).
pub async fn measure_writes(
    voters: usize,
    clients: usize,
    value_bytes: usize,
    duration: Duration,
) -> WriteRow {
    let dirs: Vec<tempfile::TempDir> = (0..voters)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes = start_loopback_cluster(&dirs, Kv::default).await;
    let leader = wait_for_leader(&nodes).await;
    // One write first, so the measured window starts with a committed leader.
    let warmup = nodes[leader]
        .client()
        .write(
            Put(0, vec![0; value_bytes]),
            Consistency::Quorum,
            Duration::from_secs(5),
        )
        .await;
    if let Err(error) = warmup {
        eprintln!("warning: {voters} voters: the warm-up write failed: {error:?}");
    }
    let mut load = run_write_load(&nodes[leader], clients, value_bytes, duration).await;
    let (seconds, errors) = (load.seconds, load.errors);
    let latencies_us = &mut load.latencies_us;
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
    let writes = latencies_us.len();
    WriteRow {
        measured_at: httpdate::fmt_http_date(std::time::SystemTime::now()),
        voters,
        clients,
        value_bytes,
        writes,
        errors,
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: LatencySummary::from_micros(latencies_us),
        rounds_per_second: Vec::new(),
    }
}
