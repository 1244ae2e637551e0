//! The client of the lock table: KV, leases, locks, watches and leader election for one
//! session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Consistency, StateMachine};
use ha_replicate::driver::{ReplicaClient, ReplicaNode};
use tokio::sync::watch;

use super::error::LockError;
use super::leader_observer::LeaderObserver;
use super::leadership::Leadership;
use super::lease::Lease;
use super::lease_status::{LEASE_TTL_MIN, LeaseStatus};
use super::lock_guard::LockGuard;
use super::lock_session::LockSession;
use super::settings::LockClientSettings;
use super::watch::Watch;
use crate::change_feed::ChangeFeed;
use crate::command::{
    FencingToken, HolderKey, KeyValue, LeaseId, LeaseState, LockCommand, LockQuery,
    LockQueryResponse, LockResponse, LockState, LockStats, SessionId, WaitState, holder_digest,
};
use crate::lock_table::QUERY_RESULTS_MAX;
use crate::with_locks::WithLocks;

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

/// The error for an acquire answered `refused` (anything but a grant or a place in line).
fn acquire_refused(name: &str, refused: LockResponse) -> LockError {
    match refused {
        LockResponse::Busy { holder } => LockError::Busy {
            name: name.to_string(),
            holder,
        },
        LockResponse::Deadlock { cycle } => LockError::Deadlock {
            name: name.to_string(),
            cycle,
        },
        LockResponse::LeaseNotFound { lease } => LockError::LeaseLost { lease },
        LockResponse::Invalid { reason } => LockError::Invalid { reason },
        LockResponse::LimitReached { limit, max } => LockError::LimitReached { limit, max },
        other => LockError::unexpected(other),
    }
}

struct Shared<H: StateMachine> {
    writer: LockSession<H>,
    /// Renewals go through their own session when one was given. Not needed for them to
    /// run beside a slow foreground write (a STRONG put waiting for a down voter): writes of
    /// one session are pipelined, none waits for another.
    renewals: Option<LockSession<H>>,
}

/// One client session of the lock table in a [`WithLocks`] state machine: KV with
/// compare-and-swap, leases, fenced FIFO locks, watches and leader election, over a
/// [`ReplicaClient`]. Cheap to clone; clones share the session.
///
/// The session id of the wrapped client ([`session`](Self::session)) is the lock table's
/// [`SessionId`]: lock waits and deadlock detection are per session. A session holds a given
/// lock once; independent contenders (two workers that must exclude each other) need a client
/// each.
///
/// Writes are QUORUM unless a method takes a [`Consistency`], and are applied exactly once
/// across retries. Clones used from many tasks write concurrently on the one session (the
/// replicated session keeps the answers of all its unacknowledged writes), none waiting for
/// another.
///
/// ```no_run
/// # async fn example(node: ha_replicate::driver::ReplicaNode<ha_lock::WithLocks<()>>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// use ha_core::Consistency;
/// use ha_lock::LockClient;
///
/// let client = LockClient::from_node(&node);
/// let version = client.create("/config/mode", "active").await?;
/// client.compare_and_swap("/config/mode", version, "standby").await?;
/// let guard = client
///     .acquire("jobs", Duration::from_secs(2), Duration::from_secs(5))
///     .await?;
/// // ... work, passing guard.token() to every fenced resource ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LockClient<H: StateMachine> {
    shared: Arc<Shared<H>>,
    settings: LockClientSettings,
    /// The local replica's change signal, when known: watches wait on it instead of polling.
    feed: Option<ChangeFeed>,
}

impl<H: StateMachine> Clone for LockClient<H> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            settings: self.settings,
            feed: self.feed.clone(),
        }
    }
}

