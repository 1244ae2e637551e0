//! A generic deterministic discrete-event simulator for sans-IO cores.
//!
//! One thread, virtual time in [`Millis`](ha_core::Millis), one seeded RNG, and an event queue
//! ordered by `(time, insertion sequence)`. Cores plug in through [`SimActor`]; the network
//! ([`Network`]) applies latency, loss, duplication, partitions and one-way blocks when a
//! message is sent.

mod actor;
mod address;
mod event_queue;
mod network;
mod output_record;
mod simulator;
mod trace;

pub use actor::{SimActor, SimEffect, StartContext};
pub use address::{SIMULATED_NODES_MAX, SIMULATED_PORT, node_addr};
pub use event_queue::EventQueue;
pub use network::{Network, NetworkConfig, NetworkCounters, Route};
pub use output_record::OutputRecord;
pub use simulator::{EVENTS_PER_CALL_MAX_DEFAULT, NodeFactory, OutputFilter, SimConfig, Simulator};
pub use trace::{Trace, TraceKind, fnv1a, hash_bytes};
