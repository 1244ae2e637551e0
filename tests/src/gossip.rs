//! Gossip in the simulator: [`GossipCore`] as a [`SimActor`], and cluster helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::keyring::ClusterKey;
use ha_core::{MemberEvent, MemberInfo, Millis, NodeId, NodeMetadata, Priority, Timing};
use ha_gossip::{GossipCore, GossipEffect, GossipIdentity, GossipSettings, GossipTimer};
use rand::RngExt;

use crate::sim::{
    NetworkConfig, OutputRecord, SimActor, SimConfig, SimEffect, Simulator, StartContext, node_addr,
};

impl SimActor for GossipCore {
    type Timer = GossipTimer;
    type Output = MemberEvent;

    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        self.on_packet(now, from, bytes);
    }

    fn on_timer(&mut self, now: Millis, timer: GossipTimer) {
        // The inherent method, not this trait method: inherent methods win in path calls.
        GossipCore::on_timer(self, now, timer);
    }

    fn drain(&mut self) -> Vec<SimEffect<GossipTimer, MemberEvent>> {
        self.drain_effects()
            .into_iter()
            .filter_map(|effect| match effect {
                GossipEffect::Send { to, packet } => Some(SimEffect::Send { to, bytes: packet }),
                GossipEffect::Schedule { after_ms, timer } => {
                    Some(SimEffect::Schedule { after_ms, timer })
                }
                GossipEffect::Event(event) => Some(SimEffect::Output(event)),
                // The shared map is simulated on its own (state_sim); none is sent here.
                GossipEffect::State { .. } => None,
            })
            .collect()
    }
}

/// The shape of a simulated gossip cluster.
#[derive(Clone, Debug)]
pub struct GossipClusterOptions {
    /// How many members.
    pub node_count: usize,
    /// The first `seed_node_count` nodes are every node's seeds, and start at time zero.
    pub seed_node_count: usize,
    /// The other nodes start at a uniformly random time in `[0, start_spread_ms]`.
    pub start_spread_ms: u64,
    /// Latency, loss and duplication.
    pub network: NetworkConfig,
    /// Gossip periods and timeouts.
    pub timing: Timing,
    /// Expected cluster size given to foca (scales retransmissions).
    pub cluster_size_hint: u32,
    /// Cluster keys; empty sends in the clear (cheaper for big runs).
    pub cluster_keys: Vec<ClusterKey>,
    /// How many trace entries to keep as text.
    pub trace_lines_max: usize,
}

impl GossipClusterOptions {
    /// `node_count` members on a 1-2 ms LAN with [`Timing::lan`], 3 seeds, all started within
    /// the first second, `cluster_size_hint = node_count`, no key.
    pub fn new(node_count: usize) -> Self {
        Self {
            node_count,
            seed_node_count: 3.min(node_count),
            start_spread_ms: 1_000,
            network: NetworkConfig::lan(),
            timing: Timing::lan(),
            cluster_size_hint: u32::try_from(node_count).unwrap_or(u32::MAX),
            cluster_keys: Vec::new(),
            trace_lines_max: 0,
        }
    }
}

/// The node id of simulated node `node`: `n<index>`.
pub fn gossip_node_id(node: usize) -> NodeId {
    NodeId::new(format!("n{node}")).expect("n<number> is a valid node id")
}

/// The incarnation a node gets when started at `now`: like the real driver, which uses
/// wall-clock milliseconds, a restart always gets a higher one than any earlier start.
pub fn incarnation_at(now: Millis) -> u64 {
    now.0 + 1
}

/// Gossip settings for the node started as `context`.
pub fn gossip_settings(context: &StartContext, options: &GossipClusterOptions) -> GossipSettings {
    let seeds = (0..options.seed_node_count).map(node_addr).collect();
    GossipSettings {
        identity: GossipIdentity::new(
            gossip_node_id(context.node),
            context.addr,
            incarnation_at(context.now),
        ),
        cluster_name: String::from("sim"),
        cluster_keys: options.cluster_keys.clone(),
        seeds,
        timing: options.timing.clone(),
        metadata: NodeMetadata::new(Priority(1), context.addr),
        cluster_size_hint: options.cluster_size_hint,
        shared_state: Default::default(),
    }
}

