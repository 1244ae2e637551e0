//! Safety invariants checked over a simulated replicated cluster, one per file.

mod acknowledged_writes_survive;
mod applied_commands_agree;
mod one_leader_per_term;

pub use acknowledged_writes_survive::check_acknowledged_writes_survive;
pub use applied_commands_agree::{AppliedCommands, check_applied_commands_agree};
pub use one_leader_per_term::check_one_leader_per_term;
