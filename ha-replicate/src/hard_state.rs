//! What must survive a restart before a node says anything that depends on it.

use ha_core::{NodeId, Term};
use serde::{Deserialize, Serialize};

/// The term and vote. Persisted (and synced) before any vote or append answer leaves the
/// node; losing it could let a node vote twice in one term.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom it voted for in that term.
    pub voted_for: Option<NodeId>,
}
