//! The leader's side of lease expiry: which leases ran out, as a sans-IO tracker.

use std::collections::BTreeMap;
use std::time::Duration;

use ha_core::{Millis, Term};

use crate::command::{LeaseId, LeaseState, LockCommand};

/// How long after proposing an expiry the tracker proposes it again if the lease is still
/// there (the first proposal may have been lost in a leader change).
const REPROPOSE_AFTER_MS: u64 = 1_000;

/// How often the leader looks for expired leases by default: expiry happens at most this
/// much after a TTL ran out. The shipped [`LeaseKeeper`](crate::LeaseKeeper) and the lock
/// simulation's nodes both tick at this interval.
pub const LEASE_TICK_INTERVAL_DEFAULT: Duration = Duration::from_millis(25);

/// How long one expiry proposal may wait for its commit; an expiry that failed is proposed
/// again later (after the re-proposal delay) if the lease is still there.
pub const EXPIRY_PROPOSAL_TIMEOUT: Duration = Duration::from_millis(500);

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
/// drift margin: [`LeaseRenewal`](crate::LeaseRenewal)) always gives up first. A leader starts
/// every lease's TTL afresh when it starts leading, and again when it leads a new term
/// ("extends every lease by its TTL before expiring any"): leadership may have been lost and
/// won back between two ticks, and the renewals sent to the leader in between were never seen
/// by this tracker. So leader changes never shorten a lease.
///
/// The shipped [`LeaseKeeper`](crate::LeaseKeeper) and the lock simulation's nodes both call
/// it, once per [`LEASE_TICK_INTERVAL_DEFAULT`].
///
/// ```
/// use ha_core::{Millis, Term};
/// use ha_lock::{LeaseExpiryTracker, LeaseId, LeaseState, LockCommand, SessionId};
/// let lease = LeaseState { lease: LeaseId(4), session: SessionId(1), ttl_ms: 100, renewals: 0 };
/// let mut tracker = LeaseExpiryTracker::default();
/// let leading = Some(Term(2));
/// assert!(tracker.on_tick(Millis(0), leading, &[lease.clone()]).is_empty());
/// assert!(tracker.on_tick(Millis(99), leading, &[lease.clone()]).is_empty());
/// assert_eq!(
///     tracker.on_tick(Millis(100), leading, &[lease]),
///     vec![LockCommand::LeaseExpire { lease: LeaseId(4), renewals: 0 }]
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct LeaseExpiryTracker {
    tracked: BTreeMap<LeaseId, Tracked>,
    /// The term the deadlines in `tracked` were counted in.
    leading_term: Option<Term>,
}

impl LeaseExpiryTracker {
    /// Look at the applied leases at `now`; returns the expiries to propose. `leading` is the
    /// term this node leads in, `None` when it does not lead. Not leading forgets everything,
    /// and so does leading in another term than at the last tick: every TTL starts afresh.
    pub fn on_tick(
        &mut self,
        now: Millis,
        leading: Option<Term>,
        leases: &[LeaseState],
    ) -> Vec<LockCommand> {
        if leading != self.leading_term {
            self.tracked.clear();
            self.leading_term = leading;
        }
        if leading.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SessionId;

    fn lease(renewals: u64) -> LeaseState {
        LeaseState {
            lease: LeaseId(4),
            session: SessionId(1),
            ttl_ms: 100,
            renewals,
        }
    }

    fn expire(renewals: u64) -> Vec<LockCommand> {
        vec![LockCommand::LeaseExpire {
            lease: LeaseId(4),
            renewals,
        }]
    }

    /// One line per tick: local time, the term led (`None`: not leading), the lease's renewal
    /// count, and whether the tracker proposes its expiry.
    #[test]
    fn ttls_restart_on_every_new_leadership() {
        let ticks: &[(u64, Option<u64>, u64, bool)] = &[
            (0, Some(2), 0, false),
            (99, Some(2), 0, false),
            // Leadership lost and won back in term 4 between two ticks: the TTL restarts.
            (100, Some(4), 0, false),
            (199, Some(4), 0, false),
            (200, Some(4), 0, true),
            // Proposed; not again before the re-proposal delay.
            (300, Some(4), 0, false),
            // A renewal seen restarts the TTL.
            (310, Some(4), 1, false),
            (409, Some(4), 1, false),
            // Not leading forgets; leading again (even in the same term) starts afresh.
            (410, None, 1, false),
            (420, Some(4), 1, false),
            (519, Some(4), 1, false),
            (520, Some(4), 1, true),
            (1_520, Some(4), 1, true),
        ];
        let mut tracker = LeaseExpiryTracker::default();
        for &(now, term, renewals, expires) in ticks {
            let proposed = tracker.on_tick(Millis(now), term.map(Term), &[lease(renewals)]);
            let expected = if expires {
                expire(renewals)
            } else {
                Vec::new()
            };
            assert_eq!(proposed, expected, "tick at {now} in term {term:?}");
        }
    }
}
