//! Replication in the simulator: [`ReplicaCore`] as a [`SimActor`] over a
//! [`MemoryStore`] that loses unsynced writes on a crash, with per-node clock drift.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;

use ha_core::Term;
use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Timing};
use ha_replicate::engine::{
    EngineSettings, FOLLOWER_BACKLOG_ENTRIES_MAX_DEFAULT, PeerInfo, PersistId, Role,
};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{
    ClientReply, ClientRequest, ReplicaCore, ReplicaEffect, ReplicaSettings, ReplicaTimer, Rpc,
};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};

use crate::register::RegisterMachine;
use crate::sim::{
    NetworkConfig, SimActor, SimConfig, SimEffect, Simulator, StartContext, node_addr,
};
use crate::sim_syncs::{SimMutation, SimSyncs, SyncDelays, crash_keeps};
use crate::snapshot_writes::{SNAPSHOT_WRITE_MS, SimSnapshotWrites, sim_transfer_settings};

/// The log cache of every simulated node, in bytes: about a handful of register commands, so
/// almost every catch-up reads entries back from the store.
pub const SIM_LOG_CACHE_BYTES: usize = 256;

/// The node id of simulated replica `node`.
pub fn replica_id(node: usize) -> NodeId {
    NodeId::new(format!("n{node}")).expect("n<number> is a valid node id")
}

/// Node ids and addresses of every replica, shared by all of them.
#[derive(Debug, Default)]
pub struct Directory {
    by_addr: BTreeMap<SocketAddr, NodeId>,
    by_id: BTreeMap<NodeId, SocketAddr>,
}

impl Directory {
    /// The directory of nodes `0..node_count`, named as [`replica_id`] names them.
    pub fn new(node_count: usize) -> Self {
        let mut directory = Self::default();
        for node in 0..node_count {
            directory.by_addr.insert(node_addr(node), replica_id(node));
            directory.by_id.insert(replica_id(node), node_addr(node));
        }
        directory
    }

    /// The node id at a simulated address.
    pub fn id_at(&self, addr: &SocketAddr) -> Option<&NodeId> {
        self.by_addr.get(addr)
    }

    /// The simulated address of a node id.
    pub fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.by_id.get(id).copied()
    }
}

/// A timer of a simulated replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimReplicaTimer {
    /// The replica's own timer.
    Replica(ReplicaTimer),
    /// The oldest sync asked for completes ([`SimSyncs`]): held messages are released.
    Flush,
    /// Only under [`SimMutation::SendBeforeDurable`]: the harness reports a sync durable at
    /// once, before the disk has made it so.
    ReportedEarly(PersistId),
    /// The snapshot being written is done.
    SnapshotWritten,
    /// The oldest consistency digest being hashed is done.
    DigestComputed,
    /// The slow host's apply worker finished the oldest task handed to it.
    ApplyDone,
}

/// The simulated replicas' consistency checkpoint interval: short, so sweeps of a few hundred
/// writes pass several checkpoints.
pub const SIM_CONSISTENCY_CHECK_EVERY_ENTRIES: u64 = 20;

/// What a simulated replica reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaOutput {
    /// An answer to a client request submitted on this node.
    Reply {
        /// The request id the test gave.
        request_id: u64,
        /// The answer.
        reply: ClientReply,
    },
    /// A role change.
    Role {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Storage failed.
    Fatal(String),
    /// A leader decided something under this set of voters: it won its election with them
    /// (`elected`), or its commit index advanced counting them. Reported when the term or the
    /// voters differ from this node's previous report, for the check that configurations
    /// in use in the same or consecutive terms share a majority.
    ConfigUsed {
        /// The leader's term.
        term: Term,
        /// The voters it counted.
        voters: BTreeSet<NodeId>,
        /// Whether the decision was winning the election (else a commit).
        elected: bool,
    },
}

