//! The shared map's replicator (`ha_gossip::StateReplicator`) in the deterministic simulator.
//!
//! Each simulated member is a [`StateNode`]: the replicator around a `SharedMap`, a wall
//! clock skewed by up to [`StateSimOptions::clock_skew_ms_max`], and a [`DurableStore`] that
//! survives crashes the way the real store does: a local write is acknowledged after it is
//! synced (with everything appended before it), remote entries are appended without a sync
//! and synced [`StateSimOptions::sync_interval_ms`] after the first of them (a batched fsync),
//! so a crash loses the unsynced tail and every packet in flight, never an acknowledged
//! write.
//!
//! [`StateCluster`] adds the scenario tools: partitions whose sides also shape each member's
//! peer list (as the gossip view would), one-way blocks, crash and restart, a random workload
//! on every side, and an [`Oracle`] of acknowledged writes that the converged state is checked
//! against (LWW winner = the largest acknowledged stamp, counters = the sum of acknowledged
//! increments, deleted keys absent).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use ha_core::{Millis, NodeId};
use ha_gossip::{
    Delta, Entry, ReplicatorSettings, ReplicatorStats, SharedMap, Stamp, StateData, StateEffect,
    StateLimits, StateReplicator,
};
use rand::RngExt;

use crate::sim::{
    NetworkConfig, SimActor, SimConfig, SimEffect, Simulator, StartContext, node_addr,
};

/// Virtual time 0 reads as this wall time (late 2025), so stamps look like real ones.
pub const WALL_EPOCH_MS: u64 = 1_764_000_000_000;

/// How a simulated cluster is built.
#[derive(Clone, Debug)]
pub struct StateSimOptions {
    /// Members.
    pub node_count: usize,
    /// Latency, loss and duplication.
    pub network: NetworkConfig,
    /// The replicator's settings, the same on every member.
    pub settings: ReplicatorSettings,
    /// The map's limits, the same on every member.
    pub limits: StateLimits,
    /// Each member's wall clock is off by a fixed amount drawn in `[-max, +max]` ms.
    pub clock_skew_ms_max: u64,
    /// Remote entries are synced to the store this often; a crash loses what came since.
    pub sync_interval_ms: u64,
}

impl StateSimOptions {
    /// `node_count` members on a 1-5 ms network with 2% loss, default settings and limits,
    /// clocks within 50 ms of each other, syncs every 200 ms.
    pub fn new(node_count: usize) -> Self {
        Self {
            node_count,
            network: NetworkConfig {
                latency_ms_min: 1,
                latency_ms_max: 5,
                drop_probability: 0.02,
                duplicate_probability: 0.01,
            },
            settings: ReplicatorSettings::default(),
            limits: StateLimits::default(),
            clock_skew_ms_max: 50,
            sync_interval_ms: 200,
        }
    }
}

/// What a member's disk holds: the last entry of each key, synced or not yet.
#[derive(Debug, Default)]
pub struct DurableStore {
    synced: BTreeMap<String, Entry>,
    unsynced: BTreeMap<String, Entry>,
}

impl DurableStore {
    /// Append an entry without syncing it. Entries only grow in the map's order (each is the
    /// key's whole entry after a merge), so the last one of a key holds every earlier one.
    fn append(&mut self, key: String, entry: Entry) {
        self.unsynced.insert(key, entry);
    }

    /// Sync everything appended so far.
    fn sync(&mut self) {
        let unsynced = std::mem::take(&mut self.unsynced);
        self.synced.extend(unsynced);
    }

    /// A crash: what was not synced is gone.
    fn lose_unsynced(&mut self) {
        self.unsynced.clear();
    }

    /// Synced keys.
    pub fn synced_keys(&self) -> usize {
        self.synced.len()
    }
}

/// One simulated member.
pub struct StateNode {
    replicator: StateReplicator,
    store: Rc<RefCell<DurableStore>>,
    skew_ms: i64,
    /// The time of the latest input, for scheduling timers in [`SimActor::drain`].
    now: Millis,
    /// The earliest tick timer scheduled and not yet fired.
    armed: Option<Millis>,
    /// Whether a sync timer is pending.
    sync_armed: bool,
    sync_interval_ms: u64,
    effects: Vec<SimEffect<StateTimer, ()>>,
}

