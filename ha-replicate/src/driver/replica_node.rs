//! The tokio driver: one task runs a [`ReplicaCore`] over the TCP transport and a store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ha_core::{
    Clock, HealthStatus, MemberEvent, Millis, MonotonicClock, NodeId, StateMachine, TimerQueue,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::driver::apply_thread::{ApplyThread, QueuedTask};
use crate::driver::client::ReplicaClient;
use crate::driver::error::DriverError;
use crate::driver::latency_tracker::LatencyTracker;
use crate::driver::node_runtime::{KeepAlive, NodeRuntime};
use crate::driver::replica_metrics::ReplicaMetrics;
use crate::driver::reply_slot::ReplySlot;
use crate::driver::request_traces::RequestTraces;
use crate::driver::status::{CatchUp, PeerStatus, ReplicaStatus, RoleView};
use crate::driver::stop_reason::StopReason;
use crate::driver::storage_thread::{StorageReport, ThreadedStore};
use crate::driver::thread_reports::{ReportReceiver, thread_reports};
use crate::engine::{PeerInfo, Role, TransferError};
use crate::entry::ElectionCause;
use crate::membership::VoterSet;
use crate::replica::{ApplyDone, DigestComputed};
use crate::replica::{
    ClientError, ClientReply, ClientRequest, ReplicaCore, ReplicaEffect, ReplicaSettings,
    ReplicaTimer, Rpc, SnapshotWritten, requested_peer_address,
};
use crate::replica::{ExportError, ExportedSnapshot};
use crate::storage::io_failure::StorageStall;
use crate::storage::{LogStore, StorageError};
use crate::trace_context::TraceParent;
use crate::transport::{Inbound, TcpTransport, TransportSettings};

const COMMAND_BUFFER: usize = 4096;
/// Inputs taken in one event-loop turn before their effects are carried out together.
const BATCH_INPUTS_MAX: usize = 256;
/// Snapshot exports waiting for the node to apply up to their index, at most.
pub const EXPORTS_WAITING_MAX: usize = 16;

/// Everything a replica node needs besides its state machine and store.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The replica's settings.
    pub replica: ReplicaSettings,
    /// The transport's settings.
    pub transport: TransportSettings,
    /// Known peers' RPC addresses (more can be added with `set_peer`).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Found a new cluster with these voters if the store is empty. (Or through gossip: set
    /// [`ReplicaSettings::bootstrap_expect`] and pass member events to
    /// [`ReplicaNode::on_member_event`].)
    pub bootstrap: Option<VoterSet>,
}

pub(crate) enum Command {
    Submit {
        request: ClientRequest,
        timeout_ms: u64,
        reply: oneshot::Sender<ClientReply>,
        /// The caller's trace context, for a traced write.
        trace: Option<TraceParent>,
    },
    Transfer {
        target: Option<NodeId>,
        cause: ElectionCause,
        reply: oneshot::Sender<Result<NodeId, TransferError>>,
    },
    Campaign,
    SetHealth(HealthStatus),
    SetPeer {
        node: NodeId,
        addr: Option<SocketAddr>,
        info: Option<PeerInfo>,
    },
    Status(oneshot::Sender<ReplicaStatus>),
    MemberEvent(MemberEvent),
    Stop(oneshot::Sender<()>),
    /// The replication addresses the driver knows: this node's and its peers'.
    PeerAddresses(oneshot::Sender<BTreeMap<NodeId, SocketAddr>>),
    ExportSnapshot {
        applied_at_least: ha_core::LogIndex,
        reply: oneshot::Sender<Result<ExportedSnapshot, ExportError>>,
    },
}

/// A running replica: its task, and handles to talk to it.
///
/// Dropping it stops the task at once (like a crash: nothing more is written). Use
/// [`shutdown`](Self::shutdown) to hand leadership over first.
pub struct ReplicaNode<S: StateMachine> {
    commands: mpsc::Sender<Command>,
    roles: watch::Receiver<RoleView>,
    storage: watch::Receiver<Option<StorageStall>>,
    local_addr: SocketAddr,
    node_id: NodeId,
    metrics: ReplicaMetrics,
    /// Why the task ended, once it has (shared with the task and the clients).
    stop_reason: StopReason,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    _machine: std::marker::PhantomData<fn() -> S>,
}

