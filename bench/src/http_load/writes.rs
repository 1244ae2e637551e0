//! Write load: N concurrent clients, each a keep-alive connection, for a bounded duration.

use std::time::{Duration, Instant};

use crate::LatencySummary;
use serde::Serialize;

use super::target::Target;

/// Most writes one worker issues in one run, whatever the duration.
const WRITES_PER_WORKER_MAX: u64 = 2_000_000;

/// Per-request time limit in load runs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The 128-byte value every write carries.
pub fn value_128() -> String {
    "v".repeat(128)
}

/// One load run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct WriteRun {
    /// Concurrent clients.
    pub clients: usize,
    /// Acknowledged writes.
    pub writes: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failed request's error text (with its client count and time into the run),
    /// so a run with errors says what they were; `None` when every request succeeded.
    pub first_error: Option<String>,
    /// Measured seconds.
    pub seconds: f64,
    /// Acknowledged writes per second.
    pub writes_per_second: f64,
    /// Latency of acknowledged writes.
    pub latency: LatencySummary,
    /// CPU seconds (user + system) of all members during the run.
    pub cpu_seconds: f64,
    /// CPU milliseconds of all members per 1,000 acknowledged writes.
    pub cpu_ms_per_1000_writes: f64,
}

fn cpu_sum(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| crate::peers::cpu_time(*pid).ok())
        .map(|time| time.as_secs_f64())
        .sum()
}

/// Drive `target` with `clients` workers for `duration`; `pids` are the cluster's processes
/// whose CPU time is counted. Keys are `<prefix>/<worker>/<seq>`. Each worker opens its
/// keep-alive connection (TLS handshake included, on a secured target) with a warm-up write
/// before the clock starts.
///
/// # Errors
/// A failed warm-up write or a worker task that panicked, as text.
pub async fn run(
    target: &Target,
    clients: usize,
    duration: Duration,
    prefix: &str,
    pids: &[u32],
) -> Result<WriteRun, String> {
    let value = value_128();
    // Connect every worker first, so connection setup is not measured.
    let mut workers = Vec::with_capacity(clients);
    for worker in 0..clients {
        let client = target.client(REQUEST_TIMEOUT)?;
        target
            .put(&client, &format!("{prefix}/{worker}/warm"), &value)
            .await
            .map_err(|error| format!("{} warm-up put: {error}", target.system.name()))?;
        workers.push(client);
    }
    let cpu_before = cpu_sum(pids);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, client) in workers.into_iter().enumerate() {
        let target = target.clone();
        let value = value.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            let mut first_error: Option<(Duration, String)> = None;
            for seq in 0..WRITES_PER_WORKER_MAX {
                if Instant::now() >= deadline {
                    break;
                }
                let begun = Instant::now();
                match target
                    .put(&client, &format!("{prefix}/{worker}/{seq}"), &value)
                    .await
                {
                    Ok(()) => latencies_us.push(begun.elapsed().as_micros() as u64),
                    Err(error) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some((started.elapsed(), error.to_string()));
                        }
                    }
                }
            }
            (latencies_us, errors, first_error)
        });
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut first_error: Option<(Duration, String)> = None;
    while let Some(joined) = tasks.join_next().await {
        let (worker_latencies, worker_errors, worker_first) =
            joined.map_err(|error| error.to_string())?;
        latencies_us.extend(worker_latencies);
        errors += worker_errors;
        // The earliest across workers: later errors are often consequences of the first.
        if let Some(candidate) = worker_first
            && first_error.as_ref().is_none_or(|(at, _)| candidate.0 < *at)
        {
            first_error = Some(candidate);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_sum(pids) - cpu_before;
    let writes = latencies_us.len() as u64;
    Ok(WriteRun {
        clients,
        writes,
        errors,
        first_error: first_error.map(|(at, text)| {
            format!(
                "{clients} clients, {:.2} s into the run: {text}",
                at.as_secs_f64()
            )
        }),
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: LatencySummary::from_micros(&mut latencies_us),
        cpu_seconds,
        cpu_ms_per_1000_writes: if writes == 0 {
            0.0
        } else {
            cpu_seconds * 1000.0 / (writes as f64 / 1000.0)
        },
    })
}
