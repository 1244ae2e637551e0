//! # ha-replicate
//!
//! The replicated log: Raft election and replication as a sans-IO engine, the replica core
//! that joins it to a log store and the host's state machine (client sessions, failover
//! history, snapshots), a segmented write-ahead log, an authenticated TCP transport, and the
//! tokio driver that runs it all for real. The simulator in `tests/` runs the same
//! [`replica::ReplicaCore`] with virtual time.
//!
//! ```text
//!   ReplicaClient ──requests──▶ ReplicaNode (driver/, one tokio task)
//!                                  │  ReplicaCore (replica/): Engine (engine/) + Applier
//!                                  │  effects: Persist, Send, SetTimer, Apply, ...
//!            WalStore (storage/) ◀─┤─▶ TcpTransport (transport/) ◀──▶ peers
//!   gossip MemberEvent ──▶ ReplicaCore::on_member_event ──▶ MembershipFeed (membership_feed.rs):
//!                          peer info to the engine, founding (`bootstrap_expect`), addresses
//! ```
//!
//! - [`engine`]: elections (pre-vote, check-quorum, priorities, transfer, failback),
//!   replication, read-index and lease reads, single-node membership changes; inputs in,
//!   ordered effects out, no clock, socket or disk.
//! - [`replica`]: [`replica::ReplicaCore`], persist-before-send with group commit, exactly-once
//!   client sessions (at most [`replica::SESSIONS_MAX`] remembered), snapshots.
//! - [`storage`]: the [`storage::LogStore`] contract, `WalStore` and an in-memory store.
//! - [`transport`]: length-prefixed postcard frames with optional AEAD over TCP.
//! - [`driver`]: [`driver::ReplicaNode`] and its typed, retrying [`driver::ReplicaClient`].
//! - [`membership`], [`membership_feed`]: configurations and the gossip-driven feed
//!   (learners, promotion, `bootstrap_expect`).
//!
//! See `docs/ARCHITECTURE.md` (section "ha-replicate") for the rules each part keeps.
//!
//! ## Example
//!
//! ```
//! use ha_core::NodeId;
//! use ha_replicate::membership::VoterSet;
//!
//! let ids = [NodeId::new("n1")?, NodeId::new("n2")?, NodeId::new("n3")?];
//! let voters = VoterSet::with_voters(ids.clone());
//! assert_eq!(voters.quorum(), 2);
//! assert!(voters.is_quorum(&ids[..2]));
//! assert!(!voters.is_quorum(&ids[..1]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
pub mod tls;
pub mod trace_context;
pub mod transport;
