//! Founding a cluster through gossip in the simulator: each node runs a
//! [`GossipCore`] and a [`ReplicaCore`] side by side on one simulated address, and hands every
//! member event to [`ReplicaCore::on_member_event`], the input the tokio driver feeds too; the
//! core's housekeeping tick founds a set that settled between events. Nothing founds a
//! cluster by fiat here: a cluster exists only if the core's shared rule
//! (`bootstrap_expect`, [`MembershipFeed`](ha_replicate::membership_feed::MembershipFeed))
//! founded it, which the core reports as [`ReplicaEffect::Founded`].
//!
//! ```text
//!   GossipCore ── MemberEvent ──▶ ReplicaCore::on_member_event ──▶ MembershipFeed ──▶ Engine
//!      ▲  │ (0x00 packets)           (and the housekeeping tick)     (peer facts, bootstrap
//!      │  ▼                                                           when due)  │ (0x01 RPCs)
//!   simulated network ◀────────────── ReplicaCore<RegisterMachine> ◀─────────────┘
//!      role changes ──▶ gossip metadata state (LEADER / ACTIVE), as the `ha` facade does
//! ```

use std::net::SocketAddr;
use std::rc::Rc;

use ha_core::{MemberEvent, Millis, NodeMetadata, NodeState, Priority, Term, Timing};
use ha_gossip::{GossipCore, GossipEffect, GossipIdentity, GossipSettings, GossipTimer};
use ha_replicate::engine::{EngineSettings, Role};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{ReplicaCore, ReplicaEffect, ReplicaSettings, ReplicaTimer, Rpc};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};

use crate::gossip::incarnation_at;
use crate::register::RegisterMachine;
use crate::replica::{Directory, replica_id};
use crate::sim::{
    NetworkConfig, SimActor, SimConfig, SimEffect, Simulator, StartContext, node_addr,
};
use crate::sim_syncs::{SimSyncs, SyncDelays, crash_keeps};

/// First byte of a gossip packet on the shared simulated address.
const GOSSIP_TAG: u8 = 0;
/// First byte of a replication RPC on the shared simulated address.
const RPC_TAG: u8 = 1;

/// A timer of a founding node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundingTimer {
    /// Gossip's own timer.
    Gossip(GossipTimer),
    /// The replica's own timer.
    Replica(ReplicaTimer),
    /// Group commit: sync and release held messages.
    Flush,
}

/// What a founding node reports.
#[derive(Clone, Debug, PartialEq)]
pub enum FoundingOutput {
    /// The shared rule founded a cluster on this node, with these voters.
    Founded(VoterSet),
    /// A role change of the replica.
    Role {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
    },
    /// Storage failed.
    Fatal(String),
}

/// How one node of a founding scenario is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundingNodeOptions {
    /// Whether it wants to vote (its gossip metadata says so).
    pub voter: bool,
    /// What its driver is given as `bootstrap_expect` (`None`: it never founds).
    pub bootstrap_expect: Option<usize>,
}

/// One node: gossip and replication on one simulated address, joined by the shared founding
/// step.
pub struct FoundingNode {
    gossip: GossipCore,
    core: ReplicaCore<RegisterMachine, MemoryStore>,
    directory: Rc<Directory>,
    /// The virtual time of the latest input, for the effects drained after it.
    last_input_at: Millis,
    /// Syncs asked for, completing after seeded delays.
    syncs: SimSyncs,
    pending: Vec<SimEffect<FoundingTimer, FoundingOutput>>,
}

impl FoundingNode {
    /// The replica core.
    pub fn core(&self) -> &ReplicaCore<RegisterMachine, MemoryStore> {
        &self.core
    }

    /// The gossip core.
    pub fn gossip(&self) -> &GossipCore {
        &self.gossip
    }

    /// Carry out what gossip asked for; member events go through the shared founding step.
    fn pump_gossip(&mut self, now: Millis) {
        for effect in self.gossip.drain_effects() {
            match effect {
                GossipEffect::Send { to, packet } => {
                    let mut bytes = Vec::with_capacity(packet.len() + 1);
                    bytes.push(GOSSIP_TAG);
                    bytes.extend_from_slice(&packet);
                    self.pending.push(SimEffect::Send { to, bytes });
                }
                GossipEffect::Schedule { after_ms, timer } => {
                    self.pending.push(SimEffect::Schedule {
                        after_ms,
                        timer: FoundingTimer::Gossip(timer),
                    });
                }
                GossipEffect::Event(event) => self.on_member_event(now, &event),
                // The founding simulation hosts no shared map; none is sent here.
                GossipEffect::State { .. } => {}
            }
        }
    }