impl<S: StateMachine> ReplicaNode<S> {
    /// Recover from `store`, bind the transport and start.
    ///
    /// # Errors
    /// [`DriverError`] when recovery or the transport fails.
    pub async fn start<L: LogStore + 'static>(
        settings: NodeSettings,
        machine: S,
        store: L,
    ) -> Result<Self, DriverError> {
        // The loop and the transport's tasks run on a thread of their own when the caller's
        // runtime is multi-threaded: fewer cross-thread wake-ups per write (`node_runtime.rs`).
        let node = settings.replica.engine.node_id.clone();
        let runtime = NodeRuntime::for_node(node.as_str())
            .await
            .map_err(DriverError::ReplicaThread)?;
        let Some(runtime) = runtime else {
            return Self::start_here(settings, machine, store, KeepAlive::none()).await;
        };
        let handle = runtime.handle().clone();
        let keep_alive = runtime.keep_alive();
        match handle
            .spawn(Self::start_here(settings, machine, store, keep_alive))
            .await
        {
            Ok(started) => started,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(DriverError::ReplicaThread(std::io::Error::other(
                "the replica thread stopped while the node started",
            ))),
        }
    }

    /// [`start`](Self::start) on the runtime the call runs on: the loop's task holds
    /// `keep_alive` (the node's own thread, if it has one, runs while the loop does).
    async fn start_here<L: LogStore + 'static>(
        settings: NodeSettings,
        machine: S,
        store: L,
        keep_alive: KeepAlive,
    ) -> Result<Self, DriverError> {
        let clock = MonotonicClock::new();
        let mut settings = settings;
        settings.replica.engine.wall_clock_origin_unix_ms =
            unix_now_ms().saturating_sub(clock.now().0);
        let node_id = settings.replica.engine.node_id.clone();
        let seed = rand::random::<u64>();
        // The store's writes and fsyncs run on their own thread (issue 17): a slow disk
        // delays no heartbeat, vote or answer that does not wait for it.
        let (store, storage_reports) = ThreadedStore::start(store, node_id.as_str())?;
        let mut core =
            ReplicaCore::new(settings.replica.clone(), machine, store, clock.now(), seed)?;
        if let Some(voters) = settings.bootstrap.clone() {
            core.on_bootstrap(clock.now(), voters);
        }
        // The host's state machine runs on a thread of its own (a witness has none and keeps
        // applying metadata inline): a slow `apply` cannot hold up this node's heartbeats.
        let (apply_done_sender, apply_done_receiver) = thread_reports();
        let apply_thread = match core.detach_apply_worker() {
            Some(worker) => Some(
                ApplyThread::start(node_id.as_str(), worker, apply_done_sender)
                    .map_err(DriverError::ApplyThread)?,
            ),
            None => None,
        };
        let (transport, inbound) = TcpTransport::<Rpc>::start(settings.transport.clone()).await?;
        let local_addr = transport.local_addr();
        let engine = core.engine();
        let (role_sender, roles) = watch::channel(RoleView {
            role: engine.role(),
            term: engine.term(),
            leader: engine.leader().cloned(),
        });
        let (storage_sender, storage) = watch::channel(None);
        let (commands, command_receiver) = mpsc::channel(COMMAND_BUFFER);
        let (written_sender, written_receiver) = mpsc::unbounded_channel();
        let (digest_sender, digest_receiver) = mpsc::unbounded_channel();
        let metrics = ReplicaMetrics::new();
        let latency = LatencyTracker::new(metrics.clone(), &core);
        let stop_reason = StopReason::default();
        let runner = Runner {
            latency,
            core,
            transport,
            clock,
            timers: TimerQueue::default(),
            peers: settings.peers,
            replies: BTreeMap::new(),
            routed_replies: BTreeMap::new(),
            next_request_id: 1,
            roles: role_sender,
            storage: storage_sender,
            stopped: false,
            stop_reason: stop_reason.clone(),
            snapshots_written: written_sender,
            exports: Vec::new(),
            export_replies: BTreeMap::new(),
            next_export_id: 1,
            apply_thread,
            digests_computed: digest_sender,
            traces: RequestTraces::new(&node_id),
        };
        let receivers = Receivers {
            commands: command_receiver,
            inbound,
            snapshots_written: written_receiver,
            digests_computed: digest_receiver,
            apply_done: apply_done_receiver,
            storage_reports,
        };
        let task = tokio::spawn(async move {
            let _keep_alive = keep_alive;
            runner.run(receivers).await;
        });
        Ok(Self {
            commands,
            roles,
            storage,
            local_addr,
            node_id,
            metrics,
            stop_reason,
            task: std::sync::Mutex::new(Some(task)),
            _machine: std::marker::PhantomData,
        })
    }

    /// The transport's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The latency histograms and counters the driver keeps for this replica.
    pub fn metrics(&self) -> &ReplicaMetrics {
        &self.metrics
    }

    /// The store's error that stopped this replica, once one has (`None` while it runs, and
    /// after a shutdown): the original [`StorageError`], with its `std::io::Error` source, for
    /// the host's logs. Clients are answered [`ClientError::Fatal`] with the same failure as
    /// data.
    pub fn fatal_error(&self) -> Option<std::sync::Arc<StorageError>> {
        self.stop_reason.storage_error()
    }

    /// What a request is answered once the task has ended.
    pub(crate) fn stop_error(&self) -> ClientError {
        self.stop_reason.error()
    }

    /// A client with a fresh session: its writes are applied exactly once across retries.
    pub fn client(&self) -> ReplicaClient<S> {
        ReplicaClient::new(self.commands.clone(), self.stop_reason.clone())
    }

    /// The latest role, term and leader.
    pub fn role(&self) -> RoleView {
        self.roles.borrow().clone()
    }

    /// Whether this node leads right now.
    pub fn is_leader(&self) -> bool {
        self.roles.borrow().role == Role::Leader
    }

    /// Role changes as they happen.
    pub fn watch_role(&self) -> watch::Receiver<RoleView> {
        self.roles.clone()
    }

    /// Whether the store failed with an IO error (a full disk, `EIO`) and the replica refuses
    /// writes until it can write again (`None` while storage works), as a watch: what the
    /// node's `storage` health check reads.
    pub fn watch_storage(&self) -> watch::Receiver<Option<StorageStall>> {
        self.storage.clone()
    }

    /// A full status report.
    ///
    /// # Errors
    /// [`ClientError::Stopped`] when the node has stopped ([`ClientError::Fatal`] when its store
    /// stopped it).
    pub async fn status(&self) -> Result<ReplicaStatus, ClientError> {
        let (reply, wait) = oneshot::channel();
        self.send(Command::Status(reply)).await?;
        wait.await.map_err(|_| self.stop_reason.error())
    }

    /// Hand leadership to `target` (or the best voter).
    ///
    /// # Errors
    /// [`TransferError`] from the engine; [`TransferError::Stopped`] when the node stopped.
    pub async fn transfer_leadership(
        &self,
        target: Option<NodeId>,
    ) -> Result<NodeId, TransferError> {
        self.request_transfer(target, ElectionCause::ManualTransfer)
            .await
    }

    async fn request_transfer(
        &self,
        target: Option<NodeId>,
        cause: ElectionCause,
    ) -> Result<NodeId, TransferError> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Transfer {
            target,
            cause,
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Err(TransferError::Stopped);
        }
        wait.await.unwrap_or(Err(TransferError::Stopped))
    }

    /// Wait up to `timeout` for this node to stop leading (after a transfer); returns whether
    /// it no longer leads.
    pub async fn wait_until_not_leader(&self, timeout: Duration) -> bool {
        let mut roles = self.roles.clone();
        let _ =
            tokio::time::timeout(timeout, roles.wait_for(|view| view.role != Role::Leader)).await;
        !self.is_leader()
    }

    /// Start an election now (manual failover mode).
    ///
    /// # Errors
    /// [`ClientError::Stopped`] when the node has stopped ([`ClientError::Fatal`] when its store
    /// stopped it).
    pub async fn campaign(&self) -> Result<(), ClientError> {
        self.send(Command::Campaign).await
    }

    /// Report this node's own health (an unhealthy leader hands over).
    ///
    /// # Errors
    /// [`ClientError::Stopped`] when the node has stopped ([`ClientError::Fatal`] when its store
    /// stopped it).
    pub async fn set_health(&self, health: HealthStatus) -> Result<(), ClientError> {
        self.send(Command::SetHealth(health)).await
    }

    /// Tell the node a peer's RPC address and/or metadata.
    ///
    /// # Errors
    /// [`ClientError::Stopped`] when the node has stopped ([`ClientError::Fatal`] when its store
    /// stopped it).
    pub async fn set_peer(
        &self,
        node: NodeId,
        addr: Option<SocketAddr>,
        info: Option<PeerInfo>,
    ) -> Result<(), ClientError> {
        self.send(Command::SetPeer { node, addr, info }).await
    }

    /// Pass on a gossip membership event: peers' addresses and metadata reach the engine, and
    /// with `bootstrap_expect` a fresh node founds the cluster once enough voters have met.
    ///
    /// # Errors
    /// [`ClientError::Stopped`] when the node has stopped ([`ClientError::Fatal`] when its store
    /// stopped it).
    pub async fn on_member_event(&self, event: MemberEvent) -> Result<(), ClientError> {
        self.send(Command::MemberEvent(event)).await
    }

    /// Stop gracefully: hand leadership over if leading (waiting up to `handover_timeout`),
    /// then stop the task and close the transport.
    pub async fn shutdown(self, handover_timeout: Duration) {
        self.stop(handover_timeout).await;
    }

    /// [`shutdown`](Self::shutdown) through a shared reference, for owners that share the
    /// node (the `ha` facade): afterwards every call answers [`ClientError::Stopped`].
    pub async fn stop(&self, handover_timeout: Duration) {
        self.hand_over(handover_timeout).await;
        let (reply, wait) = oneshot::channel();
        if self.commands.send(Command::Stop(reply)).await.is_ok() {
            let _ = wait.await;
        }
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// If leading, hand leadership to the best other voter because this node is shutting
    /// down (the failover history records cause `shutdown`), and wait up to `timeout` for it
    /// to step down. Returns whether this node no longer leads.
    pub async fn hand_over(&self, timeout: Duration) -> bool {
        if !self.is_leader() {
            return true;
        }
        match self.request_transfer(None, ElectionCause::Shutdown).await {
            Ok(_) => self.wait_until_not_leader(timeout).await,
            Err(_) => !self.is_leader(),
        }
    }

    /// A point-in-time copy of the applied state (host state, sessions, failover history)
    /// with its log position, taken in one apply step once this node has applied
    /// `applied_at_least` (at once when it has). The caller writes it
    /// ([`ExportedSnapshot::write_to`]) off the async threads; the node's own snapshots and
    /// log are not touched. For a copy that holds every write acknowledged before the call,
    /// pass the index of a linearizable read
    /// ([`ReplicaClient::linearizable_index`](crate::driver::ReplicaClient::linearizable_index)).
    ///
    /// # Errors
    /// [`ExportError`]; [`ExportError::Busy`] when [`EXPORTS_WAITING_MAX`] exports already
    /// wait; [`ExportError::Stopped`] when the node stopped before applying that far.
    ///
    /// # Cancel safety
    /// Cancelling (for example at a timeout) withdraws the request: nothing is copied.
    pub async fn export_snapshot(
        &self,
        applied_at_least: ha_core::LogIndex,
    ) -> Result<ExportedSnapshot, ExportError> {
        let (reply, wait) = oneshot::channel();
        let command = Command::ExportSnapshot {
            applied_at_least,
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Err(ExportError::Stopped);
        }
        wait.await.unwrap_or(Err(ExportError::Stopped))
    }

    pub(crate) async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| self.stop_reason.error())
    }
}

