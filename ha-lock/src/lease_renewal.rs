//! The holder's side of a lease, as a sans-IO rule: when to renew it, and until when the
//! holder may act under it. The shipped [`Lease`](crate::Lease) handle and the lock
//! simulation's clients both keep one [`LeaseRenewal`] per lease, so the simulated sweeps
//! check the deadlines users run with.

use std::time::Duration;

use ha_core::Millis;

/// How many renewals a holder sends per TTL: one every third of it, so two may be lost
/// before the safe deadline passes.
pub const RENEWALS_PER_TTL: u32 = 3;

/// Subtracted from a lease's TTL to get its holder's safe deadline: covers a clock on the
/// leader that runs up to 10% faster than the holder's, plus 10 ms of scheduling delay.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(ha_lock::drift_margin(Duration::from_secs(1)), Duration::from_millis(110));
/// ```
pub fn drift_margin(ttl: Duration) -> Duration {
    ttl / 10 + Duration::from_millis(10)
}

/// The holder's safe deadline for a grant or renewal of a lease with `ttl` sent at `sent_at`:
/// `sent_at + ttl - drift_margin(ttl)`, rounded down to the millisecond (earlier is safer).
///
/// The leader starts the TTL only when it sees the grant or renewal applied, which is after
/// it was sent, and counts it on its own clock; so, with clocks whose rates differ by less
/// than the margin covers, the leader cannot expire the lease before this instant.
///
/// ```
/// use std::time::Duration;
/// use ha_core::Millis;
/// assert_eq!(ha_lock::safe_deadline(Millis(100), Duration::from_secs(1)), Millis(990));
/// ```
pub fn safe_deadline(sent_at: Millis, ttl: Duration) -> Millis {
    sent_at.plus_duration(ttl.saturating_sub(drift_margin(ttl)))
}

/// One lease as its holder tracks it, in the holder's own monotonic milliseconds: the send
/// time of the grant or of the last successful renewal, when to renew next, and the safe
/// deadline. Deterministic and clock-free: it is given the times.
///
/// # Correctness requirements
/// - Pass the time a grant or renewal was *sent* (taken before the request leaves, before
///   even waiting for a turn on the session), never the time its answer arrived.
/// - Call [`on_renewed`](Self::on_renewed) only for a renewal the cluster answered
///   `LeaseRenewed` to, QUORUM: a new leader must see it.
/// - Stop acting under the lease once [`is_valid_at`](Self::is_valid_at) is false, whatever
///   the renewals in flight: the leader may expire it from then on.
///
/// ```
/// use std::time::Duration;
/// use ha_core::Millis;
/// use ha_lock::LeaseRenewal;
///
/// let mut lease = LeaseRenewal::granted(Duration::from_millis(900), Millis(1_000));
/// assert_eq!(lease.safe_deadline(), Millis(1_800)); // 900 - (90 + 10)
/// assert_eq!(lease.renew_at(), Millis(1_300));
/// assert_eq!(lease.renewal_budget_at(Millis(1_300)), Some(Duration::from_millis(500)));
/// lease.on_renewed(Millis(1_300));
/// assert_eq!(lease.safe_deadline(), Millis(2_100));
/// assert!(lease.is_valid_at(Millis(2_099)));
/// assert!(!lease.is_valid_at(Millis(2_100)));
/// assert_eq!(lease.renewal_budget_at(Millis(2_100)), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRenewal {
    ttl: Duration,
    last_sent: Millis,
    safe_deadline: Millis,
}

impl LeaseRenewal {
    /// A lease with `ttl` whose grant was sent at `sent_at`.
    pub fn granted(ttl: Duration, sent_at: Millis) -> Self {
        Self {
            ttl,
            last_sent: sent_at,
            safe_deadline: safe_deadline(sent_at, ttl),
        }
    }

    /// Its time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the grant or the last successful renewal was sent.
    pub fn last_sent(&self) -> Millis {
        self.last_sent
    }

    /// The instant from which the holder must assume the lease lost, unless a later renewal
    /// moves it on.
    pub fn safe_deadline(&self) -> Millis {
        self.safe_deadline
    }

    /// Whether the holder may act under the lease at `now`: strictly before the safe deadline.
    pub fn is_valid_at(&self, now: Millis) -> bool {
        now < self.safe_deadline
    }

    /// When to send the next renewal: a [`RENEWALS_PER_TTL`]th of the TTL after the last
    /// successful send.
    pub fn renew_at(&self) -> Millis {
        self.last_sent.plus_duration(self.ttl / RENEWALS_PER_TTL)
    }

    /// How long a renewal sent at `now` may take before it is useless (the safe deadline
    /// passes first); `None` once the deadline has passed, when the holder must consider the
    /// lease lost.
    pub fn renewal_budget_at(&self, now: Millis) -> Option<Duration> {
        let remaining_ms = self.safe_deadline.saturating_since(now);
        (remaining_ms > 0).then(|| Duration::from_millis(remaining_ms))
    }

    /// A renewal sent at `sent_at` succeeded: the safe deadline moves on (never back, should
    /// answers arrive out of order).
    pub fn on_renewed(&mut self, sent_at: Millis) {
        self.last_sent = self.last_sent.max(sent_at);
        self.safe_deadline = self.safe_deadline.max(safe_deadline(sent_at, self.ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: TTL, grant sent, renewals sent (each successful), and the expected
    /// safe deadline and next renewal time.
    #[test]
    fn deadlines_and_renewal_times() {
        let cases: &[(u64, u64, &[u64], u64, u64)] = &[
            // ttl_ms, granted, renewals, safe deadline, renew at
            (100, 0, &[], 80, 33),
            (1_000, 0, &[], 890, 333),
            (1_000, 50, &[383], 1_273, 716),
            // An answer that arrives late does not move the deadline back.
            (1_000, 0, &[600, 300], 1_490, 933),
            (3_000, 10, &[], 2_700, 1_010),
        ];
        for &(ttl_ms, granted, renewals, deadline, renew_at) in cases {
            let mut lease = LeaseRenewal::granted(Duration::from_millis(ttl_ms), Millis(granted));
            for &sent in renewals {
                lease.on_renewed(Millis(sent));
            }
            assert_eq!(
                (lease.safe_deadline(), lease.renew_at()),
                (Millis(deadline), Millis(renew_at)),
                "ttl {ttl_ms} granted {granted} renewals {renewals:?}"
            );
        }
    }

    #[test]
    fn the_budget_ends_at_the_safe_deadline() {
        let lease = LeaseRenewal::granted(Duration::from_millis(1_000), Millis(0));
        assert_eq!(
            lease.renewal_budget_at(Millis(0)),
            Some(Duration::from_millis(890))
        );
        assert_eq!(
            lease.renewal_budget_at(Millis(889)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(lease.renewal_budget_at(Millis(890)), None);
        assert!(lease.is_valid_at(Millis(889)) && !lease.is_valid_at(Millis(890)));
    }
}
