//! Exactly-once writes (issue 17, pipelined sessions): the log applies each client write, by
//! its session stamp, at most once, however many copies of it (retries on other nodes, with
//! other writes of the session in flight) the log holds. The later copies are answered as
//! duplicates or stale, never applied.

use std::collections::BTreeMap;

use crate::lock_sim::applied_log::{AppliedLockCommand, AppliedResult};

/// Check the replayed log of a lock simulation.
///
/// # Errors
/// The first stamp applied twice, with both indexes.
pub fn check_writes_applied_once(applied: &[AppliedLockCommand]) -> Result<(), String> {
    let mut first: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for command in applied {
        if !matches!(command.result, AppliedResult::Applied(_)) {
            continue;
        }
        let stamp = (command.session, command.sequence);
        if let Some(earlier) = first.insert(stamp, command.index.0) {
            return Err(format!(
                "session {:016x} sequence {} applied at index {earlier} and again at {}: {:?}",
                command.session, command.sequence, command.index.0, command.command
            ));
        }
    }
    Ok(())
}
