//! What the simulator needs from a sans-IO core.

use std::fmt::Debug;
use std::net::SocketAddr;

use ha_core::Millis;

/// A sans-IO core the [`Simulator`](crate::sim::Simulator) can drive: it takes messages and
/// due timers, and hands back what it wants done as [`SimEffect`]s.
///
/// # Correctness requirements
/// - The core must be deterministic given its inputs and the seed it was built with (see
///   [`StartContext::seed`]): no clock reads, no unseeded randomness, no `HashMap` iteration
///   order leaking into its outputs. Otherwise a seed does not replay a failure.
/// - Effects come out of [`drain`](Self::drain) in the order the core produced them; the
///   simulator schedules timers with equal deadlines in that order.
pub trait SimActor {
    /// The core's timer type, handed back unchanged when the timer is due.
    type Timer: Clone + Debug;
    /// What the core reports to its host (for gossip, member events). The simulator records
    /// these with the virtual time they happened at.
    type Output: Clone + Debug;

    /// A message from `from` arrived.
    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]);

    /// A timer scheduled earlier is due.
    fn on_timer(&mut self, now: Millis, timer: Self::Timer);

    /// Take the effects produced since the last call, in order.
    fn drain(&mut self) -> Vec<SimEffect<Self::Timer, Self::Output>>;
}

/// One thing a core asks its host to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEffect<T, O> {
    /// Put `bytes` on the simulated network, addressed to `to`.
    Send {
        /// Destination address (a key in the simulator, nothing binds it).
        to: SocketAddr,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Deliver `timer` back after `after_ms` of virtual time.
    Schedule {
        /// Delay in milliseconds.
        after_ms: u64,
        /// The timer to deliver.
        timer: T,
    },
    /// Report something to the host; the simulator records it.
    Output(O),
}

/// What a node's factory is told each time the simulator (re)starts the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartContext {
    /// The node's index in the simulator.
    pub node: usize,
    /// The node's address.
    pub addr: SocketAddr,
    /// How many times this node was started before (0 on the first start), so a restart can
    /// pick a higher incarnation.
    pub start_count: u32,
    /// A seed for the core's own randomness, drawn from the simulator's seeded RNG.
    pub seed: u64,
    /// The virtual time of the start.
    pub now: Millis,
}
