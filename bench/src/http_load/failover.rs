//! Failover: a writer every 5 ms with retries against a member that is not the leader;
//! SIGKILL the leader; the window from the kill to the first successful write started after
//! it, the failed attempts, and a read-back of every acknowledged write. The caller starts the
//! cluster ([`FailoverCluster`]), so one method measures every configuration compared.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::target::Target;
use super::writes::value_128;
use crate::peers::{BotCluster, EtcdCluster, PeerError};

/// Pause between two writes, and between a failed attempt and its retry.
const WRITE_INTERVAL: Duration = Duration::from_millis(5);
/// Writes before the kill.
const BEFORE_KILL: Duration = Duration::from_secs(1);
/// Writes after the first success that follows the kill.
const AFTER_RECOVERY: Duration = Duration::from_millis(500);
/// Most time from the kill to a successful write before the trial is declared failed.
pub const RECOVERY_MAX: Duration = Duration::from_secs(30);
/// Most writes the writer starts in one trial (40 s at one per 5 ms).
const WRITES_MAX: u64 = 8_000;
/// Most attempts of one write.
const ATTEMPTS_PER_WRITE_MAX: u32 = 1_000;
/// Most time to wait for a fresh cluster's leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// One write attempt, times in ms relative to the kill (negative before it).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Attempt {
    /// The write's sequence number (retries share it).
    pub seq: u64,
    /// When the attempt started.
    pub start_ms: f64,
    /// How long it took (until success, error or timeout).
    pub latency_ms: f64,
    /// Whether it was acknowledged.
    pub ok: bool,
}

/// One trial's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    /// From the kill to the end of the first acknowledged write started after the kill.
    pub window_ms: f64,
    /// Attempts that failed and ended after the kill.
    pub failed_attempts: u64,
    /// Distinct writes with at least one failed attempt ending after the kill.
    pub failed_writes: u64,
    /// Acknowledged writes in the trial.
    pub acknowledged: u64,
    /// Acknowledged writes not found on the new leader afterwards.
    pub lost: u64,
    /// ha only: the new leader's own measure of the leaderless time (`leaderless_ms` of the
    /// last entry of `GET /v1/failover/history`), to tell election time from the time the
    /// HTTP write path takes to resume.
    pub leaderless_ms: Option<f64>,
}

/// A fresh cluster of either system, started by the caller (at whatever settings it compares)
/// and handed to [`trial`], which kills its leader.
#[derive(Debug)]
pub enum FailoverCluster {
    /// `bot` nodes; the targets carry the cluster's scheme, CA and token.
    Ha(BotCluster),
    /// etcd members.
    Etcd(EtcdCluster),
}

impl FailoverCluster {
    async fn wait_for_leader(&self) -> Result<usize, PeerError> {
        match self {
            FailoverCluster::Ha(cluster) => {
                let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
                cluster.wait_until_healthy(LEADER_TIMEOUT).await?;
                Ok(leader)
            }
            FailoverCluster::Etcd(cluster) => cluster.wait_for_leader(LEADER_TIMEOUT).await,
        }
    }

    fn target(&self, index: usize) -> Target {
        match self {
            FailoverCluster::Ha(cluster) => cluster.target(index),
            FailoverCluster::Etcd(cluster) => cluster.target(index),
        }
    }

    fn kill(&mut self, index: usize) -> Result<(), PeerError> {
        match self {
            FailoverCluster::Ha(cluster) => cluster.kill(index),
            FailoverCluster::Etcd(cluster) => cluster.kill(index),
        }
    }
}