/// One simulated replica.
pub struct SimReplica {
    core: ReplicaCore<RegisterMachine, MemoryStore>,
    directory: Rc<Directory>,
    /// Clock rate error in parts per million: the node's clock runs at `1 + ppm / 1e6`.
    clock_rate_ppm: i64,
    /// Syncs asked for, completing after seeded delays.
    syncs: SimSyncs,
    /// The virtual time of the latest input, for the syncs drained after it.
    last_input_at: Millis,
    /// A bug planted on purpose, to show the sweeps catch it.
    mutation: Option<SimMutation>,
    snapshot_writes: SimSnapshotWrites,
    /// Consistency digests being hashed, oldest first.
    digest_jobs: std::collections::VecDeque<ha_replicate::replica::DigestJob>,
    /// A slow host (issue 17, item 2): apply tasks handed out and not yet run, oldest first.
    /// The worker runs them one at a time, in order.
    apply_tasks: std::collections::VecDeque<ha_replicate::replica::ApplyTask>,
    /// Virtual milliseconds the slow host takes per entry applied (0: the core applies
    /// inline). A query, a copy or a restore takes 1 ms.
    apply_ms_per_entry: u64,
    /// Whether an `ApplyDone` timer is pending.
    apply_scheduled: bool,
    /// The term this node last led, the commit index last seen, and the last
    /// [`ReplicaOutput::ConfigUsed`] reported.
    led_term: Option<Term>,
    commit_seen: LogIndex,
    config_reported: Option<(Term, BTreeSet<NodeId>)>,
}

/// A clock running at `1 + ppm / 1e6`, read at virtual time `now`.
pub fn local_time(now: Millis, clock_rate_ppm: i64) -> Millis {
    let scaled = i128::from(now.0) * (1_000_000 + i128::from(clock_rate_ppm)) / 1_000_000;
    Millis(u64::try_from(scaled.max(0)).unwrap_or(u64::MAX))
}

/// Virtual milliseconds until a clock running at `1 + ppm / 1e6` has advanced `after_ms`.
pub fn global_delay(after_ms: u64, clock_rate_ppm: i64) -> u64 {
    let scaled =
        u128::from(after_ms) * 1_000_000 / (1_000_000 + clock_rate_ppm.max(-500_000)) as u128;
    u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
}

impl SimReplica {
    /// The replica core.
    pub fn core(&self) -> &ReplicaCore<RegisterMachine, MemoryStore> {
        &self.core
    }

    /// The replica core, for commands; effects are collected on the next drain.
    pub fn core_mut(&mut self) -> &mut ReplicaCore<RegisterMachine, MemoryStore> {
        &mut self.core
    }

    /// This node's local clock reading at virtual time `now`.
    pub fn local(&self, now: Millis) -> Millis {
        local_time(now, self.clock_rate_ppm)
    }

    /// Submit a client request at virtual time `now`, with a deadline `timeout_ms` later.
    pub fn submit(
        &mut self,
        now: Millis,
        request_id: u64,
        request: ClientRequest,
        timeout_ms: u64,
    ) {
        let local = self.local(now);
        self.core
            .submit(local, request_id, request, local + timeout_ms);
    }

    /// Whether this node's lease would serve a read now (see `Engine::lease_holds`), by its
    /// own clock.
    pub fn lease_holds(&self, now: Millis) -> bool {
        self.core.engine().lease_holds(self.local(now))
    }

    /// Report a leader's election or commit under its current voters, if new.
    fn report_config_used(&mut self) -> Option<ReplicaOutput> {
        let engine = self.core.engine();
        let commit = engine.commit_index();
        let committed = commit > self.commit_seen;
        self.commit_seen = commit;
        if !engine.is_leader() {
            return None;
        }
        let term = engine.term();
        let elected = self.led_term != Some(term);
        self.led_term = Some(term);
        if !elected && !committed {
            return None;
        }
        let voters = engine.membership().voters.clone();
        let report = (term, voters.clone());
        if self.config_reported.as_ref() == Some(&report) {
            return None;
        }
        self.config_reported = Some(report);
        Some(ReplicaOutput::ConfigUsed {
            term,
            voters,
            elected,
        })
    }

    /// Feed one of the core's named inputs (`on_transfer`, `on_campaign`,
    /// `on_local_health`, `on_peer_info`, `on_propose_membership`, ...) at virtual time
    /// `now`: `input` gets the core and this node's local time, and its answer is returned.
    pub fn command<T>(
        &mut self,
        now: Millis,
        input: impl FnOnce(&mut ReplicaCore<RegisterMachine, MemoryStore>, Millis) -> T,
    ) -> T {
        let local = self.local(now);
        input(&mut self.core, local)
    }
}

