//! Lock latency and hand-off rate of a 3-voter `ha-lock` cluster (`WithLocks<()>` on
//! `ha-replicate`) on loopback TCP, each node with its own on-disk WAL (fsync on, group commit).
//!
//! `cargo run --release -p ha-bench --bin lock_bench -- --duration-secs 5`
//!
//! - Uncontended: one client, one lock. Latency of grant lease + `Acquire` + `Release` (three
//!   QUORUM writes), and of `Acquire` + `Release` under a lease granted beforehand (two).
//!   Then issue 17's lock cycle: the four writes a lock client's acquire and guard release made
//!   before it (grant, acquire, release, revoke), the two it makes now (`GrantAndAcquire`,
//!   `ReleaseAndRevoke`), and `Locks::acquire` + `LockGuard::release` themselves.
//! - Contended: N clients, each with its own lease, compete for one lock: `Acquire` (wait in
//!   line), poll the lock with QUORUM reads until granted, `Release`, repeat. Reports hand-offs
//!   per second and the time from `Acquire` to knowing the lock is held.
//!
//! The commands go through `ReplicaClient` as raw `Command::Lock` writes (no handles), so each
//! figure is the cost of the log writes and reads themselves. Leases are granted with a TTL
//! far above the run's length (nothing expires them here: this benchmark runs no expiry
//! tracker). Every loop is bounded by the duration; the nodes run in this process on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ha_bench::{LatencySummary, MachineDescription, start_loopback_cluster, wait_for_leader};
use ha_core::Consistency;
use ha_lock::{
    Command, FencingToken, LeaseId, LockCommand, LockQuery, LockQueryResponse, LockResponse, Query,
    QueryResponse, Response, Session, SessionId, WithLocks,
};
use ha_replicate::driver::{ReplicaClient, ReplicaNode};
use ha_replicate::replica::ClientError;
use serde::Serialize;

/// The replicated state: the lock table alone.
type Machine = WithLocks<()>;

/// Each request's deadline (the client retries within it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    about = "Lock acquire/release latency and contended hand-off rate on a loopback ha-lock cluster"
)]
struct Options {
    /// Seconds of each uncontended measurement and of each contended run.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Competing clients per contended run (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "2,8,32")]
    contenders: Vec<usize>,
    /// How long a waiting client sleeps between two reads of the lock, in milliseconds.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Voters in the cluster.
    #[arg(long, default_value_t = 3)]
    voters: usize,
    /// TTL of the leases, in milliseconds (far above the run: nothing renews them).
    #[arg(long, default_value_t = 600_000)]
    ttl_ms: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/lock_bench.json")]
    json: std::path::PathBuf,
}

/// Uncontended figures.
#[derive(Debug, Serialize)]
struct Uncontended {
    /// Grant lease + acquire + release, per cycle.
    grant_acquire_release: LatencySummary,
    /// Acquire + release under a lease granted beforehand, per cycle.
    acquire_release: LatencySummary,
    /// Grant + acquire + release + revoke: a lock client's cycle before issue 17 (four writes).
    grant_acquire_release_revoke: LatencySummary,
    /// `GrantAndAcquire` + `ReleaseAndRevoke`: the same cycle in two writes (issue 17).
    cycle_in_two_writes: LatencySummary,
    /// `Locks::acquire` + `LockGuard::release` (the handles, which use the two writes).
    lock_client_cycle: LatencySummary,
}

/// One contended run's figures.
#[derive(Debug, Serialize)]
struct Contended {
    contenders: usize,
    hand_offs: u64,
    seconds: f64,
    hand_offs_per_second: f64,
    /// From sending `Acquire` to knowing the lock is held.
    acquire_wait: LatencySummary,
    /// Lock reads made while waiting.
    polls: u64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    machine: MachineDescription,
    voters: usize,
    fsync: &'static str,
    poll_ms: u64,
    uncontended: Uncontended,
    contended: Vec<Contended>,
}

/// A QUORUM lock write; the lock table's answer.
async fn write(
    client: &ReplicaClient<Machine>,
    command: LockCommand,
) -> Result<LockResponse, ClientError> {
    let result = client
        .write(Command::Lock(command), Consistency::Quorum, REQUEST_TIMEOUT)
        .await?;
    match result.response {
        Some(Response::Lock(response)) => Ok(response),
        other => Err(ClientError::InvalidQuery(format!(
            "not a lock response: {other:?}"
        ))),
    }
}

