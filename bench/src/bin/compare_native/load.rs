//! The one load generator of `compare_native`: `clients` closed-loop workers, each with its own
//! client (its own session or connection), each writing 128-byte values under its own keys
//! until a deadline. It drives ha's native client and etcd's gRPC client alike.

use std::time::{Duration, Instant};

use ha_bench::LatencySummary;
use serde::Serialize;

/// Most writes one worker issues in one run, whatever the duration.
const WRITES_PER_WORKER_MAX: u64 = 2_000_000;

/// Bytes in every value written.
pub const VALUE_BYTES: usize = 128;

/// One client of a system under test: it puts one key at a time.
pub trait PutWorker: Send + 'static {
    /// Write `value` at `key` and wait for the acknowledgement. `Err` carries a short reason.
    fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// One load run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct LoadRun {
    /// Concurrent clients.
    pub clients: usize,
    /// Acknowledged writes.
    pub writes: u64,
    /// Failed writes.
    pub errors: u64,
    /// The first failure's reason, if any.
    pub first_error: Option<String>,
    /// Measured seconds.
    pub seconds: f64,
    /// Acknowledged writes per second.
    pub writes_per_second: f64,
    /// Latency of acknowledged writes.
    pub latency: LatencySummary,
    /// CPU seconds (user + system) of every process involved: the cluster's members and this
    /// process (the load generator, and for ha the leader that runs inside it).
    pub cpu_seconds: f64,
    /// `cpu_seconds` in milliseconds per 1,000 acknowledged writes.
    pub cpu_ms_per_1000_writes: f64,
}

/// CPU time of `pids` plus this process, in seconds.
fn cpu_sum(pids: &[u32]) -> f64 {
    pids.iter()
        .copied()
        .chain(std::iter::once(std::process::id()))
        .filter_map(|pid| ha_bench::peers::cpu_time(pid).ok())
        .map(|time| time.as_secs_f64())
        .sum()
}

/// The value every write carries.
pub fn value() -> Vec<u8> {
    vec![b'v'; VALUE_BYTES]
}

/// Drive `workers` (already connected and warmed up: connection setup is not measured) for
/// `duration`; keys are `<prefix>/<worker>/<sequence>`. `pids` are the cluster's processes
/// other than this one, whose CPU time is counted with this process's.
pub async fn run<W: PutWorker>(
    workers: Vec<W>,
    duration: Duration,
    prefix: &str,
    pids: &[u32],
) -> LoadRun {
    let clients = workers.len();
    let cpu_before = cpu_sum(pids);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut worker) in workers.into_iter().enumerate() {
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let value = value();
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            for sequence in 0..WRITES_PER_WORKER_MAX {
                if Instant::now() >= deadline {
                    break;
                }
                let key = format!("{prefix}/{index}/{sequence}");
                let begun = Instant::now();
                match worker.put(key, value.clone()).await {
                    Ok(()) => latencies_us
                        .push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(reason) => {
                        errors += 1;
                        first_error.get_or_insert(reason);
                    }
                }
            }
            (latencies_us, errors, first_error)
        });
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((worker_latencies, worker_errors, worker_first_error)) => {
                latencies_us.extend(worker_latencies);
                errors += worker_errors;
                if first_error.is_none() {
                    first_error = worker_first_error;
                }
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(format!("worker task failed: {error}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_sum(pids) - cpu_before;
    let writes = latencies_us.len() as u64;
    LoadRun {
        clients,
        writes,
        errors,
        first_error,
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: LatencySummary::from_micros(&mut latencies_us),
        cpu_seconds,
        cpu_ms_per_1000_writes: if writes == 0 {
            0.0
        } else {
            cpu_seconds * 1000.0 / (writes as f64 / 1000.0)
        },
    }
}
