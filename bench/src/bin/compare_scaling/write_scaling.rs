//! QUORUM write throughput of a loopback cluster of `voters` real nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_bench::{Kv, LatencySummary, Put, start_loopback_cluster, wait_for_leader};
use ha_core::Consistency;
use serde::Serialize;

/// One voter count's figures.
#[derive(Debug, Serialize)]
pub struct WriteRow {
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
    let value = Arc::new(vec![0x5a_u8; value_bytes]);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let client = nodes[leader].client();
        let value = Arc::clone(&value);
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0usize;
            let mut key = (client_index as u64 + 1) * 1_000_000_000;
            while Instant::now() < deadline {
                key += 1;
                let begun = Instant::now();
                let result = client
                    .write(
                        Put(key, value.as_ref().clone()),
                        Consistency::Quorum,
                        Duration::from_secs(5),
                    )
                    .await;
                match result {
                    Ok(_) => latencies_us
                        .push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(_) => errors += 1,
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((mut samples, failed)) => {
                latencies_us.append(&mut samples);
                errors += failed;
            }
            Err(error) => eprintln!("warning: a client task failed: {error}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
    let writes = latencies_us.len();
    WriteRow {
        voters,
        clients,
        value_bytes,
        writes,
        errors,
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: LatencySummary::from_micros(&mut latencies_us),
    }
}
