//! One leadership change, as every node's applied log records it.

use ha_core::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::entry::ElectionCause;

/// A line of the failover history, taken from a new leader's `LeaderStart` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// The term the new leader leads.
    pub term: Term,
    /// The previous leader, when the new one knew it.
    pub from: Option<NodeId>,
    /// The new leader.
    pub to: NodeId,
    /// Why the election happened.
    pub cause: ElectionCause,
    /// How long the cluster was without a leader, as the new leader measured it.
    pub leaderless_ms: u64,
    /// When the new leader won, in Unix milliseconds by its wall clock (0 when unknown).
    pub at_ms: u64,
    /// Where in the log the change was recorded.
    pub index: LogIndex,
}
