//! Durability: a write acknowledged at QUORUM or STRONG is in the final log of every replica
//! that got that far, at the index it was acknowledged at (witnesses, which keep no command
//! payloads, aside).

use crate::invariants::AppliedCommands;
use crate::replica::SimReplica;
use crate::sim::Simulator;
use crate::workload::AcknowledgedWrite;

/// Check every acknowledged write against what the running nodes applied at its index.
///
/// # Errors
/// The first acknowledged write missing or replaced.
pub fn check_acknowledged_writes_survive(
    sim: &Simulator<SimReplica>,
    acknowledged: &[AcknowledgedWrite],
) -> Result<usize, String> {
    let mut applied = AppliedCommands::default();
    applied.observe(sim)?;
    let mut confirmed = 0;
    for write in acknowledged {
        let mut reached = false;
        for node in sim.running_nodes() {
            let Some(replica) = sim.actor(node) else {
                continue;
            };
            // A witness applies nothing to a state machine: it holds no write to check.
            if replica.core().engine().is_witness() {
                continue;
            }
            let machine = replica.core().applier().machine();
            if replica.core().applier().applied_index() < write.index {
                continue;
            }
            reached = true;
            match machine.digests().get(&write.index.0) {
                // Snapshots carry the whole digest table, so every applied index is there.
                Some(digest) if *digest == write.digest => {}
                other => {
                    return Err(format!(
                        "acknowledged {:?} write at index {} (command {:016x}) is {other:?} on n{node}",
                        write.consistency, write.index, write.digest
                    ));
                }
            }
        }
        if reached {
            confirmed += 1;
        }
    }
    Ok(confirmed)
}
