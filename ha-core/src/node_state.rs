//! The lifecycle state a node advertises to the cluster.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a node stands, as the cluster sees it. Gossip carries it in node metadata; the
/// membership layer derives `Unreachable` locally from failure detection.
///
/// ```text
///  JOINING --(met the cluster)--> ACTIVE <--(won/lost election)--> LEADER
///     ACTIVE/LEADER --(health degraded or unhealthy)--> DEGRADED --(recovered)--> ACTIVE
///     any --(graceful shutdown)--> LEAVING --> (gone)
///     any --(failure detector: no answer)--> UNREACHABLE --(answers again)--> previous
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeState {
    /// Started, not yet known by any other member.
    #[default]
    Joining,
    /// A member in good standing.
    Active,
    /// The current leader of the replicated log.
    Leader,
    /// Running, but its health checks report a problem; it will not campaign.
    Degraded,
    /// Shutting down gracefully: handing over duties, then leaving.
    Leaving,
    /// Other members cannot reach it (declared down by the failure detector).
    Unreachable,
}

impl NodeState {
    /// The upper-case name used in the HTTP API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "JOINING",
            NodeState::Active => "ACTIVE",
            NodeState::Leader => "LEADER",
            NodeState::Degraded => "DEGRADED",
            NodeState::Leaving => "LEAVING",
            NodeState::Unreachable => "UNREACHABLE",
        }
    }

    /// Every state, in declaration order, for metrics that list each one.
    pub const ALL: [NodeState; 6] = [
        NodeState::Joining,
        NodeState::Active,
        NodeState::Leader,
        NodeState::Degraded,
        NodeState::Leaving,
        NodeState::Unreachable,
    ];
}

impl fmt::Display for NodeState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}
