//! Errors of the shared map.

/// Why a shared-map operation was refused. Every variant leaves the map unchanged: nothing was
/// written, merged or acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is empty, longer than `shared_state.key_bytes_max`, or holds a control
    /// character. Choose another key.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong with the key.
        reason: String,
    },
    /// The value is larger than `shared_state.value_bytes_max`. Store less, or raise the limit
    /// on every node.
    #[error("value of {bytes} bytes is over shared_state.value_bytes_max ({max})")]
    ValueTooLarge {
        /// Size of the refused value.
        bytes: usize,
        /// The limit that refused it.
        max: usize,
    },
    /// The map already holds its maximum of live keys (`shared_state.keys_max`; twice that for
    /// data from peers). Delete keys first.
    #[error("too many keys: shared_state.keys_max is {max}")]
    TooManyKeys {
        /// The limit that refused the write.
        max: usize,
    },
    /// The map already holds its maximum of tombstones (`shared_state.tombstones_max`; twice
    /// that for data from peers). Tombstones are collected after `tombstone_grace_s`; retry
    /// later.
    #[error("too many tombstones: shared_state.tombstones_max is {max}")]
    TooManyTombstones {
        /// The limit that refused the delete.
        max: usize,
    },
    /// `increment` on a key that holds a value (a register). Delete it first, or use another
    /// key.
    #[error("key {key:?} holds a value, not a counter")]
    NotACounter {
        /// The key.
        key: String,
    },
    /// The increment would take this node's share or the counter's value outside 64 bits.
    #[error("counter overflow")]
    CounterOverflow,
    /// A counter would carry more than [`COUNTER_NODES_MAX`](crate::COUNTER_NODES_MAX)
    /// writers. Use a new key.
    #[error("counter has {nodes} writers, over the maximum of {max}")]
    CounterTooWide {
        /// Writers the counter would have.
        nodes: usize,
        /// The maximum.
        max: usize,
    },
    /// A peer's stamp is more than `shared_state.drift_ms_max` ahead of this node's wall
    /// clock; the delta was refused so one bad clock cannot freeze every register. Fix the
    /// clock of the node that wrote it (the delta comes back by anti-entropy once clocks agree).
    #[error("remote clock {ahead_ms} ms ahead of ours")]
    ClockAhead {
        /// How far ahead the remote stamp was, in milliseconds.
        ahead_ms: u64,
    },
    /// A peer or a file sent an entry that breaks the entry rules (a register whose generation
    /// is not its stamp, a counter generation after its stamp, a zero stamp). Dropped.
    #[error("invalid entry: {reason}")]
    InvalidEntry {
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The store could not read or write the state log; the write was not acknowledged.
    #[error("shared state storage: {0}")]
    Storage(String),
}

impl StateError {
    /// The configuration limit behind this error (`"shared_state.value_bytes_max"`), for the
    /// HTTP `409 {"error":"limit","limit":...}` answer; `None` when no limit is involved.
    ///
    /// ```
    /// use ha_gossip::StateError;
    /// let error = StateError::ValueTooLarge { bytes: 5000, max: 4096 };
    /// assert_eq!(error.limit_name(), Some("shared_state.value_bytes_max"));
    /// assert_eq!(StateError::CounterOverflow.limit_name(), None);
    /// ```
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            StateError::ValueTooLarge { .. } => Some("shared_state.value_bytes_max"),
            StateError::TooManyKeys { .. } => Some("shared_state.keys_max"),
            StateError::TooManyTombstones { .. } => Some("shared_state.tombstones_max"),
            StateError::CounterTooWide { .. } => Some("shared_state.counter_nodes_max"),
            StateError::ClockAhead { .. } => Some("shared_state.drift_ms_max"),
            StateError::InvalidKey { .. }
            | StateError::NotACounter { .. }
            | StateError::CounterOverflow
            | StateError::InvalidEntry { .. }
            | StateError::Storage(_) => None,
        }
    }
}