impl<H: StateMachine> LockClient<H> {
    /// A client over `client`, whose session becomes the lock table session. Lease renewals
    /// share the session with everything else, in flight beside slow writes.
    pub fn new(client: ReplicaClient<WithLocks<H>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                writer: LockSession::new(client),
                renewals: None,
            }),
            settings: LockClientSettings::default(),
            feed: None,
        }
    }

    /// A client over `client`, renewing its leases through a second session `renewals` (kept
    /// for callers that want renewals counted apart; [`new`](Self::new) serves as well).
    pub fn with_renewal_client(
        client: ReplicaClient<WithLocks<H>>,
        renewals: ReplicaClient<WithLocks<H>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                writer: LockSession::new(client),
                renewals: Some(LockSession::new(renewals)),
            }),
            settings: LockClientSettings::default(),
            feed: None,
        }
    }

    /// A client on `node` with a fresh session (renewals included).
    pub fn from_node(node: &ReplicaNode<WithLocks<H>>) -> Self {
        Self::new(node.client())
    }

    /// The same client with its watches woken by `feed`, the [`ChangeFeed`] the local
    /// replica's [`WithLocks`] publishes to: a change reaches a watch as soon as the replica
    /// applies it, instead of at the next poll.
    pub fn with_change_feed(mut self, feed: ChangeFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The same client with other timeouts and poll intervals (clones made before keep
    /// theirs).
    pub fn with_settings(mut self, settings: LockClientSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Its timeouts and poll intervals.
    pub fn settings(&self) -> &LockClientSettings {
        &self.settings
    }

    /// The lock table session: the holder and waiter id in lock states and deadlock cycles.
    pub fn session(&self) -> SessionId {
        self.shared.writer.session()
    }

    // ---- KV ----------------------------------------------------------------------------

    /// Read `key` at `consistency` (STRONG and QUORUM are linearizable; EVENTUAL reads the
    /// local replica, possibly stale).
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, LockError> {
        let query = LockQuery::Get {
            key: key.to_string(),
        };
        match self.query(query, consistency).await? {
            LockQueryResponse::Value(value) => Ok(value),
            other => Err(LockError::unexpected(other)),
        }
    }

    /// Set `key` to `value`; returns the key's new version. An EVENTUAL put returns once the
    /// leader appended it, with the version it gets when applied (it can still be lost if the
    /// leader dies first).
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a key or value too long or an empty key;
    /// [`LockError::Replication`] when it could not be replicated in time (outcome unknown on
    /// a timeout).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the put may or may not happen.
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        self.put_command(key.into(), value.into(), None, None, consistency)
            .await
    }

    /// Set `key` to `value`, bound to `lease`: the key is deleted when the lease ends (an
    /// ephemeral key). QUORUM.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the lease no longer exists; otherwise as
    /// [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the put may or may not happen.
    pub async fn put_with_lease(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            None,
            Some(lease),
            Consistency::Quorum,
        )
        .await
    }

    /// Create `key` only if it does not exist; returns its version. QUORUM.
    ///
    /// # Errors
    /// [`LockError::AlreadyExists`] when it exists (nothing changed); otherwise as
    /// [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the create may or may not happen.
    pub async fn create(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, LockError> {
        self.put_command(key.into(), value.into(), Some(0), None, Consistency::Quorum)
            .await
    }

    /// Set `key` to `value` only if its version is `expected_version`; returns the new
    /// version. QUORUM.
    ///
    /// # Errors
    /// [`LockError::VersionMismatch`] with the current version when it differs (nothing
    /// changed; 0 means the key does not exist); otherwise as [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the swap may or may not happen.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<String>,
        expected_version: u64,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            Some(expected_version),
            None,
            Consistency::Quorum,
        )
        .await
    }

    /// Delete `key`, only if its version is `expected_version` when given; returns the
    /// version of the delete (where it appears in watches). QUORUM.
    ///
    /// # Errors
    /// [`LockError::NotFound`] when the key does not exist; [`LockError::VersionMismatch`]
    /// when its version differs; [`LockError::Replication`] as for [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the delete may or may not happen.
    pub async fn delete(
        &self,
        key: impl Into<String>,
        expected_version: Option<u64>,
    ) -> Result<u64, LockError> {
        let key = key.into();
        let command = LockCommand::Delete {
            key: key.clone(),
            expected_version,
        };
        let (index, response) = self.command_at(command).await?;
        match response {
            LockResponse::Deleted { existed: true } => Ok(index),
            LockResponse::Deleted { existed: false } => Err(LockError::NotFound { key }),
            LockResponse::VersionMismatch { current } => Err(LockError::VersionMismatch {
                key,
                expected: expected_version.unwrap_or(0),
                current,
            }),
            LockResponse::Invalid { reason } => Err(LockError::Invalid { reason }),
            other => Err(LockError::unexpected(other)),
        }
    }

    /// The keys starting with `prefix`, in key order, read at QUORUM: the first
    /// [`QUERY_RESULTS_MAX`] only. For a range of any size use
    /// [`range_all`](Self::range_all) or [`range_page`](Self::range_page).
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, LockError> {
        let query = LockQuery::Range {
            prefix: prefix.to_string(),
            limit: QUERY_RESULTS_MAX,
        };
        match self.query(query, Consistency::Quorum).await? {
            LockQueryResponse::Values(values) => Ok(values),
            other => Err(LockError::unexpected(other)),
        }
    }

    async fn put_command(
        &self,
        key: String,
        value: Vec<u8>,
        expected_version: Option<u64>,
        lease: Option<LeaseId>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        if expected_version.is_some() && consistency == Consistency::Eventual {
            return Err(LockError::CompareNeedsApply { key });
        }
        let command = LockCommand::Put {
            key: key.clone(),
            value,
            expected_version,
            lease,
        };
        let (index, response) = self
            .shared
            .writer
            .write(command, consistency, self.settings.request_timeout)
            .await?;
        match response {
            // EVENTUAL: answered before applying; a put's version is its log index.
            None => Ok(index),
            Some(LockResponse::Put { version }) => Ok(version),
            Some(LockResponse::VersionMismatch { current }) => Err(match expected_version {
                Some(0) => LockError::AlreadyExists {
                    key,
                    version: current,
                },
                expected => LockError::VersionMismatch {
                    key,
                    expected: expected.unwrap_or(0),
                    current,
                },
            }),
            Some(LockResponse::LeaseNotFound { lease }) => Err(LockError::LeaseLost { lease }),
            Some(LockResponse::Invalid { reason }) => Err(LockError::Invalid { reason }),
            Some(LockResponse::LimitReached { limit, max }) => {
                Err(LockError::LimitReached { limit, max })
            }
            Some(other) => Err(LockError::unexpected(other)),
        }
    }

    // ---- Leases ------------------------------------------------------------------------

    /// Grant a lease with `ttl` for this session and start renewing it in the background
    /// every third of the TTL. See [`Lease`] for its safe deadline.
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a TTL under [`LEASE_TTL_MIN`](super::LEASE_TTL_MIN);
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
            session: self.session(),
        };
        match self.command(command).await? {
            LockResponse::LeaseGranted { lease, .. } => {
                Ok(Lease::start(self.clone(), lease, ttl, sent_at))
            }
            LockResponse::LimitReached { limit, max } => {
                Err(LockError::LimitReached { limit, max })
            }
            other => Err(LockError::unexpected(other)),
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
        match self.command(LockCommand::LeaseRevoke { lease }).await? {
            LockResponse::LeaseEnded { .. } => Ok(true),
            LockResponse::LeaseNotFound { .. } => Ok(false),
            other => Err(LockError::unexpected(other)),
        }
    }

    /// Counts of keys, leases, held locks and waiters, and totals of grants, waits and refused
    /// deadlocks, read from this node's replica with `consistency`.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn stats(&self, consistency: Consistency) -> Result<LockStats, LockError> {
        match self.query(LockQuery::Stats, consistency).await? {
            LockQueryResponse::Stats(stats) => Ok(stats),
            other => Err(LockError::unexpected(other)),
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
        match self
            .query(LockQuery::Lease { lease }, Consistency::Quorum)
            .await?
        {
            LockQueryResponse::Lease(state) => Ok(state),
            other => Err(LockError::unexpected(other)),
        }
    }

    /// One renewal, through the renewal session, bounded by `timeout`. QUORUM: the safe
    /// deadline may move on only once a majority has the renewal, so a new leader sees it.
    pub(crate) async fn renew(
        &self,
        lease: LeaseId,
        timeout: Duration,
    ) -> Result<LockResponse, LockError> {
        let writer = self.shared.renewals.as_ref().unwrap_or(&self.shared.writer);
        let (_, response) = writer
            .write(
                LockCommand::LeaseKeepAlive { lease },
                Consistency::Quorum,
                timeout,
            )
            .await?;
        response.ok_or_else(|| LockError::unexpected("no answer to a QUORUM renewal"))
    }

    // ---- Locks -------------------------------------------------------------------------

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
            self.clone(),
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
        self.lock_state_within(name, self.settings.request_timeout)
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
        match self
            .shared
            .writer
            .read(query, Consistency::Quorum, timeout)
            .await?
        {
            LockQueryResponse::Lock(state) => Ok(state),
            other => Err(LockError::unexpected(other)),
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
        match self.shared.writer.read(query, consistency, timeout).await? {
            LockQueryResponse::Wait(state) => Ok(state),
            other => Err(LockError::unexpected(other)),
        }
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
        match self.command(command).await? {
            LockResponse::LeaseEnded { .. } => Ok(()),
            LockResponse::NotHolder | LockResponse::WrongHolder => Err(LockError::NotHolder {
                name: name.to_string(),
                token,
            }),
            other => Err(LockError::unexpected(other)),
        }
    }

    /// Put `value` at `key` with an optional version check (`Some(0)`: create only) at the
    /// given consistency; returns the new version. What [`put`](Self::put),
    /// [`create`](Self::create) and [`compare_and_swap`](Self::compare_and_swap) each do with
    /// a fixed choice.
    ///
    /// # Errors
    /// [`LockError::VersionMismatch`] or [`LockError::AlreadyExists`] when the check fails;
    /// [`LockError::CompareNeedsApply`] for a check at EVENTUAL; [`LockError::Invalid`] for a key or value out of bounds; [`LockError::Replication`]
    /// when no answer came in time.
    pub async fn put_checked(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        expected_version: Option<u64>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            expected_version,
            None,
            consistency,
        )
        .await
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
        match self.command(command).await? {
            LockResponse::Released => Ok(()),
            LockResponse::NotHolder | LockResponse::WrongHolder => Err(LockError::NotHolder {
                name: name.to_string(),
                token,
            }),
            other => Err(LockError::unexpected(other)),
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
        let (lease_id, granted) = match self.command(command).await? {
            LockResponse::GrantedWithLease { lease, token, .. } => (lease, Some(token)),
            LockResponse::QueuedWithLease { lease, .. } => (lease, None),
            refused => return Err(acquire_refused(&name, refused)),
        };
        let lease = Lease::start(self.clone(), lease_id, ttl, sent_at);
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
            self.clone(),
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
        match self.command(command).await? {
            LockResponse::Granted { token } => Ok(token),
            LockResponse::Queued { .. } => {
                self.await_grant(name, lease, status, deadline, holder_key)
                    .await
            }
            refused => Err(acquire_refused(name, refused)),
        }
    }

    /// Poll this session's wait for `name` under `lease` until granted (its token), the lease
    /// lost, the wait ended, or `deadline` passed (then leave the line, see `give_up`).
    async fn await_grant(
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
                None => self.settings.request_timeout,
            };
            let read_timeout = remaining
                .max(POLL_READ_TIMEOUT_MIN)
                .min(self.settings.request_timeout);
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
            let interval = poll_interval(self.settings.lock_poll_interval, waiting_since.elapsed());
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
        match self.command(command).await {
            Ok(LockResponse::Cancelled) => timed_out,
            Ok(LockResponse::NotWaiting) => {
                let state = self
                    .wait_state_within(
                        name,
                        self.session(),
                        lease,
                        Consistency::Quorum,
                        self.settings.request_timeout,
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
            Ok(other) => LockError::unexpected(other),
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
        if let Err(error) = self.command(command).await {
            tracing::debug!(name, lease = lease.0, %error, "cancelling a wait failed");
        }
    }

    // ---- Watches and elections ---------------------------------------------------------

    /// Changes to keys starting with `prefix` with a version above `after_version`, in
    /// version order, read from the local replica. Pass 0 for every change still kept, or the
    /// version of the last change processed to resume.
    pub fn watch(&self, prefix: impl Into<String>, after_version: u64) -> Watch<H> {
        Watch::new(self.clone(), prefix.into(), after_version)
    }

    /// The local replica's change signal, for a new [`Watch`].
    pub(crate) fn change_signal(&self) -> Option<watch::Receiver<u64>> {
        self.feed.as_ref().map(ChangeFeed::subscribe)
    }

    /// Changes to exactly `key` with a version above `after_version`, as
    /// [`watch`](Self::watch) does for a prefix.
    pub fn watch_key(&self, key: impl Into<String>, after_version: u64) -> Watch<H> {
        Watch::for_key(self.clone(), key.into(), after_version)
    }

    /// Campaign for leadership `name`: wait (up to `wait_timeout`) for lock `name` under a new
    /// lease with `ttl`, then publish `value` (for example the node id) under
    /// [`election_key(name)`](super::election_key), bound to the lease.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and as [`put_with_lease`](Self::put_with_lease) (the
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
        LeaderObserver::start(self.clone(), name).await
    }

    // ---- Plumbing ----------------------------------------------------------------------

    /// A QUORUM write on the main session, with the lock table's answer.
    pub(crate) async fn command(&self, command: LockCommand) -> Result<LockResponse, LockError> {
        self.command_at(command).await.map(|(_, response)| response)
    }

    /// A QUORUM write on the main session, with its log index and the lock table's answer.
    async fn command_at(&self, command: LockCommand) -> Result<(u64, LockResponse), LockError> {
        let (index, response) = self
            .shared
            .writer
            .write(command, Consistency::Quorum, self.settings.request_timeout)
            .await?;
        let response =
            response.ok_or_else(|| LockError::unexpected("no answer to a QUORUM write"))?;
        Ok((index, response))
    }

    /// A read within the request timeout.
    pub(crate) async fn query(
        &self,
        query: LockQuery,
        consistency: Consistency,
    ) -> Result<LockQueryResponse, LockError> {
        self.shared
            .writer
            .read(query, consistency, self.settings.request_timeout)
            .await
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
