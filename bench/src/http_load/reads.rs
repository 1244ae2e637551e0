//! Sequential local reads: one client reading one key at the leader for a bounded duration,
//! so a report can set the part of a write's latency that is neither replication nor fsync
//! (each system's HTTP path and its hand-over to its state) beside the write itself.

use std::time::{Duration, Instant};

use crate::LatencySummary;
use serde::Serialize;

use super::target::Target;
use super::writes::value_128;

/// Most reads in one run, whatever the duration.
const READS_MAX: u64 = 2_000_000;

/// Per-request time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One sequential read run's figures (the count of answered reads is the latency's).
#[derive(Clone, Debug, Serialize)]
pub struct ReadRun {
    /// Measured seconds.
    pub seconds: f64,
    /// Latency of answered reads.
    pub latency: LatencySummary,
}

/// Write `key` once (with the 128-byte value of the write runs), then read it with
/// [`Target::local_read`] from one keep-alive connection for `duration`. The write and a
/// first read open the connection before the clock starts.
///
/// # Errors
/// A failed request (a read that fails is not a figure to report), as text.
pub async fn sequential(target: &Target, duration: Duration, key: &str) -> Result<ReadRun, String> {
    let name = target.system.name();
    let client = target.client(REQUEST_TIMEOUT)?;
    target
        .put(&client, key, &value_128())
        .await
        .map_err(|error| format!("{name} put before the reads: {error}"))?;
    target
        .local_read(&client, key)
        .await
        .map_err(|error| format!("{name} first local read: {error}"))?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut latencies_us = Vec::new();
    for _ in 0..READS_MAX {
        if Instant::now() >= deadline {
            break;
        }
        let begun = Instant::now();
        target
            .local_read(&client, key)
            .await
            .map_err(|error| format!("{name} local read: {error}"))?;
        latencies_us.push(begun.elapsed().as_micros() as u64);
    }
    Ok(ReadRun {
        seconds: started.elapsed().as_secs_f64(),
        latency: LatencySummary::from_micros(&mut latencies_us),
    })
}
