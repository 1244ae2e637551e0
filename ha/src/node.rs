//! A running node: gossip, the replicated log with the host's state machine and the lock
//! table, the lease keeper, health checks, and (with the `http` feature) the admin API.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ha_core::{
    CheckResult, Config, Consistency, HealthStatus, LogIndex, MemberInfo, NodeId, NodeState,
    SessionId, StateMachine,
};
use ha_gossip::{DropCounts, GossipNode};
use ha_lock::{Kv, LeaseKeeper, Leases, LockQuery, LockQueryResponse, Locks, Session, WithLocks};
use ha_replicate::driver::{ReplicaNode, ReplicaStatus, RoleView};
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::builder::NodeBuilder;
use crate::cluster_view::{ClusterView, FailoverEvent, HealthProblem, HealthReport, LocalMember};
use crate::error::NodeError;
use crate::event::NodeEvent;

/// Events kept for a slow subscriber of [`Node::events`] before it starts missing some.
pub const EVENT_BUFFER: usize = 1024;
/// Lock-client sessions remembered for releasing their leases at shutdown.
const TRACKED_SESSIONS_MAX: usize = 4096;

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome<R> {
    /// Where the write is in the log.
    pub index: LogIndex,
    /// The state machine's response; `None` for an EVENTUAL write, which is answered once
    /// the leader has it, before it is committed or applied.
    pub response: Option<R>,
}

/// A running node. Cheap to clone: clones share the node. Stop it with
/// [`shutdown`](Self::shutdown); dropping the last clone without it stops everything at
/// once, like a crash (the cluster fails over; nothing acknowledged is lost).
pub struct Node<S: StateMachine> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S: StateMachine> Clone for Node<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The aggregated health and each check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HealthState {
    pub(crate) status: HealthStatus,
    pub(crate) checks: Vec<CheckResult>,
    /// The details of the node's own checks that are not healthy.
    pub(crate) problems: Vec<HealthProblem>,
}

pub(crate) struct Shared<S: StateMachine> {
    pub(crate) config: Config,
    pub(crate) replica: ReplicaNode<WithLocks<S>>,
    pub(crate) gossip: Mutex<Option<Arc<GossipNode>>>,
    pub(crate) gossip_addr: SocketAddr,
    /// This node's replica of the multi-master shared map (issue 15), hosted by gossip.
    pub(crate) shared_state: ha_gossip::shared_state::SharedState,
    pub(crate) http_addr: Mutex<Option<SocketAddr>>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    /// The receiver made with the channel, kept for the first `events()` call so that it sees
    /// every event since the start (members met while starting included).
    pub(crate) first_events: Mutex<Option<broadcast::Receiver<NodeEvent>>>,
    pub(crate) health: watch::Sender<HealthState>,
    /// The session of the host's writes (and the node's own reads and membership changes):
    /// one for the whole node, its writes pipelined, however many tasks propose at once.
    pub(crate) writer: crate::host_client::HostClient<S>,
    /// The lock-table session the admin API's requests share: one session, any number of
    /// requests in flight on it at once.
    #[cfg(feature = "http")]
    pub(crate) http_session: Session<S>,
    /// This replica's lock table publishes each change here; every client of this node's
    /// gets it, so its watches wake on apply instead of polling.
    pub(crate) change_feed: ha_lock::ChangeFeed,
    pub(crate) sessions: Mutex<BTreeSet<SessionId>>,
    pub(crate) lease_keeper: Mutex<Option<LeaseKeeper>>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The counters of the admin API's HTTPS listeners, for `/v1/metrics`.
    #[cfg(feature = "http")]
    pub(crate) https_counters: Mutex<Vec<Arc<crate::http::HttpsCounters>>>,
    /// Admin tokens and HTTPS material (issue 13).
    pub(crate) security: crate::security::NodeSecurity,
    pub(crate) stop_http: watch::Sender<bool>,
    pub(crate) stopping: AtomicBool,
    pub(crate) request_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) started_at: Instant,
    /// Since when this node has known no leader, and the total of earlier such spans.
    pub(crate) leaderless: Mutex<(Option<Instant>, Duration)>,
    /// The built-in host checks' last readings, for `/v1/health` (issue 14).
    pub(crate) host_checks: crate::host_checks::HostChecks,
    /// Where this node sees the cluster in a failover, for `/v1/cluster` (issue 14).
    pub(crate) failover: Mutex<crate::failover_status::FailoverTracker>,
    /// Backups being written, and the scheduler's state (issue 14).
    pub(crate) backup: crate::backup_writer::BackupShared,
    /// Every WAL fsync's duration, for `ha_wal_fsync_seconds` (issue 16).
    pub(crate) wal_fsync: Arc<ha_core::LatencyHistogram>,
    /// The numbered events `GET /v1/events` streams (issue 16).
    pub(crate) journal: Arc<crate::event_journal::EventJournal>,
}

