//! Correct peers send nothing the engine refuses: in a run without forged messages, every
//! refusal counted (`Engine::refused_inputs`) is a check that misjudged a correct message,
//! and so a message dropped that the protocol needed.

use crate::replica::SimReplica;
use crate::sim::Simulator;

/// Check that no running node has refused a received message.
///
/// # Errors
/// The first node with refusals, and their counts by cause.
pub fn check_no_refused_inputs(sim: &Simulator<SimReplica>) -> Result<(), String> {
    for node in sim.running_nodes() {
        let Some(replica) = sim.actor(node) else {
            continue;
        };
        let refused = replica.core().engine().refused_inputs();
        if refused.total() > 0 {
            let causes: Vec<String> = refused
                .by_cause()
                .filter(|(_, count)| *count > 0)
                .map(|(cause, count)| format!("{cause} {count}"))
                .collect();
            return Err(format!(
                "n{node} refused messages from correct peers: {}",
                causes.join(", ")
            ));
        }
    }
    Ok(())
}
