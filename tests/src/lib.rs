//! # ha-tests
//!
//! The deterministic simulation harness of `ha` (docs/ARCHITECTURE.md, "Verification"): many
//! sans-IO cores in one thread, in virtual time, on a simulated network with faults, all driven by one seed.
//! A failing scenario prints its seed and the command that replays it.
//!
//! ```text
//!   EventQueue (time, sequence) ──▶ Simulator ──on_message / on_timer──▶ core (SimActor)
//!          ▲                           │  ◀──────── drain(): Send / Schedule / Output ──┘
//!          │                           ▼
//!          └──── latency, loss, ── Network (partitions, one-way blocks, counters)
//!                duplication            outputs per node, Trace (rolling hash)
//! ```
//!
//! - [`sim`]: the generic simulator ([`sim::Simulator`], [`sim::SimActor`], [`sim::Network`]).
//! - [`gossip`]: `ha_gossip::GossipCore` plugged in, with cluster helpers.
//! - [`replica`]: `ha_replicate::replica::ReplicaCore` plugged in over a crash-losing simulated
//!   disk and drifting clocks; [`register`] is the replicated register-with-CAS,
//!   [`workload`] the clients that record a history, [`invariants`] the safety checks.
//! - [`lock_sim`]: the lock table (`ha_lock::WithLocks`) replicated the same way, with the
//!   leader's lease expiry tracker, lock clients that renew leases and write to a fenced
//!   resource, and a versioned-KV history.
//! - [`state_sim`]: the shared map's replicator (`ha_gossip::StateReplicator`) over a
//!   crash-losing store and skewed wall clocks, with partitions, a workload on every side
//!   and an oracle of acknowledged writes.
//! - [`founding`]: gossip and replication side by side, founding a cluster through the
//!   shared `bootstrap_expect` rule (`ReplicaCore::on_member_event`).
//! - [`with_seeds`]: runs a scenario under many seeds; reads `HA_SIM_SEED` / `HA_SIM_SEEDS`.
//!
//! ## Example
//!
//! Five gossip members meet through one seed:
//!
//! ```
//! use ha_core::Millis;
//! use ha_tests::gossip::{GossipClusterOptions, all_see_each_other, gossip_cluster};
//!
//! ha_tests::with_seeds("doc_five_members", 1, |seed| {
//!     let mut options = GossipClusterOptions::new(5);
//!     options.seed_node_count = 1;
//!     let mut sim = gossip_cluster(seed, &options);
//!     let everyone: Vec<usize> = (0..5).collect();
//!     let met = sim.run_until_condition(Millis(30_000), 100, |sim| all_see_each_other(sim, &everyone));
//!     assert!(met.is_some(), "seed {seed}: not converged");
//! });
//! ```

pub mod founding;
pub mod gossip;
pub mod invariants;
pub mod lock_sim;
pub mod register;
pub mod replica;
mod seeds;
pub mod sim;
pub mod sim_syncs;
pub mod snapshot_writes;
pub mod state_sim;
pub mod workload;

pub use seeds::{
    SEED_BASE_VARIABLE, SEED_VARIABLE, SEEDS_VARIABLE, replay_command, seeds_to_run, with_seeds,
};
