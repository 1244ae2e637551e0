//! The shared map (issue 15): a multi-master, partition-tolerant key/value map that every
//! node writes locally and that converges once nodes can talk again.
//!
//! ```text
//!   local writes ──▶ SharedMap (this module, sans-IO CRDT) ──▶ Delta ──▶ store, replicator
//!   peer deltas  ──▶ SharedMap::merge (join)                 digest ──▶ anti-entropy
//! ```
//!
//! - [`Hlc`], [`HlcClock`]: hybrid logical clock; [`Stamp`]: a write's identity and order.
//! - [`Entry`] and [`Body`]: one key's state (value, tombstone or [`PnCounter`]); the merge rule
//!   is [`Entry::join`], described in the `map` module documentation.
//! - [`SharedMap`]: one replica, with its incrementally kept [`Digest`] of [`BUCKETS`] buckets.
//! - [`StateLimits`] and [`StateError`]: every bound, and the errors naming them.
//! - [`StateReplicator`] (with [`ReplicatorSettings`] and the wire format [`StateMessage`]):
//!   the sans-IO dissemination, pushes with epidemic relays plus digest anti-entropy.
//!
//! It lives in `ha-gossip` because it travels over gossip's socket, sealed by gossip's
//! envelope and addressed by gossip's member list; it never touches the Raft log.

mod counter_writer;
mod digest;
mod entry;
mod error;
mod handle;
mod hlc;
mod limits;
mod map;
mod message;
mod replicator;
mod replicator_settings;
mod slots;
mod stamp;
mod state_settings;
mod store;

pub use digest::{BUCKETS, Digest, entry_hash};
pub use entry::{Body, Delta, Entry, PnCounter};
pub use error::StateError;
pub(crate) use handle::Outgoing;
pub use handle::{SharedState, SharedStateStats};
pub use hlc::{Hlc, HlcClock};
pub use limits::{COUNTER_NODES_MAX, StateLimits};
pub use map::{MapStats, SharedMap, StateData, StateValue};
pub use message::{
    DIGEST_BUCKETS, PAYLOAD_BYTES_MAX, STATE_PROTOCOL_VERSION, StateMessage, digest_root,
};
pub use replicator::{ReplicatorStats, StateEffect, StateReplicator};
pub use replicator_settings::{ReplicatorSettings, STATE_PACKET_BYTES_MAX};
pub use stamp::Stamp;
pub use state_settings::{SHARED_STATE_DIR_NAME, SharedStateSettings};
pub use store::{
    COMPACT_BYTES_MIN, Recovered, STATE_LOG_FILE_NAME, STATE_RECORD_BYTES_MAX, StateStore,
    StoreSync,
};

#[cfg(test)]
mod map_tests;