/// The timers of a [`StateNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateTimer {
    /// The replicator's tick, due at this time (a later, superseded one is ignored).
    Tick(Millis),
    /// Sync the store's unsynced tail (the store's batched fsync).
    Sync,
}

impl StateNode {
    /// A member (re)started: its map rebuilt from what the store synced.
    ///
    /// # Panics
    /// When the store holds an entry the map refuses (a bug in the map or the harness).
    #[allow(clippy::too_many_arguments)]
    fn start(
        context: &StartContext,
        node: NodeId,
        store: Rc<RefCell<DurableStore>>,
        options: &StateSimOptions,
        skew_ms: i64,
        peers: Vec<SocketAddr>,
    ) -> Self {
        store.borrow_mut().lose_unsynced();
        let mut map = SharedMap::new(node, options.limits.clone());
        for (key, entry) in &store.borrow().synced {
            let delta = Delta {
                key: key.clone(),
                entry: entry.clone(),
            };
            if let Err(error) = map.restore(delta) {
                panic!(
                    "node {}: the store's {key:?} refused on restart: {error}",
                    context.node
                );
            }
        }
        let mut replicator = StateReplicator::new(map, options.settings.clone(), context.seed);
        replicator.set_peers(peers);
        Self {
            replicator,
            store,
            skew_ms,
            now: context.now,
            armed: None,
            sync_armed: false,
            sync_interval_ms: options.sync_interval_ms,
            effects: Vec::new(),
        }
    }

    /// The replicator, to read its map and stats.
    pub fn replicator(&self) -> &StateReplicator {
        &self.replicator
    }

    /// This member's wall clock at virtual time `now`.
    pub fn wall_ms(&self, now: Millis) -> u64 {
        wall_at(now, self.skew_ms)
    }

    /// Acknowledge a local write: sync it with everything appended before it.
    fn acknowledge(&mut self, key: &str) {
        let mut store = self.store.borrow_mut();
        if let Some(entry) = self.replicator.map().entry(key) {
            store.append(key.to_owned(), entry.clone());
        }
        store.sync();
    }

    /// A local put, acknowledged when it returns `Ok`.
    ///
    /// # Errors
    /// As `StateReplicator::put`.
    pub fn put(
        &mut self,
        now: Millis,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Delta, ha_gossip::StateError> {
        self.now = now;
        let delta = self.replicator.put(now, self.wall_ms(now), key, value)?;
        self.acknowledge(key);
        Ok(delta)
    }

    /// A local delete, acknowledged when it returns `Ok(Some(_))`.
    ///
    /// # Errors
    /// As `StateReplicator::delete`.
    pub fn delete(
        &mut self,
        now: Millis,
        key: &str,
    ) -> Result<Option<Delta>, ha_gossip::StateError> {
        self.now = now;
        let delta = self.replicator.delete(now, self.wall_ms(now), key)?;
        if delta.is_some() {
            self.acknowledge(key);
        }
        Ok(delta)
    }

    /// A local increment, acknowledged when it returns `Ok`.
    ///
    /// # Errors
    /// As `StateReplicator::increment`.
    pub fn increment(
        &mut self,
        now: Millis,
        key: &str,
        by: i64,
    ) -> Result<i64, ha_gossip::StateError> {
        self.now = now;
        let (value, _delta) = self.replicator.increment(now, self.wall_ms(now), key, by)?;
        self.acknowledge(key);
        Ok(value)
    }

    /// Replace the peer list (the gossip view changed).
    pub fn set_peers(&mut self, now: Millis, peers: Vec<SocketAddr>) {
        self.now = now;
        self.replicator.set_peers(peers);
    }
}

fn wall_at(now: Millis, skew_ms: i64) -> u64 {
    WALL_EPOCH_MS
        .saturating_add(now.0)
        .saturating_add_signed(skew_ms)
}

impl SimActor for StateNode {
    type Timer = StateTimer;
    type Output = ();

    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        let wall_ms = self.wall_ms(now);
        self.replicator.on_packet(now, wall_ms, from, bytes);
    }

