//! A lease held by this process: renewed in the background, with a safe deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Millis, StateMachine};
use ha_replicate::replica::ClientError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::LockError;
use super::lease_status::{LeaseLoss, LeaseStatus, lost};
use super::session_core::SessionCore;
use super::table_answer::RenewAnswer;
use crate::command::LeaseId;
use crate::lease_renewal::LeaseRenewal;

/// The lease's own monotonic clock in milliseconds, whose zero is the instant its grant was
/// sent, for [`LeaseRenewal`]: reading it rounds down (an earlier send time is the safe side),
/// and its deadlines convert back to exact instants.
#[derive(Clone, Copy, Debug)]
struct LeaseClock {
    origin: Instant,
}

impl LeaseClock {
    fn now(&self) -> Millis {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        Millis(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Millis) -> Instant {
        self.origin + at.as_duration()
    }

    fn status(&self, renewal: &LeaseRenewal) -> LeaseStatus {
        LeaseStatus::Alive {
            safe_deadline: self.instant(renewal.safe_deadline()),
        }
    }
}

/// A granted lease, kept alive by a background task that renews it every third of its TTL.
///
/// The holder may act under the lease (hold its locks, rely on its keys) only until its
/// [`safe_deadline`](Self::safe_deadline): the local monotonic time at which the last
/// successful renewal (or the grant) was *sent*, plus the TTL, minus a drift margin
/// ([`drift_margin`](crate::drift_margin)). The renewal times and the deadline are
/// [`LeaseRenewal`]'s, the rule the lock simulation's clients follow too. The leader starts counting a TTL only when it sees
/// a renewal applied, which is later, so the holder always gives up first. [`lost`](Self::lost)
/// resolves at once when a renewal fails or the safe deadline passes.
///
/// Dropping the handle stops the renewals and revokes the lease in the background (best
/// effort); [`abandon`](Self::abandon) stops renewing without revoking, as a crashed holder
/// would.
///
/// ```no_run
/// # async fn example(session: ha_lock::Session<()>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// let lease = session.leases().grant(Duration::from_secs(2)).await?;
/// session.kv().put_with_lease("/workers/w1", "busy", lease.id()).await?;
/// tokio::select! {
///     loss = lease.lost() => eprintln!("lease lost ({loss:?}); the key is gone or going"),
///     () = tokio::time::sleep(Duration::from_secs(10)) => {}
/// }
/// lease.revoke().await?; // deletes /workers/w1
/// # Ok(()) }
/// ```
pub struct Lease<H: StateMachine> {
    id: LeaseId,
    ttl: Duration,
    /// The session that owns the lease.
    core: Arc<SessionCore<H>>,
    status: Arc<watch::Sender<LeaseStatus>>,
    /// `None` once revoked or abandoned: nothing left to stop on drop.
    keep_alive: Option<JoinHandle<()>>,
}

impl<H: StateMachine> Lease<H> {
    /// Start renewing lease `id`, granted by a request sent at `sent_at`.
    pub(crate) fn start(
        core: Arc<SessionCore<H>>,
        id: LeaseId,
        ttl: Duration,
        sent_at: Instant,
    ) -> Self {
        let clock = LeaseClock { origin: sent_at };
        let renewal = LeaseRenewal::granted(ttl, Millis::ZERO);
        let status = Arc::new(watch::Sender::new(clock.status(&renewal)));
        let keep_alive = tokio::spawn(keep_alive(
            Arc::clone(&core),
            id,
            clock,
            renewal,
            Arc::clone(&status),
        ));
        Self {
            id,
            ttl,
            core,
            status,
            keep_alive: Some(keep_alive),
        }
    }

    /// The lease id (the log index of its grant).
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// Its time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What the holder knows now.
    pub fn status(&self) -> LeaseStatus {
        self.status.borrow().clone()
    }

    /// Status changes as they happen (each renewal moves the safe deadline on).
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.status.subscribe()
    }

    /// The local monotonic instant after which the holder must assume the lease lost;
    /// `None` once it is lost.
    pub fn safe_deadline(&self) -> Option<Instant> {
        self.status.borrow().safe_deadline()
    }

