//! The discrete-event simulator: one thread, virtual time, a seeded RNG, many cores.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;

use ha_core::Millis;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::sim::actor::{SimActor, SimEffect, StartContext};
use crate::sim::event_queue::EventQueue;
use crate::sim::network::{Network, NetworkConfig, NetworkCounters};
use crate::sim::output_record::OutputRecord;
use crate::sim::trace::{Trace, TraceKind, hash_bytes};

/// Default for [`SimConfig::events_per_call_max`]: far above what a minute of a 1,000-node
/// gossip cluster needs, low enough that a livelock fails in seconds rather than hanging CI.
pub const EVENTS_PER_CALL_MAX_DEFAULT: u64 = 200_000_000;

/// How a simulation is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice: network faults, latencies, core seeds.
    pub seed: u64,
    /// The network's latency, loss and duplication.
    pub network: NetworkConfig,
    /// Most events one `run_*` call may process before it panics (with the seed): every loop
    /// in the simulator is bounded, so a livelock fails instead of hanging.
    pub events_per_call_max: u64,
    /// How many trace entries to keep as text (0: only the rolling hash).
    pub trace_lines_max: usize,
}

impl SimConfig {
    /// A reliable LAN (1 to 2 ms) with `seed`, no text trace.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            network: NetworkConfig::lan(),
            events_per_call_max: EVENTS_PER_CALL_MAX_DEFAULT,
            trace_lines_max: 0,
        }
    }
}

/// Makes a fresh core each time its node is started.
pub type NodeFactory<A> = Box<dyn FnMut(&StartContext) -> A>;

/// Decides which outputs are recorded (all of them by default). Large runs keep only what
/// their assertions need, so memory stays bounded.
pub type OutputFilter<O> = Box<dyn Fn(&O) -> bool>;

struct Node<A: SimActor> {
    addr: SocketAddr,
    factory: NodeFactory<A>,
    actor: Option<A>,
    /// Bumped on every start and crash. Timers and messages carry the generation they were
    /// meant for, so nothing addressed to a crashed incarnation of the node reaches a later one.
    generation: u64,
    start_count: u32,
    outputs: Vec<OutputRecord<A::Output>>,
}

enum Event<T> {
    Start {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Deliver {
        to: usize,
        generation: u64,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        generation: u64,
        timer: T,
    },
}

/// Runs many [`SimActor`] cores in one thread against a simulated [`Network`], in virtual
/// time, with every random choice drawn from one seeded RNG: the same seed and the same calls
/// give the same run, event for event (check with [`trace`](Self::trace)).
///
/// ```
/// use ha_tests::sim::{SimActor, SimConfig, SimEffect, Simulator, node_addr};
/// use ha_core::Millis;
/// use std::net::SocketAddr;
///
/// /// Answers every message with the same bytes, and reports what it got.
/// struct Echo(Vec<SimEffect<(), Vec<u8>>>);
/// impl SimActor for Echo {
///     type Timer = ();
///     type Output = Vec<u8>;
///     fn on_message(&mut self, _now: Millis, from: SocketAddr, bytes: &[u8]) {
///         self.0.push(SimEffect::Output(bytes.to_vec()));
///         if bytes.len() < 3 {
///             self.0.push(SimEffect::Send { to: from, bytes: [bytes, b"!"].concat() });
///         }
///     }
///     fn on_timer(&mut self, _now: Millis, _timer: ()) {}
///     fn drain(&mut self) -> Vec<SimEffect<(), Vec<u8>>> { std::mem::take(&mut self.0) }
/// }
///
/// let mut sim = Simulator::new(SimConfig::new(7));
/// let a = sim.add_node(node_addr(0), |_| Echo(Vec::new()));
/// let b = sim.add_node(node_addr(1), |_| Echo(Vec::new()));
/// sim.start(a);
/// sim.start(b);
/// sim.act(a, |echo, _now| echo.0.push(SimEffect::Send { to: node_addr(1), bytes: b"x".to_vec() }));
/// sim.run_until(Millis(100));
/// assert_eq!(sim.outputs(b).len(), 2); // "x" and "x!!"
/// assert_eq!(sim.outputs(a)[0].output, b"x!".to_vec());
/// ```
pub struct Simulator<A: SimActor> {
    config: SimConfig,
    now: Millis,
    rng: StdRng,
    queue: EventQueue<Event<A::Timer>>,
    nodes: Vec<Node<A>>,
    by_addr: BTreeMap<SocketAddr, usize>,
    network: Network,
    trace: Trace,
    output_filter: Option<OutputFilter<A::Output>>,
    events_processed: u64,
    timers_discarded: u64,
}

impl<A: SimActor> Simulator<A> {
    /// An empty simulation at time zero.
    pub fn new(config: SimConfig) -> Self {
        Self {
            now: Millis::ZERO,
            rng: StdRng::seed_from_u64(config.seed),
            queue: EventQueue::default(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            network: Network::new(config.network.clone()),
            trace: Trace::new(config.trace_lines_max),
            output_filter: None,
            events_processed: 0,
            timers_discarded: 0,
            config,
        }
    }

    /// The seed this run was built with.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The simulation's RNG, for scenario choices (which node to crash, start times) that must
    /// also replay from the seed.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Register a node at `addr` (not started yet). `factory` builds its core on every start.
    /// Returns the node's index.
    ///
    /// # Panics
    /// When another node already has `addr`.
    pub fn add_node(
        &mut self,
        addr: SocketAddr,
        factory: impl FnMut(&StartContext) -> A + 'static,
    ) -> usize {
        let index = self.nodes.len();
        let previous = self.by_addr.insert(addr, index);
        assert!(previous.is_none(), "two nodes at {addr}");
        self.nodes.push(Node {
            addr,
            factory: Box::new(factory),
            actor: None,
            generation: 0,
            start_count: 0,
            outputs: Vec::new(),
        });
        index
    }

    /// How many nodes are registered, running or not.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The address of `node`.
    ///
    /// # Panics
    /// When `node` is not a registered index.
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// The node registered at `addr`.
    pub fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Whether `node` is running (started and not crashed since).
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|node| node.actor.is_some())
    }