    /// What the driver's `Runner::on_member_event` does, with the simulator's directory for
    /// addresses (every node's RPC address is its gossip address here, so the peer's update
    /// has nothing for it).
    fn on_member_event(&mut self, now: Millis, event: &MemberEvent) {
        self.core.on_member_event(now, event);
    }

    /// Carry out what the replica asked for; a role change is published in gossip metadata as
    /// the `ha` facade does (JOINING gives way only to LEADER; gossip itself ends JOINING).
    fn pump_replica(&mut self, now: Millis) {
        for effect in self.core.drain_effects() {
            match effect {
                ReplicaEffect::Send { to, rpc } => {
                    let Some(addr) = self.directory.addr_of(&to) else {
                        continue;
                    };
                    let Ok(encoded) = postcard::to_allocvec(&rpc) else {
                        continue;
                    };
                    let mut bytes = Vec::with_capacity(encoded.len() + 1);
                    bytes.push(RPC_TAG);
                    bytes.extend_from_slice(&encoded);
                    self.pending.push(SimEffect::Send { to: addr, bytes });
                }
                ReplicaEffect::SetTimer { timer, after_ms } => {
                    self.pending.push(SimEffect::Schedule {
                        after_ms,
                        timer: FoundingTimer::Replica(timer),
                    });
                }
                ReplicaEffect::Reply { .. } => {}
                ReplicaEffect::WriteSnapshot(job) => {
                    if let Some(written) = job.run() {
                        self.core.on_snapshot_written(now, written);
                    }
                }
                ReplicaEffect::ComputeDigest(job) => {
                    if let Some(computed) = job.run() {
                        self.core.on_digest_computed(now, computed);
                    }
                }
                ReplicaEffect::Apply(task) => self.core.run_apply_task(now, &task),
                ReplicaEffect::RoleChanged { role, term, .. } => {
                    self.pending
                        .push(SimEffect::Output(FoundingOutput::Role { role, term }));
                    let wanted = if role == Role::Leader {
                        NodeState::Leader
                    } else {
                        NodeState::Active
                    };
                    let current = self.gossip.metadata().state;
                    let may_change = match current {
                        NodeState::Leaving => false,
                        NodeState::Joining => wanted == NodeState::Leader,
                        _ => true,
                    };
                    if may_change && current != wanted {
                        self.gossip
                            .update_metadata(now, |metadata| metadata.state = wanted);
                    }
                }
                ReplicaEffect::Fatal(error) => {
                    self.pending
                        .push(SimEffect::Output(FoundingOutput::Fatal(error.to_string())));
                }
                ReplicaEffect::Sync { through } => {
                    self.pending.push(SimEffect::Schedule {
                        after_ms: self.syncs.request(self.last_input_at, through),
                        timer: FoundingTimer::Flush,
                    });
                }
                ReplicaEffect::Founded { voters } => {
                    self.pending
                        .push(SimEffect::Output(FoundingOutput::Founded(voters)));
                }
            }
        }
    }
}

