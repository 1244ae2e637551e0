//! One client session of the lock table, and the three handles it hands out.

use std::sync::Arc;

use ha_core::StateMachine;
use ha_replicate::driver::{ReplicaClient, ReplicaNode};

use super::kv::Kv;
use super::leases::Leases;
use super::locks::Locks;
use super::session_core::{SessionCore, SessionWriters};
use super::session_settings::SessionSettings;
use super::table_session::TableSession;
use crate::change_feed::ChangeFeed;
use crate::command::SessionId;
use crate::with_locks::WithLocks;

/// One client session of the lock table in a [`WithLocks`] state machine, over a
/// [`ReplicaClient`]. It hands out three handles that share the session:
/// - [`Kv`] ([`kv`](Self::kv)): keys with compare-and-swap, transactions, ranges and watches;
/// - [`Leases`] ([`leases`](Self::leases)): leases renewed in the background;
/// - [`Locks`] ([`locks`](Self::locks)): fenced FIFO locks and leader election.
///
/// The session id ([`session`](Self::session)) is the lock table's [`SessionId`]: the
/// holder and waiter in lock states, the owner of leases, and the unit of deadlock detection
/// (a wait of the session for a lock that another of its waits blocks is refused). Every
/// handle from one `Session` (and every clone of them) is that one session: a session holds a
/// given lock once, so independent contenders (two workers that must exclude each other) need
/// a `Session` each.
///
/// Writes are QUORUM unless a method takes a [`Consistency`](ha_core::Consistency), and are
/// applied exactly once across retries. Handles used from many tasks write concurrently on
/// the one session (the replicated session keeps the answers of all its unacknowledged
/// writes), none waiting for another. Cheap to clone; clones share the session.
///
/// ```no_run
/// # async fn example(node: ha_replicate::driver::ReplicaNode<ha_lock::WithLocks<()>>) -> Result<(), ha_lock::LockError> {
/// use std::time::Duration;
/// use ha_lock::Session;
///
/// let session = Session::from_node(&node);
/// let (kv, locks) = (session.kv(), session.locks());
/// let version = kv.create("/config/mode", "active").await?;
/// kv.compare_and_swap("/config/mode", version, "standby").await?;
/// let guard = locks
///     .acquire("jobs", Duration::from_secs(2), Duration::from_secs(5))
///     .await?;
/// // ... work, passing guard.token() to every fenced resource ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct Session<H: StateMachine> {
    core: Arc<SessionCore<H>>,
}

impl<H: StateMachine> Clone for Session<H> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<H: StateMachine> Session<H> {
    /// A session over `client`, whose replication session becomes the lock table session.
    /// Lease renewals share it with everything else, in flight beside slow writes.
    pub fn new(client: ReplicaClient<WithLocks<H>>) -> Self {
        Self::from_writers(SessionWriters::new(TableSession::new(client), None))
    }

    /// A session over `client`, renewing its leases through a second replication session
    /// `renewals` (for callers whose main client fails fast, as the admin HTTP API's does,
    /// while renewals should retry until their deadline).
    pub fn with_renewal_client(
        client: ReplicaClient<WithLocks<H>>,
        renewals: ReplicaClient<WithLocks<H>>,
    ) -> Self {
        Self::from_writers(SessionWriters::new(
            TableSession::new(client),
            Some(TableSession::new(renewals)),
        ))
    }

    /// A fresh session on `node` (renewals included).
    pub fn from_node(node: &ReplicaNode<WithLocks<H>>) -> Self {
        Self::new(node.client())
    }

    fn from_writers(writers: SessionWriters<H>) -> Self {
        Self {
            core: Arc::new(SessionCore::new(writers)),
        }
    }

    /// The same session with its watches woken by `feed`, the [`ChangeFeed`] the local
    /// replica's [`WithLocks`] publishes to: a change reaches a watch as soon as the replica
    /// applies it, instead of at the next poll. Handles taken before keep theirs.
    pub fn with_change_feed(self, feed: ChangeFeed) -> Self {
        Self {
            core: Arc::new(self.core.with_change_feed(feed)),
        }
    }

    /// The same session with other timeouts and poll intervals. Handles taken before keep
    /// theirs.
    pub fn with_settings(self, settings: SessionSettings) -> Self {
        Self {
            core: Arc::new(self.core.with_settings(settings)),
        }
    }

    /// Its timeouts and poll intervals.
    pub fn settings(&self) -> &SessionSettings {
        self.core.settings()
    }

    /// The lock table session: the holder and waiter id in lock states and deadlock cycles.
    pub fn session(&self) -> SessionId {
        self.core.session()
    }

    /// The KV handle of this session.
    pub fn kv(&self) -> Kv<H> {
        self.core.kv()
    }

    /// The lease handle of this session.
    pub fn leases(&self) -> Leases<H> {
        self.core.leases()
    }

    /// The lock and election handle of this session.
    pub fn locks(&self) -> Locks<H> {
        self.core.locks()
    }
}
