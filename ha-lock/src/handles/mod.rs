//! Async handles over a running [`ReplicaNode<WithLocks<H>>`](ha_replicate::driver::ReplicaNode):
//! the part of ha-lock that talks to the cluster.
//!
//! ```text
//!  every node:  LeaseKeeper ── (leader only) Leases? ──▶ LeaseExpiryTracker ── LeaseExpire ──▶ log
//!
//!  a process:   Session ── SessionCore (Arc: one ReplicaClient session, settings, change feed)
//!                 ├─ Kv ──── Put/Delete/Txn ──▶ ReplicaClient ──▶ log; Watch ── Changes
//!                 ├─ Leases ── LeaseGrant/LeaseRevoke ──▶ log
//!                 ├─ Locks ── GrantAndAcquire/Release ──▶ log
//!                 ├─ Lease ── keep-alive task every TTL/3 ── LeaseKeepAlive ──▶ log
//!                 │     └─ LeaseRenewal: safe deadline = sent + TTL − drift margin; lost()
//!                 ├─ LockGuard (token, safe deadline, lost(), release)
//!                 ├─ Watch ── reads Changes on the local replica when its ChangeFeed signals
//!                 └─ Leadership / LeaderObserver ── lock `name` + key /election/<name>
//!  a resource:  FencedResource ── refuses writes with a token below the highest seen
//! ```
//!
//! Time enters only here, never the replicated state: the holder's safe deadline and the
//! leader's expiry decisions use each process's monotonic clock, and the holder always counts
//! from an earlier instant (when it *sent* a renewal) than the leader (when it *saw* it
//! applied), minus a margin for clock-rate drift. A new leader starts every lease's TTL
//! afresh. Both rules are sans-IO types outside this module ([`LeaseRenewal`](crate::LeaseRenewal)
//! for the holder, [`LeaseExpiryTracker`](crate::LeaseExpiryTracker) for the leader): these
//! handles only feed them times and answers, as the simulator does.
//!
//! A [`Session`] is one lock-table session; its [`Kv`], [`Leases`] and [`Locks`] handles
//! (and the guards, leases and watches they make) each hold an `Arc` of the same
//! `SessionCore`, so they share the session id: lock waits and deadlock detection are per
//! session, whichever handle acquired.
//!
//! ## Example
//!
//! A one-node cluster, a lock with its fencing token, and an ephemeral key:
//!
//! ```
//! use std::time::Duration;
//! use ha_core::{Config, Consistency, NodeId};
//! use ha_lock::{FencedResource, LeaseKeeper, Session, WithLocks};
//! use ha_replicate::driver::{NodeSettings, ReplicaNode};
//! use ha_replicate::membership::VoterSet;
//! use ha_replicate::replica::ReplicaSettings;
//! use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
//! use ha_replicate::transport::TransportSettings;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let id = NodeId::new("n1")?;
//! let config = Config::single(id.clone(), "127.0.0.1:0".parse()?);
//! let settings = NodeSettings {
//!     replica: ReplicaSettings::from_config(&config),
//!     transport: TransportSettings::new(id.clone(), "127.0.0.1:0".parse()?, "demo"),
//!     peers: Default::default(),
//!     bootstrap: Some(VoterSet::with_voters([id])),
//! };
//! let node = ReplicaNode::start(settings, WithLocks::new(()), MemoryStore::open(MemoryDisk::new())).await?;
//! let _keeper = LeaseKeeper::start(&node);
//! let session = Session::from_node(&node);
//! let (kv, locks) = (session.kv(), session.locks());
//!
//! let journal = FencedResource::new(Vec::new());
//! let guard = locks.acquire("journal", Duration::from_secs(2), Duration::from_secs(5)).await?;
//! journal.write(guard.token(), |entries| entries.push("first"))?;
//! kv.put_with_lease("/holders/journal", "n1", guard.lease_id()).await?;
//! guard.release().await?; // revokes the lease too: the key is gone
//! assert_eq!(kv.get("/holders/journal", Consistency::Quorum).await?, None);
//! node.shutdown(Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```

mod error;
mod fenced_resource;
mod kv;
mod kv_batch_client;
mod leader_observer;
mod leadership;
mod lease;
mod lease_keeper;
mod lease_status;
mod leases;
mod lock_guard;
mod lock_wait;
mod locks;
mod session;
mod session_core;
mod session_settings;
mod table_answer;
mod table_session;
mod watch;

pub use crate::lease_expiry::LEASE_TICK_INTERVAL_DEFAULT;
pub use crate::lease_renewal::drift_margin;
pub use error::LockError;
pub use fenced_resource::{FencedResource, StaleToken};
pub use kv::Kv;
pub use leader_observer::LeaderObserver;
pub use leadership::{Leadership, election_key};
pub use lease::Lease;
pub use lease_keeper::LeaseKeeper;
pub use lease_status::{LEASE_TTL_MIN, LeaseLoss, LeaseStatus};
pub use leases::Leases;
pub use lock_guard::LockGuard;
pub use locks::Locks;
pub use session::Session;
pub use session_settings::SessionSettings;
pub use watch::Watch;