impl SimActor for SimReplica {
    type Timer = SimReplicaTimer;
    type Output = ReplicaOutput;

    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        let Some(from) = self.directory.id_at(&from).cloned() else {
            return;
        };
        let Ok(rpc) = postcard::from_bytes::<Rpc>(bytes) else {
            return;
        };
        self.last_input_at = now;
        let local = self.local(now);
        self.core.on_rpc(local, from, rpc);
    }

    fn on_timer(&mut self, now: Millis, timer: SimReplicaTimer) {
        self.last_input_at = now;
        match timer {
            SimReplicaTimer::Replica(timer) => {
                let local = self.local(now);
                self.core.on_timer(local, timer);
            }
            SimReplicaTimer::Flush => {
                if let Some(through) = self.syncs.complete() {
                    let local = self.local(now);
                    self.core.complete_sync(local, through);
                }
            }
            SimReplicaTimer::ReportedEarly(through) => {
                let local = self.local(now);
                self.core.on_persisted(local, through);
            }
            SimReplicaTimer::SnapshotWritten => {
                if let Some(written) = self.snapshot_writes.finish() {
                    let local = self.local(now);
                    self.core.on_snapshot_written(local, written);
                }
            }
            SimReplicaTimer::ApplyDone => {
                self.apply_scheduled = false;
                if let Some(task) = self.apply_tasks.pop_front() {
                    let local = self.local(now);
                    self.core.run_apply_task(local, &task);
                }
            }
            SimReplicaTimer::DigestComputed => {
                if let Some(computed) = self.digest_jobs.pop_front().and_then(|job| job.run()) {
                    let local = self.local(now);
                    self.core.on_digest_computed(local, computed);
                }
            }
        }
    }

    fn drain(&mut self) -> Vec<SimEffect<SimReplicaTimer, ReplicaOutput>> {
        let mut effects = Vec::new();
        // Reports the mutation makes before the disk is durable.
        let mut early = Vec::new();
        for effect in self.core.drain_effects() {
            effects.push(match effect {
                ReplicaEffect::Send { to, rpc } => {
                    let Some(addr) = self.directory.addr_of(&to) else {
                        continue;
                    };
                    let Ok(bytes) = postcard::to_allocvec(&rpc) else {
                        continue;
                    };
                    SimEffect::Send { to: addr, bytes }
                }
                ReplicaEffect::SetTimer { timer, after_ms } => SimEffect::Schedule {
                    after_ms: global_delay(after_ms, self.clock_rate_ppm),
                    timer: SimReplicaTimer::Replica(timer),
                },
                ReplicaEffect::Reply { request_id, reply } => {
                    SimEffect::Output(ReplicaOutput::Reply { request_id, reply })
                }
                ReplicaEffect::RoleChanged { role, term, leader } => {
                    SimEffect::Output(ReplicaOutput::Role { role, term, leader })
                }
                ReplicaEffect::Fatal(failure) => {
                    SimEffect::Output(ReplicaOutput::Fatal(failure.to_string()))
                }
                ReplicaEffect::Sync { through } => {
                    if self.mutation == Some(SimMutation::SendBeforeDurable) {
                        early.push(SimEffect::Schedule {
                            after_ms: 0,
                            timer: SimReplicaTimer::ReportedEarly(through),
                        });
                    }
                    SimEffect::Schedule {
                        after_ms: self.syncs.request(self.last_input_at, through),
                        timer: SimReplicaTimer::Flush,
                    }
                }
                // Every founding node is given the same voters here; the founding simulation
                // (`founding.rs`) is the one that checks who founds.
                ReplicaEffect::Founded { .. } => continue,
                ReplicaEffect::WriteSnapshot(job) => {
                    self.snapshot_writes.start(&job);
                    SimEffect::Schedule {
                        after_ms: SNAPSHOT_WRITE_MS,
                        timer: SimReplicaTimer::SnapshotWritten,
                    }
                }
                ReplicaEffect::ComputeDigest(job) => {
                    // Jobs finish in the order they were handed out: every one is scheduled
                    // after the same delay.
                    self.digest_jobs.push_back(job);
                    SimEffect::Schedule {
                        after_ms: 1,
                        timer: SimReplicaTimer::DigestComputed,
                    }
                }
                ReplicaEffect::Apply(task) => {
                    // Only in deferred mode (`apply_delay_ms_max` > 0): the worker is slow.
                    self.apply_tasks.push_back(task);
                    continue;
                }
            });
        }
        effects.append(&mut early);
        if !self.apply_scheduled
            && let Some(task) = self.apply_tasks.front()
        {
            // One task at a time, in order, each taking the host's time per entry.
            self.apply_scheduled = true;
            let entries = task.entry_count() as u64;
            effects.push(SimEffect::Schedule {
                after_ms: (self.apply_ms_per_entry * entries).max(1),
                timer: SimReplicaTimer::ApplyDone,
            });
        }
        let consistency = self.core.consistency_status();
        assert_eq!(
            (consistency.mismatches, consistency.diverged_at),
            (0, None),
            "a deterministic state machine was judged diverged: {consistency:?}"
        );
        if let Some(report) = self.report_config_used() {
            effects.push(SimEffect::Output(report));
        }
        effects
    }
}

