//! A held lock: its fencing token, its safe deadline, and its release.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use ha_core::StateMachine;
use tokio::sync::watch;

use super::error::LockError;
use super::lease::Lease;
use super::lease_status::{LeaseLoss, LeaseStatus, lost};
use super::session_core::SessionCore;
use crate::command::{FencingToken, HolderKey, LeaseId};

/// A lock held by this session, under a lease that is renewed in the background while the
/// guard lives.
///
/// Holding the guard is not proof of holding the lock: a process can pause, or lose the
/// cluster, for longer than the TTL. The holder must
/// - stop acting as the holder once [`is_valid`](Self::is_valid) is false (past
///   [`safe_deadline`](Self::safe_deadline)) or [`lost`](Self::lost) resolved, and
/// - pass [`token`](Self::token) with every write to a protected resource, which refuses
///   tokens lower than the highest it has seen ([`FencedResource`](super::FencedResource)),
///   so a holder that paused past its deadline cannot overwrite its successor's work.
///
/// Dropping the guard without [`release`](Self::release) releases it in the background (best
/// effort; otherwise the lease expires after its TTL and releases it).
///
/// ```no_run
/// # async fn example(locks: ha_lock::Locks<()>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// let guard = locks.acquire("reports", Duration::from_secs(2), Duration::from_secs(10)).await?;
/// tokio::select! {
///     loss = guard.lost() => eprintln!("lock lost ({loss:?}); stop at once"),
///     () = async { /* the work, passing guard.token() to every write */ } => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LockGuard<H: StateMachine> {
    /// The session that holds the lock.
    core: Arc<SessionCore<H>>,
    name: String,
    token: FencingToken,
    lease_id: LeaseId,
    status: watch::Receiver<LeaseStatus>,
    /// The lease granted for this lock, ended with it; `None` when the caller passed its own.
    lease: Option<Lease<H>>,
    /// The key whose digest the grant keeps, presented at release; `None` for a grant made
    /// without one.
    holder_key: Option<HolderKey>,
    released: bool,
}

impl<H: StateMachine> LockGuard<H> {
    pub(crate) fn new(
        core: Arc<SessionCore<H>>,
        name: String,
        token: FencingToken,
        lease_id: LeaseId,
        status: watch::Receiver<LeaseStatus>,
        lease: Option<Lease<H>>,
        holder_key: Option<HolderKey>,
    ) -> Self {
        Self {
            core,
            name,
            token,
            lease_id,
            status,
            lease,
            holder_key,
            released: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of this grant: larger than every earlier grant's of this lock.
    /// Compare tokens of one lock only (locks passed on by one command share a value).
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The lease the lock is held under.
    pub fn lease_id(&self) -> LeaseId {
        self.lease_id
    }

    /// The local monotonic instant after which the holder must assume the lock lost (the
    /// lease's safe deadline; each renewal moves it on). `None` once the lease is lost.
    pub fn safe_deadline(&self) -> Option<Instant> {
        self.status.borrow().safe_deadline()
    }

    /// Whether the holder may still act as the holder: the lease is alive and its safe
    /// deadline has not passed.
    pub fn is_valid(&self) -> bool {
        self.status.borrow().is_valid_at(Instant::now())
    }

    /// The lease's status as it changes.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    /// Resolves when the lock must be considered lost: the lease was lost (a renewal failed,
    /// it was revoked, it expired) or its safe deadline passed. It does not borrow the guard.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LeaseLoss> + Send + 'static {
        lost(self.status.clone())
    }

    /// Release the lock (it passes to the next waiter, with a larger token) and, if the guard
    /// owns its lease, end the lease: one replicated write either way
    /// ([`LockCommand::ReleaseAndRevoke`](crate::LockCommand::ReleaseAndRevoke) for an owned
    /// lease). When that release is refused or gets no answer, the owned lease is revoked on
    /// its own (a second write, only then).
    ///
    /// # Errors
    /// [`LockError::NotHolder`] when the lock had already been lost;
    /// [`LockError::Replication`] when the release could not be replicated (the lease still
    /// ends, by revoke or expiry, and releases the lock then).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped mid-way, the release may or may not have happened; an
    /// owned lease has stopped renewing, so it ends by expiry and releases the lock then.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        match self.lease.take() {
            Some(lease) => {
                let lease_id = lease.stop_for_release();
                release_ending_lease(
                    &self.core,
                    &self.name,
                    self.token,
                    self.holder_key.as_ref(),
                    lease_id,
                )
                .await
            }
            None => {
                self.core
                    .locks()
                    .release_lock(&self.name, self.token, self.holder_key.as_ref())
                    .await
            }
        }
    }

    /// Let go of the guard without releasing the lock: the lock stays held by its token until
    /// someone calls [`Locks::release`](super::Locks::release) with it, or until the lease ends. An owned lease
    /// stops renewing and expires after its TTL (a caller-given lease is left as it is).
    /// Returns the fencing token and the lease id. The admin HTTP API hands locks to its
    /// clients this way: an HTTP client cannot renew, so its lock lasts at most one TTL.
    pub fn detach(mut self) -> (FencingToken, LeaseId) {
        self.released = true;
        if let Some(lease) = self.lease.take() {
            lease.abandon();
        }
        (self.token, self.lease_id)
    }

    /// End the owned lease at once: releases the lock and deletes the lease's keys in one
    /// command. Without an owned lease, releases the lock only.
    pub(crate) async fn end_lease(mut self) -> Result<(), LockError> {
        self.released = true;
        match self.lease.take() {
            Some(lease) => lease.revoke().await,
            None => {
                self.core
                    .locks()
                    .release_lock(&self.name, self.token, self.holder_key.as_ref())
                    .await
            }
        }
    }
}

impl<H: StateMachine> Drop for LockGuard<H> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let lease = self.lease.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to release on: the lease (dropped here) stops renewing and expires.
            return;
        };
        let core = Arc::clone(&self.core);
        let name = std::mem::take(&mut self.name);
        let token = self.token;
        let holder_key = self.holder_key;
        let lease_id = lease.map(Lease::stop_for_release);
        runtime.spawn(async move {
            let released = match lease_id {
                Some(lease_id) => {
                    release_ending_lease(&core, &name, token, holder_key.as_ref(), lease_id).await
                }
                None => {
                    core.locks()
                        .release_lock(&name, token, holder_key.as_ref())
                        .await
                }
            };
            if let Err(error) = released {
                tracing::debug!(name, token = token.0, %error, "release of a dropped guard failed");
            }
        });
    }
}

/// Release `name` (grant `token`) and end its owned lease `lease` in one write; if that is
/// refused or unanswered, revoke the lease on its own (ending an already ended lease is no
/// error), so the lease never outlives the guard by more than its TTL. Returns the release's
/// error, else the revoke's.
async fn release_ending_lease<H: StateMachine>(
    core: &Arc<SessionCore<H>>,
    name: &str,
    token: FencingToken,
    holder_key: Option<&HolderKey>,
    lease: LeaseId,
) -> Result<(), LockError> {
    let released = core
        .locks()
        .release_ending_lease(name, token, holder_key)
        .await;
    if released.is_ok() {
        return Ok(());
    }
    let revoked = core.leases().revoke_lease(lease).await.map(|_| ());
    released.and(revoked)
}
