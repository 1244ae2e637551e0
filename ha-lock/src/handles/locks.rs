//! The lock handle of a session: fenced FIFO locks with deadlock detection, and leader
//! election built on them (the wait in line is in `lock_wait.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Consistency, StateMachine};
use tokio::sync::watch;

use super::error::LockError;
use super::leader_observer::LeaderObserver;
use super::leadership::Leadership;
use super::lease::Lease;
use super::lease_status::{LEASE_TTL_MIN, LeaseStatus};
use super::lock_guard::LockGuard;
use super::session_core::SessionCore;
use super::session_settings::SessionSettings;
use super::table_answer::{
    AcquireAnswer, AcquireRefusal, GrantAndAcquireAnswer, ReleaseAndRevokeAnswer, ReleaseAnswer,
};
use crate::command::{
    FencingToken, HolderKey, LeaseId, LockCommand, LockQuery, LockState, SessionId, holder_digest,
};

/// The error for an acquire of `name` that was refused.
fn acquire_refused(name: &str, refused: AcquireRefusal) -> LockError {
    match refused {
        AcquireRefusal::Busy { holder } => LockError::Busy {
            name: name.to_string(),
            holder,
        },
        AcquireRefusal::Deadlock { cycle } => LockError::Deadlock {
            name: name.to_string(),
            cycle,
        },
        AcquireRefusal::LeaseNotFound { lease } => LockError::LeaseLost { lease },
        AcquireRefusal::Invalid { reason } => LockError::Invalid { reason },
        AcquireRefusal::LimitReached { limit, max } => LockError::LimitReached { limit, max },
    }
}

/// The locks of one [`Session`](super::Session): acquire (waiting in line, or only if free),
/// release, read a lock's state, and campaign for or observe a leadership.
///
/// The session is the lock holder and waiter: lock waits and deadlock detection are per
/// session, and a session holds a given lock once, so two workers that must exclude each
/// other need a [`Session`](super::Session) each (every handle of one session, and every
/// clone of them, is the same holder). Cheap to clone; clones share the session.
///
/// ```no_run
/// # async fn example(locks: ha_lock::Locks<()>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// let guard = locks
///     .acquire("jobs", Duration::from_secs(2), Duration::from_secs(5))
///     .await?;
/// // ... work, passing guard.token() to every fenced resource ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct Locks<H: StateMachine> {
    pub(super) core: Arc<SessionCore<H>>,
}

impl<H: StateMachine> Clone for Locks<H> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<H: StateMachine> Locks<H> {
    pub(crate) fn from_core(core: Arc<SessionCore<H>>) -> Self {
        Self { core }
    }

    /// The lock table session: the holder and waiter id in lock states and deadlock cycles.
    pub fn session(&self) -> SessionId {
        self.core.session()
    }

    /// Its timeouts and poll intervals.
    pub fn settings(&self) -> &SessionSettings {
        self.core.settings()
    }

    /// Acquire lock `name` under a new lease with `ttl`, waiting in line (FIFO) up to
    /// `wait_timeout`. The guard keeps the lease alive until released or dropped.
    ///
    /// # Errors
    /// [`LockError::WaitTimedOut`] when not granted in time (no waiter is left behind);
    /// [`LockError::Deadlock`] at once when waiting would close a cycle;
    /// [`LockError::LimitReached`] when the line (or the table) is full; [`LockError::LeaseLost`] when the lease was
    /// lost while waiting; [`LockError::Invalid`] for an empty or too long name;
    /// [`LockError::Replication`] when the cluster could not be reached in time. The lease
    /// and the acquire are one replicated write ([`LockCommand::GrantAndAcquire`]): a refused
    /// acquire grants no lease, and on an error while waiting in line the lease is revoked.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: dropping the future while it waits in line drops the lease,
    /// whose background revoke removes the wait (or releases a grant that arrived meanwhile);
    /// dropping it while the first write is in flight may leave a lease (and the lock) that
    /// nobody renews, which expires after `ttl`.
    pub async fn acquire(
        &self,
        name: impl Into<String>,
        ttl: Duration,
        wait_timeout: Duration,
    ) -> Result<LockGuard<H>, LockError> {
        self.acquire_with_new_lease(name.into(), ttl, true, wait_timeout, None)
            .await
    }