/// A linearizable read of one lock's state.
async fn read_lock(
    client: &ReplicaClient<Machine>,
    name: &str,
) -> Result<LockQueryResponse, ClientError> {
    let query = Query::Lock(LockQuery::Lock {
        name: name.to_string(),
    });
    match client
        .read(query, Consistency::Quorum, REQUEST_TIMEOUT)
        .await?
    {
        QueryResponse::Lock(response) => Ok(response),
        QueryResponse::Host(()) => Err(ClientError::InvalidQuery("not a lock answer".into())),
    }
}

async fn grant(
    client: &ReplicaClient<Machine>,
    session: SessionId,
    ttl_ms: u64,
) -> Result<LeaseId, ClientError> {
    match write(client, LockCommand::LeaseGrant { ttl_ms, session }).await? {
        LockResponse::LeaseGranted { lease, .. } => Ok(lease),
        other => Err(ClientError::InvalidQuery(format!("grant: {other:?}"))),
    }
}

/// Acquire and release `name` once, uncontended.
async fn acquire_release(
    client: &ReplicaClient<Machine>,
    name: &str,
    session: SessionId,
    lease: LeaseId,
) -> Result<(), ClientError> {
    let acquire = LockCommand::Acquire {
        name: name.to_string(),
        session,
        lease,
        wait: true,
    };
    let token = match write(client, acquire).await? {
        LockResponse::Granted { token } => token,
        other => return Err(ClientError::InvalidQuery(format!("acquire: {other:?}"))),
    };
    let release = LockCommand::Release {
        name: name.to_string(),
        token,
    };
    match write(client, release).await? {
        LockResponse::Released => Ok(()),
        other => Err(ClientError::InvalidQuery(format!("release: {other:?}"))),
    }
}

fn micros_since(begun: Instant) -> u64 {
    u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn uncontended(
    client: &ReplicaClient<Machine>,
    locks: &Session<()>,
    options: &Options,
) -> Uncontended {
    let duration = Duration::from_secs(options.duration_secs);
    let session = SessionId(1);
    let mut with_grant_us = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let begun = Instant::now();
        let lease = grant(client, session, options.ttl_ms)
            .await
            .expect("grant a lease");
        acquire_release(client, "solo", session, lease)
            .await
            .expect("acquire and release");
        with_grant_us.push(micros_since(begun));
        // Not timed: keep the lease table small.
        write(client, LockCommand::LeaseRevoke { lease })
            .await
            .expect("revoke");
    }
    let lease = grant(client, session, options.ttl_ms)
        .await
        .expect("grant a lease");
    let mut pre_granted_us = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let begun = Instant::now();
        acquire_release(client, "solo", session, lease)
            .await
            .expect("acquire and release");
        pre_granted_us.push(micros_since(begun));
    }
    let _ = write(client, LockCommand::LeaseRevoke { lease }).await;
    let mut four_writes_us = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let begun = Instant::now();
        let lease = grant(client, session, options.ttl_ms)
            .await
            .expect("grant a lease");
        acquire_release(client, "solo", session, lease)
            .await
            .expect("acquire and release");
        write(client, LockCommand::LeaseRevoke { lease })
            .await
            .expect("revoke");
        four_writes_us.push(micros_since(begun));
    }
    let mut two_writes_us = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let begun = Instant::now();
        cycle_in_two_writes(client, "solo", session, options.ttl_ms)
            .await
            .expect("a lock cycle");
        two_writes_us.push(micros_since(begun));
    }
    let ttl = Duration::from_millis(options.ttl_ms);
    let mut handles_us = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let begun = Instant::now();
        let guard = locks
            .locks()
            .acquire("solo", ttl, REQUEST_TIMEOUT)
            .await
            .expect("acquire through Locks");
        guard.release().await.expect("release through the guard");
        handles_us.push(micros_since(begun));
    }
    Uncontended {
        grant_acquire_release: LatencySummary::from_micros(&mut with_grant_us),
        acquire_release: LatencySummary::from_micros(&mut pre_granted_us),
        grant_acquire_release_revoke: LatencySummary::from_micros(&mut four_writes_us),
        cycle_in_two_writes: LatencySummary::from_micros(&mut two_writes_us),
        lock_client_cycle: LatencySummary::from_micros(&mut handles_us),
    }
}

