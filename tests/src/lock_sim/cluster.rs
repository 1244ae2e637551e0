//! Building a simulated lock cluster.

use crate::sim_syncs::{SimMutation, SyncDelays, crash_keeps};
use std::cell::RefCell;
use std::rc::Rc;

use ha_core::{HealthStatus, Priority, Timing};
use ha_lock::{LEASE_TICK_INTERVAL_DEFAULT, WithLocks};
use ha_replicate::engine::{EngineSettings, LOG_CACHE_BYTES_DEFAULT, PeerInfo};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{ReplicaCore, ReplicaSettings};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use rand::RngExt;

use crate::lock_sim::applied_log::AppliedLog;
use crate::lock_sim::node::{NodeParts, SimLockNode};
use crate::replica::replica_id;
use crate::replica::{Directory, local_time};
use crate::sim::{NetworkConfig, SimConfig, Simulator, StartContext, node_addr};
use crate::snapshot_writes::sim_transfer_settings;

/// The shape of a simulated lock cluster.
#[derive(Clone, Debug)]
pub struct LockClusterOptions {
    /// Voters (all founding members, priority 1).
    pub node_count: usize,
    /// Network latency, loss and duplication.
    pub network: NetworkConfig,
    /// Timing (election timeouts, heartbeats).
    pub timing: Timing,
    /// Largest clock rate error per node, in parts per million (drawn per node from the seed).
    pub clock_drift_ppm_max: i64,
    /// Serve linearizable reads from the leader lease.
    pub lease_reads: bool,
    /// Snapshot every this many applied entries.
    pub snapshot_every_entries: u64,
    /// How often each node runs its lease expiry tracker, in its own milliseconds (the
    /// shipped `LeaseKeeper`'s default unless a test changes it).
    pub expiry_tick_ms: u64,
    /// How long the simulated disks take to sync ([`SyncDelays::honest`] by default).
    pub sync_delays: SyncDelays,
    /// A bug planted in every node's harness, to show that a sweep catches it: `None` unless
    /// `HA_SIM_MUTATION` names one ([`SimMutation::from_env`]).
    pub mutation: Option<SimMutation>,
}

impl LockClusterOptions {
    /// `node_count` voters on a 1-2 ms LAN with LAN timing, no drift, the tracker every
    /// [`LEASE_TICK_INTERVAL_DEFAULT`] (25 ms).
    pub fn new(node_count: usize) -> Self {
        Self {
            node_count,
            network: NetworkConfig::lan(),
            timing: Timing::lan(),
            clock_drift_ppm_max: 0,
            lease_reads: false,
            snapshot_every_entries: 10_000,
            expiry_tick_ms: u64::try_from(LEASE_TICK_INTERVAL_DEFAULT.as_millis())
                .unwrap_or(u64::MAX),
            sync_delays: SyncDelays::honest(),
            mutation: SimMutation::from_env(),
        }
    }
}

/// Build (and start) a bootstrapped lock cluster. Each node keeps a simulated disk across
/// crashes; a restart first loses that disk's unsynced writes. Every node reports what it
/// applies to the returned [`AppliedLog`].
pub fn lock_cluster(
    seed: u64,
    options: &LockClusterOptions,
) -> (Simulator<SimLockNode>, Rc<RefCell<AppliedLog>>) {
    let mut config = SimConfig::new(seed);
    config.network = options.network.clone();
    let mut sim = Simulator::new(config);
    let directory = Rc::new(Directory::new(options.node_count));
    let applied_log = Rc::new(RefCell::new(AppliedLog::default()));
    let voters = VoterSet::with_voters((0..options.node_count).map(replica_id));
    for node in 0..options.node_count {
        let disk = MemoryDisk::new();
        let directory = Rc::clone(&directory);
        let applied_log_for_node = Rc::clone(&applied_log);
        let voters = voters.clone();
        let options = options.clone();
        let clock_rate_ppm = if options.clock_drift_ppm_max > 0 {
            sim.rng()
                .random_range(-options.clock_drift_ppm_max..=options.clock_drift_ppm_max)
        } else {
            0
        };
        sim.add_node(node_addr(node), move |context: &StartContext| {
            if context.start_count > 0 {
                disk.crash(crash_keeps(context.seed));
            }
            let mut engine = EngineSettings::for_test(replica_id(node));
            engine.priority = Priority(1);
            engine.heartbeat_interval_ms = options.timing.heartbeat_interval_ms;
            engine.election_timeout_min_ms = options.timing.election_timeout_min_ms;
            engine.election_timeout_max_ms = options.timing.election_timeout_max_ms;
            engine.lease_reads = options.lease_reads;
            engine.failback_after_ms = None;
            // Commit notices at once in a quarter of the seeds, else after 1 to 3 ms.
            engine.commit_notice_delay_ms = context.seed % 4;
            // The default log cache, on purpose: the recorder reads each applied entry back
            // from the engine's memory (`node.rs`, `observe_applied`), which a tiny cache would
            // have evicted. The log between snapshots (10,000 lock commands of a few hundred
            // bytes at most) stays under 8 MiB, so nothing is evicted here; `replica.rs` runs
            // the replication sweeps with a tiny cache instead.
            engine.log_cache_bytes = LOG_CACHE_BYTES_DEFAULT;
            let settings = ReplicaSettings {
                engine,
                snapshot_every_entries: options.snapshot_every_entries,
                transfer: sim_transfer_settings(&options.timing),
                ..ReplicaSettings::for_test(replica_id(node))
            };
            let now = local_time(context.now, clock_rate_ppm);
            let mut core = ReplicaCore::new(
                settings,
                WithLocks::new(()),
                MemoryStore::open(disk.clone()),
                now,
                context.seed,
            )
            .expect("a simulated disk always recovers");
            // Peer metadata first (as gossip delivers it before a cluster bootstraps).
            for other in 0..options.node_count {
                if other != node {
                    core.on_peer_info(
                        now,
                        replica_id(other),
                        PeerInfo {
                            priority: Priority(1),
                            health: HealthStatus::Healthy,
                            reachable: true,
                            wants_vote: true,
                            unreachable_since: None,
                        },
                    );
                }
            }
            core.on_bootstrap(now, voters.clone());
            let parts = NodeParts {
                node,
                directory: Rc::clone(&directory),
                clock_rate_ppm,
                expiry_tick_ms: options.expiry_tick_ms,
                // A fresh session on every start: sequence numbers restart at 1, and a reused
                // session would make them stale.
                expiry_session: context.seed,
                applied_log: Rc::clone(&applied_log_for_node),
                sync_delays: options.sync_delays,
                mutation: options.mutation,
            };
            SimLockNode::new(core, parts, context.now)
        });
    }
    for node in 0..options.node_count {
        sim.start(node);
    }
    (sim, applied_log)
}

/// The node that currently leads in the highest term among running nodes, if any.
pub fn lock_leader(sim: &Simulator<SimLockNode>) -> Option<usize> {
    sim.running_nodes()
        .into_iter()
        .filter(|node| {
            sim.actor(*node)
                .is_some_and(|replica| replica.core().engine().is_leader())
        })
        .max_by_key(|node| {
            sim.actor(*node)
                .map(|replica| replica.core().engine().term())
        })
}