    /// Whether the holder may still act under the lease: alive and before its safe deadline.
    pub fn is_valid(&self) -> bool {
        self.status.borrow().is_valid_at(Instant::now())
    }

    /// Resolves when the lease is lost (a renewal failed, it ended on the cluster, it was
    /// revoked) or its safe deadline passes without a successful renewal. It does not borrow
    /// the handle, so it can sit in a `select!` next to the work the lease protects.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LeaseLoss> + Send + 'static {
        lost(self.status.subscribe())
    }

    /// Stop renewing and end the lease now: its keys are deleted and its locks released (or
    /// passed to their next waiters).
    ///
    /// # Errors
    /// [`LockError::Replication`] when the revoke could not be replicated; the lease then
    /// ends by expiry after its TTL. A lease that had already ended is not an error.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped mid-way, the renewals have stopped but the revoke may not
    /// have been applied; the lease then expires after its TTL.
    pub async fn revoke(mut self) -> Result<(), LockError> {
        self.stop(LeaseLoss::Revoked);
        self.core.leases().revoke_lease(self.id).await.map(|_| ())
    }

    /// Stop renewing without revoking, as a holder that crashed would: the leader expires the
    /// lease once its TTL runs out without a renewal.
    pub fn abandon(mut self) {
        self.stop(LeaseLoss::Abandoned);
    }

    /// Stop renewing because the lease is being ended by a command other than
    /// [`revoke`](Self::revoke) (a release that ends its lease, `ReleaseAndRevoke`): no
    /// revoke of its own, on drop or otherwise. Returns the lease id.
    pub(crate) fn stop_for_release(mut self) -> LeaseId {
        self.stop(LeaseLoss::Revoked);
        self.id
    }

    fn stop(&mut self, loss: LeaseLoss) {
        if let Some(task) = self.keep_alive.take() {
            task.abort();
        }
        self.status.send_replace(LeaseStatus::Lost(loss));
    }
}

impl<H: StateMachine> Drop for Lease<H> {
    fn drop(&mut self) {
        if self.keep_alive.is_none() {
            return;
        }
        self.stop(LeaseLoss::Revoked);
        // Revoking frees the lease's locks at once instead of after its TTL; without a runtime
        // (dropped outside tokio) the leader's expiry does it later.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let leases = self.core.leases();
            let id = self.id;
            runtime.spawn(async move {
                if let Err(error) = leases.revoke_lease(id).await {
                    tracing::debug!(lease = id.0, %error, "revoke of a dropped lease failed; it will expire");
                }
            });
        }
    }
}

/// Renew `lease` when `renewal` says, until aborted or the lease is lost.
async fn keep_alive<H: StateMachine>(
    core: Arc<SessionCore<H>>,
    lease: LeaseId,
    clock: LeaseClock,
    mut renewal: LeaseRenewal,
    status: Arc<watch::Sender<LeaseStatus>>,
) {
    let loss = loop {
        tokio::time::sleep_until(clock.instant(renewal.renew_at()).into()).await;
        // Taken before the request leaves (before even waiting for the session's turn): the
        // leader sees the renewal later than this, so counting from here is conservative.
        let sent_at = clock.now();
        let Some(budget) = renewal.renewal_budget_at(sent_at) else {
            break LeaseLoss::DeadlinePassed;
        };
        let safe_deadline = clock.instant(renewal.safe_deadline());
        let answer = tokio::time::timeout_at(safe_deadline.into(), core.renew(lease, budget)).await;
        match answer {
            Ok(Ok(RenewAnswer::LeaseRenewed {})) => {
                renewal.on_renewed(sent_at);
                status.send_replace(clock.status(&renewal));
            }
            Ok(Ok(RenewAnswer::LeaseNotFound {})) => break LeaseLoss::Ended,
            // The client retries retryable errors itself until its deadline, which is the
            // safe deadline: a timeout means the deadline passed.
            Err(_) | Ok(Err(LockError::Replication(ClientError::Timeout))) => {
                break LeaseLoss::DeadlinePassed;
            }
            Ok(Err(error)) => break LeaseLoss::RenewalFailed(error.to_string()),
        }
    };
    tracing::info!(lease = lease.0, ?loss, "lease lost");
    status.send_replace(LeaseStatus::Lost(loss));
}