/// A lock cycle in two writes: a lease and the lock in one, the release and the lease's end
/// in the other.
async fn cycle_in_two_writes(
    client: &ReplicaClient<Machine>,
    name: &str,
    session: SessionId,
    ttl_ms: u64,
) -> Result<(), ClientError> {
    let acquire = LockCommand::GrantAndAcquire {
        name: name.to_string(),
        session,
        ttl_ms,
        wait: true,
        holder_digest: None,
    };
    let token = match write(client, acquire).await? {
        LockResponse::GrantedWithLease { token, .. } => token,
        other => return Err(ClientError::InvalidQuery(format!("cycle: {other:?}"))),
    };
    let release = LockCommand::ReleaseAndRevoke {
        name: name.to_string(),
        token,
        holder_key: None,
    };
    match write(client, release).await? {
        LockResponse::LeaseEnded { .. } => Ok(()),
        other => Err(ClientError::InvalidQuery(format!("release: {other:?}"))),
    }
}

/// What one contender did.
#[derive(Default)]
struct ContenderFigures {
    hand_offs: u64,
    waits_us: Vec<u64>,
    polls: u64,
    errors: u64,
}

/// Wait in line until the lock is ours (by polling), or until `deadline`, when the wait is
/// cancelled. Returns the token if held.
async fn wait_for_grant(
    client: &ReplicaClient<Machine>,
    name: &str,
    session: SessionId,
    lease: LeaseId,
    deadline: Instant,
    poll: Duration,
    figures: &mut ContenderFigures,
) -> Result<Option<FencingToken>, ClientError> {
    loop {
        figures.polls += 1;
        if let LockQueryResponse::Lock(Some(state)) = read_lock(client, name).await?
            && state.holder == session
            && state.lease == lease
        {
            return Ok(Some(state.token));
        }
        if Instant::now() >= deadline {
            let cancel = LockCommand::CancelWait {
                name: name.to_string(),
                session,
            };
            return match write(client, cancel).await? {
                LockResponse::Cancelled => Ok(None),
                // Granted meanwhile: read the token, so the caller releases it.
                _ => match read_lock(client, name).await? {
                    LockQueryResponse::Lock(Some(state))
                        if state.holder == session && state.lease == lease =>
                    {
                        Ok(Some(state.token))
                    }
                    _ => Ok(None),
                },
            };
        }
        tokio::time::sleep(poll).await;
    }
}

async fn contender(
    client: ReplicaClient<Machine>,
    session: SessionId,
    lease: LeaseId,
    deadline: Instant,
    poll: Duration,
    hand_offs_total: Arc<AtomicU64>,
) -> ContenderFigures {
    let name = "contended";
    let mut figures = ContenderFigures::default();
    while Instant::now() < deadline {
        let begun = Instant::now();
        let acquire = LockCommand::Acquire {
            name: name.to_string(),
            session,
            lease,
            wait: true,
        };
        let token = match write(&client, acquire).await {
            Ok(LockResponse::Granted { token }) => Some(token),
            Ok(LockResponse::Queued { .. }) => {
                match wait_for_grant(&client, name, session, lease, deadline, poll, &mut figures)
                    .await
                {
                    Ok(token) => token,
                    Err(_) => {
                        figures.errors += 1;
                        None
                    }
                }
            }
            Ok(_) | Err(_) => {
                figures.errors += 1;
                None
            }
        };
        let Some(token) = token else {
            continue;
        };
        figures.waits_us.push(micros_since(begun));
        figures.hand_offs += 1;
        hand_offs_total.fetch_add(1, Ordering::Relaxed);
        let release = LockCommand::Release {
            name: name.to_string(),
            token,
        };
        if !matches!(write(&client, release).await, Ok(LockResponse::Released)) {
            figures.errors += 1;
        }
    }
    figures
}

