//! What a lease's holder knows about it: alive until a safe deadline, or lost and why.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The least TTL a lease may have: below it the renewal period (a third of the TTL) and the
/// drift margin leave no useful time.
pub const LEASE_TTL_MIN: Duration = Duration::from_millis(100);

/// Why the holder must consider a lease gone.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseLoss {
    /// The holder revoked it (revoke, release, resign or drop).
    Revoked,
    /// The cluster says it no longer exists: it expired, or someone else revoked it.
    Ended,
    /// No renewal succeeded before the safe deadline. It may still be alive on the cluster,
    /// but the holder can no longer prove it, so it must stop acting as its holder.
    DeadlinePassed,
    /// A renewal failed in a way retrying cannot fix (for example the local replica stopped).
    RenewalFailed(String),
    /// The holder stopped renewing on purpose ([`Lease::abandon`](super::Lease::abandon)); the
    /// leader will expire it once its TTL runs out.
    Abandoned,
}

/// A lease as its holder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Alive, and safe to act on until `safe_deadline` (local monotonic time), unless a later
    /// renewal moves it on.
    Alive {
        /// When the last successful renewal (or the grant) was sent, plus the TTL, minus the
        /// drift margin ([`LeaseRenewal::safe_deadline`](crate::LeaseRenewal::safe_deadline),
        /// as an [`Instant`]). The leader cannot expire the lease before then.
        safe_deadline: Instant,
    },
    /// Lost; the holder must stop acting under it.
    Lost(LeaseLoss),
}

impl LeaseStatus {
    /// The safe deadline, while alive.
    pub fn safe_deadline(&self) -> Option<Instant> {
        match self {
            LeaseStatus::Alive { safe_deadline } => Some(*safe_deadline),
            LeaseStatus::Lost(_) => None,
        }
    }

    /// Why it was lost, once lost.
    pub fn loss(&self) -> Option<&LeaseLoss> {
        match self {
            LeaseStatus::Alive { .. } => None,
            LeaseStatus::Lost(loss) => Some(loss),
        }
    }

    /// Alive and before its safe deadline at `now`.
    pub fn is_valid_at(&self, now: Instant) -> bool {
        self.safe_deadline().is_some_and(|deadline| now < deadline)
    }
}

/// A future that resolves once `status` reports the lease lost or its safe deadline passes,
/// whichever comes first; it does not rely on the keep-alive task to notice the deadline.
pub(crate) async fn lost(mut status: watch::Receiver<LeaseStatus>) -> LeaseLoss {
    loop {
        let current = status.borrow_and_update().clone();
        let safe_deadline = match current {
            LeaseStatus::Lost(loss) => return loss,
            LeaseStatus::Alive { safe_deadline } => safe_deadline,
        };
        tokio::select! {
            biased;
            changed = status.changed() => {
                if changed.is_err() {
                    // The lease handle and its keep-alive are gone: nobody renews it.
                    return status.borrow().loss().cloned().unwrap_or(LeaseLoss::Abandoned);
                }
            }
            () = tokio::time::sleep_until(safe_deadline.into()) => {
                return LeaseLoss::DeadlinePassed;
            }
        }
    }
}
