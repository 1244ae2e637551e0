//! The lock table's identifiers: lease ids and fencing tokens. Each is a type of its own (not a
//! `u64`), so `acquire(session, lease)` with the arguments swapped, or a lease id passed as a
//! fencing token, does not compile. Each is `#[serde(transparent)]`: it encodes exactly as the
//! `u64` it wraps, so logs, snapshots and JSON bodies written before these types read unchanged.

use std::fmt;

use ha_core::LogIndex;
use serde::{Deserialize, Serialize};

/// A lease: granted with a TTL, kept alive by its holder, ended by revoke or expiry. Its id is
/// the log index of the grant, so ids are unique and never reused.
///
/// ```
/// use ha_lock::LeaseId;
/// let lease = LeaseId(12);
/// assert_eq!(lease.to_string(), "12");
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl From<LogIndex> for LeaseId {
    /// The lease granted by the entry at `index`.
    fn from(index: LogIndex) -> Self {
        LeaseId(index.0)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so width and padding apply: `{:020}` sorts as text.
        fmt::Display::fmt(&self.0, formatter)
    }
}

/// A fencing token: the log index of a lock grant. Strictly increasing per lock, across leader
/// changes and restarts, because log indexes are. (Locks handed on by one command, such as a
/// lease end, get the same value; tokens compare only within one lock.)
///
/// ```
/// use ha_lock::FencingToken;
/// assert!(FencingToken(9) > FencingToken(3));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl From<LogIndex> for FencingToken {
    /// The token of the grant made by the entry at `index`.
    fn from(index: LogIndex) -> Self {
        FencingToken(index.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so width and padding apply: `{:020}` sorts as text.
        fmt::Display::fmt(&self.0, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_format_as_their_numbers_with_width_and_padding() {
        // A service keying records by token (`/audits/{token:020}`) relies on this to sort.
        assert_eq!(format!("{:020}", FencingToken(42)), "00000000000000000042");
        assert_eq!(format!("{:>4}", LeaseId(7)), "   7");
        assert_eq!(FencingToken(12).to_string(), "12");
        assert!(format!("{:05}", FencingToken(5)) < format!("{:05}", FencingToken(12)));
    }
}
