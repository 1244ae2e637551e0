//! The sans-IO replica: engine + store + applier + client requests.

mod apply_flow;
#[cfg(test)]
mod checkpoint_schedule_tests;
#[cfg(test)]
mod checkpoint_snapshot_tests;
mod consistency_flow;
mod control_inputs;
mod member_events;
mod member_requests;
mod own_snapshot_rule;
mod snapshot_flow;
#[cfg(test)]
mod snapshot_size_rule_tests;
#[cfg(test)]
mod storage_fatal_tests;
mod storage_stall;

pub(crate) use member_requests::requested_peer_address;

use std::collections::BTreeMap;
use std::sync::Arc;

use ha_core::{Consistency, LogIndex, Millis, NodeId, StateMachine, Term};

use crate::engine::{
    After, Effect, Engine, EngineStart, Message, Persist, PersistId, ProposeError, ReadError,
    RefusalCause, Role, TimerKind,
};
use crate::membership::VoterSet;
use crate::membership_feed::MembershipFeed;
use crate::replica::applier::Applier;
use crate::replica::apply_worker::{ApplyTask, ApplyWorker};
use crate::replica::client::{ClientError, ClientReply, ClientRequest, ReadRequest, WriteRequest};
use crate::replica::consistency_monitor::ConsistencyMonitor;
use crate::replica::digest_job::DigestJob;
use crate::replica::durability_gate::DurabilityGate;
use crate::replica::rpc::Rpc;
use crate::replica::session::{ApplyOutcome, SessionCommand};
use crate::replica::settings::{ReplicaSettings, SyncPolicy};
use crate::replica::snapshot_job::SnapshotJob;
use crate::replica::snapshot_receiver::SnapshotReceiver;
use crate::replica::snapshot_sender::{ChunkPlace, SnapshotSender};
use crate::snapshot_meta::SnapshotId;
use crate::storage::io_failure::classify;
use crate::storage::{LogStore, StorageError, StorageFailure};

pub use apply_flow::{APPLY_AHEAD_ENTRIES_MAX, APPLY_LAG_ENTRIES_MAX, APPLY_QUERIES_MAX};
pub use storage_stall::{RESUME_RETRY_MS_MAX, RESUME_RETRY_MS_MIN};

/// Largest encoded session command accepted from a client.
pub const COMMAND_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A timer the replica asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaTimer {
    /// One of the engine's timers.
    Engine(TimerKind, u64),
    /// Check deadlines and snapshot policy.
    Housekeeping,
}

/// What the driver must do for the replica, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaEffect {
    /// Send to another replica.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        rpc: Rpc,
    },
    /// Deliver `on_timer(timer)` after `after_ms`.
    SetTimer {
        /// The timer.
        timer: ReplicaTimer,
        /// Delay.
        after_ms: u64,
    },
    /// Answer a local client request.
    Reply {
        /// The id the driver gave the request.
        request_id: u64,
        /// The answer.
        reply: ClientReply,
    },
    /// Role, term or leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Write a snapshot of the applied state off the apply path (on a blocking thread), then
    /// hand the result to [`ReplicaCore::on_snapshot_written`].
    WriteSnapshot(SnapshotJob),
    /// Storage failed in a way the node cannot survive (corruption, a broken contract): the
    /// replica stopped and answers nothing more. Restart the node. (An IO error, a full disk
    /// among them, stalls it instead: [`ReplicaCore::storage_stall`].) Every request waiting
    /// in the core was answered [`ClientError::Fatal`] in the effects before this one; the
    /// original error is [`ReplicaCore::fatal_error`].
    Fatal(StorageFailure),
    /// Hash a copy of the applied state at a checkpoint off the apply path (on a blocking
    /// thread), then hand the result to [`ReplicaCore::on_digest_computed`].
    ComputeDigest(DigestJob),
    /// Make every write handed to the store so far durable (an fsync), off the event loop,
    /// then report [`ReplicaCore::on_persisted`] with `through` (or
    /// [`ReplicaCore::on_storage_failed`] with the error). Messages and answers that rest on
    /// those writes wait in the core until then. Requests may be merged (one fsync for
    /// several, group commit) as long as each is reported; a store whose writes are done in
    /// place may use [`ReplicaCore::complete_sync`].
    Sync {
        /// The last write id the sync covers.
        through: PersistId,
    },
    /// This node founded a new cluster with these voters: through the `bootstrap_expect`
    /// rule ([`ReplicaCore::on_member_event`], or the housekeeping tick once the founding set
    /// settled), or with an explicit set ([`ReplicaCore::on_bootstrap`]). A notice for logs
    /// and tests; the founding entry itself is stored like any other.
    Founded {
        /// The founding voters.
        voters: VoterSet,
    },
    /// Run a task on the host's state machine (apply entries, answer a query, take a copy,
    /// restore a snapshot) with the [`ApplyWorker`] taken by
    /// [`ReplicaCore::detach_apply_worker`] (or, while the core holds its worker in deferred
    /// mode, with [`ReplicaCore::run_apply_task`]), in the order handed out, then hand the
    /// result to [`ReplicaCore::on_apply_done`]. Never emitted in inline mode (the default),
    /// where the core runs each task at once.
    Apply(ApplyTask),
}

/// Who is waiting for an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Local(u64),
    Remote(NodeId, u64),
}

#[derive(Clone, Debug)]
struct PendingWrite {
    origin: Origin,
    term: Term,
    consistency: Consistency,
    deadline: Millis,
}

#[derive(Clone, Debug)]
struct PendingRead {
    origin: Origin,
    query: Vec<u8>,
    deadline: Millis,
}

/// A query handed to the apply worker, waiting for its answer.
#[derive(Clone, Debug)]
struct QueryWait {
    origin: Origin,
    deadline: Millis,
}

#[derive(Clone, Debug)]
struct StrongWait {
    origin: Origin,
    outcome: ApplyOutcome,
    deadline: Millis,
}

/// Most sync rounds one [`ReplicaCore::flush`] runs (a sync can commit, applying can snapshot,
/// a snapshot must be synced again).
const FLUSH_ROUNDS_MAX: usize = 4;