async fn contended(
    nodes: &[ReplicaNode<Machine>],
    leader: usize,
    contenders: usize,
    options: &Options,
) -> Contended {
    let mut leased = Vec::new();
    for index in 0..contenders {
        let client = nodes[leader].client();
        let session = SessionId(1_000 + index as u64);
        let lease = grant(&client, session, options.ttl_ms)
            .await
            .expect("grant a lease");
        leased.push((client, session, lease));
    }
    let hand_offs_total = Arc::new(AtomicU64::new(0));
    let poll = Duration::from_millis(options.poll_ms);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.duration_secs);
    let mut tasks = Vec::new();
    let mut leases = Vec::new();
    for (client, session, lease) in leased {
        leases.push(lease);
        tasks.push(tokio::spawn(contender(
            client,
            session,
            lease,
            deadline,
            poll,
            Arc::clone(&hand_offs_total),
        )));
    }
    let mut waits_us = Vec::new();
    let (mut polls, mut errors) = (0, 0);
    for task in tasks {
        let mut figures = task.await.expect("contender task");
        waits_us.append(&mut figures.waits_us);
        polls += figures.polls;
        errors += figures.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let hand_offs = hand_offs_total.load(Ordering::Relaxed);
    let client = nodes[leader].client();
    for lease in leases {
        let _ = write(&client, LockCommand::LeaseRevoke { lease }).await;
    }
    Contended {
        contenders,
        hand_offs,
        seconds,
        hand_offs_per_second: hand_offs as f64 / seconds,
        acquire_wait: LatencySummary::from_micros(&mut waits_us),
        polls,
        errors,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options = Options::parse();
    let machine = MachineDescription::read();
    println!("machine: {machine}");
    println!(
        "cluster: {} voters on loopback TCP, WAL with fsync (group commit), WithLocks<()>, \
         QUORUM writes and reads at the leader",
        options.voters
    );
    let dirs: Vec<tempfile::TempDir> = (0..options.voters)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes = start_loopback_cluster(&dirs, || WithLocks::new(())).await;
    let leader = wait_for_leader(&nodes).await;
    let client = nodes[leader].client();
    let locks = Session::from_node(&nodes[leader]);
    let solo = uncontended(&client, &locks, &options).await;
    println!(
        "uncontended, one client ({} s each):",
        options.duration_secs
    );
    println!(
        "{:>28} {:>8} {:>10} {:>10} {:>10}",
        "", "cycles", "p50 us", "p99 us", "max us"
    );
    for (label, summary) in [
        ("grant + acquire + release", &solo.grant_acquire_release),
        ("acquire + release", &solo.acquire_release),
        (
            "grant+acq+rel+revoke (4)",
            &solo.grant_acquire_release_revoke,
        ),
        ("GrantAndAcquire+RelAndRevoke", &solo.cycle_in_two_writes),
        ("LockClient acquire+release", &solo.lock_client_cycle),
    ] {
        println!(
            "{label:>28} {:>8} {:>10} {:>10} {:>10}",
            summary.count, summary.p50_us, summary.p99_us, summary.max_us
        );
    }
    println!(
        "contended, one lock, polling every {} ms while queued ({} s each):",
        options.poll_ms, options.duration_secs
    );
    println!(
        "{:>11} {:>10} {:>12} {:>14} {:>14} {:>10} {:>8}",
        "contenders", "hand-offs", "hand-offs/s", "wait p50 us", "wait p99 us", "polls", "errors"
    );
    let mut runs = Vec::new();
    for contenders in options.contenders.clone() {
        let result = contended(&nodes, leader, contenders, &options).await;
        println!(
            "{:>11} {:>10} {:>12.0} {:>14} {:>14} {:>10} {:>8}",
            result.contenders,
            result.hand_offs,
            result.hand_offs_per_second,
            result.acquire_wait.p50_us,
            result.acquire_wait.p99_us,
            result.polls,
            result.errors
        );
        runs.push(result);
    }
    let report = Report {
        benchmark: "lock_acquire_release_and_hand_off",
        machine,
        voters: options.voters,
        fsync: "fdatasync per group commit",
        poll_ms: options.poll_ms,
        uncontended: solo,
        contended: runs,
    };
    if let Some(parent) = options.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match serde_json::to_string_pretty(&report) {
        Ok(json) => match std::fs::write(&options.json, json) {
            Ok(()) => println!("results: {}", options.json.display()),
            Err(error) => eprintln!("cannot write {}: {error}", options.json.display()),
        },
        Err(error) => eprintln!("cannot encode results: {error}"),
    }
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
}
