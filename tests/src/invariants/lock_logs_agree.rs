//! State machine safety for the lock cluster: no two nodes applied different entries at one
//! index.

use crate::lock_sim::AppliedLog;

/// Check what the nodes of a lock cluster reported applying. Returns how many indexes were
/// applied.
///
/// # Errors
/// The first index at which two nodes applied different entries.
pub fn check_lock_logs_agree(log: &AppliedLog) -> Result<usize, String> {
    match log.disagreements().first() {
        Some(disagreement) => Err(disagreement.clone()),
        None => Ok(log.len()),
    }
}
