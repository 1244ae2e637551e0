//! One chaos scenario at a time per test binary: each runs a cluster of processes, and two at
//! once on a 2-core machine would make their timings (elections, leases) meaningless.

use std::sync::{Mutex, MutexGuard};

static SCENARIO: Mutex<()> = Mutex::new(());

/// Hold this for the whole scenario. A scenario that failed (poisoned the lock) does not stop
/// the next one.
pub fn one_scenario_at_a_time() -> MutexGuard<'static, ()> {
    SCENARIO
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
