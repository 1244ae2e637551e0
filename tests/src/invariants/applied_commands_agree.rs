//! State machine safety: no two replicas apply different commands at the same index (which
//! also covers log matching for everything committed).

use std::collections::BTreeMap;

use crate::replica::SimReplica;
use crate::sim::Simulator;

/// Every command digest seen applied at each index, across nodes and over time (a node that
/// crashes keeps its earlier observations here).
#[derive(Debug, Default)]
pub struct AppliedCommands {
    by_index: BTreeMap<u64, (u64, usize)>,
}

impl AppliedCommands {
    /// Record what every running node has applied so far.
    ///
    /// # Errors
    /// The first index where two nodes applied different commands.
    pub fn observe(&mut self, sim: &Simulator<SimReplica>) -> Result<(), String> {
        for node in sim.running_nodes() {
            let Some(replica) = sim.actor(node) else {
                continue;
            };
            if replica.core().engine().is_witness() {
                // Its state machine is never called: nothing applied to compare.
                if !replica.core().applier().machine().digests().is_empty() {
                    return Err(format!(
                        "witness n{node} applied commands to its state machine"
                    ));
                }
                continue;
            }
            for (index, digest) in replica.core().applier().machine().digests() {
                match self.by_index.get(index) {
                    Some((known, other)) if known != digest => {
                        return Err(format!(
                            "index {index}: n{other} applied command {known:016x}, n{node} applied {digest:016x}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.by_index.insert(*index, (*digest, node));
                    }
                }
            }
        }
        Ok(())
    }

    /// The digest applied at `index`, if any node applied a command there.
    pub fn at(&self, index: u64) -> Option<u64> {
        self.by_index.get(&index).map(|(digest, _)| *digest)
    }

    /// How many indexes hold a command.
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

/// One-shot form of [`AppliedCommands::observe`].
///
/// # Errors
/// As [`AppliedCommands::observe`].
pub fn check_applied_commands_agree(sim: &Simulator<SimReplica>) -> Result<(), String> {
    AppliedCommands::default().observe(sim)
}