impl<S: StateMachine> Drop for ReplicaNode<S> {
    fn drop(&mut self) {
        let task = self.task.get_mut().ok().and_then(Option::take);
        if let Some(task) = task {
            task.abort();
        }
    }
}

struct Runner<S: StateMachine, L: LogStore + 'static> {
    /// Issue 16: the latency histograms' bookkeeping (reads the core, never changes it).
    latency: LatencyTracker,
    core: ReplicaCore<S, ThreadedStore<L>>,
    transport: TcpTransport<Rpc>,
    clock: MonotonicClock,
    timers: TimerQueue<ReplicaTimer>,
    peers: BTreeMap<NodeId, SocketAddr>,
    replies: BTreeMap<u64, oneshot::Sender<ClientReply>>,
    /// Callers whose write was routed to the apply thread with its entry: the thread answers
    /// them once applied, unless the loop answers first (`reply_slot.rs`). Removed when the
    /// thread reports the task done.
    routed_replies: BTreeMap<u64, ReplySlot>,
    next_request_id: u64,
    roles: watch::Sender<RoleView>,
    /// The replica's storage stall, published after every round.
    storage: watch::Sender<Option<StorageStall>>,
    stopped: bool,
    /// Set when the store stops the replica, for the handle and clients to answer by.
    stop_reason: StopReason,
    /// Snapshots written on blocking threads report back here.
    snapshots_written: mpsc::UnboundedSender<SnapshotWritten>,
    /// Snapshot exports waiting for the applied index to reach theirs.
    exports: Vec<(
        ha_core::LogIndex,
        oneshot::Sender<Result<ExportedSnapshot, ExportError>>,
    )>,
    /// Exports handed to the core, waiting for the apply thread's copy, by export id.
    export_replies: BTreeMap<u64, oneshot::Sender<Result<ExportedSnapshot, ExportError>>>,
    next_export_id: u64,
    /// The host's state machine's thread (`None` on a witness, whose core applies inline).
    apply_thread: Option<ApplyThread>,
    /// Consistency digests hashed on blocking threads report back here (at most one per
    /// checkpoint in flight).
    digests_computed: mpsc::UnboundedSender<DigestComputed>,
    /// Spans of traced writes (issue 16; nothing to do while none is in flight).
    traces: RequestTraces,
}

