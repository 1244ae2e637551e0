//! Limits of the shared map: everything a client or a peer can make a node hold is bounded.

use serde::{Deserialize, Serialize};

/// The most writers one counter may carry. A PN-counter keeps one increment and one
/// decrement total per node that ever wrote it, so this bounds a counter's memory
/// (about 80 bytes per writer) whatever peers send.
pub const COUNTER_NODES_MAX: usize = 1024;

/// Bounds of one node's shared map. Local writes are refused at these limits with a
/// [`StateError`](crate::StateError) naming the limit; data merged from peers is refused at
/// twice them (nodes may be configured differently during a rolling change), and counted.
///
/// ```
/// use ha_gossip::StateLimits;
/// let limits = StateLimits { value_bytes_max: 1024, ..StateLimits::default() };
/// assert_eq!(limits.keys_max, 100_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateLimits {
    /// Longest key, in bytes (UTF-8). Default 256.
    pub key_bytes_max: usize,
    /// Largest value, in bytes. Default 4,096 (below a state packet of 8,192 bytes, so one
    /// entry always fits in one packet).
    pub value_bytes_max: usize,
    /// Most live keys (values and counters). Default 100,000.
    pub keys_max: usize,
    /// Most tombstones kept at once. Default 100,000.
    pub tombstones_max: usize,
    /// How long a tombstone is kept, by the wall time of its stamp, before it is collected.
    /// A member that was away longer than this can bring a deleted key back. Default 24 h.
    pub tombstone_grace_ms: u64,
    /// How far ahead of this node's wall clock a peer's stamp may be before it is refused.
    /// Default 60,000 (one minute).
    pub drift_ms_max: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            key_bytes_max: 256,
            value_bytes_max: 4096,
            keys_max: 100_000,
            tombstones_max: 100_000,
            tombstone_grace_ms: 24 * 60 * 60 * 1000,
            drift_ms_max: 60_000,
        }
    }
}

impl StateLimits {
    /// The factor by which data from peers may exceed the local limits before it is refused.
    pub const REMOTE_FACTOR: usize = 2;

    /// Checks `key`: 1 to `key_bytes_max` bytes, no control characters (keys travel in URLs,
    /// logs and metric labels).
    ///
    /// # Errors
    /// [`StateError::InvalidKey`](crate::StateError::InvalidKey) saying why.
    pub fn check_key(&self, key: &str) -> Result<(), crate::StateError> {
        let reason = if key.is_empty() {
            "the key is empty".to_string()
        } else if key.len() > self.key_bytes_max {
            format!(
                "the key has {} bytes, over shared_state.key_bytes_max ({})",
                key.len(),
                self.key_bytes_max
            )
        } else if key.chars().any(char::is_control) {
            "the key holds a control character".to_string()
        } else {
            return Ok(());
        };
        Err(crate::StateError::InvalidKey { reason })
    }
}
