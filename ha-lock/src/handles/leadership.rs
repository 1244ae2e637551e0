//! Leader election for host duties: hold a lock, publish who holds it.

use std::future::Future;
use std::time::{Duration, Instant};

use ha_core::StateMachine;

use super::error::LockError;
use super::lease_status::LeaseLoss;
use super::lock_guard::LockGuard;
use super::locks::Locks;
use crate::command::{FencingToken, LeaseId};

/// Where the holder of leadership `name` publishes its value.
///
/// ```
/// assert_eq!(ha_lock::election_key("scheduler"), "/election/scheduler");
/// ```
pub fn election_key(name: &str) -> String {
    format!("/election/{name}")
}

/// Leadership of `name`: this session holds lock `name`, and its value is published under
/// [`election_key(name)`](election_key), bound to the lock's lease, so the key disappears
/// when the leadership ends however it ends.
///
/// This is for host duties that must run on exactly one node (a scheduler, a singleton
/// consumer), and is separate from the replicated log's own leader: it can stay put while
/// the log's leader moves, and move (on [`resign`](Self::resign)) while the log's leader
/// stays. Like any lock it is only as good as its fencing: do the duty only while
/// [`is_valid`](Self::is_valid), and pass [`token`](Self::token) to what it writes.
///
/// ```no_run
/// # async fn example(locks: ha_lock::Locks<()>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// let leadership = locks
///     .campaign("scheduler", "node-1", Duration::from_secs(2), Duration::from_secs(3600))
///     .await?;
/// tokio::select! {
///     loss = leadership.lost() => eprintln!("no longer the scheduler ({loss:?})"),
///     () = async { /* schedule, fenced with leadership.token() */ } => {}
/// }
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
pub struct Leadership<H: StateMachine> {
    guard: LockGuard<H>,
    value: Vec<u8>,
    version: u64,
}

impl<H: StateMachine> Leadership<H> {
    pub(crate) async fn campaign(
        locks: &Locks<H>,
        name: String,
        value: Vec<u8>,
        ttl: Duration,
        wait_timeout: Duration,
    ) -> Result<Self, LockError> {
        let guard = locks.acquire(name, ttl, wait_timeout).await?;
        let key = election_key(guard.name());
        match locks
            .core
            .kv()
            .put_with_lease(key, value.clone(), guard.lease_id())
            .await
        {
            Ok(version) => Ok(Self {
                guard,
                value,
                version,
            }),
            Err(error) => {
                if let Err(end_error) = guard.end_lease().await {
                    tracing::debug!(%end_error, "ending a failed campaign's lease failed; it will expire");
                }
                Err(error)
            }
        }
    }

    /// The leadership's name (also its lock's name).
    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// The value published under [`election_key`].
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The version of the published value.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The lease the leadership (its lock and its published value) lives under.
    pub fn lease_id(&self) -> LeaseId {
        self.guard.lease_id()
    }

    /// The fencing token of this term of leadership.
    pub fn token(&self) -> FencingToken {
        self.guard.token()
    }

    /// The local instant after which this session must assume it no longer leads.
    pub fn safe_deadline(&self) -> Option<Instant> {
        self.guard.safe_deadline()
    }

    /// Whether this session may still act as the leader.
    pub fn is_valid(&self) -> bool {
        self.guard.is_valid()
    }

    /// Resolves when the leadership must be considered lost.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LeaseLoss> + Send + 'static {
        self.guard.lost()
    }

    /// Step down: ends the lease, which deletes the published value and passes the lock to
    /// the next campaigner in one command.
    ///
    /// # Errors
    /// [`LockError::Replication`] when the revoke could not be replicated; the lease then
    /// expires after its TTL and the leadership moves on.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped mid-way, the leadership ends by expiry.
    pub async fn resign(self) -> Result<(), LockError> {
        self.guard.end_lease().await
    }
}