impl<S: StateMachine> Drop for Shared<S> {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl Node<()> {
    /// Start building a node from `config` (see [`crate::config_file`] to read one from a
    /// file and the environment). Without [`state_machine`](NodeBuilder::state_machine) the
    /// node replicates only the KV store and locks.
    pub fn builder(config: Config) -> NodeBuilder<()> {
        NodeBuilder::new(config)
    }
}

impl<S: StateMachine> Node<S> {
    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.shared.config.node_id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Whether this node is a witness (`config.witness`, issue 15): it votes and acknowledges
    /// appends but holds no state machine, never leads, and refuses reads
    /// ([`ClientError::Witness`](ha_replicate::replica::ClientError)); writes submitted on it
    /// are forwarded to the leader. Its admin API answers the KV, lock and snapshot routes
    /// with 503 `witness`.
    pub fn is_witness(&self) -> bool {
        self.shared.config.witness
    }

    /// The bound gossip (UDP) address.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.shared.gossip_addr
    }

    /// This node's replica of the multi-master shared map (issue 15; HTTP `/v1/state`):
    /// writable on every node with no leader or quorum, last writer wins by hybrid logical
    /// clock for values, no increment lost for counters, converging by gossip once nodes can
    /// talk again. Separate from [`kv`](Self::kv), which goes through the leader. Stored in
    /// `<data_dir>/shared_state` and synced as `[shared_state] fsync` says.
    ///
    /// ```
    /// # use ha::{Config, Node, NodeId};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = Node::builder(Config::single(NodeId::new("n1")?, "127.0.0.1:0".parse()?))
    ///     .start()
    ///     .await?;
    /// let state = node.shared_state();
    /// state.put("feature/dark-mode", "on").await?;
    /// assert_eq!(state.increment("page-views", 1).await?, 1);
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn shared_state(&self) -> ha_gossip::shared_state::SharedState {
        self.shared.shared_state.clone()
    }

    /// The directory holding this node's log and snapshots (`<data_dir>/log`), or `None`
    /// when the node keeps them in memory (no `data_dir`). `GET /v1/snapshot` serves the
    /// latest durable snapshot found there.
    pub fn log_dir(&self) -> Option<std::path::PathBuf> {
        self.shared
            .config
            .data_dir
            .as_ref()
            .map(|dir| dir.join(crate::LOG_DIR_NAME))
    }

