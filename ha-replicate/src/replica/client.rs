//! What clients ask a replica and what they get back.

use ha_core::{Consistency, LogIndex, NodeId};
use serde::{Deserialize, Serialize};

use crate::engine::{MemberRequest, MembershipRefusal};
use crate::replica::session::{ApplyOutcome, SessionId};
use crate::storage::StorageFailure;

/// A write: a host command stamped with the client's session and sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The client's session.
    pub session: SessionId,
    /// The write's sequence number in the session (a retry reuses it).
    pub sequence: u64,
    /// The lowest sequence of the session the client has no answer for (at most
    /// `sequence`): the applied state forgets the session's responses below it. Many writes
    /// of one session may be in flight at once (Raft dissertation §6.3).
    pub lowest_unanswered: u64,
    /// The host command, encoded with postcard.
    #[serde(with = "serde_bytes")]
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
    /// A membership change an operator asked for, carried out by the leader (a follower
    /// forwards it like a write). Answered with [`ClientReply::Accepted`] at the index of
    /// the configuration that holds the change (appended, or already in force).
    Member(MemberRequest),
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

/// Whether a failed write may have changed the replicated state: what
/// [`ClientError::fate`] says of each error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFate {
    /// Known not applied, now or later: nothing was appended for it (refused, or never
    /// reached a leader). Retrying is safe with any session.
    NotApplied,
    /// Unknown: the write was sent to (or appended by) a leader and no answer came. It may be
    /// applied, even later (after a partition heals). Retry with the same client (same session
    /// and sequence: [`ReplicaClient`](crate::driver::ReplicaClient) does so itself): the retry
    /// is applied at most once in all, and answers the first application's response.
    Unknown,
    /// Committed on a majority and applied on the leader: do not write it again. (A STRONG
    /// write past its deadline, not yet applied everywhere, or a write whose answer did not
    /// decode.)
    Committed,
}

/// Why a request failed, and what the client may assume. Each variant says whether a write
/// may have been applied ([`fate`](Self::fate)); a read changes nothing whatever the error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not applied: this node does not lead and could not forward (the request was forwarded
    /// to it, or the leader stepped down during a read). Retry on `leader` (when known) or
    /// after the election.
    #[error("not the leader (leader hint: {leader:?})")]
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
    /// Unknown outcome: the deadline passed after the write was sent. It may or may not have
    /// been applied (even later); retrying with the same session and sequence applies it at
    /// most once in all. For a read: no answer in time, nothing changed.
    #[error("deadline passed; the outcome is unknown")]
    Timeout,
    /// Unknown outcome: the leader handling the write stepped down, or this node lost contact
    /// with it (or the leader with its majority), before the write was known to commit.
    /// Retry with the same session and sequence (applied at most once in all).
    #[error("the leader was lost before the write was known to commit; the outcome is unknown")]
    LeadershipLost,
    /// A STRONG write committed (it is durable on a majority and applied on the leader) but
    /// not every voter applied it before the deadline. Do not write it again.
    #[error(
        "committed at QUORUM (index {index}) but not applied on every voter before the deadline"
    )]
    NotAppliedEverywhere {
        /// The write's index.
        index: LogIndex,
    },
    /// Not applied: the request is malformed for this state machine (it did not encode or
    /// decode, or the applier refused it). Fix it; retrying the same request fails the same
    /// way. (A write that was applied but whose answer did not decode is
    /// [`ResponseUndecodable`](Self::ResponseUndecodable), not this.)
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The replica was shut down (or its task ended). A write in flight when it stopped has
    /// an unknown outcome: retry it on another node. (A replica stopped by its store answers
    /// [`Fatal`](Self::Fatal) instead.)
    #[error("replica stopped: {0}")]
    Stopped(String),
    /// Not applied: this node is cut off from the majority. It has no leader, or has not heard
    /// from one (or, leading, from a majority of voters) for an election timeout, so it
    /// answers at once instead of waiting. Retry on another node (`leader` is the last leader
    /// this node knew, perhaps itself), or here later.
    #[error("this node has no quorum (last known leader: {leader:?})")]
    NoQuorum {
        /// The last leader this node knew, if any.
        leader: Option<NodeId>,
    },
    /// Not applied: this node's disk is full (`ENOSPC`), so it appends nothing; the detail
    /// says what a person must do. It resumes by itself once space is freed; meanwhile its
    /// `storage` health check is critical, so leadership moves. Retry on another node.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Not applied: this node's disk failed a write (`EIO` or another IO error); it retries by
    /// itself. Retry on another node; the detail says what to do if it persists.
    #[error("storage failed: {0}")]
    StorageFailed(String),
    /// Not applied: the leader refused the membership change, for the reason given (it
    /// says what to do).
    #[error("membership change refused: {0}")]
    MembershipRefused(MembershipRefusal),
    /// Not applied: this node is a witness, it holds no state, so it serves no read (of any
    /// consistency). Ask a data node; retrying here fails the same way. (Writes submitted on
    /// a witness are forwarded to the leader like on any follower.)
    #[error("this node is a witness: it holds no state")]
    Witness,
    /// Applied: the write was committed and applied (or a read answered), but the response
    /// bytes did not decode as this client's response type: the node and the client disagree
    /// on the state machine's types (different versions?). Do not write it again; the detail
    /// names the decoding error. Created by the client, never sent by a node.
    #[error("applied, but the response did not decode: {0}")]
    ResponseUndecodable(String),
    /// Unknown outcome: the replica that handled the request stopped because its store failed
    /// in a way it cannot survive (corruption, a broken contract; an IO error such as a full
    /// disk stalls it instead: [`StorageFull`](Self::StorageFull),
    /// [`StorageFailed`](Self::StorageFailed)). The failure says which file and what is
    /// wrong. A write in flight may have been appended (and be committed by the other nodes):
    /// retry it with the same session and sequence on another node; the stopped node needs a
    /// person (see [`StorageError`](crate::storage::StorageError)). Last in the enum so the
    /// wire indexes of the variants before it do not move.
    #[error("replica stopped on a storage failure: {0}")]
    Fatal(StorageFailure),
}