    /// The indexes of running nodes, in order.
    pub fn running_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|node| self.is_running(*node))
            .collect()
    }

    /// The core of `node`, when it is running.
    pub fn actor(&self, node: usize) -> Option<&A> {
        self.nodes.get(node).and_then(|node| node.actor.as_ref())
    }

    /// Call `change` on the core of a running `node` at the current time, then carry out the
    /// effects it produced. Returns false (and does nothing) when the node is not running.
    pub fn act(&mut self, node: usize, change: impl FnOnce(&mut A, Millis)) -> bool {
        let now = self.now;
        let Some(actor) = self
            .nodes
            .get_mut(node)
            .and_then(|node| node.actor.as_mut())
        else {
            return false;
        };
        change(actor, now);
        self.apply_effects(node);
        true
    }

    /// Start `node` now. Starting a running node does nothing.
    pub fn start(&mut self, node: usize) {
        self.process(Event::Start { node });
    }

    /// Start `node` at virtual time `at` (or now, if `at` has passed).
    pub fn start_at(&mut self, node: usize, at: Millis) {
        self.queue.push(at.max(self.now), Event::Start { node });
    }

    /// Crash `node` now: its core is dropped, and its pending timers and messages in flight to
    /// it are discarded. Crashing a stopped node does nothing.
    pub fn crash(&mut self, node: usize) {
        self.process(Event::Crash { node });
    }

    /// Crash `node` at virtual time `at` (or now, if `at` has passed).
    pub fn crash_at(&mut self, node: usize, at: Millis) {
        self.queue.push(at.max(self.now), Event::Crash { node });
    }

    /// Crash `node` (if running) and start it again with a fresh core.
    pub fn restart(&mut self, node: usize) {
        self.crash(node);
        self.start(node);
    }

    /// Start every stopped node now.
    pub fn start_stopped(&mut self) {
        for node in 0..self.node_count() {
            if !self.is_running(node) {
                self.start(node);
            }
        }
    }

    /// Cut the minority of `node_count / 2` nodes starting at `first` (wrapping) from the
    /// rest; [`Network::heal`] undoes it.
    pub fn partition_minority_from(&mut self, first: usize) {
        let count = self.node_count();
        let minority: Vec<_> = (0..count / 2)
            .map(|offset| self.addr((first + offset) % count))
            .collect();
        let majority: Vec<_> = (0..count)
            .map(|other| self.addr(other))
            .filter(|addr| !minority.contains(addr))
            .collect();
        self.network.partition(&[minority, majority]);
    }

    /// Cut `node` alone from every other node.
    pub fn isolate(&mut self, node: usize) {
        let isolated = vec![self.addr(node)];
        let rest: Vec<_> = (0..self.node_count())
            .filter(|other| *other != node)
            .map(|other| self.addr(other))
            .collect();
        self.network.partition(&[isolated, rest]);
    }

    /// Drop everything `node` sends to the next node (wrapping); the other way still works.
    pub fn block_towards_next(&mut self, node: usize) {
        let next = (node + 1) % self.node_count();
        let (from, to) = (self.addr(node), self.addr(next));
        self.network.block_one_way(from, to);
    }

    /// The network, to read its settings and counters.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The network, to partition, block, heal or change loss.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Message counters so far.
    pub fn counters(&self) -> &NetworkCounters {
        self.network.counters()
    }

    /// Record only outputs for which `keep` is true, from now on.
    pub fn set_output_filter(&mut self, keep: impl Fn(&A::Output) -> bool + 'static) {
        self.output_filter = Some(Box::new(keep));
    }

    /// The recorded outputs of `node`, oldest first (across restarts).
    ///
    /// # Panics
    /// When `node` is not a registered index.
    pub fn outputs(&self, node: usize) -> &[OutputRecord<A::Output>] {
        &self.nodes[node].outputs
    }

    /// Every recorded output of every node, node by node.
    pub fn all_outputs(&self) -> impl Iterator<Item = &OutputRecord<A::Output>> {
        self.nodes.iter().flat_map(|node| node.outputs.iter())
    }

    /// The run's fingerprint.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Events processed since the start.
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    /// Timers that fell due after their node crashed or restarted, and were discarded.
    pub fn timers_discarded(&self) -> u64 {
        self.timers_discarded
    }

    /// Events still queued.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Process every event due up to and including `deadline`, then set the clock to
    /// `deadline` (if it is later than now).
    ///
    /// # Panics
    /// When more than [`SimConfig::events_per_call_max`] events are processed in this call;
    /// the message names the seed.
    pub fn run_until(&mut self, deadline: Millis) {
        let mut processed: u64 = 0;
        while let Some((time, event)) = self.queue.pop_due(deadline) {
            processed += 1;
            if processed > self.config.events_per_call_max {
                panic!(
                    "simulator processed {} events in one call without reaching {deadline} (now {time}, seed {}): \
                     a livelock, or raise SimConfig::events_per_call_max",
                    self.config.events_per_call_max, self.config.seed
                );
            }
            self.now = time;
            self.process(event);
        }
        self.now = self.now.max(deadline);
    }

    /// Run for `duration_ms` of virtual time from now.
    ///
    /// # Panics
    /// As [`run_until`](Self::run_until).
    pub fn run_for(&mut self, duration_ms: u64) {
        let deadline = self.now + duration_ms;
        self.run_until(deadline);
    }

    /// Run until `condition` holds, checking it now and then every `check_every_ms` of virtual
    /// time, but not past `deadline`. Returns the first check time at which it held (so the
    /// answer is late by less than `check_every_ms`), or `None` at the deadline.
    ///
    /// # Panics
    /// When `check_every_ms` is 0, or as [`run_until`](Self::run_until).
    pub fn run_until_condition(
        &mut self,
        deadline: Millis,
        check_every_ms: u64,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> Option<Millis> {
        assert!(check_every_ms > 0, "check_every_ms must be positive");
        if condition(self) {
            return Some(self.now);
        }
        while self.now < deadline {
            let next = (self.now + check_every_ms).min(deadline);
            self.run_until(next);
            if condition(self) {
                return Some(self.now);
            }
        }
        None
    }

    fn process(&mut self, event: Event<A::Timer>) {
        self.events_processed += 1;
        match event {
            Event::Start { node } => self.start_now(node),
            Event::Crash { node } => self.crash_now(node),
            Event::Deliver {
                to,
                generation,
                from,
                bytes,
            } => self.deliver(to, generation, from, &bytes),
            Event::Timer {
                node,
                generation,
                timer,
            } => self.fire(node, generation, timer),
        }
    }

    fn start_now(&mut self, node: usize) {
        let now = self.now;
        let seed: u64 = self.rng.random();
        let slot = &mut self.nodes[node];
        if slot.actor.is_some() {
            return;
        }
        let context = StartContext {
            node,
            addr: slot.addr,
            start_count: slot.start_count,
            seed,
            now,
        };
        slot.start_count += 1;
        slot.generation += 1;
        slot.actor = Some((slot.factory)(&context));
        let start_count = slot.start_count;
        self.trace.record(now, node, TraceKind::Start, seed, || {
            format!("#{start_count}")
        });
        self.apply_effects(node);
    }

    fn crash_now(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        if slot.actor.take().is_none() {
            return;
        }
        slot.generation += 1;
        self.trace
            .record(self.now, node, TraceKind::Crash, 0, String::new);
    }

    fn deliver(&mut self, to: usize, generation: u64, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        let slot = &mut self.nodes[to];
        let Some(actor) = slot
            .actor
            .as_mut()
            .filter(|_| slot.generation == generation)
        else {
            self.network.counters_mut().dropped_node_down += 1;
            return;
        };
        self.network.counters_mut().delivered += 1;
        self.trace
            .record(now, to, TraceKind::Message, hash_bytes(bytes), || {
                format!("from {from} {} bytes", bytes.len())
            });
        actor.on_message(now, from, bytes);
        self.apply_effects(to);
    }

    fn fire(&mut self, node: usize, generation: u64, timer: A::Timer) {
        let now = self.now;
        let slot = &mut self.nodes[node];
        let Some(actor) = slot
            .actor
            .as_mut()
            .filter(|_| slot.generation == generation)
        else {
            self.timers_discarded += 1;
            return;
        };
        self.trace
            .record(now, node, TraceKind::Timer, 0, || format!("{timer:?}"));
        actor.on_timer(now, timer);
        self.apply_effects(node);
    }

    /// Carry out what `node`'s core asked for: queue sends and timers, record outputs.
    fn apply_effects(&mut self, node: usize) {
        let now = self.now;
        let slot = &mut self.nodes[node];
        let Some(actor) = slot.actor.as_mut() else {
            return;
        };
        let effects = actor.drain();
        let from = slot.addr;
        let generation = slot.generation;
        for effect in effects {
            match effect {
                SimEffect::Send { to, bytes } => self.send(from, to, bytes),
                SimEffect::Schedule { after_ms, timer } => self.queue.push(
                    now + after_ms,
                    Event::Timer {
                        node,
                        generation,
                        timer,
                    },
                ),
                SimEffect::Output(output) => self.record_output(node, output),
            }
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let route = self.network.route(&mut self.rng, from, to);
        if route.latency_ms.is_none() {
            return;
        }
        let copies = if route.duplicate_latency_ms.is_some() {
            2
        } else {
            1
        };
        let Some(destination) = self.by_addr.get(&to).copied() else {
            self.network.counters_mut().dropped_unknown_address += copies;
            return;
        };
        let target = &self.nodes[destination];
        if target.actor.is_none() {
            self.network.counters_mut().dropped_node_down += copies;
            return;
        }
        let generation = target.generation;
        if let Some(latency_ms) = route.duplicate_latency_ms {
            self.queue.push(
                self.now + latency_ms,
                Event::Deliver {
                    to: destination,
                    generation,
                    from,
                    bytes: bytes.clone(),
                },
            );
        }
        if let Some(latency_ms) = route.latency_ms {
            self.queue.push(
                self.now + latency_ms,
                Event::Deliver {
                    to: destination,
                    generation,
                    from,
                    bytes,
                },
            );
        }
    }

    fn record_output(&mut self, node: usize, output: A::Output) {
        let now = self.now;
        self.trace
            .record(now, node, TraceKind::Output, 0, || format!("{output:?}"));
        if self.output_filter.as_ref().is_none_or(|keep| keep(&output)) {
            self.nodes[node].outputs.push(OutputRecord {
                at: now,
                node,
                output,
            });
        }
    }
}

impl<A: SimActor> Debug for Simulator<A> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Simulator")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("pending_events", &self.queue.len())
            .field("events_processed", &self.events_processed)
            .field("counters", self.network.counters())
            .finish()
    }
}