    /// The bound replication (TCP) address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.shared.replica.local_addr()
    }

    /// The bound admin HTTP address, when the node serves the API itself.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        *self.shared.http_addr.lock()
    }

    /// Whether this node leads right now.
    pub fn is_leader(&self) -> bool {
        self.shared.replica.is_leader()
    }

    /// The latest role, term and leader.
    pub fn role(&self) -> RoleView {
        self.shared.replica.role()
    }

    /// Role changes as they happen (the latest value is always available).
    pub fn watch_role(&self) -> watch::Receiver<RoleView> {
        self.shared.replica.watch_role()
    }

    /// Role, membership and health changes. The first call gets every event since the node
    /// started (so members met while starting are not missed); later calls get events from
    /// the moment they subscribe. A subscriber that falls more than
    /// [`EVENT_BUFFER`](crate::EVENT_BUFFER) events behind is told how many it missed; the
    /// current state is then in [`role`](Self::role) and [`members`](Self::members).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared
            .first_events
            .lock()
            .take()
            .unwrap_or_else(|| self.shared.events.subscribe())
    }

    /// This node's event journal (issue 16): the bounded ring of numbered events that
    /// `GET /v1/events` streams (role, member, health, failover, lock, consistency and
    /// follower events; see [`event_journal`](crate::event_journal)).
    pub fn event_journal(&self) -> &Arc<crate::event_journal::EventJournal> {
        &self.shared.journal
    }

    /// Every member gossip knows (not this node), reachable or not.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared
            .gossip
            .lock()
            .as_ref()
            .map(|gossip| gossip.members())
            .unwrap_or_default()
    }

    /// Gossip packets dropped so far, by cause (bad key, other cluster, malformed, ...).
    pub fn gossip_drops(&self) -> DropCounts {
        self.shared
            .gossip
            .lock()
            .as_ref()
            .map(|gossip| gossip.drop_counts())
            .unwrap_or_default()
    }

    /// Replicate `command` and apply it on every node, at `consistency` (see
    /// [`Consistency`] for what each level promises). Retries across leader changes until the
    /// node's request timeout; applied at most once.
    ///
    /// # Errors
    /// [`NodeError::Replication`]: `Timeout` or `LeadershipLost` mean the outcome is unknown;
    /// `NotAppliedEverywhere` means a STRONG write committed at QUORUM only.
    ///
    /// # Cancel safety
    /// Cancelling abandons the write: it may or may not be applied (at most once).
    pub async fn propose(
        &self,
        command: S::Command,
        consistency: Consistency,
    ) -> Result<WriteOutcome<S::Response>, NodeError> {
        self.propose_within(command, consistency, self.shared.request_timeout)
            .await
    }

    /// [`propose`](Self::propose) with its own timeout.
    ///
    /// # Errors
    /// As for [`propose`](Self::propose).
    pub async fn propose_within(
        &self,
        command: S::Command,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<WriteOutcome<S::Response>, NodeError> {
        self.shared
            .writer
            .propose(command, consistency, timeout)
            .await
    }

    /// Answer `query` from the host's state machine: STRONG and QUORUM are linearizable
    /// (they see every write acknowledged before the read started); EVENTUAL reads this
    /// node's replica, which may lag.
    ///
    /// # Errors
    /// [`NodeError::Replication`] when no answer came within the request timeout.
    pub async fn read(
        &self,
        query: S::Query,
        consistency: Consistency,
    ) -> Result<S::QueryResponse, NodeError> {
        self.shared
            .writer
            .read(query, consistency, self.shared.request_timeout)
            .await
    }

    /// A lock-table session of its own (see [`Session`]): its [`kv`](Session::kv),
    /// [`leases`](Session::leases) and [`locks`](Session::locks) handles share it, so they
    /// are one holder and waiter (lock waits and deadlock detection are per session). Its
    /// watches wake as this node's replica applies a change. Leases it holds are revoked
    /// when the node shuts down gracefully.
    pub fn lock_session(&self) -> Session<S> {
        let session = Session::from_node(&self.shared.replica)
            .with_change_feed(self.shared.change_feed.clone());
        let mut sessions = self.shared.sessions.lock();
        if sessions.len() < TRACKED_SESSIONS_MAX {
            sessions.insert(session.session());
        }
        session
    }

    /// Keys with compare-and-swap, transactions, ranges and watches, on a session of its own
    /// ([`lock_session().kv()`](Self::lock_session)). Keys bound to its leases are deleted
    /// when the node shuts down gracefully.
    pub fn kv(&self) -> Kv<S> {
        self.lock_session().kv()
    }

    /// Leases on a session of their own ([`lock_session().leases()`](Self::lock_session)),
    /// revoked when the node shuts down gracefully. To bind keys or locks to them, take the
    /// handles from one [`lock_session`](Self::lock_session).
    pub fn leases(&self) -> Leases<S> {
        self.lock_session().leases()
    }

    /// Fenced locks and leader election on a session of their own
    /// ([`lock_session().locks()`](Self::lock_session)): every call of `locks()` is a new
    /// holder, so two of them exclude each other. Their leases are revoked when the node
    /// shuts down gracefully.
    pub fn locks(&self) -> Locks<S> {
        self.lock_session().locks()
    }

    /// Hand leadership to `target`, or to the best other voter with `None`. Returns the
    /// node that was asked to take over once this node has stepped down (or the transfer
    /// was abandoned).
    ///
    /// # Errors
    /// [`NodeError::Transfer`]: this node does not lead (the error names the leader), the
    /// target cannot lead, or a transfer is already under way. [`NodeError::TransferTimedOut`]:
    /// the target did not take over within the drain timeout. Nothing changed either way.
    pub async fn transfer_leadership(&self, target: Option<NodeId>) -> Result<NodeId, NodeError> {
        let replica = &self.shared.replica;
        let chosen = replica.transfer_leadership(target).await?;
        if !replica
            .wait_until_not_leader(self.shared.drain_timeout)
            .await
        {
            return Err(NodeError::TransferTimedOut { target: chosen });
        }
        Ok(chosen)
    }

    /// The replica's full status: role, indexes, membership, per-peer progress (leader
    /// only), failover history.
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn status(&self) -> Result<ReplicaStatus, NodeError> {
        Ok(self.shared.replica.status().await?)
    }

    /// This node's health report (`GET /v1/health`).
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn health(&self) -> Result<HealthReport, NodeError> {
        let status = self.status().await?;
        let health = self.shared.health.borrow().clone();
        Ok(HealthReport {
            node: status.node_id,
            role: crate::cluster_view::own_role(&status.role, self.is_witness()),
            state: self.advertised_state(),
            health: health.status,
            term: status.term.0,
            leader: status.leader,
            quorum: status.quorum,
            checks: health.checks,
            problems: health.problems,
            host_checks: self.shared.host_checks.reports(),
        })
    }

    /// The cluster table (`GET /v1/cluster`): lag columns are filled on the leader only.
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn cluster(&self) -> Result<ClusterView, NodeError> {
        let status = self.status().await?;
        let local = LocalMember {
            addr: self.shared.gossip_addr,
            http: self.http_addr(),
            priority: self.shared.config.priority,
            state: self.advertised_state(),
            health: self.shared.health.borrow().status,
            witness: self.is_witness(),
        };
        let mut view = ClusterView::build(&status, &local, &self.members());
        view.failover = crate::failover_status::observe(&self.shared, &status);
        Ok(view)
    }

    /// Leadership changes, oldest first (`GET /v1/failover/history`), as this node's applied
    /// log records them (the latest 64).
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn failover_history(&self) -> Result<Vec<FailoverEvent>, NodeError> {
        let status = self.status().await?;
        Ok(status
            .failover_history
            .iter()
            .map(FailoverEvent::from)
            .collect())
    }

    /// How long the node has been running.
    pub fn uptime(&self) -> Duration {
        self.shared.started_at.elapsed()
    }

    /// The state this node advertises (LEADER, ACTIVE, DEGRADED, ...).
    pub fn advertised_state(&self) -> NodeState {
        self.shared
            .gossip
            .lock()
            .as_ref()
            .map_or(NodeState::Leaving, |gossip| gossip.metadata().state)
    }

    /// This node's aggregated health.
    pub fn health_status(&self) -> HealthStatus {
        self.shared.health.borrow().status
    }

    /// Stop gracefully: hand leadership over (if leading), revoke the leases of locks taken
    /// through this node, leave gossip (members see LEAVING, then gone), stop the admin API
    /// and the replica. Each step waits at most the drain timeout. Calling it again, or on
    /// a clone, returns at once.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let drain = shared.drain_timeout;
        tracing::info!(node = %shared.config.node_id, "shutting down");
        if self.is_leader() {
            if shared.replica.hand_over(drain).await {
                tracing::info!(leader = ?self.role().leader, "handed leadership over");
            } else {
                tracing::warn!("could not hand leadership over; the others will elect");
            }
        }
        // After a hand-over the new leader is known within an election or two. Without a
        // majority nothing can be revoked: the leases then expire after their TTL.
        let settle = Duration::from_millis(shared.config.timing.election_timeout_max_ms * 2);
        let mut roles = self.watch_role();
        let _ = tokio::time::timeout(
            settle.min(drain),
            roles.wait_for(|view| view.leader.is_some()),
        )
        .await;
        let in_quorum = matches!(self.status().await, Ok(status) if status.quorum);
        if in_quorum
            && tokio::time::timeout(drain, self.revoke_own_leases())
                .await
                .is_err()
        {
            tracing::warn!("revoking this node's leases timed out; they will expire");
        }
        shared.lease_keeper.lock().take();
        if let Some(gossip) = self.take_gossip().await
            && !matches!(
                tokio::time::timeout(drain, gossip.leave()).await,
                Ok(Ok(()))
            )
        {
            tracing::warn!("leaving gossip did not finish; members will detect the stop");
        }
        shared.stop_http.send_replace(true);
        shared.replica.stop(drain).await;
        let tasks: Vec<JoinHandle<()>> = shared.tasks.lock().drain(..).collect();
        for task in tasks {
            task.abort();
        }
        tracing::info!(node = %shared.config.node_id, "stopped");
    }

    /// Take the gossip node out for leaving; the metadata publisher may hold a clone for a
    /// moment, so wait briefly for it.
    async fn take_gossip(&self) -> Option<GossipNode> {
        let mut gossip = self.shared.gossip.lock().take()?;
        for _ in 0..100 {
            match Arc::try_unwrap(gossip) {
                Ok(gossip) => return Some(gossip),
                Err(shared) => gossip = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("gossip is still in use; stopping it without a graceful leave");
        None
    }

    async fn revoke_own_leases(&self) {
        let sessions = self.shared.sessions.lock().clone();
        if sessions.is_empty() {
            return;
        }
        let leases_handle = Session::from_node(&self.shared.replica).leases();
        let Ok(LockQueryResponse::Leases(leases)) = self
            .lock_query(
                LockQuery::Leases,
                Consistency::Quorum,
                self.shared.drain_timeout,
            )
            .await
        else {
            return;
        };
        for lease in leases {
            if sessions.contains(&lease.session) {
                match leases_handle.revoke_lease(lease.lease).await {
                    Ok(_) => tracing::info!(lease = lease.lease.0, "revoked at shutdown"),
                    Err(error) => tracing::warn!(lease = lease.lease.0, %error, "revoke failed"),
                }
            }
        }
    }

    /// Read the lock table. Reads carry no sequence and wait for no write of the session, so
    /// this never waits behind a write in flight.
    pub(crate) async fn lock_query(
        &self,
        query: LockQuery,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<LockQueryResponse, NodeError> {
        self.shared
            .writer
            .lock_read(query, consistency, timeout)
            .await
    }

    pub(crate) fn downgrade(&self) -> Weak<Shared<S>> {
        Arc::downgrade(&self.shared)
    }

    pub(crate) fn from_shared(shared: Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Milliseconds this node has known no leader since it started.
    pub fn leaderless_ms_total(&self) -> u64 {
        let (since, total) = *self.shared.leaderless.lock();
        let current = since.map(|since| since.elapsed()).unwrap_or_default();
        u64::try_from((total + current).as_millis()).unwrap_or(u64::MAX)
    }

    /// Account for a change of the known leader.
    pub(crate) fn on_leader_known(&self, known: bool) {
        let mut leaderless = self.shared.leaderless.lock();
        match (known, leaderless.0) {
            (true, Some(since)) => *leaderless = (None, leaderless.1 + since.elapsed()),
            (false, None) => leaderless.0 = Some(Instant::now()),
            _ => {}
        }
    }

    /// The admin API's KV handle, for one request: the shared session, on which requests
    /// run concurrently (nothing to wait for; `async` for the routes' sake).
    #[cfg(feature = "http")]
    pub(crate) async fn http_kv_client(&self) -> Kv<S> {
        self.shared.http_session.kv()
    }

    /// The admin API's lock handle on the shared session, for a release by token.
    #[cfg(feature = "http")]
    pub(crate) fn http_locks(&self) -> Locks<S> {
        self.shared.http_session.locks()
    }
}
