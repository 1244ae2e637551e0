//! # ha
//!
//! The one dependency a service adds to become highly available: implement
//! [`StateMachine`], start a [`Node`], and get gossip membership, priority-based leader
//! election with failover and failback, replication at STRONG / QUORUM / EVENTUAL
//! consistency, a KV store with compare-and-swap, TTL locks with fencing tokens, health
//! checks, and an admin HTTP API with Prometheus metrics.
//!
//! ```text
//!   your service ── propose / read ──▶ Node ── ReplicaNode<WithLocks<S>> ── TCP (AEAD) ──▶ peers
//!        │                              │        WAL + snapshots in data_dir
//!        └── kv() / leases() / locks() ▶│── GossipNode ── UDP (AEAD) ──▶ peers
//!                                       │── LeaseKeeper, health checks
//!                                       └── admin HTTP (/v1/health, /v1/cluster, /v1/metrics, ...)
//! ```
//!
//! ## Example
//!
//! A one-node cluster replicating a counter, with a fenced lock:
//!
//! ```
//! use std::time::Duration;
//! use ha::{Config, Consistency, LogIndex, Node, NodeId, StateMachine, StateMachineError};
//!
//! #[derive(Default)]
//! struct Counter(i64);
//!
//! impl StateMachine for Counter {
//!     type Command = i64;
//!     type Response = i64;
//!     type Query = ();
//!     type QueryResponse = i64;
//!     fn apply(&mut self, _index: LogIndex, add: i64) -> i64 { self.0 += add; self.0 }
//!     fn query(&self, _: &()) -> i64 { self.0 }
//!     fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> { Ok(self.0.to_le_bytes().to_vec()) }
//!     fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
//!         let bytes: [u8; 8] = bytes.try_into()
//!             .map_err(|_| StateMachineError::Corrupt("expected 8 bytes".into()))?;
//!         self.0 = i64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::single(NodeId::new("n1")?, "127.0.0.1:0".parse()?);
//! let node = Node::builder(config).state_machine(Counter::default()).start().await?;
//! node.watch_role().wait_for(|role| role.leader.is_some()).await?;
//!
//! let written = node.propose(5, Consistency::Quorum).await?;
//! assert_eq!(written.response, Some(5));
//! assert_eq!(node.read((), Consistency::Strong).await?, 5);
//!
//! // One lock-table session: its handles are one holder (leases, locks and keys share it).
//! let session = node.lock_session();
//! let guard = session.locks().acquire("jobs", Duration::from_secs(2), Duration::from_secs(1)).await?;
//! assert!(guard.token() > ha::FencingToken(0)); // pass the token to what you write, to fence stale holders
//! session.kv().put_with_lease("/jobs/holder", "n1", guard.lease_id()).await?;
//! guard.release().await?; // ends the lease: the key is gone
//! assert_eq!(node.kv().get("/jobs/holder", Consistency::Quorum).await?, None);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admin_tokens;
pub mod backup_file;
pub mod backup_schedule;
pub mod backup_writer;
mod builder;
pub mod cluster_view;
pub mod config_file;
pub mod consistency_view;
mod error;
mod event;
pub mod event_journal;
pub mod failover_status;
pub mod health_check_metrics;
mod health_runner;
pub mod host_checks;
mod host_client;
#[cfg(feature = "http")]
pub mod http;
pub mod latency_metrics;
mod members;
pub mod metrics;
mod node;
pub mod node_file;
pub mod restore;
pub mod security;
pub mod shared_state_metrics;
pub mod storage_health;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod wal_sync_timer;

pub use admin_tokens::{AdminIdentity, AdminRole, AdminTokenError, AdminTokens};
pub use builder::{LOG_DIR_NAME, NodeBuilder};
pub use cluster_view::{ClusterView, FailoverEvent, HealthReport, MemberView};
pub use config_file::ConfigLoader;
pub use error::NodeError;
pub use event::NodeEvent;
pub use event_journal::EventJournal;
pub use health_runner::HEALTH_CHECKS_MAX;
pub use members::{MemberAdded, MemberAddress, MemberList, MemberRemoved};
pub use node::{EVENT_BUFFER, Node, WriteOutcome};

pub use ha_core::{
    CheckResult, ClusterConfig, Config, ConfigError, Consistency, FailoverMode, HealthCheck,
    HealthStatus, LogIndex, MemberEvent, MemberInfo, NodeId, NodeState, Priority, Protection,
    SecurityConfig, SessionId, StateMachine, StateMachineError, Term, Timing, TlsFiles,
};
pub use ha_gossip::shared_state::{
    SharedState, SharedStateStats, Stamp, StateData, StateError, StateValue,
};
pub use ha_lock::{
    FencedResource, FencingToken, Kv, LeaseId, Leases, LockError, LockGuard, Locks, Session,
};
pub use ha_replicate::driver::{ReplicaStatus, RoleView};
// What a write or read through the node's clients failed with, and whether it may have
// been applied: the error type `Node`'s and the lock handles' errors wrap.
pub use ha_replicate::engine::Role;
pub use ha_replicate::replica::{ClientError, WriteFate};
pub use ha_replicate::tls::TlsIdentity;

/// The vocabulary crate (ids, time, config, codec limits, keyring).
pub use ha_core as core;
/// Gossip membership.
pub use ha_gossip as gossip;
/// KV, leases and locks.
pub use ha_lock as lock;
/// The replicated log.
pub use ha_replicate as replicate;

// The README's embedding example is compiled and run as a doc test so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