/// One replica of the log and its state machine, with no IO of its own.
///
/// The tokio driver runs it over TCP and a WAL (whose writes and syncs run on a storage
/// thread); the simulator runs it over a simulated network and a
/// [`MemoryStore`](crate::storage::memory::MemoryStore). It hands the engine's writes to its
/// [`LogStore`] in order, asks for syncs with [`ReplicaEffect::Sync`], and holds every message
/// and answer in its [`DurabilityGate`] until what they rest on is durable.
pub struct ReplicaCore<S: StateMachine, L: LogStore> {
    settings: ReplicaSettings,
    engine: Engine,
    store: L,
    /// The host's state machine and what it runs on, while the core holds it (inline or
    /// deferred mode); `None` once the driver detached it to its apply thread.
    worker: Option<ApplyWorker<S>>,
    /// How apply tasks run.
    apply_mode: apply_flow::ApplyMode,
    /// The apply worker's progress as it reported it: the core never asks the host.
    apply: apply_flow::ApplyProgress,
    /// Messages and answers waiting for the writes they rest on.
    gate: DurabilityGate,
    /// The last write id a [`ReplicaEffect::Sync`] was asked for.
    sync_requested: PersistId,
    outputs: Vec<ReplicaEffect>,
    pending_writes: BTreeMap<LogIndex, PendingWrite>,
    strong_waits: BTreeMap<LogIndex, StrongWait>,
    pending_reads: BTreeMap<u64, PendingRead>,
    ready_reads: Vec<(LogIndex, u64)>,
    /// Forwarded requests: forward id -> (local request id, deadline, the leader asked).
    forwards: BTreeMap<u64, (u64, Millis, NodeId)>,
    /// Ids for forwards and reads. Started at a random point on every start, so a late reply
    /// to a request made before a restart cannot be taken for a reply to a new one.
    next_id: u64,
    /// Why the store stopped the replica, if it did: as data (what clients are answered)
    /// and the store's own error (for the host's logs).
    fatal: Option<(StorageFailure, Arc<StorageError>)>,
    /// The time of the latest input, for work a sync releases.
    last_now: Millis,
    /// The last leader this node knew (itself included), for the `NoQuorum` answer.
    last_leader: Option<NodeId>,
    /// When this node last became leader: a new leader has heard nobody yet, so it is given
    /// one election timeout before it counts as cut off.
    leading_since: Option<Millis>,
    /// The store's current snapshot.
    current_snapshot: Option<SnapshotId>,
    /// The last index of the snapshot being written, if one is.
    snapshot_in_progress: Option<LogIndex>,
    /// Snapshots streamed to followers.
    sender: SnapshotSender,
    /// The snapshot received from the leader.
    receiver: SnapshotReceiver,
    snapshot_counts: snapshot_flow::SnapshotCounts,
    /// The store failed with an IO error: writes are refused until it is resumed.
    stall: Option<storage_stall::Stall>,
    /// The store was reopened while a snapshot was being written: that snapshot's sink file
    /// is gone, so its result is ignored.
    snapshot_sink_lost: bool,
    /// The replica consistency monitor.
    monitor: ConsistencyMonitor,
    /// A diverged replica asked for a snapshot newer than the current one: take one now.
    snapshot_for_repair: bool,
    /// Gossip's view of the peers, and the `bootstrap_expect` founding rule.
    feed: MembershipFeed,
}

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Recover from `store` and start. `machine` must be fresh: the snapshot (if any) is
    /// restored into it.
    ///
    /// # Errors
    /// [`StorageError`] when recovery fails or the snapshot does not restore.
    pub fn new(
        mut settings: ReplicaSettings,
        machine: S,
        mut store: L,
        now: Millis,
        seed: u64,
    ) -> Result<Self, StorageError> {
        // Either flag makes a witness; the engine and the replica must agree on it.
        let witness = settings.witness || settings.engine.witness;
        settings.witness = witness;
        settings.engine.witness = witness;
        let recovered = store.recover()?;
        for repair in &recovered.repairs {
            tracing::warn!(%repair, "storage repaired at start");
        }
        let (snapshot, current_snapshot) = match recovered.snapshot {
            Some((meta, id)) => (Some(meta), Some(id)),
            None => (None, None),
        };
        if let Some(incoming) = &recovered.incoming {
            tracing::info!(
                last_index = %incoming.meta.last_index,
                held = incoming.held,
                size = incoming.id.size,
                "a snapshot being received before the restart will be resumed"
            );
        }
        if !witness
            && let Some(entry) = recovered
                .entries
                .iter()
                .find(|entry| entry.is_stripped_command())
        {
            // Only a witness drops command payloads: this log was a witness's. Applying it
            // would lose those commands on this node.
            return Err(StorageError::Corrupt {
                path: "log".into(),
                offset: entry.index.0,
                reason: format!(
                    "entry {} holds a command without its payload: this data directory \
                     belonged to a witness, and a data node cannot start from it (move it \
                     aside; the node then catches up from the leader)",
                    entry.index
                ),
            });
        }
        let start = EngineStart {
            hard_state: recovered.hard_state,
            snapshot,
            entries: recovered.entries,
        };
        let sender = SnapshotSender::new(settings.transfer);
        let monitor = ConsistencyMonitor::new(settings.consistency);
        let feed = MembershipFeed::for_replica(&settings.engine, settings.bootstrap_expect);
        let worker = ApplyWorker::new(Applier::new(machine), witness, settings.consistency);
        let engine = Engine::new(settings.engine.clone(), start, now, seed);
        let mut core = Self {
            settings,
            engine,
            store,
            worker: Some(worker),
            apply_mode: apply_flow::ApplyMode::Inline,
            apply: apply_flow::ApplyProgress::default(),
            gate: DurabilityGate::new(),
            sync_requested: PersistId(0),
            outputs: Vec::new(),
            pending_writes: BTreeMap::new(),
            strong_waits: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            forwards: BTreeMap::new(),
            next_id: seed,
            fatal: None,
            last_now: now,
            last_leader: None,
            leading_since: None,
            current_snapshot,
            snapshot_in_progress: None,
            sender,
            receiver: SnapshotReceiver::default(),
            snapshot_counts: snapshot_flow::SnapshotCounts::default(),
            stall: None,
            snapshot_sink_lost: false,
            monitor,
            snapshot_for_repair: false,
            feed,
        };
        if core.current_snapshot.is_some() {
            core.restore_current_snapshot("snapshot")?;
        }
        core.sync_apply_progress();
        core.outputs.push(ReplicaEffect::SetTimer {
            timer: ReplicaTimer::Housekeeping,
            after_ms: core.settings.housekeeping_interval_ms,
        });
        core.after_input(now);
        Ok(core)
    }

    /// The consensus engine (role, term, progress, ...): public with the `test-support`
    /// feature only, for the simulators' invariant checks.
    #[cfg(feature = "test-support")]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The consensus engine (role, term, progress, ...), for the driver.
    #[cfg(not(feature = "test-support"))]
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The applied state, while the core holds its apply worker (always, unless the driver
    /// detached it with [`detach_apply_worker`](Self::detach_apply_worker)). Code that runs
    /// either way reads [`applied_index`](Self::applied_index) and
    /// [`failover_history`](Self::failover_history) instead.
    ///
    /// # Panics
    /// When the apply worker was detached: the thread that took it owns the state.
    pub fn applier(&self) -> &Applier<S> {
        match &self.worker {
            Some(worker) => worker.applier(),
            None => panic!("the apply worker was detached: read the state through it"),
        }
    }

    /// The store.
    pub fn store(&self) -> &L {
        &self.store
    }

    /// Whether storage failed in a way the replica cannot survive (it no longer acts), and
    /// how: what every request is answered ([`ClientError::Fatal`]).
    pub fn fatal(&self) -> Option<&StorageFailure> {
        self.fatal.as_ref().map(|(failure, _)| failure)
    }

    /// The store's own error that stopped the replica (with its `std::io::Error` source, if
    /// any), for the host's logs; [`fatal`](Self::fatal) is the same as data.
    pub fn fatal_error(&self) -> Option<&Arc<StorageError>> {
        self.fatal.as_ref().map(|(_, error)| error)
    }

    /// How many messages and answers wait for a sync, and the latest write id reported
    /// durable (for status and tests).
    pub fn durability_wait(&self) -> (usize, PersistId) {
        (self.gate.held_len(), self.gate.durable())
    }

    /// Take the effects ready to carry out.
    pub fn drain_effects(&mut self) -> Vec<ReplicaEffect> {
        std::mem::take(&mut self.outputs)
    }

    /// Sync the store in place and release what waited for it, for a store whose writes are
    /// done in place (tests, simple embeddings): [`complete_sync`](Self::complete_sync)
    /// through every write issued. What the sync made durable may commit on a leader (its own
    /// log counts only once synced), and applying that may write again (a snapshot), so this
    /// repeats a bounded number of times; anything still unsynced then stays held. The tokio
    /// driver never calls it: it carries out [`ReplicaEffect::Sync`] on its storage thread.
    pub fn flush(&mut self) {
        for _ in 0..FLUSH_ROUNDS_MAX {
            let issued = self.engine.persist_issued();
            if self.fatal.is_some() || self.stall.is_some() || issued <= self.gate.durable() {
                return;
            }
            self.complete_sync(self.last_now, issued);
        }
    }

    /// Carry out a [`ReplicaEffect::Sync`] on this core's own store, in place: sync it, then
    /// report [`on_persisted`](Self::on_persisted) (or
    /// [`on_storage_failed`](Self::on_storage_failed)). For a store whose writes are done in place (the simulator's
    /// [`MemoryStore`](crate::storage::memory::MemoryStore)); a driver that writes on another
    /// thread syncs there and reports itself.
    pub fn complete_sync(&mut self, now: Millis, through: PersistId) {
        if self.fatal.is_some() || self.stall.is_some() {
            return;
        }
        match self.store.sync() {
            Ok(()) => self.on_persisted(now, through),
            Err(error) => self.on_storage_failed(now, error),
        }
    }

    /// Every write through `through` is durable (the driver's sync finished): commit what
    /// that allows and release the messages and answers that waited for it.
    pub fn on_persisted(&mut self, now: Millis, through: PersistId) {
        if self.fatal.is_some() || self.stall.is_some() {
            // A stalled store is written back and synced by resuming, which reports itself.
            return;
        }
        let through = through.min(self.engine.persist_issued());
        self.gate.on_persisted(through, &mut self.outputs);
        self.engine.on_persisted(now, through);
        self.after_input(now);
    }

    /// Whether the driver must wake the event loop for every storage report
    /// (`driver/thread_reports.rs`; failures always wake it): while the durability gate holds
    /// effects that wait for a sync, or the engine waits for its own durability
    /// ([`Engine::waits_for_own_durability`]: anything but a leader, and a leader whose own
    /// copy is all a commit waits for).
    pub fn waits_for_storage_reports(&self) -> bool {
        self.gate.held_len() > 0 || self.engine.waits_for_own_durability()
    }

    /// A write or a sync the driver carried out for this core failed: stall on an IO error (a
    /// full disk, `EIO`; writes resume once the store can be written again), stop on anything
    /// else.
    pub fn on_storage_failed(&mut self, now: Millis, error: StorageError) {
        if self.fatal.is_some() {
            return;
        }
        self.last_now = self.last_now.max(now);
        self.fail(error);
        self.after_input(now);
    }

    // ----- Inputs -----

    /// A message from another replica.
    pub fn on_rpc(&mut self, now: Millis, from: NodeId, rpc: Rpc) {
        if let Some((failure, _)) = &self.fatal {
            // A forwarded request still gets an answer (the follower's client learns why
            // rather than waiting for its deadline); everything else is ignored.
            if let Rpc::Forward { forward_id, .. } | Rpc::TracedForward { forward_id, .. } = rpc {
                let reply = ClientReply::Failed(ClientError::Fatal(failure.clone()));
                self.outputs.push(ReplicaEffect::Send {
                    to: from,
                    rpc: Rpc::ForwardReply { forward_id, reply },
                });
            }
            return;
        }
        if self.stall.is_some() && !Self::taken_while_stalled(&rpc) {
            return;
        }
        match rpc {
            // A snapshot's bytes arrive in chunks, and only the receiver, holding them all,
            // verified, hands the engine an `InstallSnapshot`: one from the wire has no bytes
            // to install.
            Rpc::Raft(message @ Message::InstallSnapshot { .. }) => self.engine.refuse_input(
                now,
                &from,
                RefusalCause::BadSnapshot,
                &format!("{} without its bytes", message.kind()),
            ),
            Rpc::Raft(message) => self.engine.on_message(now, from, message),
            Rpc::SnapshotChunk {
                term,
                meta,
                id,
                offset,
                round,
                data,
            } => {
                let chunk = snapshot_flow::ReceivedChunk {
                    term,
                    meta,
                    id,
                    place: ChunkPlace { offset, round },
                    data,
                };
                self.on_snapshot_chunk(now, from, chunk)
            }
            Rpc::SnapshotAck {
                term,
                id,
                chunk_offset,
                round,
                next_offset,
            } => {
                let place = ChunkPlace {
                    offset: chunk_offset,
                    round,
                };
                self.on_snapshot_ack(now, from, term, id, place, next_offset)
            }
            rpc @ (Rpc::Digest { .. } | Rpc::DigestVerdict { .. } | Rpc::RepairRequest { .. }) => {
                self.on_consistency_rpc(now, from, rpc)
            }
            // The trace context is the driver's business (its spans); the core handles a
            // traced forward exactly like an untraced one.
            Rpc::Forward {
                forward_id,
                request,
            }
            | Rpc::TracedForward {
                forward_id,
                request,
                ..
            } => {
                let deadline = now + self.settings.engine.election_timeout_max_ms * 10;
                self.handle_request(
                    now,
                    Origin::Remote(from, forward_id),
                    request,
                    deadline,
                    false,
                );
            }
            Rpc::ForwardReply { forward_id, reply } => {
                let expected = self
                    .forwards
                    .get(&forward_id)
                    .is_some_and(|(_, _, leader)| *leader == from);
                if expected && let Some((request_id, _, _)) = self.forwards.remove(&forward_id) {
                    self.emit(ReplicaEffect::Reply { request_id, reply });
                }
            }
        }
        self.after_input(now);
    }

    /// A timer fired.
    pub fn on_timer(&mut self, now: Millis, timer: ReplicaTimer) {
        if self.fatal.is_some() {
            return;
        }
        match timer {
            ReplicaTimer::Engine(kind, generation) => self.engine.on_timer(now, kind, generation),
            ReplicaTimer::Housekeeping => {
                self.outputs.push(ReplicaEffect::SetTimer {
                    timer: ReplicaTimer::Housekeeping,
                    after_ms: self.settings.housekeeping_interval_ms,
                });
                self.expire(now);
                self.fail_waits_when_cut_off(now);
                if self.stall.is_some() {
                    self.try_resume(now);
                } else {
                    // A founding set that settled without a new member event.
                    self.found_if_due(now);
                    self.maybe_snapshot();
                    self.repair_housekeeping(now);
                    self.send_snapshot_chunks(now);
                }
            }
        }
        self.after_input(now);
    }

    /// A local client request; the answer comes as a [`ReplicaEffect::Reply`] with
    /// `request_id` by `deadline` at the latest.
    pub fn submit(
        &mut self,
        now: Millis,
        request_id: u64,
        request: ClientRequest,
        deadline: Millis,
    ) {
        if let Some((failure, _)) = &self.fatal {
            let reply = ClientReply::Failed(ClientError::Fatal(failure.clone()));
            self.outputs
                .push(ReplicaEffect::Reply { request_id, reply });
            return;
        }
        self.handle_request(now, Origin::Local(request_id), request, deadline, true);
        self.after_input(now);
    }

    // ----- Requests -----

    fn handle_request(
        &mut self,
        now: Millis,
        origin: Origin,
        request: ClientRequest,
        deadline: Millis,
        may_forward: bool,
    ) {
        let eventual_read = matches!(
            &request,
            ClientRequest::Read(ReadRequest {
                consistency: Consistency::Eventual,
                ..
            })
        );
        if let (ClientRequest::Write(_), Some(error)) = (&request, self.stalled_write_error()) {
            // Refused before anything is appended or forwarded: known not applied.
            self.reply(origin, ClientReply::Failed(error));
            return;
        }
        if self.settings.witness && matches!(request, ClientRequest::Read(_)) {
            // A witness holds no state: no read of any consistency is served here (writes and
            // membership requests are forwarded to the leader like on any follower).
            self.reply(origin, ClientReply::Failed(ClientError::Witness));
            return;
        }
        if !eventual_read && self.cut_off(now) {
            // Nothing is proposed or forwarded: the request is known not applied, and the
            // client hears it now rather than at its deadline (it may try another node).
            let leader = self.last_leader.clone();
            self.reply(
                origin,
                ClientReply::Failed(ClientError::NoQuorum { leader }),
            );
            return;
        }
        match request {
            ClientRequest::Write(write) => {
                self.handle_write(now, origin, write, deadline, may_forward)
            }
            ClientRequest::Read(read) => self.handle_read(now, origin, read, deadline, may_forward),
            ClientRequest::Member(request) => {
                self.handle_member_request(now, origin, request, deadline, may_forward)
            }
        }
    }

    fn handle_write(
        &mut self,
        now: Millis,
        origin: Origin,
        write: WriteRequest,
        deadline: Millis,
        may_forward: bool,
    ) {
        let stamped = SessionCommand {
            session: write.session,
            sequence: write.sequence,
            lowest_unanswered: write.lowest_unanswered,
            command: write.command.clone(),
        };
        if self.engine.is_leader() && self.apply_lags() {
            // The state machine is far behind the commit index: refused, nothing appended.
            self.reply(origin, ClientReply::Failed(ClientError::Busy));
            return;
        }
        let bytes = match stamped.encode(COMMAND_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(error) => {
                let reply = ClientReply::Failed(ClientError::InvalidQuery(error.to_string()));
                self.reply(origin, reply);
                return;
            }
        };
        match self.engine.propose(now, bytes) {
            Ok(index) => {
                let term = self.engine.term();
                if write.consistency == Consistency::Eventual {
                    // Appended (durable once the pending sync completes): answer now; the
                    // answer is held until that sync.
                    self.reply(origin.clone(), ClientReply::Accepted { index });
                }
                self.pending_writes.insert(
                    index,
                    PendingWrite {
                        origin,
                        term,
                        consistency: write.consistency,
                        deadline,
                    },
                );
            }
            Err(ProposeError::NotLeader { leader }) => self.forward_or_fail(
                origin,
                ClientRequest::Write(write),
                leader,
                deadline,
                may_forward,
            ),
            Err(ProposeError::TransferInProgress) => {
                self.reply(origin, ClientReply::Failed(ClientError::TransferInProgress))
            }
            Err(_) => self.reply(origin, ClientReply::Failed(ClientError::Busy)),
        }
    }

    fn handle_read(
        &mut self,
        now: Millis,
        origin: Origin,
        read: ReadRequest,
        deadline: Millis,
        may_forward: bool,
    ) {
        if read.consistency == Consistency::Eventual {
            // From whatever this replica has applied when the worker gets to it.
            self.hand_out_query(origin, read.query, deadline);
            return;
        }
        let read_id = self.next_id();
        match self.engine.read_index(now, read_id) {
            Ok(()) => {
                self.pending_reads.insert(
                    read_id,
                    PendingRead {
                        origin,
                        query: read.query,
                        deadline,
                    },
                );
            }
            Err(ReadError::NotLeader { leader }) => self.forward_or_fail(
                origin,
                ClientRequest::Read(read),
                leader,
                deadline,
                may_forward,
            ),
        }
    }

    fn forward_or_fail(
        &mut self,
        origin: Origin,
        request: ClientRequest,
        leader: Option<NodeId>,
        deadline: Millis,
        may_forward: bool,
    ) {
        match (origin, leader) {
            (Origin::Local(request_id), Some(leader)) if may_forward => {
                let forward_id = self.next_id();
                self.forwards
                    .insert(forward_id, (request_id, deadline, leader.clone()));
                self.emit(ReplicaEffect::Send {
                    to: leader,
                    rpc: Rpc::Forward {
                        forward_id,
                        request,
                    },
                });
            }
            (origin, leader) => self.reply(
                origin,
                ClientReply::Failed(ClientError::NotLeader { leader }),
            ),
        }
    }

    /// Whether this node is cut off from the majority: a follower (or candidate) with no
    /// leader, or none heard from within the longest election timeout; a leader that no
    /// majority of voters answered within it (after its first election timeout as leader).
    /// [`Engine::in_quorum`] is what `/v1/health` reports.
    fn cut_off(&self, now: Millis) -> bool {
        if self.engine.in_quorum(now) {
            return false;
        }
        match (self.engine.is_leader(), self.leading_since) {
            (true, Some(since)) => {
                now.saturating_since(since) >= self.settings.engine.election_timeout_max_ms
            }
            (true, None) => false,
            (false, _) => true,
        }
    }

    /// Requests that wait on a leader this node has lost contact with would otherwise wait
    /// for their deadline: answer them now. Forwards and uncommitted writes may still be
    /// applied (the leader may have them), so their outcome is unknown; reads are refused.
    fn fail_waits_when_cut_off(&mut self, now: Millis) {
        if !self.cut_off(now) {
            return;
        }
        let forwards = std::mem::take(&mut self.forwards);
        for (_, (request_id, _, _)) in forwards {
            self.emit(ReplicaEffect::Reply {
                request_id,
                reply: ClientReply::Failed(ClientError::LeadershipLost),
            });
        }
        let leader = self.last_leader.clone();
        let reads = std::mem::take(&mut self.pending_reads);
        for (_, read) in reads {
            let reply = ClientReply::Failed(ClientError::NoQuorum {
                leader: leader.clone(),
            });
            self.reply(read.origin, reply);
        }
        let writes = std::mem::take(&mut self.pending_writes);
        for (index, pending) in writes {
            if pending.consistency == Consistency::Eventual {
                // Answered when appended; kept only so that applying it finds its term.
                self.pending_writes.insert(index, pending);
            } else {
                self.reply(
                    pending.origin,
                    ClientReply::Failed(ClientError::LeadershipLost),
                );
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn reply(&mut self, origin: Origin, reply: ClientReply) {
        match origin {
            Origin::Local(request_id) => self.emit(ReplicaEffect::Reply { request_id, reply }),
            Origin::Remote(node, forward_id) => self.emit(ReplicaEffect::Send {
                to: node,
                rpc: Rpc::ForwardReply { forward_id, reply },
            }),
        }
    }

    /// Queue an outgoing effect of the replica's own (an answer, a forward) behind every
    /// write issued before it.
    fn emit(&mut self, effect: ReplicaEffect) {
        let after = self.engine.durable_barrier();
        self.emit_after(after, effect);
    }

    /// Queue an outgoing effect with its barrier: the gate releases it once that holds
    /// (the engine decides a message's barrier, see [`Effect::Send`]). While stalled, only
    /// what promises nothing about this node's disk leaves.
    fn emit_after(&mut self, after: After, effect: ReplicaEffect) {
        if self.stall.is_some() {
            if after == After::Now || Self::leaves_while_stalled(&effect) {
                self.outputs.push(effect);
            }
            return;
        }
        self.gate.pass(after, effect, &mut self.outputs);
    }

    /// The store failed: stall on an IO error (a full disk, `EIO`), stop on anything else.
    fn fail(&mut self, error: StorageError) {
        match classify(&error) {
            Some(kind) => self.stall_on(kind, error.to_string()),
            None => self.stop(error),
        }
    }

    /// Stop for good: the store cannot be trusted. Every request waiting here is answered
    /// [`ClientError::Fatal`] at once (outcome unknown: a write may have been appended, and
    /// the other nodes may commit it), then [`ReplicaEffect::Fatal`] tells the driver.
    fn stop(&mut self, error: StorageError) {
        let failure = StorageFailure::from(&error);
        tracing::error!(%failure, class = failure.class(), "storage failed; replica stopping");
        self.fatal = Some((failure.clone(), Arc::new(error)));
        // What waited for a sync promised something about this disk: it never leaves.
        self.gate.clear();
        self.fail_waits_on_stop(&failure);
        self.outputs.push(ReplicaEffect::Fatal(failure));
    }

    /// Answer every request the core holds with [`ClientError::Fatal`], straight to the
    /// outputs: the answer rests on nothing this node's disk holds.
    fn fail_waits_on_stop(&mut self, failure: &StorageFailure) {
        let mut origins: Vec<Origin> = Vec::new();
        for (_, pending) in std::mem::take(&mut self.pending_writes) {
            // An EVENTUAL write was answered when it was appended (if that answer was still
            // held for a sync, the driver fails its caller as stopped).
            if pending.consistency != Consistency::Eventual {
                origins.push(pending.origin);
            }
        }
        origins.extend(
            std::mem::take(&mut self.strong_waits)
                .into_values()
                .map(|wait| wait.origin),
        );
        origins.extend(
            std::mem::take(&mut self.pending_reads)
                .into_values()
                .map(|read| read.origin),
        );
        origins.extend(
            std::mem::take(&mut self.apply.queries)
                .into_values()
                .map(|query| query.origin),
        );
        self.ready_reads.clear();
        origins.extend(
            std::mem::take(&mut self.forwards)
                .into_values()
                .map(|(request_id, _, _)| Origin::Local(request_id)),
        );
        for origin in origins {
            let reply = ClientReply::Failed(ClientError::Fatal(failure.clone()));
            let effect = match origin {
                Origin::Local(request_id) => ReplicaEffect::Reply { request_id, reply },
                Origin::Remote(to, forward_id) => ReplicaEffect::Send {
                    to,
                    rpc: Rpc::ForwardReply { forward_id, reply },
                },
            };
            self.outputs.push(effect);
        }
    }

    // ----- Engine effects -----

    fn after_input(&mut self, now: Millis) {
        self.last_now = self.last_now.max(now);
        self.propose_checkpoint_if_due(now);
        self.process_engine_effects(now);
        if self.settings.sync_policy == SyncPolicy::EveryInput {
            self.flush();
        }
        self.request_sync();
    }

    /// Ask the driver to sync the writes issued since the last request (one request per
    /// input that wrote; the driver merges them).
    fn request_sync(&mut self) {
        if self.fatal.is_some() || self.stall.is_some() {
            return;
        }
        let issued = self.engine.persist_issued();
        if issued > self.sync_requested.max(self.gate.durable()) {
            self.sync_requested = issued;
            self.outputs.push(ReplicaEffect::Sync { through: issued });
        }
    }

    fn process_engine_effects(&mut self, now: Millis) {
        let effects = self.engine.drain_effects();
        for effect in effects {
            if self.fatal.is_some() {
                return;
            }
            self.carry_out(now, effect);
        }
        self.complete_strong_writes();
    }

    fn carry_out(&mut self, now: Millis, effect: Effect) {
        match effect {
            Effect::Persist { persist, .. } if self.stall.is_some() => {
                // Resuming writes back the engine's log and hard state; a snapshot received
                // meanwhile cannot be installed (chunks are not taken while stalled).
                if let Persist::InstallSnapshot(_) = persist {
                    self.stop(StorageError::Misuse(
                        "a snapshot was to be installed while storage is failed".to_string(),
                    ));
                }
            }
            Effect::Persist { persist, .. } => {
                // Handed to the store in id order; durable once a requested sync covers it.
                let result = match persist {
                    Persist::HardState(hard_state) => self.store.save_hard_state(&hard_state),
                    Persist::TruncateFrom(index) => self.store.truncate_from(index),
                    Persist::Append(entries) => self.store.append_owned(entries),
                    Persist::InstallSnapshot(meta) => self.install_received_snapshot(&meta),
                };
                if let Err(error) = result {
                    self.fail(error);
                }
            }
            Effect::Send {
                to,
                message: Message::InstallSnapshot { term, meta },
                ..
            } => self.start_snapshot_transfer(now, to, term, meta),
            Effect::Send { to, message, after } => self.emit_after(
                after,
                ReplicaEffect::Send {
                    to,
                    rpc: Rpc::Raft(message),
                },
            ),
            Effect::SendStored {
                to,
                term,
                prev_log_index,
                prev_log_term,
                from,
                count,
                bytes_max,
                leader_commit,
                read_round,
            } => match self.store.read_entries(from, count, bytes_max) {
                // A leader's append, of entries durable already: it leaves at once.
                Ok(entries) if !entries.is_empty() => self.emit_after(
                    After::Now,
                    ReplicaEffect::Send {
                        to,
                        rpc: Rpc::Raft(Message::AppendRequest {
                            term,
                            prev_log_index,
                            prev_log_term,
                            entries,
                            leader_commit,
                            read_round,
                        }),
                    },
                ),
                // Compacted by a snapshot taken meanwhile: like a lost message, the
                // follower's silence sends the leader back to probing, then to the snapshot.
                Ok(_) | Err(StorageError::Misuse(_)) => {
                    tracing::debug!(peer = %to, from = %from, "entries to send are no longer stored; not sent");
                }
                Err(error) => self.fail(error),
            },
            Effect::SetTimer {
                kind,
                generation,
                after_ms,
            } => self.outputs.push(ReplicaEffect::SetTimer {
                timer: ReplicaTimer::Engine(kind, generation),
                after_ms,
            }),
            Effect::Apply(entries) => self.hand_out_entries(entries),
            Effect::RestoreSnapshot(meta) => {
                // The worker replaces its state once every task handed out before has run;
                // `on_apply_done` then tells the engine it is applied.
                if let Err(error) = self.hand_out_restore(meta.last_index) {
                    self.fail(error);
                    return;
                }
                // Writes this node proposed at or below the snapshot have an unknown fate.
                let covered: Vec<LogIndex> = self
                    .pending_writes
                    .range(..=meta.last_index)
                    .map(|(index, _)| *index)
                    .collect();
                for index in covered {
                    if let Some(pending) = self.pending_writes.remove(&index) {
                        self.reply(
                            pending.origin,
                            ClientReply::Failed(ClientError::LeadershipLost),
                        );
                    }
                }
                self.serve_ready_reads();
            }
            Effect::RoleChanged { role, term, leader } => {
                if leader.is_some() {
                    self.last_leader = leader.clone();
                }
                self.leading_since = (role == Role::Leader).then_some(now);
                if role != Role::Leader {
                    self.sender.stop_all();
                    self.monitor.on_leadership_lost();
                }
                self.fail_forwards_not_to(leader.as_ref());
                self.outputs
                    .push(ReplicaEffect::RoleChanged { role, term, leader });
            }
            Effect::ReadReady { read_id, index } => {
                self.ready_reads.push((index, read_id));
                self.serve_ready_reads();
            }
            Effect::ReadFailed { read_id, leader } => {
                if let Some(read) = self.pending_reads.remove(&read_id) {
                    self.reply(
                        read.origin,
                        ClientReply::Failed(ClientError::NotLeader { leader }),
                    );
                }
            }
        }
    }

    fn complete_strong_writes(&mut self) {
        if self.strong_waits.is_empty() || !self.engine.is_leader() {
            return;
        }
        let everywhere = self.engine.voters_applied_index();
        let done: Vec<LogIndex> = self
            .strong_waits
            .range(..=everywhere)
            .map(|(index, _)| *index)
            .collect();
        for index in done {
            if let Some(wait) = self.strong_waits.remove(&index) {
                self.reply(
                    wait.origin,
                    ClientReply::Written {
                        index,
                        outcome: wait.outcome,
                    },
                );
            }
        }
    }

    fn expire(&mut self, now: Millis) {
        for (_, pending) in take_expired(&mut self.pending_writes, now, |pending| pending.deadline)
        {
            // An EVENTUAL write was answered when it was appended.
            if pending.consistency != Consistency::Eventual {
                self.reply(pending.origin, ClientReply::Failed(ClientError::Timeout));
            }
        }
        for (index, wait) in take_expired(&mut self.strong_waits, now, |wait| wait.deadline) {
            let reply = ClientReply::Failed(ClientError::NotAppliedEverywhere { index });
            self.reply(wait.origin, reply);
        }
        for (_, read) in take_expired(&mut self.pending_reads, now, |read| read.deadline) {
            self.reply(read.origin, ClientReply::Failed(ClientError::Timeout));
        }
        // A query the worker has not answered by its deadline: its answer is dropped.
        for (_, query) in take_expired(&mut self.apply.queries, now, |query| query.deadline) {
            self.reply(query.origin, ClientReply::Failed(ClientError::Timeout));
        }
        for (_, (request_id, _, _)) in take_expired(&mut self.forwards, now, |forward| forward.1) {
            self.emit(ReplicaEffect::Reply {
                request_id,
                reply: ClientReply::Failed(ClientError::Timeout),
            });
        }
    }

    /// Requests forwarded to a node that no longer leads (it crashed, or lost an election)
    /// may never be answered: fail them now as `LeadershipLost` (outcome unknown, retryable)
    /// instead of at their deadline, so the client retries on the new leader at once. A retry
    /// carries the same session and sequence, so a write the old leader did apply is not
    /// applied twice.
    fn fail_forwards_not_to(&mut self, leader: Option<&NodeId>) {
        let stale: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, (_, _, asked))| Some(asked) != leader)
            .map(|(forward_id, _)| *forward_id)
            .collect();
        for forward_id in stale {
            if let Some((request_id, _, _)) = self.forwards.remove(&forward_id) {
                self.emit(ReplicaEffect::Reply {
                    request_id,
                    reply: ClientReply::Failed(ClientError::LeadershipLost),
                });
            }
        }
    }
}

/// Remove and return the entries of `waiting` whose deadline has passed, in key order.
fn take_expired<K: Ord + Copy, V>(
    waiting: &mut BTreeMap<K, V>,
    now: Millis,
    deadline: impl Fn(&V) -> Millis,
) -> Vec<(K, V)> {
    let expired: Vec<K> = waiting
        .iter()
        .filter(|(_, value)| deadline(value) <= now)
        .map(|(key, _)| *key)
        .collect();
    expired
        .into_iter()
        .filter_map(|key| waiting.remove(&key).map(|value| (key, value)))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Issue 12, item 11: a replica cut off from the majority answers at once, and says
    //! whether a write may have been applied.

    use super::*;
    use crate::engine::EngineSettings;
    use crate::membership::VoterSet;
    use crate::storage::memory::{MemoryDisk, MemoryStore};
    use ha_core::codec;

    const ELECTION_TIMEOUT_MAX_MS: u64 = 300;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("valid id")
    }

    /// `n1` of a three-voter cluster {n1, n2, n3}, bootstrapped, that has heard nobody.
    fn replica() -> ReplicaCore<(), MemoryStore> {
        let mut engine = EngineSettings::for_test(id("n1"));
        engine.election_timeout_max_ms = ELECTION_TIMEOUT_MAX_MS;
        let settings = ReplicaSettings {
            engine,
            sync_policy: SyncPolicy::EveryInput,
            ..ReplicaSettings::for_test(id("n1"))
        };
        let store = MemoryStore::open(MemoryDisk::new());
        let mut core = ReplicaCore::new(settings, (), store, Millis(0), 7).expect("starts");
        let voters = VoterSet::with_voters([id("n1"), id("n2"), id("n3")]);
        assert!(core.on_bootstrap(Millis(0), voters));
        core.drain_effects();
        core
    }

    fn write(sequence: u64) -> ClientRequest {
        ClientRequest::Write(WriteRequest {
            session: ha_core::SessionId(1),
            sequence,
            lowest_unanswered: sequence,
            command: codec::encode("command", &(), 16).expect("encodes"),
            consistency: Consistency::Quorum,
        })
    }

    fn read(consistency: Consistency) -> ClientRequest {
        ClientRequest::Read(ReadRequest {
            query: codec::encode("query", &(), 16).expect("encodes"),
            consistency,
        })
    }

    fn replies(effects: &[ReplicaEffect]) -> Vec<(u64, ClientReply)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                ReplicaEffect::Reply { request_id, reply } => Some((*request_id, reply.clone())),
                _ => None,
            })
            .collect()
    }

    fn forwards(effects: &[ReplicaEffect]) -> usize {
        effects
            .iter()
            .filter(|effect| {
                matches!(
                    effect,
                    ReplicaEffect::Send {
                        rpc: Rpc::Forward { .. },
                        ..
                    }
                )
            })
            .count()
    }

    /// A heartbeat from `n2` as leader of term 1.
    fn heartbeat(core: &mut ReplicaCore<(), MemoryStore>, now: Millis) {
        let message = Message::AppendRequest {
            term: Term(1),
            prev_log_index: LogIndex(1),
            prev_log_term: Term(0),
            entries: Vec::new(),
            leader_commit: LogIndex(1),
            read_round: 0,
        };
        core.on_rpc(now, id("n2"), Rpc::Raft(message));
        core.drain_effects();
    }

    fn no_quorum(leader: Option<&str>) -> ClientReply {
        ClientReply::Failed(ClientError::NoQuorum {
            leader: leader.map(id),
        })
    }

    #[test]
    fn a_follower_without_a_leader_refuses_at_once_and_forwards_nothing() {
        let mut core = replica();
        let now = Millis(5);
        core.submit(now, 1, write(1), now + 5_000);
        core.submit(now, 2, read(Consistency::Strong), now + 5_000);
        core.submit(now, 3, read(Consistency::Quorum), now + 5_000);
        core.submit(now, 4, read(Consistency::Eventual), now + 5_000);
        let effects = core.drain_effects();
        assert_eq!(forwards(&effects), 0, "{effects:?}");
        let answers = replies(&effects);
        assert_eq!(answers.len(), 4, "{effects:?}");
        for (request_id, reply) in &answers[..3] {
            assert_eq!(*reply, no_quorum(None), "request {request_id}");
        }
        assert!(
            matches!(answers[3], (4, ClientReply::Read { .. })),
            "an EVENTUAL read is served locally: {answers:?}"
        );
    }

    #[test]
    fn a_follower_that_stops_hearing_its_leader_fails_forwards_as_unknown_then_refuses() {
        let mut core = replica();
        heartbeat(&mut core, Millis(10));
        core.submit(Millis(20), 1, write(1), Millis(5_000));
        let effects = core.drain_effects();
        assert_eq!(forwards(&effects), 1, "forwarded to n2: {effects:?}");
        assert!(replies(&effects).is_empty());

        // Within the election timeout the forward waits for its answer.
        core.on_timer(Millis(200), ReplicaTimer::Housekeeping);
        assert!(replies(&core.drain_effects()).is_empty());
        // The leader has not been heard from for an election timeout: the forward may have
        // reached it, so its outcome is unknown; it is answered now, not at the deadline.
        let silent = Millis(10 + ELECTION_TIMEOUT_MAX_MS);
        core.on_timer(silent, ReplicaTimer::Housekeeping);
        let answers = replies(&core.drain_effects());
        assert_eq!(
            answers,
            vec![(1, ClientReply::Failed(ClientError::LeadershipLost))]
        );
        assert_eq!(
            ClientError::LeadershipLost.fate(),
            crate::replica::WriteFate::Unknown
        );

        // New requests are refused at once with the last known leader.
        core.submit(silent + 1, 2, write(2), Millis(5_000));
        let effects = core.drain_effects();
        assert_eq!(forwards(&effects), 0);
        assert_eq!(replies(&effects), vec![(2, no_quorum(Some("n2")))]);
        // Hearing the leader again ends it.
        heartbeat(&mut core, silent + 2);
        core.submit(silent + 3, 3, write(3), Millis(5_000));
        assert_eq!(forwards(&core.drain_effects()), 1);
    }

    #[test]
    fn a_leader_cut_off_from_its_majority_fails_waits_and_refuses() {
        let mut core = replica();
        assert!(core.on_campaign(Millis(10)));
        core.drain_effects();
        let vote = Message::VoteResponse {
            term: Term(1),
            granted: true,
        };
        core.on_rpc(Millis(12), id("n2"), Rpc::Raft(vote));
        core.drain_effects();
        assert!(core.engine().is_leader());

        // A new leader has heard nobody yet: it is not counted as cut off at once.
        core.submit(Millis(13), 1, write(1), Millis(5_000));
        core.submit(Millis(13), 2, read(Consistency::Strong), Millis(5_000));
        assert!(replies(&core.drain_effects()).is_empty(), "both wait");

        // Nobody answers for an election timeout: the write may still commit (its appends
        // left), so it is unknown; the read is refused; later requests are refused at once.
        let silent = Millis(12 + ELECTION_TIMEOUT_MAX_MS);
        core.on_timer(silent, ReplicaTimer::Housekeeping);
        let mut answers = replies(&core.drain_effects());
        answers.sort_by_key(|(request_id, _)| *request_id);
        assert_eq!(
            answers,
            vec![
                (1, ClientReply::Failed(ClientError::LeadershipLost)),
                (2, no_quorum(Some("n1"))),
            ]
        );
        core.submit(silent + 1, 3, write(2), Millis(5_000));
        assert_eq!(
            replies(&core.drain_effects()),
            vec![(3, no_quorum(Some("n1")))]
        );
    }
}