/// The shape of a simulated replicated cluster.
#[derive(Clone, Debug)]
pub struct ReplicaClusterOptions {
    /// Voters.
    pub node_count: usize,
    /// Priority of each node (index order); missing entries get 1.
    pub priorities: Vec<u32>,
    /// Network latency, loss and duplication.
    pub network: NetworkConfig,
    /// Timing (election timeouts, heartbeats).
    pub timing: Timing,
    /// Largest clock rate error per node, in parts per million (drawn per node from the seed).
    pub clock_drift_ppm_max: i64,
    /// Serve linearizable reads from the leader lease.
    pub lease_reads: bool,
    /// Failback delay; `None` disables failback.
    pub failback_after_ms: Option<u64>,
    /// Snapshot every this many applied entries.
    pub snapshot_every_entries: u64,
    /// How many nodes (the first ones) found the cluster; the others start empty and must
    /// be added by the leader (as learners, then promoted). Defaults to all of them.
    pub founding_voters: Option<usize>,
    /// Automatic or operator-only elections.
    pub failover_mode: ha_core::FailoverMode,
    /// Remove voters unreachable this long (the test reports unreachability).
    pub dead_voter_after_ms: Option<u64>,
    /// The nodes that are witnesses (issue 15): voters with no state machine that never lead.
    /// Their priority is still taken from `priorities` (a witness runs with priority 0 in a
    /// real node; a higher one here tests that the witness setting alone keeps it from
    /// leading).
    pub witnesses: Vec<usize>,
    /// A slow host (issue 17, item 2): when above 0, every data node's state machine runs
    /// off the core (deferred apply) and takes between half this and this many virtual
    /// milliseconds per entry it applies (drawn per node from the seed), so commit and apply
    /// drift apart as they do behind a real apply thread. 0 applies inline.
    pub apply_ms_per_entry_max: u64,
    /// The nodes that are slow hosts when `apply_ms_per_entry_max` is above 0 (empty: every
    /// data node is).
    pub slow_apply_nodes: Vec<usize>,
    /// Every node's [`EngineSettings::follower_backlog_entries_max`] (the default unless a
    /// test changes it).
    pub follower_backlog_entries_max: u64,
    /// How long the simulated disks take to sync ([`SyncDelays::honest`] by default).
    pub sync_delays: SyncDelays,
    /// Every node's [`EngineSettings::commit_notice_delay_ms`]; `None` (the default): 0 in a
    /// quarter of the seeds, else 1 to 3 ms (a node's default is 2).
    pub commit_notice_delay_ms: Option<u64>,
    /// A bug planted in every node's harness, to show that a sweep catches it: `None` unless
    /// `HA_SIM_MUTATION` names one ([`SimMutation::from_env`]).
    pub mutation: Option<SimMutation>,
}

impl ReplicaClusterOptions {
    /// `node_count` voters of priority 1 on a 1-2 ms LAN with LAN timing, no drift.
    pub fn new(node_count: usize) -> Self {
        Self {
            node_count,
            priorities: Vec::new(),
            network: NetworkConfig::lan(),
            timing: Timing::lan(),
            clock_drift_ppm_max: 0,
            lease_reads: false,
            failback_after_ms: None,
            snapshot_every_entries: 10_000,
            founding_voters: None,
            failover_mode: ha_core::FailoverMode::Automatic,
            dead_voter_after_ms: None,
            witnesses: Vec::new(),
            apply_ms_per_entry_max: 0,
            slow_apply_nodes: Vec::new(),
            follower_backlog_entries_max: FOLLOWER_BACKLOG_ENTRIES_MAX_DEFAULT,
            sync_delays: SyncDelays::honest(),
            commit_notice_delay_ms: None,
            mutation: SimMutation::from_env(),
        }
    }

    fn priority(&self, node: usize) -> Priority {
        Priority(self.priorities.get(node).copied().unwrap_or(1))
    }
}

