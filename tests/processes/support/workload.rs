//! Client threads that keep using a cluster while faults are injected, and the checks of what
//! they saw: the KV history is linearizable (per key, reads included) and no two clients held
//! the lock at once, with fencing tokens growing over time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ha_linearizability::{Budget, CheckResult, Operation, Recorder, RegisterModel, check};
use ha_tests::invariants::check_lock_holders_exclusive;
use ha_tests::lock_sim::{FencedResource, HolderInterval};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::kv_history::{KvClient, KvCounts};
use super::lock_history::{LockClient, LockCounts};
use super::scenario::{Minimums, at_least};

/// The most operations one client thread performs (a bound on every loop).
const OPERATIONS_PER_CLIENT_MAX: usize = 20_000;
/// A KV request gives up after this (shorter than a node's 5 s request timeout, so that
/// some answers are lost while the node still works on them: unknown outcomes are tested).
const KV_TIMEOUT: Duration = Duration::from_secs(3);
/// The lock the lock clients contend for.
const LOCK: &str = "chaos";

/// How many clients of each kind, on how many keys.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadOptions {
    /// KV clients (reads, writes, CAS).
    pub kv_clients: usize,
    /// Lock clients contending for one lock.
    pub lock_clients: usize,
    /// Keys the KV clients use.
    pub keys: usize,
    /// Seeds the clients' choices of node, key and operation.
    pub seed: u64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            kv_clients: 4,
            lock_clients: 2,
            keys: 3,
            seed: 0,
        }
    }
}

enum ClientOutcome {
    Kv(KvCounts),
    Lock(Vec<HolderInterval>, LockCounts),
}

/// The clients, running.
pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<ClientOutcome>>,
    recorder: Recorder,
    options: WorkloadOptions,
}

/// What the clients saw.
pub struct WorkloadResult {
    /// The KV history.
    pub history: Vec<Operation>,
    /// Every lock hold.
    pub holds: Vec<HolderInterval>,
    /// KV counts over all clients.
    pub kv: KvCounts,
    /// Lock counts over all clients.
    pub locks: LockCounts,
}

fn key(index: usize) -> String {
    format!("chaos-{index}")
}

impl Workload {
    /// Start the clients against `nodes` (admin HTTP addresses; each request goes to one
    /// chosen at random). Call from a thread that reaches the nodes: the client threads
    /// inherit its network namespace.
    pub fn start(nodes: Vec<SocketAddr>, options: WorkloadOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let recorder = Recorder::new();
        let origin = Instant::now();
        let mut clients = Vec::new();
        for id in 0..options.kv_clients {
            let (stop, recorder, nodes) = (stop.clone(), recorder.clone(), nodes.clone());
            clients.push(std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(options.seed ^ (id as u64 + 1) << 32);
                let mut client = KvClient::new(id as u64, recorder, KV_TIMEOUT);
                for _ in 0..OPERATIONS_PER_CLIENT_MAX {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let node = nodes[rng.random_range(0..nodes.len())];
                    let key = key(rng.random_range(0..options.keys));
                    match rng.random_range(0..10) {
                        0..4 => client.write(node, &key),
                        4..6 => client.read_then_cas(node, &key),
                        choice => {
                            client.read(node, &key, choice % 2 == 0);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(rng.random_range(2..20)));
                }
                ClientOutcome::Kv(client.counts)
            }));
        }
        for id in 0..options.lock_clients {
            let (stop, nodes) = (stop.clone(), nodes.clone());
            clients.push(std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(options.seed ^ (id as u64 + 101) << 32);
                let mut client = LockClient::new(id, LOCK, origin);
                for _ in 0..OPERATIONS_PER_CLIENT_MAX {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let node = nodes[rng.random_range(0..nodes.len())];
                    client.acquire_hold_release(node, &mut rng);
                    std::thread::sleep(Duration::from_millis(rng.random_range(5..50)));
                }
                ClientOutcome::Lock(client.holds, client.counts)
            }));
        }
        Self {
            stop,
            clients,
            recorder,
            options,
        }
    }

    /// Stop the clients, then read every key at STRONG through `node` (retrying for up to
    /// `timeout`), so the history ends with what the cluster holds after the faults.
    ///
    /// # Panics
    /// When a client thread panicked, or a key could not be read in time.
    pub fn finish(self, node: SocketAddr, timeout: Duration) -> WorkloadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut kv = KvCounts::default();
        let mut locks = LockCounts::default();
        let mut holds = Vec::new();
        for client in self.clients {
            match client.join().expect("client thread") {
                ClientOutcome::Kv(counts) => kv.add(&counts),
                ClientOutcome::Lock(more, counts) => {
                    holds.extend(more);
                    locks.add(&counts);
                }
            }
        }
        let reader_id = self.options.kv_clients as u64 + 1_000;
        let mut reader = KvClient::new(reader_id, self.recorder.clone(), KV_TIMEOUT);
        let deadline = Instant::now() + timeout;
        for index in 0..self.options.keys {
            let key = key(index);
            loop {
                let before = reader.counts.answered;
                reader.read(node, &key, true);
                if reader.counts.answered > before {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the final read of {key} got no answer within {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        WorkloadResult {
            history: self.recorder.history(),
            holds,
            kv,
            locks,
        }
    }
}

impl WorkloadResult {
    /// Check the KV history for linearizability, the lock holds for exclusivity, and that the
    /// clients got at least `minimums` acknowledged writes and lock grants (an empty history
    /// is linearizable and no hold is exclusive: without the minimums a cluster that refused
    /// everything would pass). Returns a one-line summary.
    ///
    /// # Errors
    /// What was violated, with the checker's explanation.
    pub fn check(&self, minimums: &Minimums) -> Result<String, String> {
        match check(&self.history, &RegisterModel, &Budget::default()) {
            Ok(CheckResult::Linearizable) => {}
            Ok(CheckResult::NotLinearizable { key, explanation }) => {
                return Err(format!(
                    "the KV history of {key} is not linearizable:\n{explanation}"
                ));
            }
            Ok(other) => return Err(format!("the KV check did not finish: {other:?}")),
            Err(error) => return Err(format!("malformed KV history: {error}")),
        }
        check_lock_holders_exclusive(&self.holds, &FencedResource::default())?;
        let summary = format!(
            "KV: {} operations, {} answered, {} acknowledged writes, {} unknown, {} not sent: \
             linearizable; locks: {} holds, {} late grants, {} refused: exclusive, tokens grow",
            self.history.len(),
            self.kv.answered,
            self.kv.acknowledged,
            self.kv.unknown,
            self.kv.not_sent,
            self.locks.grants,
            self.locks.late_grants,
            self.locks.refused
        );
        let shortfalls: Vec<String> = [
            at_least(
                "acknowledged writes",
                self.kv.acknowledged,
                minimums.acknowledged_writes,
            ),
            at_least("lock grants", self.locks.grants, minimums.lock_grants),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        if shortfalls.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{}\n{summary}", shortfalls.join("\n")))
        }
    }
}