    fn on_timer(&mut self, now: Millis, timer: StateTimer) {
        self.now = now;
        match timer {
            StateTimer::Sync => {
                self.sync_armed = false;
                self.store.borrow_mut().sync();
            }
            StateTimer::Tick(due) => {
                if self.armed != Some(due) {
                    // Superseded by an earlier timer that already ran and re-armed.
                    return;
                }
                self.armed = None;
                let wall_ms = self.wall_ms(now);
                self.replicator.on_tick(now, wall_ms);
            }
        }
    }

    fn drain(&mut self) -> Vec<SimEffect<StateTimer, ()>> {
        for effect in self.replicator.drain_effects() {
            match effect {
                StateEffect::Send { to, payload } => {
                    self.effects.push(SimEffect::Send { to, bytes: payload })
                }
                StateEffect::Persist(deltas) => {
                    let mut store = self.store.borrow_mut();
                    for delta in deltas {
                        store.append(delta.key, delta.entry);
                    }
                    if !self.sync_armed {
                        self.sync_armed = true;
                        self.effects.push(SimEffect::Schedule {
                            after_ms: self.sync_interval_ms,
                            timer: StateTimer::Sync,
                        });
                    }
                }
            }
        }
        let next = self.replicator.next_tick_at().max(self.now);
        if self.armed.is_none_or(|armed| next < armed) {
            self.armed = Some(next);
            self.effects.push(SimEffect::Schedule {
                after_ms: next.saturating_since(self.now),
                timer: StateTimer::Tick(next),
            });
        }
        std::mem::take(&mut self.effects)
    }
}

/// What the cluster acknowledged: the reference the converged state is checked against.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    /// Per register key, the acknowledged write with the largest stamp (`None`: a delete).
    pub registers: BTreeMap<String, (Stamp, Option<Vec<u8>>)>,
    /// Per counter key, the sum of acknowledged increments.
    pub counters: BTreeMap<String, i64>,
    /// Acknowledged puts.
    pub puts: u64,
    /// Acknowledged deletes (of a live key).
    pub deletes: u64,
    /// Acknowledged increments.
    pub increments: u64,
}

impl Oracle {
    fn record_register(&mut self, key: &str, stamp: Stamp, value: Option<Vec<u8>>) {
        match self.registers.get(key) {
            Some((known, _)) if *known >= stamp => {}
            _ => {
                self.registers.insert(key.to_owned(), (stamp, value));
            }
        }
    }

    /// Register keys whose winner is a value (expected live).
    pub fn live_registers(&self) -> usize {
        self.registers
            .values()
            .filter(|(_, value)| value.is_some())
            .count()
    }
}

/// Which ops the random workload draws, in percent (the rest are increments).
#[derive(Clone, Copy, Debug)]
pub struct WorkloadMix {
    /// Register keys `r/0 ..` drawn from.
    pub register_keys: usize,
    /// Counter keys `c/0 ..` drawn from.
    pub counter_keys: usize,
    /// Percent of puts.
    pub put_percent: u32,
    /// Percent of deletes.
    pub delete_percent: u32,
    /// Bytes of each value.
    pub value_bytes: usize,
}

impl Default for WorkloadMix {
    fn default() -> Self {
        Self {
            register_keys: 200,
            counter_keys: 10,
            put_percent: 55,
            delete_percent: 15,
            value_bytes: 32,
        }
    }
}

/// A simulated cluster of replicators with scenario tools and an oracle.
pub struct StateCluster {
    sim: Simulator<StateNode>,
    /// Each member's peer list, read again when a member restarts.
    peers: Rc<RefCell<Vec<Vec<SocketAddr>>>>,
    oracle: Oracle,
    writes_refused: u64,
    sequence: u64,
}