    /// As [`acquire`](Self::acquire), with a holder key: the cluster keeps only its SHA-256
    /// ([`holder_digest`](crate::holder_digest)), with the wait and then with the grant, and
    /// releases the lock only for a release that presents `holder_key` (the guard's own
    /// release does; after [`detach`](LockGuard::detach), use
    /// [`release_with_holder`](Self::release_with_holder)). A plain
    /// [`release`](Self::release) of it, or one with another key, is refused
    /// ([`LockError::NotHolder`]) on every replica. Ending the lease still releases it.
    ///
    /// `holder_key` must be unguessable: 16 bytes from a CSPRNG, kept secret by the holder.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`LockError::Busy`] also when this session already
    /// holds or waits for the lock under the lease with another holder key.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_with_holder(
        &self,
        name: impl Into<String>,
        ttl: Duration,
        wait_timeout: Duration,
        holder_key: HolderKey,
    ) -> Result<LockGuard<H>, LockError> {
        self.acquire_with_new_lease(name.into(), ttl, true, wait_timeout, Some(holder_key))
            .await
    }

    /// As [`try_acquire`](Self::try_acquire), with a holder key (see
    /// [`acquire_with_holder`](Self::acquire_with_holder)).
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire_with_holder(
        &self,
        name: impl Into<String>,
        ttl: Duration,
        holder_key: HolderKey,
    ) -> Result<LockGuard<H>, LockError> {
        self.acquire_with_new_lease(name.into(), ttl, false, Duration::ZERO, Some(holder_key))
            .await
    }

    /// Acquire lock `name` under a new lease with `ttl` only if it is free now.
    ///
    /// # Errors
    /// [`LockError::Busy`] with the holder when it is held; otherwise as
    /// [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(
        &self,
        name: impl Into<String>,
        ttl: Duration,
    ) -> Result<LockGuard<H>, LockError> {
        self.acquire_with_new_lease(name.into(), ttl, false, Duration::ZERO, None)
            .await
    }

    /// Acquire lock `name` under an existing `lease` (which may also hold keys and other
    /// locks), waiting up to `wait_timeout`. The guard does not own the lease: releasing it
    /// releases the lock only.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), except that nothing is revoked.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped call may leave this session waiting under `lease` (and
    /// later holding the lock) until the lease ends.
    pub async fn acquire_with_lease(
        &self,
        name: impl Into<String>,
        lease: &Lease<H>,
        wait_timeout: Duration,
    ) -> Result<LockGuard<H>, LockError> {
        let name = name.into();
        let status = lease.watch();
        let token = self
            .acquire_under(&name, lease.id(), &status, true, wait_timeout, None)
            .await?;
        Ok(LockGuard::new(
            Arc::clone(&self.core),
            name,
            token,
            lease.id(),
            status,
            None,
            None,
        ))
    }

    /// Lock `name`'s state (QUORUM read): holder, lease, token and waiters; `None` when free.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn lock_state(&self, name: &str) -> Result<Option<LockState>, LockError> {
        self.lock_state_within(name, self.core.settings().request_timeout)
            .await
    }

    async fn lock_state_within(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<LockState>, LockError> {
        let query = LockQuery::Lock {
            name: name.to_string(),
        };
        self.core
            .query_within(query, Consistency::Quorum, timeout)
            .await
    }

    /// Release lock `name` held with `token`, by whoever holds it: for a holder known only by
    /// its token (a lock taken through the admin HTTP API and then
    /// [`detach`](LockGuard::detach)ed). A [`LockGuard`] releases itself.
    ///
    /// A lock granted with a holder key ([`acquire_with_holder`](Self::acquire_with_holder))
    /// is not released this way: use [`release_with_holder`](Self::release_with_holder).
    ///
    /// # Errors
    /// [`LockError::NotHolder`] when `token` does not hold the lock (it was released, expired
    /// or passed on), or when the lock was granted with a holder key; nothing changed.
    /// [`LockError::Replication`] when no answer came in time.
    pub async fn release(&self, name: &str, token: FencingToken) -> Result<(), LockError> {
        self.release_lock(name, token, None).await
    }

    /// Release lock `name` held with `token` and granted with the digest of `holder_key`
    /// ([`acquire_with_holder`](Self::acquire_with_holder)): what the admin HTTP API's
    /// `DELETE /v1/lock/<name>?token=N&holder=HEX` does. The key is checked when the release
    /// is applied, so every replica answers the same.
    ///
    /// # Errors
    /// [`LockError::NotHolder`] when `token` does not hold the lock, when `holder_key` is not
    /// the key the lock was granted with, or when it was granted without one; nothing
    /// changed. [`LockError::Replication`] when no answer came in time.
    pub async fn release_with_holder(
        &self,
        name: &str,
        token: FencingToken,
        holder_key: &HolderKey,
    ) -> Result<(), LockError> {
        self.release_lock(name, token, Some(holder_key)).await
    }

    /// Release lock `name` held with `token` and end the lease it is held under, in one
    /// replicated write ([`LockCommand::ReleaseAndRevoke`]): the lease's keys are deleted and
    /// its other locks released too, so use it for a lease that exists for this lock (what
    /// [`acquire`](Self::acquire) and the `acquire_with_holder` family grant, and what the
    /// admin HTTP API's `DELETE /v1/lock/<name>?token=N&holder=HEX` ends). Pass the holder
    /// key for a grant made with one. A [`LockGuard`] that owns its lease releases this way.
    ///
    /// # Errors
    /// [`LockError::NotHolder`] when `token` does not hold the lock, or the key does not
    /// match the grant (as [`release_with_holder`](Self::release_with_holder)): nothing
    /// changed, the lease included. [`LockError::Replication`] when no answer came in time.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the release may or may not happen.
    pub async fn release_ending_lease(
        &self,
        name: &str,
        token: FencingToken,
        holder_key: Option<&HolderKey>,
    ) -> Result<(), LockError> {
        let command = LockCommand::ReleaseAndRevoke {
            name: name.to_string(),
            token,
            holder_key: holder_key.copied(),
        };
        match self.core.command::<ReleaseAndRevokeAnswer>(command).await? {
            ReleaseAndRevokeAnswer::LeaseEnded {} => Ok(()),
            ReleaseAndRevokeAnswer::NotHolder | ReleaseAndRevokeAnswer::WrongHolder => {
                Err(LockError::NotHolder {
                    name: name.to_string(),
                    token,
                })
            }
        }
    }

    /// Release `name` for `token`, presenting `holder_key` when the grant was made with one.
    pub(crate) async fn release_lock(
        &self,
        name: &str,
        token: FencingToken,
        holder_key: Option<&HolderKey>,
    ) -> Result<(), LockError> {
        let command = match holder_key {
            None => LockCommand::Release {
                name: name.to_string(),
                token,
            },
            Some(holder_key) => LockCommand::ReleaseWithHolder {
                name: name.to_string(),
                token,
                holder_key: *holder_key,
            },
        };
        match self.core.command::<ReleaseAnswer>(command).await? {
            ReleaseAnswer::Released => Ok(()),
            ReleaseAnswer::NotHolder | ReleaseAnswer::WrongHolder => Err(LockError::NotHolder {
                name: name.to_string(),
                token,
            }),
        }
    }

    /// Grant a lease with `ttl` and acquire `name` under it in ONE replicated write
    /// ([`LockCommand::GrantAndAcquire`]; issue 17: it was a grant and an acquire). When
    /// queued, poll until granted, lost or timed out, and revoke the lease on any error then;
    /// a refusal of the acquire (busy, deadlock, a limit) grants no lease, so there is nothing
    /// to revoke.
    async fn acquire_with_new_lease(
        &self,
        name: String,
        ttl: Duration,
        wait: bool,
        wait_timeout: Duration,
        holder_key: Option<HolderKey>,
    ) -> Result<LockGuard<H>, LockError> {
        if ttl < LEASE_TTL_MIN {
            return Err(LockError::Invalid {
                reason: format!("a lease TTL is at least {LEASE_TTL_MIN:?}, not {ttl:?}"),
            });
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // The safe deadline counts from before the command leaves, as for `grant`; the wait
        // deadline too (no deadline when too far to represent).
        let sent_at = Instant::now();
        let deadline = sent_at.checked_add(wait_timeout);
        let command = LockCommand::GrantAndAcquire {
            name: name.clone(),
            session: self.session(),
            ttl_ms,
            wait,
            holder_digest: holder_key.as_ref().map(holder_digest),
        };
        let (lease_id, granted) = match self.core.command::<GrantAndAcquireAnswer>(command).await? {
            GrantAndAcquireAnswer::Granted { lease, token } => (lease, Some(token)),
            GrantAndAcquireAnswer::Queued { lease } => (lease, None),
            GrantAndAcquireAnswer::Refused(refused) => return Err(acquire_refused(&name, refused)),
        };
        let lease = Lease::start(Arc::clone(&self.core), lease_id, ttl, sent_at);
        let status = lease.watch();
        let token = match granted {
            Some(token) => token,
            None => {
                let waited = self
                    .await_grant(&name, lease_id, &status, deadline, holder_key.as_ref())
                    .await;
                match waited {
                    Ok(token) => token,
                    Err(error) => {
                        // Ending the lease also removes a wait or a grant left behind.
                        if let Err(revoke_error) = lease.revoke().await {
                            tracing::debug!(%revoke_error, "revoke after a failed acquire failed; the lease will expire");
                        }
                        return Err(error);
                    }
                }
            }
        };
        Ok(LockGuard::new(
            Arc::clone(&self.core),
            name,
            token,
            lease_id,
            status,
            Some(lease),
            holder_key,
        ))
    }

    /// Propose the acquire (with the digest of `holder_key`, if any) and, when queued, poll
    /// until granted, lost or timed out.
    async fn acquire_under(
        &self,
        name: &str,
        lease: LeaseId,
        status: &watch::Receiver<LeaseStatus>,
        wait: bool,
        wait_timeout: Duration,
        holder_key: Option<&HolderKey>,
    ) -> Result<FencingToken, LockError> {
        let session = self.session();
        // No deadline when the timeout is too far to represent: wait until granted or lost.
        let deadline = Instant::now().checked_add(wait_timeout);
        let command = match holder_key {
            None => LockCommand::Acquire {
                name: name.to_string(),
                session,
                lease,
                wait,
            },
            Some(holder_key) => LockCommand::AcquireWithHolder {
                name: name.to_string(),
                session,
                lease,
                wait,
                holder_digest: holder_digest(holder_key),
            },
        };
        match self.core.command::<AcquireAnswer>(command).await? {
            AcquireAnswer::Granted { token } => Ok(token),
            AcquireAnswer::Queued => {
                self.await_grant(name, lease, status, deadline, holder_key)
                    .await
            }
            AcquireAnswer::Refused(refused) => Err(acquire_refused(name, refused)),
        }
    }

    /// Campaign for leadership `name`: wait (up to `wait_timeout`) for lock `name` under a new
    /// lease with `ttl`, then publish `value` (for example the node id) under
    /// [`election_key(name)`](super::election_key), bound to the lease.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and as [`Kv::put_with_lease`](super::Kv::put_with_lease) (the
    /// lock is then released).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn campaign(
        &self,
        name: impl Into<String>,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
        wait_timeout: Duration,
    ) -> Result<Leadership<H>, LockError> {
        Leadership::campaign(self, name.into(), value.into(), ttl, wait_timeout).await
    }

    /// The current leader of `name` (QUORUM read), and a way to wait for the next change.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn observe(&self, name: &str) -> Result<LeaderObserver<H>, LockError> {
        LeaderObserver::start(self.core.kv(), name).await
    }
}
