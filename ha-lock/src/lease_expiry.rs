//! The leader's side of lease expiry: which leases ran out, as a sans-IO tracker.

use std::collections::BTreeMap;

use ha_core::Millis;

use crate::command::{LeaseId, LeaseState, LockCommand};

/// How long after proposing an expiry the tracker proposes it again if the lease is still
/// there (the first proposal may have been lost in a leader change).
const REPROPOSE_AFTER_MS: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
struct Tracked {
    renewals: u64,
    deadline: Millis,
    proposed_at: Option<Millis>,
}

/// Decides, on the leader, which leases expired. Deterministic and clock-free: it is given
/// `now` and the applied leases.
///
/// # Correctness requirements
/// - Read `now` *after* reading the leases, so a renewal the tracker sees is never counted
///   from before it was applied.
/// - Propose the returned `LeaseExpire` commands unchanged: the renewal count they carry is
///   what makes the lock table ignore an expiry that a keep-alive overtook (breaking that
///   check lets a renewing holder's lease expire — the simulator's lease invariant catches it).
/// - Holders must count their safe deadline from when they *sent* the grant or keep-alive,
///   minus a margin covering clock-rate drift.
///
/// Safety: a lease's deadline starts when this leader *sees* a grant or keep-alive applied,
/// which is after its holder sent it, so the holder (which counts from its send time, minus a
/// drift margin) always gives up first. A new leader starts every lease's TTL afresh ("extends
/// every lease by its TTL before expiring any"), so leader changes never shorten a lease.
///
/// ```
/// use ha_core::Millis;
/// use ha_lock::{LeaseExpiryTracker, LeaseState, LockCommand};
/// let lease = LeaseState { lease: 4, session: 1, ttl_ms: 100, renewals: 0 };
/// let mut tracker = LeaseExpiryTracker::default();
/// assert!(tracker.on_tick(Millis(0), true, &[lease.clone()]).is_empty());
/// assert!(tracker.on_tick(Millis(99), true, &[lease.clone()]).is_empty());
/// assert_eq!(
///     tracker.on_tick(Millis(100), true, &[lease]),
///     vec![LockCommand::LeaseExpire { lease: 4, renewals: 0 }]
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct LeaseExpiryTracker {
    tracked: BTreeMap<LeaseId, Tracked>,
}

impl LeaseExpiryTracker {
    /// Look at the applied leases at `now`; returns the expiries to propose. Not leading
    /// forgets everything, so leading again starts every TTL afresh.
    pub fn on_tick(
        &mut self,
        now: Millis,
        is_leader: bool,
        leases: &[LeaseState],
    ) -> Vec<LockCommand> {
        if !is_leader {
            self.tracked.clear();
            return Vec::new();
        }
        let mut alive = BTreeMap::new();
        for lease in leases {
            let tracked = match self.tracked.get(&lease.lease) {
                Some(tracked) if tracked.renewals == lease.renewals => *tracked,
                _ => Tracked {
                    renewals: lease.renewals,
                    deadline: now + lease.ttl_ms,
                    proposed_at: None,
                },
            };
            alive.insert(lease.lease, tracked);
        }
        self.tracked = alive;
        let mut expiries = Vec::new();
        for (lease, tracked) in &mut self.tracked {
            let due = now >= tracked.deadline;
            let repropose = tracked
                .proposed_at
                .is_none_or(|at| now.saturating_since(at) >= REPROPOSE_AFTER_MS);
            if due && repropose {
                tracked.proposed_at = Some(now);
                expiries.push(LockCommand::LeaseExpire {
                    lease: *lease,
                    renewals: tracked.renewals,
                });
            }
        }
        expiries
    }
}