/// Build (and start) a bootstrapped cluster of replicas. Each node keeps a simulated disk
/// across crashes; a restart first loses that disk's unsynced writes.
pub fn replica_cluster(seed: u64, options: &ReplicaClusterOptions) -> Simulator<SimReplica> {
    let mut config = SimConfig::new(seed);
    config.network = options.network.clone();
    let mut sim = Simulator::new(config);
    let directory = Rc::new(Directory::new(options.node_count));
    let founding = options.founding_voters.unwrap_or(options.node_count);
    let voters = VoterSet::with_voters((0..founding).map(replica_id));
    for node in 0..options.node_count {
        let disk = MemoryDisk::new();
        let directory = Rc::clone(&directory);
        let voters = voters.clone();
        let options = options.clone();
        let clock_rate_ppm = if options.clock_drift_ppm_max > 0 {
            use rand::RngExt;
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
            engine.priority = options.priority(node);
            engine.heartbeat_interval_ms = options.timing.heartbeat_interval_ms;
            engine.election_timeout_min_ms = options.timing.election_timeout_min_ms;
            engine.election_timeout_max_ms = options.timing.election_timeout_max_ms;
            engine.lease_reads = options.lease_reads;
            engine.failback_after_ms = options.failback_after_ms;
            engine.failover_mode = options.failover_mode;
            engine.dead_voter_after_ms = options.dead_voter_after_ms;
            engine.follower_backlog_entries_max = options.follower_backlog_entries_max;
            // Followers learn commits from the next append, or from a notice sent late.
            engine.commit_notice_delay_ms =
                options.commit_notice_delay_ms.unwrap_or(context.seed % 4);
            // A tiny log cache: entries are evicted as soon as they are applied and synced, so
            // lagging followers are caught up from the store (`Effect::SendStored`) under loss,
            // crashes and leader changes.
            engine.log_cache_bytes = SIM_LOG_CACHE_BYTES;
            let settings = ReplicaSettings {
                engine,
                snapshot_every_entries: options.snapshot_every_entries,
                transfer: sim_transfer_settings(&options.timing),
                // The consistency monitor runs in every sweep: the register machine is
                // deterministic, so no replica may ever be judged diverged (checked in
                // `drain`).
                consistency: ha_replicate::replica::ConsistencySettings {
                    check_every_entries: SIM_CONSISTENCY_CHECK_EVERY_ENTRIES,
                    repair: true,
                },
                witness: options.witnesses.contains(&node),
                ..ReplicaSettings::for_test(replica_id(node))
            };
            let now = local_time(context.now, clock_rate_ppm);
            let mut replica = SimReplica {
                core: ReplicaCore::new(
                    settings,
                    RegisterMachine::default(),
                    MemoryStore::open(disk.clone()),
                    now,
                    context.seed,
                )
                .expect("a simulated disk always recovers"),
                directory: Rc::clone(&directory),
                clock_rate_ppm,
                syncs: SimSyncs::new(context.seed, options.sync_delays),
                last_input_at: context.now,
                mutation: options.mutation,
                snapshot_writes: SimSnapshotWrites::default(),
                digest_jobs: std::collections::VecDeque::new(),
                apply_tasks: std::collections::VecDeque::new(),
                apply_ms_per_entry: 0,
                apply_scheduled: false,
                led_term: None,
                commit_seen: LogIndex(0),
                config_reported: None,
            };
            let slowest_ms = options.apply_ms_per_entry_max;
            let slow_here =
                options.slow_apply_nodes.is_empty() || options.slow_apply_nodes.contains(&node);
            if slowest_ms > 0 && slow_here {
                replica.apply_ms_per_entry = slowest_ms - context.seed % (slowest_ms / 2 + 1);
                replica.core.defer_apply();
            }
            // Peer metadata first (as gossip delivers it before a cluster bootstraps), so the
            // first election timer already reflects the priorities.
            for other in 0..options.node_count {
                if other != node {
                    replica.core.on_peer_info(
                        now,
                        replica_id(other),
                        PeerInfo {
                            priority: options.priority(other),
                            health: HealthStatus::Healthy,
                            reachable: true,
                            wants_vote: true,
                            unreachable_since: None,
                        },
                    );
                }
            }
            if node < founding {
                replica.core.on_bootstrap(now, voters.clone());
            }
            replica
        });
    }
    for node in 0..options.node_count {
        sim.start(node);
    }
    sim
}

/// The node that currently leads in the highest term among running nodes, if any.
pub fn current_leader(sim: &Simulator<SimReplica>) -> Option<usize> {
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