/// Where the run loop's inputs come from.
struct Receivers {
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Receiver<Inbound<Rpc>>,
    snapshots_written: mpsc::UnboundedReceiver<SnapshotWritten>,
    digests_computed: mpsc::UnboundedReceiver<DigestComputed>,
    /// What the apply thread did; at most one per task handed to it. Reports the core does
    /// not wait for do not wake the loop (`driver/thread_reports.rs`).
    apply_done: ReportReceiver<ApplyDone>,
    /// What the storage thread synced (or failed to). A sync the core does not wait for does
    /// not wake the loop.
    storage_reports: ReportReceiver<StorageReport>,
}

enum Input {
    Command(Command),
    Inbound(Inbound<Rpc>),
    SnapshotWritten(SnapshotWritten),
    DigestComputed(DigestComputed),
    Storage(StorageReport),
    /// A report of the apply thread, and when it queued it.
    ApplyDone(ApplyDone, std::time::Instant),
    /// The apply thread ended (the host's state machine panicked): nothing more can apply.
    ApplyStopped,
    Timers,
    Closed,
}

impl<S: StateMachine, L: LogStore + 'static> Runner<S, L> {
    async fn run(mut self, receivers: Receivers) {
        let Receivers {
            mut commands,
            mut inbound,
            mut snapshots_written,
            mut digests_computed,
            apply_done,
            storage_reports,
        } = receivers;
        let applies_inline = self.apply_thread.is_none();
        self.carry_out();
        while !self.stopped {
            let deadline = self.timers.next_deadline().map(|deadline| {
                tokio::time::Instant::from_std(self.clock.origin() + deadline.as_duration())
            });
            let input = tokio::select! {
                biased;
                // Durability first: what a sync released (votes, acks, answers) leaves soonest.
                Some((report, _)) = storage_reports.recv() => Input::Storage(report),
                command = commands.recv() => command.map(Input::Command).unwrap_or(Input::Closed),
                message = inbound.recv() => message.map(Input::Inbound).unwrap_or(Input::Closed),
                Some(written) = snapshots_written.recv() => Input::SnapshotWritten(written),
                Some(computed) = digests_computed.recv() => Input::DigestComputed(computed),
                done = apply_done.recv(), if !applies_inline => {
                    done.map_or(Input::ApplyStopped, |(done, at)| Input::ApplyDone(done, at))
                }
                () = sleep_until(deadline), if deadline.is_some() => Input::Timers,
            };
            self.handle(input);
            // One turn takes everything ready (bounded), then carries out the effects of all
            // of it at once: one transport wake-up per peer and one sync request to the
            // storage thread per turn, not per write (issue 17, item 4).
            for _ in 0..BATCH_INPUTS_MAX {
                let input = if let Some((report, _)) = storage_reports.try_recv() {
                    Input::Storage(report)
                } else if let Ok(command) = commands.try_recv() {
                    Input::Command(command)
                } else if let Ok(message) = inbound.try_recv() {
                    Input::Inbound(message)
                } else if let Some((done, at)) = apply_done.try_recv() {
                    Input::ApplyDone(done, at)
                } else {
                    break;
                };
                self.handle(input);
            }
            // A leader's appends leave before its own fsync (the engine marks them
            // `After::Now`), so the followers' disks and ours write in parallel; everything
            // that promises what is on our disk (votes, acks, client answers) waits in the
            // core's gate until the storage thread reports the sync.
            self.serve_exports();
            self.carry_out();
            let applied = self.core.applied_index();
            self.traces.after_round(self.core.engine(), applied);
            let stall = self.core.storage_stall();
            if self.storage.borrow().as_ref() != stall {
                self.storage.send_replace(stall.cloned());
            }
            self.answer_exports();
            // Before waiting again: a report queued before this is still in the queue, which
            // the wait looks at first.
            let traced = self.traces.has_open_entries();
            apply_done.set_waiting(
                self.core.waits_for_apply_reports() || !self.exports.is_empty() || traced,
            );
            // A traced entry's spans close on its sync and on its commit, when they happen.
            storage_reports.set_waiting(self.core.waits_for_storage_reports() || traced);
        }
        self.fail_pending();
        self.transport.shutdown().await;
    }

    fn handle(&mut self, input: Input) {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        match input {
            Input::Command(command) => self.on_command(now, command),
            Input::Inbound(Inbound { from, message }) => {
                if let Rpc::Forward { request, .. } | Rpc::TracedForward { request, .. } = &message
                {
                    self.learn_requested_address(request);
                }
                self.latency
                    .on_inbound(started, &from, &message, &self.core);
                let traced = self.traces.on_inbound(&from, &message);
                let last_before = self.core.engine().last_index();
                self.core.on_rpc(now, from, message);
                if let Some(origin) = traced {
                    self.traces
                        .after_input(&origin, last_before, self.core.engine());
                }
            }
            Input::SnapshotWritten(written) => self.core.on_snapshot_written(now, written),
            Input::DigestComputed(computed) => self.core.on_digest_computed(now, computed),
            Input::Storage(StorageReport::Persisted(through)) => {
                self.core.on_persisted(now, through)
            }
            Input::Storage(StorageReport::Failed(error)) => self.core.on_storage_failed(now, error),
            Input::ApplyDone(mut done, at) => {
                // The apply thread answered (or the loop did before it): the routes end here.
                for routed in done.routed_replies_mut() {
                    let request_id = routed.route.request_id;
                    if self.routed_replies.remove(&request_id).is_some() {
                        self.traces.on_reply(request_id);
                    }
                }
                self.core.on_apply_done(now, done);
                // Timed from when the thread reported it, not from when the loop woke for
                // it (a report the core did not wait for waits for the next input).
                self.latency.after_step(started, at, &self.core);
                return;
            }
            Input::ApplyStopped => {
                tracing::error!(
                    "the apply thread ended (the state machine panicked?); replica stopping"
                );
                self.stopped = true;
            }
            Input::Timers => {
                // The core's housekeeping tick also founds a cluster whose founding set
                // settled without a new member event.
                while let Some(timer) = self.timers.pop_due(now) {
                    self.core.on_timer(now, timer);
                }
            }
            Input::Closed => self.stopped = true,
        }
        self.latency
            .after_step(started, std::time::Instant::now(), &self.core);
    }

    fn on_command(&mut self, now: Millis, command: Command) {
        if self.core.fatal().is_some()
            && !matches!(command, Command::Submit { .. } | Command::Stop(_))
        {
            // Stopped by its store: dropping the reply channel answers the caller with the
            // stop reason (`ClientError::Fatal`, `TransferError::Stopped`, ...), not with a
            // status or a transfer of a replica that no longer acts.
            return;
        }
        match command {
            Command::Submit {
                request,
                timeout_ms,
                reply,
                trace,
            } => {
                self.learn_requested_address(&request);
                let request_id = self.next_request_id;
                self.next_request_id += 1;
                self.replies.insert(request_id, reply);
                self.latency
                    .on_submit(std::time::Instant::now(), request_id, &request, &self.core);
                let traced = self
                    .traces
                    .on_submit(request_id, &request, trace, self.core.engine());
                let last_before = self.core.engine().last_index();
                self.core.submit(now, request_id, request, now + timeout_ms);
                if let Some(origin) = traced {
                    self.traces
                        .after_input(&origin, last_before, self.core.engine());
                }
            }
            Command::Transfer {
                target,
                cause,
                reply,
            } => {
                let result = self.core.on_transfer(now, target, cause);
                let _ = reply.send(result);
            }
            Command::Campaign => {
                self.core.on_campaign(now);
            }
            Command::SetHealth(health) => self.core.on_local_health(now, health),
            Command::SetPeer { node, addr, info } => {
                if let Some(addr) = addr {
                    self.peers.insert(node.clone(), addr);
                }
                if let Some(info) = info {
                    self.core.on_peer_info(now, node, info);
                }
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            Command::MemberEvent(event) => self.on_member_event(now, &event),
            Command::Stop(reply) => {
                self.stopped = true;
                let _ = reply.send(());
            }
            Command::PeerAddresses(reply) => {
                let mut addresses = self.peers.clone();
                addresses.insert(
                    self.core.engine().node_id().clone(),
                    self.transport.local_addr(),
                );
                let _ = reply.send(addresses);
            }
            Command::ExportSnapshot {
                applied_at_least,
                reply,
            } => {
                self.exports.retain(|(_, waiter)| !waiter.is_closed());
                if self.exports.len() >= EXPORTS_WAITING_MAX {
                    let waiting = self.exports.len();
                    let _ = reply.send(Err(ExportError::Busy { waiting }));
                } else {
                    self.exports.push((applied_at_least, reply));
                }
            }
        }
    }

    /// A membership request that adds a node names its replication address: record it
    /// unless gossip already told us one (gossip's comes from the node itself and replaces
    /// this one on its next event), so the leader reaches the learner at once.
    fn learn_requested_address(&mut self, request: &ClientRequest) {
        if let Some((node, addr)) = requested_peer_address(request)
            && node != *self.core.engine().node_id()
        {
            self.peers.entry(node).or_insert(addr);
        }
    }

    /// Ask the core for a copy for each export whose index is handed to the apply worker:
    /// the worker takes it after applying every entry handed out before, so it is the state
    /// at one applied index at or after the one asked for (writing it is the caller's job).
    fn serve_exports(&mut self) {
        if self.exports.is_empty() {
            return;
        }
        let applied = self.core.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.exports)
            .into_iter()
            .filter(|(_, waiter)| !waiter.is_closed())
            .partition(|(at_least, _)| *at_least <= applied);
        self.exports = waiting;
        for (_, reply) in ready {
            let export_id = self.next_export_id;
            self.next_export_id += 1;
            self.export_replies.insert(export_id, reply);
            self.core.request_export(export_id);
        }
    }

    /// Hand the copies the apply worker took to their callers.
    fn answer_exports(&mut self) {
        for (export_id, result) in self.core.take_exported() {
            if let Some(reply) = self.export_replies.remove(&export_id) {
                let _ = reply.send(result);
            }
        }
    }

    /// The core takes the event (and the founding decision, shared with the simulator); the
    /// driver keeps the peer's replication address.
    fn on_member_event(&mut self, now: Millis, event: &MemberEvent) {
        if let Some(peer) = self.core.on_member_event(now, event)
            && let Some(addr) = peer.rpc_addr
        {
            self.peers.insert(peer.node, addr);
        }
    }

    fn carry_out(&mut self) {
        let now = self.clock.now();
        // The turn's sync requests become one: the latest covers the earlier ones.
        let mut sync_through = None;
        for effect in self.core.drain_effects() {
            match effect {
                ReplicaEffect::Send { to, rpc } => {
                    // The latency tracker reads the untraced message (a traced forward is
                    // timed as a forward), and only what is really sent.
                    if self.peers.contains_key(&to) && self.latency.wants(&rpc) {
                        self.latency.on_send(std::time::Instant::now(), &to, &rpc);
                    }
                    // Before the address check: an answer that is dropped still ends its span.
                    let rpc = self.traces.on_send(&to, rpc);
                    match self.peers.get(&to) {
                        Some(addr) => self.transport.send(&to, *addr, rpc),
                        None => tracing::debug!(%to, "no address for peer; message dropped"),
                    }
                }
                ReplicaEffect::SetTimer { timer, after_ms } => {
                    if !self.timers.push(now + after_ms, timer) {
                        tracing::error!("replica timer queue full");
                    }
                }
                ReplicaEffect::Reply { request_id, reply } => {
                    self.latency.on_reply(std::time::Instant::now(), request_id);
                    self.traces.on_reply(request_id);
                    if let Some(waiter) = self.replies.remove(&request_id) {
                        let _ = waiter.send(reply);
                    } else if let Some(slot) = self.routed_replies.remove(&request_id) {
                        // Answered before the apply thread got to it (a deadline, a lost
                        // quorum): this answer wins, the thread's is dropped.
                        slot.send(reply);
                    }
                }
                ReplicaEffect::RoleChanged { role, term, leader } => {
                    self.latency.on_leader(leader.as_ref());
                    self.roles.send_replace(RoleView { role, term, leader });
                }
                ReplicaEffect::WriteSnapshot(job) => {
                    // Writing gigabytes must not hold up the apply loop: a blocking thread
                    // writes, and the result comes back as an input.
                    let written = self.snapshots_written.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(result) = job.run() {
                            let _ = written.send(result);
                        }
                    });
                }
                ReplicaEffect::ComputeDigest(job) => {
                    // Hashing the whole state must not hold up the apply loop either.
                    let computed = self.digests_computed.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(result) = job.run() {
                            let _ = computed.send(result);
                        }
                    });
                }
                ReplicaEffect::Sync { through } => {
                    sync_through = sync_through.max(Some(through));
                }
                ReplicaEffect::Fatal(failure) => {
                    // The task keeps running until shut down, in fatal mode: the core answers
                    // every request and forward `Fatal` (the answers to what waited are in
                    // this very batch, and leave because the transport stays up) and ignores
                    // everything else; other commands are answered by the stop reason.
                    tracing::error!(%failure, "replica stopped on a storage failure");
                    if let Some(error) = self.core.fatal_error() {
                        self.stop_reason.set_fatal(failure, error.clone());
                    }
                    // It leads nothing any more (its engine gets no input, so no heartbeat
                    // goes and the others elect): say so to whoever watches the role (the
                    // facade's gossip state, `is_leader`), and name no leader it cannot reach.
                    let term = self.roles.borrow().term;
                    self.roles.send_replace(RoleView {
                        role: Role::Follower,
                        term,
                        leader: None,
                    });
                }
                // The core logged it; nothing else to do.
                ReplicaEffect::Founded { .. } => {}
                ReplicaEffect::Apply(task) => {
                    let replies = self.route_replies(&task);
                    let queued = self
                        .apply_thread
                        .as_ref()
                        .is_some_and(|thread| thread.send(QueuedTask { task, replies }));
                    if !queued {
                        tracing::error!("the apply thread is gone; replica stopping");
                        self.stopped = true;
                    }
                }
            }
        }
        // The turn's writes go to the storage thread in one hand-over, with one sync (merged
        // there with any turn queued behind an fsync in progress: group commit).
        match sync_through {
            Some(through) => self.core.store().request_sync(through),
            None => self.core.store().hand_over(),
        }
    }

    /// The answer channels of the writes `task` answers, shared with the apply thread: it
    /// answers them the moment they are applied, without waking this loop.
    fn route_replies(&mut self, task: &crate::replica::ApplyTask) -> BTreeMap<u64, ReplySlot> {
        let mut replies = BTreeMap::new();
        for route in task.reply_routes() {
            if let Some(sender) = self.replies.remove(&route.request_id) {
                let slot = ReplySlot::new(sender);
                self.routed_replies.insert(route.request_id, slot.clone());
                replies.insert(route.request_id, slot);
            }
        }
        replies
    }

    /// Answer every caller still waiting: [`ClientError::Fatal`] when the store stopped the
    /// replica, else [`ClientError::Stopped`]. (A routed write the apply thread answered
    /// already keeps that answer.)
    fn fail_pending(&mut self) {
        let error = self.stop_reason.error();
        for (_, waiter) in std::mem::take(&mut self.replies) {
            let _ = waiter.send(ClientReply::Failed(error.clone()));
        }
        for (_, slot) in std::mem::take(&mut self.routed_replies) {
            slot.send(ClientReply::Failed(error.clone()));
        }
    }

    fn status(&self, now: Millis) -> ReplicaStatus {
        let engine = self.core.engine();
        let last_index = engine.last_index();
        let membership = engine.membership().clone();
        let window = engine.settings.follower_backlog_entries_max;
        let peers = engine
            .progress()
            .iter()
            .map(|(id, progress)| PeerStatus {
                id: id.clone(),
                voter: membership.is_voter(id),
                match_index: progress.match_index,
                lag_entries: last_index.0.saturating_sub(progress.match_index.0),
                applied_index: progress.applied_index,
                apply_backlog: progress
                    .match_index
                    .0
                    .saturating_sub(progress.applied_index.0),
                // The engine's own test (replication.rs): nothing past applied + window.
                apply_window_full: progress.next_index.0
                    > progress.applied_index.0.saturating_add(window),
                last_contact_ms: engine.heard_from_at(id).map(|at| now.saturating_since(at)),
                catch_up: self.catch_up(now, id),
            })
            .collect();
        ReplicaStatus {
            node_id: engine.node_id().clone(),
            role: engine.role().as_str().to_string(),
            term: engine.term(),
            leader: engine.leader().cloned(),
            quorum: engine.in_quorum(now),
            last_index,
            commit_index: engine.commit_index(),
            applied_index: self.core.applied_index(),
            apply_backlog: self.core.apply_backlog(),
            membership,
            peers,
            failover_history: self.core.failover_history().to_vec(),
            elections_started: engine.elections_started(),
            refused_inputs: engine
                .refused_inputs()
                .by_cause()
                .map(|(cause, count)| (cause.as_str().to_string(), count))
                .collect(),
            snapshot_transfer: self.core.snapshot_stats(),
            consistency: self.core.consistency_status(),
            transport_send_drops: self.transport.send_drop_counts(),
            transport_refusals: self.transport.reject_counts(),
            witness: engine.is_witness(),
        }
    }

    /// How the leader is bringing `peer` up to date, when it is streaming it a snapshot.
    fn catch_up(&self, now: Millis, peer: &NodeId) -> Option<CatchUp> {
        let progress = self.core.transfer_progress(now, peer)?;
        let stalled = progress.since_progress_ms > self.core.transfer_stalled_after_ms();
        Some(CatchUp {
            state: if stalled { "stalled" } else { "snapshot" }.to_string(),
            sent_bytes: progress.acked,
            total_bytes: progress.size,
            reason: stalled.then(|| {
                format!(
                    "no snapshot bytes acknowledged for {} ms",
                    progress.since_progress_ms
                )
            }),
            since_progress_ms: progress.since_progress_ms,
        })
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
