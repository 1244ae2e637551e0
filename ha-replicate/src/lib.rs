//! # ha-replicate
//!
//! The replicated log of `ha`: Raft election and replication as a sans-IO engine, the replica
//! core that joins it to a log store and the host's state machine, a segmented write-ahead
//! log, an authenticated TCP transport, and the tokio driver that runs it all for real. The
//! simulator in the workspace's `tests/` crate runs the same [`replica::ReplicaCore`] with
//! virtual time and an in-memory store, so a sweep covers the code users run.
//!
//! ## Map of the crate
//!
//! ```text
//!   host code
//!     │  ReplicaClient::write / read          (driver/: typed, retrying, one session each)
//!     ▼
//!   ReplicaNode ── one tokio task ─────────────────────────────────────────────────────────┐
//!     │  inputs: client requests, peer messages, timers, storage and apply reports         │
//!     ▼                                                                                    │
//!   ReplicaCore (replica/: no IO)  ── sessions, forwards, snapshots, durability gate       │
//!     │  ▲ inputs: on_rpc, on_timer, submit, on_persisted, ...                             │
//!     ▼  │ effects: Send, SetTimer, Sync, Apply, Reply, Fatal, ...                         │
//!   Engine (engine/: no clock, socket or disk) ── elections, replication, reads, members   │
//!                                                                                          │
//!   the driver carries out the effects:                                                    │
//!     Send ──────▶ TcpTransport (transport/: framed postcard, hello handshake, AEAD/TLS) ◀──┤─▶ peers
//!     persist ───▶ ThreadedStore ─▶ LogStore (storage/: WalStore on disk, MemoryStore)     │
//!     Apply ─────▶ apply thread ─▶ the host's StateMachine (ha_core::StateMachine)         │
//!   gossip MemberEvent ─▶ membership_feed: peer info, founding (bootstrap_expect) ─────────┘
//! ```
//!
//! What each module is for:
//!
//! - [`transport`]: length-prefixed postcard frames over TCP, a hello handshake (protocol
//!   version, cluster, node id), optional AEAD sealing or TLS, bounded queues and backoff.
//! - [`engine`]: the Raft algorithm as inputs in, ordered effects out: pre-vote,
//!   check-quorum, priorities, leadership transfer and failback, replication and snapshots,
//!   read-index and lease reads, one-node membership changes. Its effects say when they may
//!   run ([`engine::After`]): nothing leaves before what it promises is durable.
//! - [`replica`]: [`replica::ReplicaCore`], the engine plus a [`storage::LogStore`] plus the
//!   host's state machine: persist-before-send with group commit, exactly-once client
//!   sessions (at most [`replica::SESSIONS_MAX`] remembered), forwarding to the leader,
//!   snapshots streamed in chunks, a consistency monitor, storage stalls and fatal stops
//!   ([`replica::ClientError`] says for each failure whether a write may have applied).
//! - [`driver`]: [`driver::ReplicaNode`] runs a core on tokio (storage on its own thread,
//!   the state machine on another) and hands out [`driver::ReplicaClient`]s.
//! - [`storage`]: the [`storage::LogStore`] contract, the on-disk
//!   [`storage::wal::WalStore`] and the in-memory [`storage::memory::MemoryStore`] (for tests
//!   and the simulator; it can lose unsynced writes on a simulated crash).
//! - [`membership`], [`membership_feed`]: voter sets and the gossip-driven feed (learners,
//!   promotion, `bootstrap_expect`).
//! - [`entry`], [`hard_state`], [`raft_log`], [`snapshot_meta`]: the log's data types;
//!   [`tls`], [`trace_context`]: TLS settings and W3C trace contexts carried with writes.
//!
//! See `docs/ARCHITECTURE.md` (section "ha-replicate") for the rules each part keeps.
//!
//! ## The `test-support` feature
//!
//! For tests only, not a supported API: it makes the sans-IO engine public (`engine::Engine`,
//! `EngineStart`, `Progress`, `ReplicationState`, `ReplicaCore::engine`) so that the
//! workspace's simulators (the `ha-tests` crate) and this crate's engine tests can feed it
//! inputs one by one and check invariants on its state, and adds `test_support` (a counter
//! state machine, a loopback cluster of real nodes). Without it a host drives the engine only
//! through [`replica::ReplicaCore`] and [`driver::ReplicaNode`].
//!
//! ## Example
//!
//! A one-node cluster on loopback with an in-memory store and a counter as the state machine:
//! write to it, then read it back STRONG (linearizable). A three-node cluster is the same with
//! three nodes told each other's addresses ([`driver::ReplicaNode::set_peer`]) and all three
//! in the bootstrap voter set; the client of any of them forwards to the leader.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! use ha_core::{Config, Consistency, LogIndex, NodeId, StateMachine, StateMachineError};
//! use ha_replicate::driver::{NodeSettings, ReplicaNode};
//! use ha_replicate::membership::VoterSet;
//! use ha_replicate::replica::ReplicaSettings;
//! use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
//! use ha_replicate::transport::TransportSettings;
//!
//! /// Adds each command to a total; a query reads the total.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     type Command = u64;
//!     type Response = u64;
//!     type Query = ();
//!     type QueryResponse = u64;
//!     fn apply(&mut self, _index: LogIndex, add: u64) -> u64 {
//!         self.0 += add;
//!         self.0
//!     }
//!     fn query(&self, _query: &()) -> u64 {
//!         self.0
//!     }
//!     fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
//!         Ok(self.0.to_le_bytes().to_vec())
//!     }
//!     fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
//!         let bytes: [u8; 8] = bytes
//!             .try_into()
//!             .map_err(|_| StateMachineError::Corrupt("not 8 bytes".to_string()))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let id = NodeId::new("n1")?;
//! let bind = "127.0.0.1:0".parse()?;
//! let config = Config::single(id.clone(), bind);
//! let settings = NodeSettings {
//!     replica: ReplicaSettings::from_config(&config),
//!     transport: TransportSettings::new(id.clone(), bind, "example"),
//!     peers: BTreeMap::new(),
//!     // An empty store founds a new cluster with these voters.
//!     bootstrap: Some(VoterSet::with_voters([id])),
//! };
//! let store = MemoryStore::open(MemoryDisk::new());
//! let node = ReplicaNode::start(settings, Counter::default(), store).await?;
//!
//! // The client retries (same session and sequence) while the node elects itself.
//! let client = node.client();
//! let timeout = Duration::from_secs(5);
//! let written = client.write(5, Consistency::Quorum, timeout).await?;
//! assert_eq!(written.response, Some(5));
//! assert_eq!(client.read((), Consistency::Strong, timeout).await?, 5);
//!
//! node.shutdown(Duration::from_millis(100)).await;
//! # Ok(())
//! # }
//! ```

pub mod driver;
pub mod engine;
pub mod entry;
pub mod hard_state;
pub mod membership;
pub mod membership_feed;
pub mod raft_log;
pub mod replica;
pub mod snapshot_meta;
pub mod storage;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tls;
pub mod trace_context;
pub mod transport;