impl StateCluster {
    /// Build and start `options.node_count` members that all know each other.
    pub fn new(seed: u64, options: &StateSimOptions) -> Self {
        let mut config = SimConfig::new(seed);
        config.network = options.network.clone();
        let mut sim = Simulator::new(config);
        let node_count = options.node_count;
        let everyone: Vec<SocketAddr> = (0..node_count).map(node_addr).collect();
        let peers: Vec<Vec<SocketAddr>> = (0..node_count)
            .map(|node| others(&everyone, node_addr(node)))
            .collect();
        let peers = Rc::new(RefCell::new(peers));
        let skew_max = i64::try_from(options.clock_skew_ms_max).unwrap_or(i64::MAX);
        for node in 0..node_count {
            let skew_ms = if skew_max == 0 {
                0
            } else {
                sim.rng().random_range(-skew_max..=skew_max)
            };
            let store = Rc::new(RefCell::new(DurableStore::default()));
            let peers = Rc::clone(&peers);
            let options = options.clone();
            let id = node_id(node);
            sim.add_node(node_addr(node), move |context: &StartContext| {
                let list = peers.borrow()[context.node].clone();
                StateNode::start(
                    context,
                    id.clone(),
                    Rc::clone(&store),
                    &options,
                    skew_ms,
                    list,
                )
            });
        }
        sim.start_stopped();
        Self {
            sim,
            peers,
            oracle: Oracle::default(),
            writes_refused: 0,
            sequence: 0,
        }
    }

    /// The simulator.
    pub fn sim(&self) -> &Simulator<StateNode> {
        &self.sim
    }

    /// The simulator, to run it or change the network.
    pub fn sim_mut(&mut self) -> &mut Simulator<StateNode> {
        &mut self.sim
    }

    /// What was acknowledged so far.
    pub fn oracle(&self) -> &Oracle {
        &self.oracle
    }

    /// Writes refused by a limit (the workload stays under the limits, so 0 is expected).
    pub fn writes_refused(&self) -> u64 {
        self.writes_refused
    }

    /// Members.
    pub fn node_count(&self) -> usize {
        self.sim.node_count()
    }

    /// Split the network into `sides` (every member in exactly one); each member's peers
    /// become the others on its side, as gossip would see them.
    ///
    /// # Panics
    /// When a member is named twice.
    pub fn partition(&mut self, sides: &[Vec<usize>]) {
        let addresses: Vec<Vec<SocketAddr>> = sides
            .iter()
            .map(|side| side.iter().map(|node| node_addr(*node)).collect())
            .collect();
        self.sim.network_mut().partition(&addresses);
        for side in &addresses {
            for addr in side {
                self.set_peers_of(*addr, others(side, *addr));
            }
        }
    }

    /// Drop everything `from` members send to `to` members; the other way still works and
    /// every member keeps every peer (a one-way fault gossip may not see).
    pub fn block_one_way(&mut self, from: &[usize], to: &[usize]) {
        for sender in from {
            for receiver in to {
                self.sim
                    .network_mut()
                    .block_one_way(node_addr(*sender), node_addr(*receiver));
            }
        }
    }

    /// Remove every partition and block; every member's peers become all the others.
    pub fn heal(&mut self) {
        self.sim.network_mut().heal();
        let everyone: Vec<SocketAddr> = (0..self.node_count()).map(node_addr).collect();
        for addr in &everyone {
            self.set_peers_of(*addr, others(&everyone, *addr));
        }
    }

    fn set_peers_of(&mut self, addr: SocketAddr, list: Vec<SocketAddr>) {
        let Some(node) = self.sim.node_at(addr) else {
            return;
        };
        self.peers.borrow_mut()[node] = list.clone();
        self.sim
            .act(node, |member, now| member.set_peers(now, list));
    }

    /// One random write on `node`: a put, a delete or an increment, recorded in the oracle
    /// when acknowledged. Does nothing on a stopped member.
    ///
    /// # Panics
    /// When the map answers with an error the workload cannot cause (not a limit).
    pub fn write_random(&mut self, node: usize, mix: &WorkloadMix) {
        if !self.sim.is_running(node) {
            return;
        }
        self.sequence += 1;
        let sequence = self.sequence;
        let draw: u32 = self.sim.rng().random_range(0..100);
        if draw < mix.put_percent + mix.delete_percent {
            let key = format!("r/{}", self.sim.rng().random_range(0..mix.register_keys));
            if draw < mix.put_percent {
                let mut value = format!("{node}:{sequence}:").into_bytes();
                value.resize(mix.value_bytes.max(value.len()), b'.');
                self.put(node, &key, value);
            } else {
                self.delete(node, &key);
            }
        } else {
            let key = format!("c/{}", self.sim.rng().random_range(0..mix.counter_keys));
            let mut by: i64 = self.sim.rng().random_range(-3..=5);
            if by == 0 {
                by = 1;
            }
            self.increment(node, &key, by);
        }
    }

