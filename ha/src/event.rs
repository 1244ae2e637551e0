//! What a node announces as it happens: role changes, membership changes, health changes.

use ha_core::{HealthStatus, MemberEvent, NodeId, Term};
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
}
