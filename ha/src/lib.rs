//! # ha
//!
//! The one dependency a service adds to become highly available. Today this crate re-exports
//! the parts that are built: the vocabulary ([`core`]), gossip membership ([`gossip`]) and the
//! replicated log with its tokio driver ([`replicate`]). The `Node::builder()` that wires them
//! from one config, the KV/lock store and the admin HTTP API come next (DESIGN.md sections 5
//! and 8).
//!
//! ```text
//!   your service ── StateMachine ──▶ replicate::driver::ReplicaNode ◀── gossip::GossipNode
//!                                       │ TCP (AEAD)   WAL on disk        UDP (AEAD)
//! ```
//!
//! ## Example
//!
//! A one-node cluster replicating a counter:
//!
//! ```
//! use std::time::Duration;
//! use ha::core::{Config, Consistency, LogIndex, NodeId, StateMachine, StateMachineError};
//! use ha::replicate::driver::{NodeSettings, ReplicaNode};
//! use ha::replicate::membership::Membership;
//! use ha::replicate::replica::ReplicaSettings;
//! use ha::replicate::storage::memory::{MemoryDisk, MemoryStore};
//! use ha::replicate::transport::TransportSettings;
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
//! let id = NodeId::new("n1")?;
//! let config = Config::single(id.clone(), "127.0.0.1:0".parse()?);
//! let settings = NodeSettings {
//!     replica: ReplicaSettings::from_config(&config),
//!     transport: TransportSettings::new(id.clone(), "127.0.0.1:0".parse()?, "demo"),
//!     peers: Default::default(),
//!     bootstrap: Some(Membership::with_voters([id])),
//!     bootstrap_expect: None,
//! };
//! let node = ReplicaNode::start(settings, Counter::default(), MemoryStore::open(MemoryDisk::new())).await?;
//! let client = node.client();
//! let written = client.write(5, Consistency::Quorum, Duration::from_secs(5)).await?;
//! assert_eq!(written.response, Some(5));
//! assert_eq!(client.read((), Consistency::Strong, Duration::from_secs(5)).await?, 5);
//! node.shutdown(Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```

pub use ha_core as core;
pub use ha_gossip as gossip;
pub use ha_replicate as replicate;
