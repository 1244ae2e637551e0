//! Safety invariants checked over a simulated replicated cluster, one per file.

mod acknowledged_writes_survive;
mod applied_commands_agree;
mod configurations_share_a_majority;
mod lease_excludes_later_leaders;
mod leases_outlive_renewals;
mod lock_holders_exclusive;
mod lock_kv_linearizable;
mod lock_logs_agree;
mod no_refused_inputs;
mod one_leader_per_term;
mod writes_applied_once;

pub use acknowledged_writes_survive::check_acknowledged_writes_survive;
pub use applied_commands_agree::{AppliedCommands, check_applied_commands_agree};
pub use configurations_share_a_majority::{
    check_configurations_share_a_majority, share_a_majority,
};
pub use lease_excludes_later_leaders::check_lease_excludes_later_leaders;
pub use leases_outlive_renewals::{LeaseExpiryCheck, check_leases_outlive_renewals};
pub use lock_holders_exclusive::check_lock_holders_exclusive;
pub use lock_kv_linearizable::{check_lock_kv_linearizable, lock_kv_history};
pub use lock_logs_agree::check_lock_logs_agree;
pub use no_refused_inputs::check_no_refused_inputs;
pub use one_leader_per_term::{check_one_leader_per_term, one_leader_per_term};
pub use writes_applied_once::check_writes_applied_once;
