//! Fault injection the bot reads from its environment, for tests only.
//!
//! `BOT_FAULT_NONDETERMINISTIC_NODE=<id>` with `BOT_FAULT_NONDETERMINISTIC_AT_INDEX=<N>`: the
//! node with that id runs a journal that records the first append applied at or past log
//! index N differently from every other replica (as a state machine that read its own clock
//! would). The replica consistency monitor must catch it at the next checkpoint and repair
//! the node (`tests/processes/consistency.rs`). Both variables are needed, so a variable left
//! in a shell cannot break every node of a cluster at once.

use ha::core::LogIndex;
use ha_examples::journal::Journal;

/// The node the fault applies to.
pub const FAULT_NODE_VAR: &str = "BOT_FAULT_NONDETERMINISTIC_NODE";
/// The index at or past which it fires.
pub const FAULT_INDEX_VAR: &str = "BOT_FAULT_NONDETERMINISTIC_AT_INDEX";

/// The journal node `node_id` runs: with the fault when the environment names this node.
pub fn journal_for(node_id: &str) -> Journal {
    let node = std::env::var(FAULT_NODE_VAR).ok();
    let index = std::env::var(FAULT_INDEX_VAR)
        .ok()
        .and_then(|value| value.parse::<u64>().ok());
    match (node, index) {
        (Some(node), Some(index)) if node == node_id => {
            tracing::warn!(
                index,
                "FAULT INJECTION: this node's journal is deliberately nondeterministic once \
                 ({FAULT_NODE_VAR}, {FAULT_INDEX_VAR})"
            );
            Journal::with_nondeterminism_at(LogIndex(index))
        }
        _ => Journal::default(),
    }
}
