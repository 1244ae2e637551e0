//! A queued acquire's wait in line: polling the session's wait until granted, lost or timed
//! out, and leaving the line cleanly when it gives up.

use std::time::{Duration, Instant};

use ha_core::{Consistency, StateMachine};
use tokio::sync::watch;

use super::error::LockError;
use super::lease_status::LeaseStatus;
use super::locks::Locks;
use super::table_answer::CancelAnswer;
use crate::command::{
    FencingToken, HolderKey, LeaseId, LockCommand, LockQuery, SessionId, WaitState,
};

/// Shortest timeout given to one poll of a queued lock, so that a poll close to the wait
/// deadline still has time for a round trip.
const POLL_READ_TIMEOUT_MIN: Duration = Duration::from_millis(50);

/// How long a queued acquire polls at the configured interval before it slows down: a short
/// wait (a lock handed on between a few clients) is seen at once.
const POLL_BACKOFF_AFTER: Duration = Duration::from_millis(250);

/// The slowest a queued acquire polls, as a multiple of the configured interval.
const POLL_BACKOFF_FACTOR_MAX: u32 = 4;

/// The pause between two polls of a wait that began `waited` ago: `base` for the first
/// [`POLL_BACKOFF_AFTER`], then growing linearly with the time waited, to at most
/// [`POLL_BACKOFF_FACTOR_MAX`] times `base` (a line long enough for waits of a second or more
/// is polled by many waiters, and its next hand-off is at most that much later).
fn poll_interval(base: Duration, waited: Duration) -> Duration {
    let Some(beyond) = waited.checked_sub(POLL_BACKOFF_AFTER) else {
        return base;
    };
    // One more `base` per `POLL_BACKOFF_AFTER` waited beyond the first.
    let steps = u32::try_from(beyond.as_millis() / POLL_BACKOFF_AFTER.as_millis())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    base.saturating_mul(steps.saturating_add(1).min(POLL_BACKOFF_FACTOR_MAX))
}

impl<H: StateMachine> Locks<H> {
    /// Poll this session's wait for `name` under `lease` until granted (its token), the lease
    /// lost, the wait ended, or `deadline` passed (then leave the line, see `give_up`).
    pub(super) async fn await_grant(
        &self,
        name: &str,
        lease: LeaseId,
        status: &watch::Receiver<LeaseStatus>,
        deadline: Option<Instant>,
        holder_key: Option<&HolderKey>,
    ) -> Result<FencingToken, LockError> {
        let session = self.session();
        let waiting_since = Instant::now();
        loop {
            let now = Instant::now();
            if !status.borrow().is_valid_at(now) {
                self.cancel_wait(name, lease).await;
                return Err(LockError::LeaseLost { lease });
            }
            let remaining = match deadline {
                Some(deadline) if now >= deadline => {
                    return Err(self.give_up(name, lease, holder_key).await);
                }
                Some(deadline) => deadline - now,
                None => self.core.settings().request_timeout,
            };
            let read_timeout = remaining
                .max(POLL_READ_TIMEOUT_MIN)
                .min(self.core.settings().request_timeout);
            // Only this session's wait, from the local replica (EVENTUAL): its applied state is
            // committed state, so a grant seen there is a grant, with its token. "Not waiting"
            // there may only mean that this replica has not applied the acquire yet, so it is
            // confirmed at QUORUM (which waits for this replica to catch up) before the caller
            // hears it. A replica cut off from the leader sees no grant, and the wait ends at
            // its deadline with the cancel below, as a QUORUM poll would.
            let mut answer = self
                .wait_state_within(name, session, lease, Consistency::Eventual, read_timeout)
                .await;
            if matches!(answer, Ok(WaitState::NotWaiting)) {
                answer = self
                    .wait_state_within(name, session, lease, Consistency::Quorum, read_timeout)
                    .await;
            }
            match answer {
                Ok(WaitState::Granted { token }) => return Ok(token),
                Ok(WaitState::Waiting) => {}
                Ok(WaitState::NotWaiting) => {
                    return Err(if status.borrow().is_valid_at(Instant::now()) {
                        LockError::WaitEnded {
                            name: name.to_string(),
                        }
                    } else {
                        LockError::LeaseLost { lease }
                    });
                }
                // No answer this time (a leader change): keep trying until the wait deadline.
                Err(LockError::Replication(error)) if error.is_retryable() => {}
                Err(error) => {
                    self.cancel_wait(name, lease).await;
                    return Err(error);
                }
            }
            let interval = poll_interval(
                self.core.settings().lock_poll_interval,
                waiting_since.elapsed(),
            );
            let pause = match deadline {
                Some(deadline) => interval.min(deadline.saturating_duration_since(Instant::now())),
                None => interval,
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// The wait timed out: leave the line, and release a grant that raced the cancel, so that
    /// a caller told "timed out" holds nothing.
    async fn give_up(
        &self,
        name: &str,
        lease: LeaseId,
        holder_key: Option<&HolderKey>,
    ) -> LockError {
        let timed_out = LockError::WaitTimedOut {
            name: name.to_string(),
        };
        let command = LockCommand::CancelWait {
            name: name.to_string(),
            session: self.session(),
        };
        match self.core.command::<CancelAnswer>(command).await {
            Ok(CancelAnswer::Cancelled) => timed_out,
            Ok(CancelAnswer::NotWaiting) => {
                let state = self
                    .wait_state_within(
                        name,
                        self.session(),
                        lease,
                        Consistency::Quorum,
                        self.core.settings().request_timeout,
                    )
                    .await;
                match state {
                    Ok(WaitState::Granted { token }) => {
                        if let Err(error) = self.release_lock(name, token, holder_key).await {
                            return error;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return error,
                }
                timed_out
            }
            // The wait may still be queued; the caller learns that the outcome is unknown.
            Err(error) => error,
        }
    }

    /// Leave the line for `name`, best effort (the lease ending removes the wait anyway).
    async fn cancel_wait(&self, name: &str, lease: LeaseId) {
        let command = LockCommand::CancelWait {
            name: name.to_string(),
            session: self.session(),
        };
        if let Err(error) = self.core.command::<CancelAnswer>(command).await {
            tracing::debug!(name, lease = lease.0, %error, "cancelling a wait failed");
        }
    }

    /// Where this session's wait for `name` under `lease` stands, read at `consistency`.
    async fn wait_state_within(
        &self,
        name: &str,
        session: SessionId,
        lease: LeaseId,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<WaitState, LockError> {
        let query = LockQuery::Wait {
            name: name.to_string(),
            session,
            lease,
        };
        self.core.query_within(query, consistency, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_wait_polls_at_the_configured_interval_and_a_long_one_at_most_four_times_slower() {
        let base = Duration::from_millis(15);
        let ms = Duration::from_millis;
        assert_eq!(poll_interval(base, ms(0)), base);
        assert_eq!(poll_interval(base, ms(249)), base);
        assert_eq!(poll_interval(base, ms(250)), base * 2);
        assert_eq!(poll_interval(base, ms(500)), base * 3);
        assert_eq!(poll_interval(base, ms(750)), base * 4);
        assert_eq!(poll_interval(base, Duration::from_secs(3600)), base * 4);
        assert_eq!(
            poll_interval(Duration::MAX, Duration::MAX),
            Duration::MAX,
            "saturates"
        );
    }
}
