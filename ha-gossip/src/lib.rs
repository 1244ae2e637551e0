//! # ha-gossip
//!
//! SWIM membership for `ha`, on [`foca`]: failure detection with suspicion, node metadata
//! (priority, health, state, addresses, voter flag, version) disseminated with foca's
//! broadcasts, member events, graceful leave, periodic re-announce to seeds, and an optional
//! cluster key that seals every packet with XChaCha20-Poly1305.
//!
//! ```text
//!            UDP datagrams                       MemberEvent stream
//!  socket ───────────────▶ GossipNode (tokio) ──────────────────────▶ replication, HTTP, host
//!         ◀─────────────── │  drives            members() snapshot
//!                          ▼
//!                    GossipCore (sans-IO) = foca + metadata + envelope (cluster name, key)
//! ```
//!
//! [`GossipCore`] never touches a clock, socket or thread; the tokio [`GossipNode`] and the
//! simulator in `tests/` drive the same core. Gossip never decides leadership: it supplies
//! addresses, metadata and failure hints.
//!
//! The [`shared_state`] module holds the multi-master shared map (issue 15): a sans-IO CRDT
//! ([`SharedMap`]: last-writer-wins registers by hybrid logical clock, PN-counters, tombstones,
//! an incrementally kept digest) that every node writes locally and that converges over
//! gossip's socket.
//!
//! ## Example
//!
//! Two members on loopback find each other:
//!
//! ```
//! use std::time::Duration;
//! use ha_core::{Config, MemberEvent, NodeId, NodeMetadata, Priority};
//! use ha_gossip::{GossipNode, GossipSettings};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async fn start(id: &str, seeds: Vec<std::net::SocketAddr>) -> Result<GossipNode, Box<dyn std::error::Error>> {
//!     let mut config = Config::single(NodeId::new(id)?, "127.0.0.1:0".parse()?);
//!     config.seeds = seeds;
//!     let metadata = NodeMetadata::new(Priority(1), config.bind_addr);
//!     let settings = GossipSettings::from_config(&config, 1, metadata);
//!     Ok(GossipNode::start(settings, config.bind_addr).await?)
//! }
//! let first = start("a", vec![]).await?;
//! let mut events = first.subscribe();
//! let second = start("b", vec![first.local_addr()]).await?;
//! let event = tokio::time::timeout(Duration::from_secs(5), async {
//!     loop {
//!         if let Ok(MemberEvent::Up(member)) = events.recv().await { return member; }
//!     }
//! }).await?;
//! assert_eq!(event.id.as_str(), "b");
//! second.leave().await?;
//! # Ok(()) }
//! ```

pub mod anti_entropy;
mod core;
mod driver;
mod drops;
mod envelope;
mod error;
mod identity;
mod intern;
mod members;
mod metadata;
mod settings;
pub mod shared_state;
pub mod suspicion;

pub use crate::core::{GossipCore, GossipEffect, GossipTimer};
pub use driver::{EVENT_BUFFER, GossipNode};
pub use drops::{DropCause, DropCounts};
pub use envelope::{DATAGRAM_BYTES_MAX, ENVELOPE_OVERHEAD_BYTES, Envelope, PacketKind};
pub use error::GossipError;
pub use identity::{GossipIdentity, IdentityFields};
pub use members::MEMBERS_MAX;
pub use metadata::{METADATA_BYTES_MAX, MetadataAnnouncement};
pub use settings::GossipSettings;
pub use shared_state::{
    BUCKETS, Body, COUNTER_NODES_MAX, Delta, Digest, Entry, Hlc, HlcClock, MapStats, PnCounter,
    SharedMap, Stamp, StateData, StateError, StateLimits, StateValue,
};
pub use shared_state::{
    ReplicatorSettings, ReplicatorStats, STATE_PACKET_BYTES_MAX, StateEffect, StateMessage,
    StateReplicator,
};