/// A simulator with `options.node_count` gossip members registered at [`node_addr`]`(i)`,
/// none of them started yet.
///
/// # Panics
/// When started, a node panics if the cluster keys do not form a valid keyring.
pub fn gossip_simulator(seed: u64, options: &GossipClusterOptions) -> Simulator<GossipCore> {
    let mut config = SimConfig::new(seed);
    config.network = options.network.clone();
    config.trace_lines_max = options.trace_lines_max;
    let mut sim = Simulator::new(config);
    for node in 0..options.node_count {
        let options = options.clone();
        sim.add_node(node_addr(node), move |context| {
            GossipCore::new(gossip_settings(context, &options), context.seed)
                .expect("the simulator's gossip settings are valid")
        });
    }
    sim
}

/// Schedule the start of `nodes`: seeds at time zero, the others at a random time in
/// `[0, start_spread_ms]` drawn from the simulation's RNG.
pub fn schedule_starts(
    sim: &mut Simulator<GossipCore>,
    options: &GossipClusterOptions,
    nodes: std::ops::Range<usize>,
) {
    for node in nodes {
        let at = if node < options.seed_node_count || options.start_spread_ms == 0 {
            Millis::ZERO
        } else {
            Millis(sim.rng().random_range(0..=options.start_spread_ms))
        };
        sim.start_at(node, at);
    }
}

/// [`gossip_simulator`] with every node's start scheduled by [`schedule_starts`].
pub fn gossip_cluster(seed: u64, options: &GossipClusterOptions) -> Simulator<GossipCore> {
    let mut sim = gossip_simulator(seed, options);
    schedule_starts(&mut sim, options, 0..options.node_count);
    sim
}

/// A converged cluster built directly, without simulating its join (a warm start): every
/// member learns every other member, then their metadata, through
/// [`GossipCore::learn_members`], the API a real node uses for a member list learned out of
/// band. A 10,000-member join costs hours of simulator CPU (N^2.2); this costs two passes of
/// N^2 table inserts.
///
/// - Members start at random times in `[0, probe period)` (drawn from the simulation's RNG),
///   so their probe rounds are spread over a period as a join's are, not in lockstep. Each
///   learns every member's identity when it starts (their incarnations follow from their
///   planned start times, as [`incarnation_at`] gives); nobody probes before the last one is
///   up, since a member's first probe comes one period after it becomes active.
/// - At the end of that period, once all run, every member learns every other member's
///   metadata as it is then (active, after each member's own bump on becoming active).
///
/// Returns the simulator at that time, recording only [`is_rare_event`] outputs (the build's
/// N^2 `Up` and `Updated` events are not kept; [`Simulator::set_output_filter`] changes that
/// for what follows). A node restarted later joins through the seeds as usual.
/// `options.start_spread_ms` is not used.
///
/// # Panics
/// When the probe period is 0, or as [`gossip_simulator`].
pub fn warm_gossip_cluster(seed: u64, options: &GossipClusterOptions) -> Simulator<GossipCore> {
    let mut config = SimConfig::new(seed);
    config.network = options.network.clone();
    config.trace_lines_max = options.trace_lines_max;
    let mut sim = Simulator::new(config);
    // Two passes of N^2 `Up` and `Updated` events: recorded, they would outweigh the cluster.
    sim.set_output_filter(is_rare_event);
    let period_ms = options.timing.gossip_probe_period_ms;
    assert!(period_ms > 0, "the probe period must be positive");
    let starts: Vec<Millis> = (0..options.node_count)
        .map(|_| Millis(sim.rng().random_range(0..period_ms)))
        .collect();
    let identities: std::sync::Arc<Vec<MemberInfo>> = std::sync::Arc::new(
        starts
            .iter()
            .enumerate()
            .map(|(node, &start)| MemberInfo {
                id: gossip_node_id(node),
                gossip_addr: node_addr(node),
                incarnation: incarnation_at(start),
                metadata: None,
                reachable: true,
            })
            .collect(),
    );
    for (node, &start) in starts.iter().enumerate() {
        let options = options.clone();
        let identities = std::sync::Arc::clone(&identities);
        sim.add_node(node_addr(node), move |context| {
            let mut core = GossipCore::new(gossip_settings(context, &options), context.seed)
                .expect("the simulator's gossip settings are valid");
            if context.start_count == 0 {
                core.learn_members(context.now, identities.iter());
            }
            core
        });
        sim.start_at(node, start);
    }
    sim.run_until(Millis(period_ms - 1));
    let announced: Vec<MemberInfo> = (0..options.node_count)
        .filter_map(|node| sim.actor(node))
        .map(|core| MemberInfo {
            id: core.identity().node_id.clone(),
            gossip_addr: core.identity().addr,
            incarnation: core.identity().incarnation,
            metadata: Some(core.metadata().clone()),
            reachable: true,
        })
        .collect();
    for node in 0..options.node_count {
        sim.act(node, |core, now| {
            core.learn_members(now, announced.iter());
        });
    }
    sim
}