impl ClientError {
    /// Whether retrying the same request (same session and sequence) may succeed: here once
    /// the cluster has a leader again, or on another node.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::NotLeader { .. }
                | ClientError::NoQuorum { .. }
                | ClientError::TransferInProgress
                | ClientError::Busy
                | ClientError::Timeout
                | ClientError::LeadershipLost
        )
    }

    /// Whether a write that failed with this error may have been applied.
    pub fn fate(&self) -> WriteFate {
        match self {
            ClientError::NotLeader { .. }
            | ClientError::NoQuorum { .. }
            | ClientError::TransferInProgress
            | ClientError::Busy
            | ClientError::InvalidQuery(_)
            | ClientError::StorageFull(_)
            | ClientError::StorageFailed(_)
            | ClientError::MembershipRefused(_)
            | ClientError::Witness => WriteFate::NotApplied,
            ClientError::Timeout
            | ClientError::LeadershipLost
            | ClientError::Stopped(_)
            | ClientError::Fatal(_) => WriteFate::Unknown,
            ClientError::NotAppliedEverywhere { .. } | ClientError::ResponseUndecodable(_) => {
                WriteFate::Committed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peers decode a forwarded reply's error by its postcard variant index: a new variant is
    /// appended, never inserted, so the indexes of the variants before it stay what they were.
    #[test]
    fn variant_indexes_on_the_wire_do_not_move() {
        let failure = StorageFailure::Misuse { reason: "x".into() };
        let cases = [
            (ClientError::NotLeader { leader: None }, 0u8),
            (ClientError::TransferInProgress, 1),
            (ClientError::Busy, 2),
            (ClientError::Timeout, 3),
            (ClientError::LeadershipLost, 4),
            (ClientError::NotAppliedEverywhere { index: LogIndex(1) }, 5),
            (ClientError::InvalidQuery("x".into()), 6),
            (ClientError::Stopped("x".into()), 7),
            (ClientError::NoQuorum { leader: None }, 8),
            (ClientError::StorageFull("x".into()), 9),
            (ClientError::StorageFailed("x".into()), 10),
            (
                ClientError::MembershipRefused(MembershipRefusal::LeaderTermUncommitted),
                11,
            ),
            (ClientError::Witness, 12),
            (ClientError::ResponseUndecodable("x".into()), 13),
            (ClientError::Fatal(failure.clone()), 14),
        ];
        for (error, index) in cases {
            let bytes = postcard::to_allocvec(&error).expect("encodes");
            assert_eq!(bytes[0], index, "{error:?}");
            let decoded: ClientError = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(decoded, error);
        }
        // The failure itself: variant 2 (Misuse), then the reason as a length-prefixed string.
        let bytes = postcard::to_allocvec(&ClientError::Fatal(failure)).expect("encodes");
        assert_eq!(bytes, [14, 2, 1, b'x']);
    }

    #[test]
    fn a_fatal_stop_has_an_unknown_outcome_and_is_not_retried_here() {
        let error = ClientError::Fatal(StorageFailure::Corrupt {
            path: "/data/wal/1.seg".into(),
            offset: 8,
            reason: "checksum".into(),
        });
        assert_eq!(error.fate(), WriteFate::Unknown);
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "replica stopped on a storage failure: corrupt record in /data/wal/1.seg at byte 8: \
             checksum"
        );
    }
}
