//! The lease handle of a session: grant (renewed in the background), revoke, read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Consistency, StateMachine};

use super::error::LockError;
use super::lease::Lease;
use super::lease_status::LEASE_TTL_MIN;
use super::session_core::SessionCore;
use super::table_answer::{GrantAnswer, RevokeAnswer};
use crate::command::{LeaseId, LeaseState, LockCommand, LockQuery, SessionId};

/// The leases of one [`Session`](super::Session): grant one (a [`Lease`] renewed in the
/// background, with a safe deadline), revoke any, read one. Keys
/// ([`Kv::put_with_lease`](super::Kv::put_with_lease)) and locks
/// ([`Locks::acquire_with_lease`](super::Locks::acquire_with_lease)) can be bound to a lease,
/// and end with it. Cheap to clone; clones share the session.
///
/// ```no_run
/// # async fn example(session: ha_lock::Session<()>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// let lease = session.leases().grant(Duration::from_secs(2)).await?;
/// session.kv().put_with_lease("/workers/w1", "busy", lease.id()).await?;
/// lease.revoke().await?; // deletes /workers/w1
/// # Ok(()) }
/// ```
pub struct Leases<H: StateMachine> {
    core: Arc<SessionCore<H>>,
}

impl<H: StateMachine> Clone for Leases<H> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<H: StateMachine> Leases<H> {
    pub(crate) fn from_core(core: Arc<SessionCore<H>>) -> Self {
        Self { core }
    }

    /// The lock table session that owns the leases granted here.
    pub fn session(&self) -> SessionId {
        self.core.session()
    }

    /// Grant a lease with `ttl` for this session and start renewing it in the background
    /// every third of the TTL. See [`Lease`] for its safe deadline.
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a TTL under [`LEASE_TTL_MIN`](super::LEASE_TTL_MIN);
    /// [`LockError::LimitReached`] when the table holds as many leases as it may;
    /// [`LockError::Replication`] when the grant could not be replicated (on a timeout a lease
    /// may have been granted; nobody renews it, so it expires after `ttl`).
    ///
    /// # Cancel safety
    /// Cancel safe in effect: a lease granted by a dropped call is not renewed and expires.
    pub async fn grant(&self, ttl: Duration) -> Result<Lease<H>, LockError> {
        if ttl < LEASE_TTL_MIN {
            return Err(LockError::Invalid {
                reason: format!("a lease TTL is at least {LEASE_TTL_MIN:?}, not {ttl:?}"),
            });
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // The safe deadline counts from before the grant leaves: the leader counts from when
        // it sees the grant applied, which is later.
        let sent_at = Instant::now();
        let command = LockCommand::LeaseGrant {
            ttl_ms,
            session: self.core.session(),
        };
        match self.core.command::<GrantAnswer>(command).await? {
            GrantAnswer::LeaseGranted { lease } => {
                Ok(Lease::start(Arc::clone(&self.core), lease, ttl, sent_at))
            }
            GrantAnswer::LimitReached { limit, max } => Err(LockError::LimitReached { limit, max }),
        }
    }

    /// End lease `lease` now, whoever holds it: its keys are deleted and its locks released.
    /// Returns whether it existed. The holder's handle learns of it at its next renewal.
    ///
    /// # Errors
    /// [`LockError::Replication`] when the revoke could not be replicated.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the revoke may or may not happen.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<bool, LockError> {
        match self
            .core
            .command::<RevokeAnswer>(LockCommand::LeaseRevoke { lease })
            .await?
        {
            RevokeAnswer::LeaseEnded {} => Ok(true),
            RevokeAnswer::LeaseNotFound {} => Ok(false),
        }
    }

    /// Lease `lease` as the cluster has it (QUORUM read); `None` once it ended.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn lease_state(&self, lease: LeaseId) -> Result<Option<LeaseState>, LockError> {
        self.core
            .query(LockQuery::Lease { lease }, Consistency::Quorum)
            .await
    }
}
