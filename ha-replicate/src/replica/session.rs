//! Client sessions: what makes a retried write apply once.

use serde::{Deserialize, Serialize};

/// A client's identity for deduplication. Chosen at random by the client (64 bits), so two
/// clients never share one in practice.
pub type SessionId = u64;

/// A command as stored in the log: the host command with its session stamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCommand {
    /// The client's session.
    pub session: SessionId,
    /// The client's sequence number for this write; a retry reuses it.
    pub sequence: u64,
    /// The host command, encoded.
    #[serde(with = "serde_bytes")]
    pub command: Vec<u8>,
}

/// What applying a session command produced, as seen by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Applied now; the state machine's response, encoded.
    Applied(Vec<u8>),
    /// A retry of the session's latest write: not applied again; the first response.
    Duplicate(Vec<u8>),
    /// Older than the session's latest write (a retry that lost the race to a newer one):
    /// not applied; the client has moved on and must not wait for it.
    Stale {
        /// The session's latest sequence.
        latest: u64,
    },
    /// The command bytes do not decode for this state machine: not applied.
    Invalid(String),
}

impl ApplyOutcome {
    /// The response bytes, when there is one.
    pub fn response(&self) -> Option<&[u8]> {
        match self {
            ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => Some(bytes),
            _ => None,
        }
    }
}
