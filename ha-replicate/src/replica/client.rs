//! What clients ask a replica and what they get back.

use ha_core::{Consistency, LogIndex, NodeId};
use serde::{Deserialize, Serialize};

use crate::replica::session::{ApplyOutcome, SessionId};

/// A write: a host command stamped with the client's session and sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The client's session.
    pub session: SessionId,
    /// The write's sequence number in the session (a retry reuses it).
    pub sequence: u64,
    /// The host command, encoded with postcard.
    pub command: Vec<u8>,
    /// When to answer.
    pub consistency: Consistency,
}

/// A read of the host state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The host query, encoded with postcard.
    pub query: Vec<u8>,
    /// How fresh it must be.
    pub consistency: Consistency,
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// A write.
    Write(WriteRequest),
    /// A read.
    Read(ReadRequest),
}

/// The answer to a client request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// A QUORUM or STRONG write was applied (or found to be a duplicate of one that was).
    Written {
        /// Where it is in the log.
        index: LogIndex,
        /// What applying it produced.
        outcome: ApplyOutcome,
    },
    /// An EVENTUAL write was appended durably on the leader; it may still be lost if the
    /// leader fails before replicating it.
    Accepted {
        /// Where it was appended.
        index: LogIndex,
    },
    /// A read's answer.
    Read {
        /// The applied index the answer reflects.
        index: LogIndex,
        /// The host's query response, encoded.
        response: Vec<u8>,
    },
    /// The request failed; see the error for whether it may have taken effect.
    Failed(ClientError),
}

/// Why a request failed, and what the client may assume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not applied here: this node does not lead and could not forward. Retry on `leader`
    /// (when known) or after the election. No leader usually means no quorum.
    #[error("no leader reachable (leader hint: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Not applied: the leader is handing over. Retry shortly.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Not applied: too many writes await commit. Retry later.
    #[error("too many writes await commit")]
    Busy,
    /// Unknown outcome: the deadline passed. The write may or may not have been applied;
    /// retrying with the same session and sequence applies it at most once.
    #[error("deadline passed; the outcome is unknown")]
    Timeout,
    /// Unknown outcome: leadership changed before the write committed. Retry with the same
    /// session and sequence.
    #[error("leadership changed before the write committed; the outcome is unknown")]
    LeadershipLost,
    /// A STRONG write committed (it is durable on a majority and applied on the leader) but
    /// not every voter applied it before the deadline.
    #[error(
        "committed at QUORUM (index {index}) but not applied on every voter before the deadline"
    )]
    NotAppliedEverywhere {
        /// The write's index.
        index: LogIndex,
    },
    /// The query did not decode for this state machine.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The replica stopped (storage failure or shutdown).
    #[error("replica stopped: {0}")]
    Stopped(String),
}

impl ClientError {
    /// Whether retrying the same request (same session and sequence) is useful.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::NotLeader { .. }
                | ClientError::TransferInProgress
                | ClientError::Busy
                | ClientError::Timeout
                | ClientError::LeadershipLost
        )
    }
}
