//! The lock service under simulation: `ReplicaCore<WithLocks<()>, MemoryStore>` as a
//! [`SimActor`](crate::sim::SimActor), with each node's leader-side
//! [`LeaseExpiryTracker`](ha_lock::LeaseExpiryTracker) driven by a periodic timer on its
//! drifting clock, and simulated lock clients that keep leases alive, take fenced locks, write
//! to a fenced resource and run versioned KV operations.
//!
//! The time rules are the shipped ones, not copies: each node's expiry decisions are
//! [`LeaseExpiryTracker::on_tick`](ha_lock::LeaseExpiryTracker::on_tick) with the term it
//! leads (as `LeaseKeeper` calls it), and each client's renewal times and safe deadline are a
//! [`LeaseRenewal`](ha_lock::LeaseRenewal) (as the `Lease` handle keeps one). Only the IO
//! differs: requests are simulated messages, and a failed keep-alive is retried after
//! `retry_delay_ms` under a new sequence number (the handle retries under the same one),
//! each counted from its own send time.
//!
//! ```text
//!  LockWorkload (clients, virtual time) ── submit ──▶ SimLockNode ×N ── Rpc ──▶ network
//!      │ records: holder intervals, fenced writes,      │ ReplicaCore<WithLocks<()>>
//!      │ first send time of every write, KV history     │ LeaseExpiryTracker (leader, every 25 ms)
//!      ▼                                                ▼
//!  invariants (lock_*, lease_*) ◀── replay ── AppliedLog (first apply of each index, any node)
//! ```
//!
//! - [`node`]: the simulated node and its timers and outputs.
//! - [`cluster`]: building a bootstrapped cluster ([`lock_cluster`]).
//! - [`applied_log`]: what every node applied, by index, with the virtual time of the first
//!   apply; replayed through a reference applier to learn each command's outcome.
//! - [`clients`]: the lock clients ([`LockWorkload`]); [`workload_options`] what they do;
//!   [`records`] what they record.
//! - [`fenced_resource`]: the test-side resource that checks fencing tokens.
//! - [`versioned_kv_model`]: the linearizability model of a key with versions and CAS.
//!
//! The adapter in [`node`] parallels [`crate::replica`], which is specific to the register
//! state machine; the two should be folded into one generic adapter.

pub mod applied_log;
pub mod clients;
pub mod cluster;
pub mod fenced_resource;
pub mod node;
pub mod records;
pub mod versioned_kv_model;
pub mod workload_options;

pub use applied_log::{AppliedLockCommand, AppliedLog, AppliedResult, FirstApply};
pub use clients::LockWorkload;
pub use cluster::{LockClusterOptions, lock_cluster, lock_leader};
pub use fenced_resource::{FencedResource, FencedWrite};
pub use node::{LockNodeOutput, LockNodeTimer, SimLockNode};
pub use records::{HoldEnd, HolderInterval, KvRecord, KvRequest, LockWorkloadStats, SendTimes};
pub use versioned_kv_model::{KvInput, KvOutput, VersionedKvModel};
pub use workload_options::{DRIFT_MARGIN_SLACK_MS, LockWorkloadOptions, clock_drift_bound_ms};