impl SimActor for FoundingNode {
    type Timer = FoundingTimer;
    type Output = FoundingOutput;

    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        self.last_input_at = now;
        match bytes.split_first() {
            Some((&GOSSIP_TAG, packet)) => self.gossip.on_packet(now, from, packet),
            Some((&RPC_TAG, encoded)) => {
                let Some(from) = self.directory.id_at(&from).cloned() else {
                    return;
                };
                let Ok(rpc) = postcard::from_bytes::<Rpc>(encoded) else {
                    return;
                };
                self.core.on_rpc(now, from, rpc);
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, now: Millis, timer: FoundingTimer) {
        self.last_input_at = now;
        match timer {
            FoundingTimer::Gossip(timer) => self.gossip.on_timer(now, timer),
            // The housekeeping tick founds a set that settled without a new event.
            FoundingTimer::Replica(timer) => self.core.on_timer(now, timer),
            FoundingTimer::Flush => {
                if let Some(through) = self.syncs.complete() {
                    self.core.complete_sync(now, through);
                }
            }
        }
    }

    fn drain(&mut self) -> Vec<SimEffect<FoundingTimer, FoundingOutput>> {
        // The simulator calls this right after each input: member events first (they may
        // found the cluster), then the replica's effects (including the founding's).
        let now = self.last_input_at;
        self.pump_gossip(now);
        self.pump_replica(now);
        // Role changes may have changed gossip metadata.
        self.pump_gossip(now);
        std::mem::take(&mut self.pending)
    }
}

/// The shape of a founding scenario.
#[derive(Clone, Debug)]
pub struct FoundingOptions {
    /// Every node, in index order.
    pub nodes: Vec<FoundingNodeOptions>,
    /// The first this many nodes are every node's gossip seeds.
    pub seed_node_count: usize,
    /// Latency, loss and duplication.
    pub network: NetworkConfig,
    /// Gossip and replication timing.
    pub timing: Timing,
}

/// A simulator with one [`FoundingNode`] per entry of `options.nodes`, none started yet (the
/// test staggers the starts). Each keeps a simulated disk across crashes.
pub fn founding_simulator(seed: u64, options: &FoundingOptions) -> Simulator<FoundingNode> {
    let mut config = SimConfig::new(seed);
    config.network = options.network.clone();
    let mut sim = Simulator::new(config);
    let node_count = options.nodes.len();
    let directory = Rc::new(Directory::new(node_count));
    let seeds: Vec<SocketAddr> = (0..options.seed_node_count).map(node_addr).collect();
    for (node, node_options) in options.nodes.iter().enumerate() {
        let disk = MemoryDisk::new();
        let directory = Rc::clone(&directory);
        let node_options = node_options.clone();
        let timing = options.timing.clone();
        let seeds = seeds.clone();
        let cluster_size_hint = u32::try_from(node_count).unwrap_or(u32::MAX);
        sim.add_node(node_addr(node), move |context: &StartContext| {
            if context.start_count > 0 {
                disk.crash(crash_keeps(context.seed));
            }
            let id = replica_id(node);
            let mut metadata = NodeMetadata::new(Priority(1), context.addr);
            metadata.voter = node_options.voter;
            metadata.health = ha_core::HealthStatus::Healthy;
            let gossip = GossipCore::new(
                GossipSettings {
                    identity: GossipIdentity::new(
                        id.clone(),
                        context.addr,
                        incarnation_at(context.now),
                    ),
                    cluster_name: String::from("sim"),
                    cluster_keys: Vec::new(),
                    seeds: seeds.clone(),
                    timing: timing.clone(),
                    metadata,
                    cluster_size_hint,
                    shared_state: Default::default(),
                },
                context.seed,
            )
            .expect("the simulator's gossip settings are valid");
            let mut engine = EngineSettings::for_test(id.clone());
            engine.priority = Priority(1);
            engine.heartbeat_interval_ms = timing.heartbeat_interval_ms;
            engine.election_timeout_min_ms = timing.election_timeout_min_ms;
            engine.election_timeout_max_ms = timing.election_timeout_max_ms;
            engine.failback_after_ms = None;
            let settings = ReplicaSettings {
                engine,
                // As `ReplicaNode::start` is given it: the core runs the founding rule.
                bootstrap_expect: node_options.bootstrap_expect,
                ..ReplicaSettings::for_test(id.clone())
            };
            let core = ReplicaCore::new(
                settings,
                RegisterMachine::default(),
                MemoryStore::open(disk.clone()),
                context.now,
                context.seed,
            )
            .expect("a simulated disk always recovers");
            FoundingNode {
                gossip,
                core,
                directory: Rc::clone(&directory),
                last_input_at: context.now,
                syncs: SimSyncs::new(context.seed, SyncDelays::honest()),
                pending: Vec::new(),
            }
        });
    }
    sim
}

/// Every cluster founded so far: (node, virtual time, voters), in the order they happened.
pub fn foundings(sim: &Simulator<FoundingNode>) -> Vec<(usize, Millis, VoterSet)> {
    sim.all_outputs()
        .filter_map(|record| match &record.output {
            FoundingOutput::Founded(voters) => Some((record.node, record.at, voters.clone())),
            _ => None,
        })
        .collect()
}

/// At most one cluster was founded: every founding used the same voters, and only those
/// voters founded. Returns the founding voters, if any node founded.
///
/// # Errors
/// The two foundings that disagree, or a founding by a node outside its own voter set.
pub fn check_one_cluster_founded(
    sim: &Simulator<FoundingNode>,
) -> Result<Option<VoterSet>, String> {
    let all = foundings(sim);
    let Some((first_node, first_at, first)) = all.first().cloned() else {
        return Ok(None);
    };
    for (node, at, voters) in &all {
        if *voters != first {
            return Err(format!(
                "two clusters founded: n{first_node} at {first_at} with {:?}, n{node} at {at} with {:?}",
                first.voters, voters.voters
            ));
        }
        if !voters.voters.contains(&replica_id(*node)) {
            return Err(format!(
                "n{node} founded a cluster it is not a voter of, at {at}: {:?}",
                voters.voters
            ));
        }
    }
    Ok(Some(first))
}

/// Every node that ever became leader, by term; fails on a term with two.
///
/// # Errors
/// A description of the two leaders of one term.
pub fn check_one_leader_per_term_founding(sim: &Simulator<FoundingNode>) -> Result<usize, String> {
    crate::invariants::one_leader_per_term(sim.all_outputs().filter_map(|record| {
        match &record.output {
            FoundingOutput::Role {
                role: Role::Leader,
                term,
            } => Some((*term, record.node, record.at)),
            _ => None,
        }
    }))
}