    /// A put on `node`, recorded when acknowledged.
    pub fn put(&mut self, node: usize, key: &str, value: Vec<u8>) {
        let mut outcome = None;
        let recorded = value.clone();
        self.sim.act(node, |member, now| {
            outcome = Some(member.put(now, key, value))
        });
        match outcome {
            Some(Ok(delta)) => {
                self.oracle.puts += 1;
                self.oracle
                    .record_register(key, delta.entry.stamp, Some(recorded));
            }
            Some(Err(error)) => self.refused(node, key, &error),
            None => {}
        }
    }

    /// A delete on `node`, recorded when it deleted a live key.
    pub fn delete(&mut self, node: usize, key: &str) {
        let mut outcome = None;
        self.sim
            .act(node, |member, now| outcome = Some(member.delete(now, key)));
        match outcome {
            Some(Ok(Some(delta))) => {
                self.oracle.deletes += 1;
                self.oracle.record_register(key, delta.entry.stamp, None);
            }
            Some(Ok(None)) | None => {}
            Some(Err(error)) => self.refused(node, key, &error),
        }
    }

    /// An increment on `node`, recorded when acknowledged.
    pub fn increment(&mut self, node: usize, key: &str, by: i64) {
        let mut outcome = None;
        self.sim.act(node, |member, now| {
            outcome = Some(member.increment(now, key, by))
        });
        match outcome {
            Some(Ok(_)) => {
                self.oracle.increments += 1;
                *self.oracle.counters.entry(key.to_owned()).or_default() += by;
            }
            Some(Err(error)) => self.refused(node, key, &error),
            None => {}
        }
    }

    fn refused(&mut self, node: usize, key: &str, error: &ha_gossip::StateError) {
        assert!(
            error.limit_name().is_some(),
            "seed {}: node {node}: write of {key:?} failed: {error}",
            self.sim.seed()
        );
        self.writes_refused += 1;
    }

    /// Run for `duration_ms`, making `writes_per_second` random writes spread over the
    /// running members of `writers` (every 10 ms, the writes due so far).
    pub fn run_with_writes(
        &mut self,
        duration_ms: u64,
        writes_per_second: u64,
        writers: &[usize],
        mix: &WorkloadMix,
    ) {
        const STEP_MS: u64 = 10;
        let steps = duration_ms / STEP_MS;
        let mut written: u64 = 0;
        for step in 1..=steps {
            let due = writes_per_second * step * STEP_MS / 1_000;
            while written < due {
                written += 1;
                if writers.is_empty() {
                    continue;
                }
                let pick = self.sim.rng().random_range(0..writers.len());
                self.write_random(writers[pick], mix);
            }
            self.sim.run_for(STEP_MS);
        }
        self.sim.run_for(duration_ms % STEP_MS);
    }

    /// Crash `node`: its replicator and unsynced store tail are lost, packets to it dropped.
    pub fn crash(&mut self, node: usize) {
        self.sim.crash(node);
    }

    /// Start every crashed member again (from its store).
    pub fn restart_stopped(&mut self) {
        self.sim.start_stopped();
    }

    /// Whether every running member holds the same digest.
    pub fn converged(&self) -> bool {
        converged(&self.sim)
    }

    /// Run until every running member holds the same digest, checking every `check_every_ms`;
    /// the virtual milliseconds it took, or `None` after `limit_ms`.
    pub fn run_until_converged(&mut self, limit_ms: u64, check_every_ms: u64) -> Option<u64> {
        let start = self.sim.now();
        let deadline = start + limit_ms;
        self.sim
            .run_until_condition(deadline, check_every_ms, converged)
            .map(|at| at.saturating_since(start))
    }

