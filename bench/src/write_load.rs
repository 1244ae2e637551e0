//! The QUORUM write load both `replicate_bench` and `compare_scaling` drive: `clients`
//! concurrent sessions on the leader, each writing its own keys until a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::Consistency;
use ha_replicate::driver::ReplicaNode;

use crate::kv_machine::{Kv, Put};

/// What a load run measured: per-write latencies of acknowledged writes, failures, seconds.
pub struct WriteLoad {
    /// Latency of every acknowledged write, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Writes that failed (timeout or error).
    pub errors: usize,
    /// How long the run took.
    pub seconds: f64,
}

/// Run `clients` writers of `value_bytes`-byte values against `leader` for `duration`. Each
/// writer has its own session and key range; every loop ends at the deadline.
pub async fn run_write_load(
    leader: &ReplicaNode<Kv>,
    clients: usize,
    value_bytes: usize,
    duration: Duration,
) -> WriteLoad {
    run_write_load_on_sessions(leader, clients, clients, value_bytes, duration).await
}

/// [`run_write_load`] with the writers sharing `sessions` client sessions (writer `i` on
/// session `i % sessions`): with fewer sessions than writers, each session has several
/// writes in flight at once (pipelined sessions, issue 17).
pub async fn run_write_load_on_sessions(
    leader: &ReplicaNode<Kv>,
    clients: usize,
    sessions: usize,
    value_bytes: usize,
    duration: Duration,
) -> WriteLoad {
    let value = Arc::new(vec![0x5a_u8; value_bytes]);
    let started = Instant::now();
    let deadline = started + duration;
    let shared: Vec<_> = (0..sessions.clamp(1, clients.max(1)))
        .map(|_| Arc::new(leader.client()))
        .collect();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let client = Arc::clone(&shared[client_index % shared.len()]);
        let value = Arc::clone(&value);
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0usize;
            let mut key = (client_index as u64 + 1) * 1_000_000_000;
            while Instant::now() < deadline {
                key += 1;
                let begun = Instant::now();
                let put = Put(key, value.as_ref().clone());
                match client
                    .write(put, Consistency::Quorum, Duration::from_secs(5))
                    .await
                {
                    Ok(_) => latencies_us
                        .push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(_) => errors += 1,
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut load = WriteLoad {
        latencies_us: Vec::new(),
        errors: 0,
        seconds: 0.0,
    };
    for task in tasks {
        match task.await {
            Ok((mut samples, failed)) => {
                load.latencies_us.append(&mut samples);
                load.errors += failed;
            }
            Err(error) => eprintln!("warning: a client task failed: {error}"),
        }
    }
    load.seconds = started.elapsed().as_secs_f64();
    load
}
