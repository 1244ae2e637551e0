//! Identifiers: node ids, terms, log indexes, priorities and client sessions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::InvalidNodeId;

/// Characters allowed in node ids and cluster names.
pub(crate) fn is_name_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.')
}

/// The longest node id accepted, in bytes. Ids travel in every gossip packet, so they stay short.
pub const NODE_ID_LENGTH_MAX: usize = 64;

/// A node's name in the cluster, chosen by the operator (`n1`, `db-east-2`, ...).
///
/// Valid ids are 1 to [`NODE_ID_LENGTH_MAX`] bytes of ASCII letters, digits, `-`, `_` and `.`,
/// so they are safe in file names, metric labels and URLs.
///
/// ```
/// use ha_core::NodeId;
/// let id: NodeId = "n1".parse().unwrap();
/// assert_eq!(id.as_str(), "n1");
/// assert!("bad id".parse::<NodeId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(String);

impl NodeId {
    /// Checks `id` and wraps it.
    ///
    /// # Errors
    /// [`InvalidNodeId`] when the id is empty, too long, or has a character outside
    /// `[A-Za-z0-9._-]`; the message names the offending character.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidNodeId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidNodeId::Empty);
        }
        if id.len() > NODE_ID_LENGTH_MAX {
            return Err(InvalidNodeId::TooLong { length: id.len() });
        }
        if let Some(character) = id.chars().find(|c| !is_name_character(*c)) {
            return Err(InvalidNodeId::BadCharacter { character });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Deserialising goes through the same check as `new`, so an id read from a peer or a file is
// always valid.
impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NodeId::new(text).map_err(serde::de::Error::custom)
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NodeId::new(text)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.pad(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", self.0)
    }
}

/// An election term: a number that only grows, with at most one leader each.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

impl Term {
    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so width and padding apply: `{:020}` sorts as text.
        fmt::Display::fmt(&self.0, formatter)
    }
}

/// A position in the replicated log. Index 0 is "before the first entry"; entries start at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so width and padding apply: `{:020}` sorts as text.
        fmt::Display::fmt(&self.0, formatter)
    }
}

/// A client session: the id the replication client stamps each write with, so a retried write
/// applies once, and the id a lock waiter or lease holder is known by in the lock table.
/// Chosen at random by the client (64 bits), so two clients never share one in practice.
///
/// A type of its own (not a `u64`) so that a session cannot be passed where a lease id or a
/// fencing token is expected. `#[serde(transparent)]`: it encodes exactly as the `u64` it
/// wraps, in the log, in snapshots and in JSON.
///
/// ```
/// use ha_core::SessionId;
/// let session = SessionId(7);
/// assert_eq!(session.to_string(), "7");
/// // The same bytes as the plain number.
/// assert_eq!(postcard::to_allocvec(&session).unwrap(), postcard::to_allocvec(&7u64).unwrap());
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so width and padding apply: `{:020}` sorts as text.
        fmt::Display::fmt(&self.0, formatter)
    }
}

// Random 64-bit ids read best in hex (`{:016x}`), as logs and simulator reports print them.
impl fmt::LowerHex for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, formatter)
    }
}

/// How strongly a node wants to lead: 0 never stands for election (it still votes, like an
/// arbiter); among candidates, higher campaigns sooner and wins ties between equal logs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Priority(pub u32);

impl Priority {
    /// A node with this priority never becomes leader.
    pub const NEVER_LEADER: Priority = Priority(0);

    /// Whether this node may stand for election.
    pub fn can_lead(self) -> bool {
        self.0 > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_accepts_safe_names_and_rejects_others() {
        for good in ["n1", "db-east_2.local", &"x".repeat(NODE_ID_LENGTH_MAX)] {
            assert!(NodeId::new(good).is_ok(), "{good} should be valid");
        }
        assert_eq!(NodeId::new(""), Err(InvalidNodeId::Empty));
        assert_eq!(
            NodeId::new("x".repeat(NODE_ID_LENGTH_MAX + 1)),
            Err(InvalidNodeId::TooLong {
                length: NODE_ID_LENGTH_MAX + 1
            })
        );
        assert_eq!(
            NodeId::new("a/b"),
            Err(InvalidNodeId::BadCharacter { character: '/' })
        );
    }

    #[test]
    fn node_id_deserialisation_is_validated() {
        let bytes = postcard::to_allocvec(&"has space".to_string()).unwrap();
        assert!(postcard::from_bytes::<NodeId>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"n7".to_string()).unwrap();
        assert_eq!(
            postcard::from_bytes::<NodeId>(&bytes).unwrap().as_str(),
            "n7"
        );
    }

    #[test]
    fn priority_zero_never_leads() {
        assert!(!Priority::NEVER_LEADER.can_lead());
        assert!(Priority(1).can_lead());
    }
}