    /// Check every running member against the oracle: each register's winner is the
    /// acknowledged write with the largest stamp (a delete: absent), each counter the sum of
    /// acknowledged increments, no other register key is live, and the map passes its own
    /// `check_invariants` (digest, counts and indexes recomputed from scratch).
    ///
    /// # Errors
    /// The first difference found, described.
    pub fn check_against_oracle(&self) -> Result<(), String> {
        for node in self.sim.running_nodes() {
            let Some(member) = self.sim.actor(node) else {
                continue;
            };
            let map = member.replicator().map();
            map.check_invariants()
                .map_err(|error| format!("node {node}: map invariant: {error}"))?;
            for (key, (stamp, value)) in &self.oracle.registers {
                let held = map.get(key);
                match (value, held) {
                    (None, None) => {}
                    (None, Some(held)) => {
                        return Err(format!(
                            "node {node}: {key:?} deleted at {} but holds a value stamped {} by {}",
                            stamp.display(),
                            held.stamp.display(),
                            held.stamp.node
                        ));
                    }
                    (Some(_), None) => {
                        return Err(format!(
                            "node {node}: {key:?} lost its winner stamped {} by {}",
                            stamp.display(),
                            stamp.node
                        ));
                    }
                    (Some(value), Some(held)) => {
                        if held.stamp != *stamp || held.data != StateData::Bytes(value.clone()) {
                            return Err(format!(
                                "node {node}: {key:?} holds {:?} stamped {} by {}, the winner is \
                                 stamped {} by {}",
                                held.data,
                                held.stamp.display(),
                                held.stamp.node,
                                stamp.display(),
                                stamp.node
                            ));
                        }
                    }
                }
            }
            for (key, sum) in &self.oracle.counters {
                let held = map.get(key).map(|value| value.data);
                if held != Some(StateData::Counter(*sum)) {
                    return Err(format!(
                        "node {node}: counter {key:?} is {held:?}, acknowledged increments sum to {sum}"
                    ));
                }
            }
            let (listed, _truncated) = map.list("r/", usize::MAX);
            if listed.len() != self.oracle.live_registers() {
                return Err(format!(
                    "node {node}: {} live registers, the oracle expects {}",
                    listed.len(),
                    self.oracle.live_registers()
                ));
            }
        }
        Ok(())
    }

    /// Sum of every running member's replicator counters.
    pub fn stats_total(&self) -> ReplicatorStats {
        let mut total = ReplicatorStats::default();
        for node in self.sim.running_nodes() {
            if let Some(member) = self.sim.actor(node) {
                let stats = member.replicator().stats();
                total.packets_sent += stats.packets_sent;
                total.bytes_sent += stats.bytes_sent;
                total.packets_received += stats.packets_received;
                total.bytes_received += stats.bytes_received;
                total.dropped += stats.dropped;
                total.deltas_merged += stats.deltas_merged;
                total.deltas_refused += stats.deltas_refused;
                total.anti_entropy_rounds += stats.anti_entropy_rounds;
                total.repaired_keys += stats.repaired_keys;
                total.queue_overflow += stats.queue_overflow;
                total.oversize_deltas += stats.oversize_deltas;
                total.tombstones_collected += stats.tombstones_collected;
                total.repairs_throttled += stats.repairs_throttled;
            }
        }
        total
    }
}

/// Whether every running member of `sim` holds the same digest.
pub fn converged(sim: &Simulator<StateNode>) -> bool {
    let mut digests = sim
        .running_nodes()
        .into_iter()
        .filter_map(|node| sim.actor(node))
        .map(|member| member.replicator().map().digest());
    let Some(first) = digests.next() else {
        return true;
    };
    digests.all(|digest| digest == first)
}

/// The node id of member `node`: `n<node>`.
///
/// # Panics
/// Never for indexes the simulator can address.
pub fn node_id(node: usize) -> NodeId {
    NodeId::new(format!("n{node}")).expect("n<digits> is a valid node id")
}

fn others(everyone: &[SocketAddr], me: SocketAddr) -> Vec<SocketAddr> {
    everyone
        .iter()
        .copied()
        .filter(|addr| *addr != me)
        .collect()
}

/// `node_count` members split into `sides` contiguous groups of nearly equal size.
pub fn contiguous_sides(node_count: usize, sides: usize) -> Vec<Vec<usize>> {
    let sides = sides.max(1);
    (0..sides)
        .map(|side| (side * node_count / sides..(side + 1) * node_count / sides).collect())
        .collect()
}
