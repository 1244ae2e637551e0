//! What a node announces as it happens: role changes, membership changes, health changes,
//! and (on a leader) followers it cannot bring up to date.

use ha_core::{HealthStatus, LogIndex, MemberEvent, NodeId, Term};
use ha_replicate::engine::Role;

/// One change, as delivered by [`Node::events`](crate::Node::events).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// This node's replication role, the term or the known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Gossip saw a member join, change, become unreachable or leave.
    Member(MemberEvent),
    /// This node's aggregated health changed.
    HealthChanged(HealthStatus),
    /// This node leads and `peer` has made no progress for longer than an election timeout
    /// although the leader reports it stalled: nothing the leader can send brings it forward.
    /// Until [`FollowerUnstalled`](Self::FollowerUnstalled), the leader's health carries the
    /// non-critical check [`CATCH_UP_CHECK`](crate::cluster_view::CATCH_UP_CHECK).
    FollowerStalled {
        /// The follower.
        peer: NodeId,
        /// Why, as the leader reports it.
        reason: String,
    },
    /// A follower announced by [`FollowerStalled`](Self::FollowerStalled) no longer is: it
    /// made progress, left the configuration, or this node stopped leading (the new leader
    /// reports it if it is still behind).
    FollowerUnstalled {
        /// The follower.
        peer: NodeId,
    },
    /// The consistency monitor found `node`'s applied state different from the majority's at
    /// checkpoint `index` (announced by the leader about a follower, and by a node about
    /// itself). The node is DEGRADED and never campaigns until repaired.
    ReplicaDiverged {
        /// The diverged replica.
        node: NodeId,
        /// The checkpoint where its digest differed.
        index: LogIndex,
    },
    /// This node reinstalled a snapshot from the leader, repairing the divergence found at
    /// checkpoint `index`.
    ReplicaRepaired {
        /// This node.
        node: NodeId,
        /// The checkpoint where it had diverged.
        index: LogIndex,
    },
}
