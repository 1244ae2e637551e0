//! Lock latency (uncontended acquire + release) and hand-off rate (8 clients, one lock).

use std::time::{Duration, Instant};

use ha_bench::LatencySummary;
use serde::Serialize;

use super::api::{System, Target, worker_client};

/// Per-request time limit for lock calls (a contended etcd lock call blocks until granted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a contended ha acquire waits for the lock (`wait_ms`).
const CONTENDED_WAIT_MS: u64 = 5_000;

/// Most acquisitions one contended worker makes, whatever the duration.
const ACQUIRES_PER_WORKER_MAX: u64 = 1_000_000;

/// Uncontended figures.
#[derive(Clone, Debug, Serialize)]
pub struct Uncontended {
    /// Acquire (with its lease grant) + release, end to end.
    pub acquire_release: LatencySummary,
    /// Failed iterations.
    pub errors: u64,
    /// etcd only: lock + unlock under one lease granted beforehand (not the headline: ha's
    /// acquire includes its lease grant).
    pub etcd_reused_lease: Option<LatencySummary>,
}

/// Contended figures.
#[derive(Clone, Debug, Serialize)]
pub struct Contended {
    /// Competing clients.
    pub clients: usize,
    /// Acquisitions (each followed by a release) completed.
    pub acquires: u64,
    /// Failed attempts (ha: not granted within the wait).
    pub errors: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Acquisitions per second.
    pub acquires_per_second: f64,
}

/// `iterations` sequential acquire + release cycles on one lock, nobody else competing.
pub async fn uncontended(target: &Target, iterations: u32) -> Result<Uncontended, String> {
    let client = worker_client(REQUEST_TIMEOUT)?;
    let name = "bench-uncontended";
    let mut latencies_us = Vec::with_capacity(iterations as usize);
    let mut errors = 0;
    for _ in 0..iterations {
        let begun = Instant::now();
        let cycle = async {
            let handle = target.lock(&client, name, 0).await?;
            target.unlock(&client, name, &handle).await
        };
        match cycle.await {
            Ok(()) => latencies_us.push(begun.elapsed().as_micros() as u64),
            Err(_) => errors += 1,
        }
    }
    let etcd_reused_lease = if target.system == System::Etcd {
        let lease = target.etcd_grant(&client).await?;
        let mut reused_us = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let begun = Instant::now();
            let handle = target.etcd_lock_with_lease(&client, name, &lease).await?;
            target.unlock(&client, name, &handle).await?;
            reused_us.push(begun.elapsed().as_micros() as u64);
        }
        Some(LatencySummary::from_micros(&mut reused_us))
    } else {
        None
    };
    Ok(Uncontended {
        acquire_release: LatencySummary::from_micros(&mut latencies_us),
        errors,
        etcd_reused_lease,
    })
}

/// `clients` workers competing for one lock for `duration`: acquire (waiting), release, again.
pub async fn contended(
    target: &Target,
    clients: usize,
    duration: Duration,
) -> Result<Contended, String> {
    let name = "bench-contended";
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let client = worker_client(REQUEST_TIMEOUT)?;
        let target = target.clone();
        tasks.spawn(async move {
            let mut acquires = 0u64;
            let mut errors = 0u64;
            for _ in 0..ACQUIRES_PER_WORKER_MAX {
                if Instant::now() >= deadline {
                    break;
                }
                match target.lock(&client, name, CONTENDED_WAIT_MS).await {
                    Ok(handle) => {
                        if target.unlock(&client, name, &handle).await.is_ok()
                            && Instant::now() <= deadline
                        {
                            acquires += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (acquires, errors)
        });
    }
    let mut acquires = 0;
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (worker_acquires, worker_errors) = joined.map_err(|error| error.to_string())?;
        acquires += worker_acquires;
        errors += worker_errors;
    }
    let seconds = duration.as_secs_f64();
    Ok(Contended {
        clients,
        acquires,
        errors,
        seconds,
        acquires_per_second: acquires as f64 / seconds,
    })
}