/// Run one trial on `cluster` (fresh, just started; `name` labels errors): wait for its
/// leader, write at another member, SIGKILL the leader, measure. Returns the trial's figures
/// and every attempt. The cluster is dropped (every process killed) on return.
///
/// # Errors
/// No leader in time, a failed warm-up write, no acknowledged write within 30 s of the kill,
/// or a failed read-back, as text.
pub async fn trial(
    mut cluster: FailoverCluster,
    name: &str,
    attempt_timeout: Duration,
) -> Result<(Trial, Vec<Attempt>), String> {
    let leader = cluster
        .wait_for_leader()
        .await
        .map_err(|error| format!("{}: {error}", name))?;
    let writer_index = (leader + 1) % 3;
    let target = cluster.target(writer_index);
    let client = target.client(attempt_timeout)?;
    let value = value_128();
    // Warm the connection so the first measured write does not pay for it.
    target
        .put(&client, "fo/warm", &value)
        .await
        .map_err(|error| format!("{} warm-up: {error}", name))?;

    let origin = Instant::now();
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
    let acknowledged: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // A new write starts every 5 ms whether or not earlier ones have finished, so a write
    // stuck on the dead leader does not delay the next: the window is then measured to 5 ms,
    // not to the attempt time limit. Each write is retried every 5 ms until acknowledged.
    let writer = {
        let attempts = Arc::clone(&attempts);
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        let target = target.clone();
        let value = value.clone();
        tokio::spawn(async move {
            let mut writes = tokio::task::JoinSet::new();
            let mut next_write = Instant::now();
            for seq in 0..WRITES_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let attempts = Arc::clone(&attempts);
                let acknowledged = Arc::clone(&acknowledged);
                let stop = Arc::clone(&stop);
                let target = target.clone();
                let value = value.clone();
                let client = client.clone();
                writes.spawn(async move {
                    for _attempt in 0..ATTEMPTS_PER_WRITE_MAX {
                        let begun = Instant::now();
                        let ok = target
                            .put(&client, &format!("fo/{seq}"), &value)
                            .await
                            .is_ok();
                        let attempt = Attempt {
                            seq,
                            start_ms: (begun - origin).as_secs_f64() * 1000.0,
                            latency_ms: begun.elapsed().as_secs_f64() * 1000.0,
                            ok,
                        };
                        if let Ok(mut attempts) = attempts.lock() {
                            attempts.push(attempt);
                        }
                        if ok {
                            if let Ok(mut acknowledged) = acknowledged.lock() {
                                acknowledged.push(seq);
                            }
                            return;
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::time::sleep(WRITE_INTERVAL).await;
                    }
                });
                next_write += WRITE_INTERVAL;
                tokio::time::sleep_until(next_write.into()).await;
            }
            while writes.join_next().await.is_some() {}
        })
    };

    tokio::time::sleep(BEFORE_KILL).await;
    let kill_ms = origin.elapsed().as_secs_f64() * 1000.0;
    let killed = cluster.kill(leader);
    let recovered_by = Instant::now() + RECOVERY_MAX;
    let mut recovered = false;
    while killed.is_ok() && Instant::now() < recovered_by {
        let seen = attempts
            .lock()
            .map(|attempts| attempts.iter().any(|a| a.ok && a.start_ms >= kill_ms))
            .unwrap_or(false);
        if seen {
            recovered = true;
            tokio::time::sleep(AFTER_RECOVERY).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.map_err(|error| error.to_string())?;
    let acknowledged = acknowledged
        .lock()
        .map_err(|_| "acknowledged log poisoned".to_string())?
        .clone();
    killed.map_err(|error| error.to_string())?;
    if !recovered {
        return Err(format!(
            "{}: no acknowledged write within {RECOVERY_MAX:?} of the kill",
            name
        ));
    }
    let mut attempts = attempts
        .lock()
        .map_err(|_| "attempt log poisoned".to_string())?
        .clone();
    for attempt in &mut attempts {
        attempt.start_ms -= kill_ms;
    }
    attempts.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    let window_ms = attempts
        .iter()
        .filter(|a| a.ok && a.start_ms >= 0.0)
        .map(|a| a.start_ms + a.latency_ms)
        .fold(f64::INFINITY, f64::min);
    let mut failed_seqs: Vec<u64> = attempts
        .iter()
        .filter(|a| !a.ok && a.start_ms + a.latency_ms >= 0.0)
        .map(|a| a.seq)
        .collect();
    failed_seqs.dedup();
    failed_seqs.sort_unstable();
    failed_seqs.dedup();
    let failed_writes = failed_seqs.len() as u64;
    let failed_attempts = attempts
        .iter()
        .filter(|a| !a.ok && a.start_ms + a.latency_ms >= 0.0)
        .count() as u64;

    // Read back every acknowledged write on the new leader, linearizably.
    let new_leader = cluster
        .wait_for_leader()
        .await
        .map_err(|error| format!("{} after the kill: {error}", name))?;
    let reader = cluster.target(new_leader);
    let read_client = reader.client(Duration::from_secs(5))?;
    let mut lost = 0;
    for seq in &acknowledged {
        if !reader
            .holds(&read_client, &format!("fo/{seq}"), &value)
            .await
            .map_err(|error| format!("{} read-back: {error}", name))?
        {
            lost += 1;
        }
    }
    let leaderless_ms = match cluster {
        FailoverCluster::Ha(_) => ha_leaderless_ms(&read_client, &reader).await,
        FailoverCluster::Etcd(_) => None,
    };
    Ok((
        Trial {
            window_ms,
            failed_attempts,
            failed_writes,
            acknowledged: acknowledged.len() as u64,
            lost,
            leaderless_ms,
        },
        attempts,
    ))
}

/// The `leaderless_ms` of the last entry of ha's `GET /v1/failover/history`, if readable.
async fn ha_leaderless_ms(client: &reqwest::Client, target: &Target) -> Option<f64> {
    let request = client.get(format!("{}/v1/failover/history", target.base));
    let request = match &target.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.ok()?;
    let history: serde_json::Value = response.json().await.ok()?;
    history.as_array()?.last()?.get("leaderless_ms")?.as_f64()
}
