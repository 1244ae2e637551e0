//! Errors the engine returns to callers. None of them change the engine's state.

use ha_core::NodeId;

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node is not the leader; retry on `leader` (when known) or after an election.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// Leadership is being handed over; retry shortly on the new leader.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Too many entries await commit (followers are slow or unreachable); retry later.
    #[error("{uncommitted} entries await commit; try again later")]
    Busy {
        /// Entries appended but not committed.
        uncommitted: u64,
    },
    /// This leader has not yet committed an entry of its own term (its `LeaderStart`), so it
    /// may not change the membership: an earlier leader may have left a different change on
    /// a minority, and the two need not share a majority (Raft dissertation errata). Retry
    /// after a round trip to a majority.
    #[error("this leader's first entry has not committed yet")]
    LeaderTermUncommitted,
    /// Another membership change has not committed yet; retry after it does.
    #[error("a membership change is still pending")]
    MembershipChangePending,
    /// The requested configuration is not a single-node change from the current one.
    #[error("invalid membership change: {0}")]
    InvalidMembershipChange(String),
}

/// Why a leadership transfer was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader can hand over; ask `leader`.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// No other voter can lead (priority 0, unhealthy or unreachable).
    #[error("no eligible voter to hand over to")]
    NoEligibleTarget,
    /// The named node is not a voter that may lead.
    #[error("{0} is not a voter that may lead")]
    IneligibleTarget(NodeId),
    /// A transfer is already under way.
    #[error("a transfer is already in progress")]
    InProgress,
    /// This node has stopped (shut down, or stopped by a storage failure): it hands nothing
    /// over and answers nothing more. Ask another node.
    #[error("the replica has stopped")]
    Stopped,
}

/// Why a linearizable read could not start. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Only the leader confirms reads; ask `leader`.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
}