/// Whether every node in `live` is running and holds metadata for every member it knows.
pub fn all_hold_all_metadata(sim: &Simulator<GossipCore>, live: &[usize]) -> bool {
    live.iter().all(|&node| {
        sim.actor(node)
            .is_some_and(|core| core.members_without_metadata() == 0)
    })
}

/// Whether every node in `live` is running and sees every other node in `live` as a reachable
/// member with its current incarnation (through [`GossipCore::member_identities`]).
pub fn all_see_each_other(sim: &Simulator<GossipCore>, live: &[usize]) -> bool {
    let mut expected: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    for &node in live {
        let Some(core) = sim.actor(node) else {
            return false;
        };
        expected.insert(core.identity().addr, core.identity().incarnation);
    }
    let others = expected.len().saturating_sub(1);
    // foca's own count is O(1); only when it agrees is the O(N) table walk worth doing.
    let cheap_check = live.iter().all(|&node| {
        sim.actor(node)
            .is_some_and(|core| core.reachable_count() >= others)
    });
    cheap_check
        && live.iter().all(|&node| {
            sim.actor(node).is_some_and(|core| {
                core.member_identities()
                    .filter(|(identity, reachable)| {
                        *reachable && expected.get(&identity.addr) == Some(&identity.incarnation)
                    })
                    .count()
                    == others
            })
        })
}

/// How `observer` currently sees the member at `addr`, if it knows it.
pub fn view_of(
    sim: &Simulator<GossipCore>,
    observer: usize,
    addr: SocketAddr,
) -> Option<MemberInfo> {
    sim.actor(observer).and_then(|core| core.member(&addr))
}

/// Whether `observer` holds `addr` as unreachable (or does not know it at all).
pub fn considers_unreachable(
    sim: &Simulator<GossipCore>,
    observer: usize,
    addr: SocketAddr,
) -> bool {
    view_of(sim, observer, addr).is_none_or(|member| !member.reachable)
}

/// The member an event is about, if it is about another member.
pub fn event_subject(event: &MemberEvent) -> Option<&MemberInfo> {
    match event {
        MemberEvent::Up(member)
        | MemberEvent::Updated(member)
        | MemberEvent::Left(member)
        | MemberEvent::Unreachable(member) => Some(member),
        MemberEvent::SelfActive | MemberEvent::SelfIdle | MemberEvent::SelfRejoined { .. } => None,
    }
}

/// An output filter for big runs: drop the many `Up` and `Updated` events and keep the rare
/// ones tests assert on (unreachable, left, self events).
pub fn is_rare_event(event: &MemberEvent) -> bool {
    !matches!(event, MemberEvent::Up(_) | MemberEvent::Updated(_))
}

/// The first `Unreachable` event `observer` recorded for `addr` at or after `since`.
pub fn first_unreachable_since(
    sim: &Simulator<GossipCore>,
    observer: usize,
    addr: SocketAddr,
    since: Millis,
) -> Option<&OutputRecord<MemberEvent>> {
    sim.outputs(observer).iter().find(|record| {
        record.at >= since
            && matches!(&record.output, MemberEvent::Unreachable(member) if member.gossip_addr == addr)
    })
}
