//! When the event loop hands a turn's log writes to the storage thread, relative to the
//! turn's other effects (issue 17, sequential write latency). The environment variable
//! [`HANDOVER_ORDER_ENV`] picks it, read once per node at start, so an A/B measurement runs
//! the same binary.

/// Environment variable that picks the [`HandoverOrder`]: `first` (the default), `last`
/// (before session 18: after the turn's other effects) or `sends-first` (a leader's messages
/// leave before its own writes are handed over). Unset or anything else: `first`.
pub const HANDOVER_ORDER_ENV: &str = "HA_HANDOVER_ORDER";

/// When a turn's writes go to the storage thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandoverOrder {
    /// Before the turn's other effects: the disk, the slowest step, starts first, before
    /// the apply thread (a follower applies the previous entry in the same turn) competes
    /// for a core.
    First,
    /// After the turn's other effects (the order before session 18).
    Last,
    /// After the turn's messages have been written to their sockets: the loop yields once so
    /// the peers' outbound tasks write first, then hands the writes over. A leader's
    /// followers then start on an append before its own disk does.
    SendsFirst,
}

impl HandoverOrder {
    /// The order [`HANDOVER_ORDER_ENV`] asks for.
    pub(crate) fn from_env() -> Self {
        match std::env::var(HANDOVER_ORDER_ENV).as_deref() {
            Ok("last") => Self::Last,
            Ok("sends-first") => Self::SendsFirst,
            _ => Self::First,
        }
    }
}
