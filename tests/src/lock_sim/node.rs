//! One simulated lock node: the replica core over `WithLocks<()>`, group commit, a drifting
//! clock, and the leader's lease expiry tracker on a periodic timer.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use ha_core::{Consistency, LogIndex, Millis, NodeId, Term};
use ha_lock::{
    Command, EXPIRY_PROPOSAL_TIMEOUT, LeaseExpiryTracker, LeaseId, LockCommand, LockQuery,
    LockQueryResponse, SessionId, WithLocks,
};
use ha_replicate::engine::{PersistId, Role};
use ha_replicate::replica::{
    ClientReply, ClientRequest, ReplicaCore, ReplicaEffect, ReplicaTimer, Rpc, WriteRequest,
};
use ha_replicate::storage::memory::MemoryStore;

use crate::lock_sim::applied_log::AppliedLog;
use crate::replica::{Directory, global_delay, local_time};
use crate::sim::{SimActor, SimEffect};
use crate::sim_syncs::{SimMutation, SimSyncs, SyncDelays};
use crate::snapshot_writes::{SNAPSHOT_WRITE_MS, SimSnapshotWrites};

/// Request ids the node gives its own expiry proposals have this bit set, so they never
/// collide with the ids the test's clients use.
const INTERNAL_REQUEST_BIT: u64 = 1 << 63;

/// A timer of a simulated lock node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockNodeTimer {
    /// The replica's own timer.
    Replica(ReplicaTimer),
    /// Group commit: sync and release held messages.
    Flush,
    /// Only under [`SimMutation::SendBeforeDurable`]: the harness reports a sync durable at
    /// once, before the disk has made it so.
    ReportedEarly(PersistId),
    /// Run the lease expiry tracker.
    ExpiryTick,
    /// The snapshot being written is done.
    SnapshotWritten,
}

/// What a simulated lock node reports.
#[derive(Clone, Debug, PartialEq)]
pub enum LockNodeOutput {
    /// An answer to a client request submitted on this node.
    Reply {
        /// The request id the test gave.
        request_id: u64,
        /// The answer.
        reply: ClientReply,
    },
    /// A role change.
    Role {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The tracker decided a lease ran out and this node proposed its expiry.
    ExpiryProposed {
        /// The lease.
        lease: LeaseId,
        /// The keep-alive count the tracker saw.
        renewals: u64,
        /// The node's local clock when it decided.
        local_now: Millis,
    },
    /// The answer to one of this node's own expiry proposals.
    ExpiryAnswered {
        /// The answer.
        reply: ClientReply,
    },
    /// Storage failed.
    Fatal(String),
}

/// Everything a node needs at start, besides its core.
pub(crate) struct NodeParts {
    pub(crate) node: usize,
    pub(crate) directory: Rc<Directory>,
    pub(crate) clock_rate_ppm: i64,
    pub(crate) expiry_tick_ms: u64,
    pub(crate) expiry_session: u64,
    pub(crate) applied_log: Rc<RefCell<AppliedLog>>,
    pub(crate) sync_delays: SyncDelays,
    pub(crate) mutation: Option<SimMutation>,
}

/// One simulated lock node: [`ReplicaCore`] over [`WithLocks<()>`] and a [`MemoryStore`],
/// plus the leader's [`LeaseExpiryTracker`].
///
/// Every [`LockClusterOptions::expiry_tick_ms`](crate::lock_sim::LockClusterOptions) of its
/// own (drifting) clock, the node hands the tracker the term it leads in (`None` when it does
/// not lead) and, when leading, the leases of its applied lock table, as the shipped
/// `LeaseKeeper` does, and submits each expiry the tracker returns as a QUORUM write under the
/// node's own session, with the keeper's timeout. After every input it reports the entries it newly applied to
/// the shared [`AppliedLog`], which only observes: nothing in a node reads it.
pub struct SimLockNode {
    core: ReplicaCore<WithLocks<()>, MemoryStore>,
    parts: NodeParts,
    tracker: LeaseExpiryTracker,
    expiry_next_sequence: u64,
    next_internal_request: u64,
    observed_applied: LogIndex,
    /// Syncs asked for, completing after seeded delays.
    syncs: SimSyncs,
    /// The virtual time of the latest input, for the syncs drained after it.
    last_input_at: Millis,
    snapshot_writes: SimSnapshotWrites,
    pending: Vec<SimEffect<LockNodeTimer, LockNodeOutput>>,
}

impl SimLockNode {
    pub(crate) fn new(
        core: ReplicaCore<WithLocks<()>, MemoryStore>,
        parts: NodeParts,
        now: Millis,
    ) -> Self {
        let mut node = Self {
            observed_applied: core.applier().applied_index(),
            core,
            tracker: LeaseExpiryTracker::default(),
            expiry_next_sequence: 1,
            next_internal_request: 1,
            syncs: SimSyncs::new(parts.expiry_session, parts.sync_delays),
            last_input_at: now,
            snapshot_writes: SimSnapshotWrites::default(),
            pending: Vec::new(),
            parts,
        };
        let first_tick = global_delay(node.parts.expiry_tick_ms, node.parts.clock_rate_ppm);
        node.pending.push(SimEffect::Schedule {
            after_ms: first_tick,
            timer: LockNodeTimer::ExpiryTick,
        });
        node.observe_applied(now);
        node
    }

    /// The replica core.
    pub fn core(&self) -> &ReplicaCore<WithLocks<()>, MemoryStore> {
        &self.core
    }

    /// This node's local clock reading at virtual time `now`.
    pub fn local(&self, now: Millis) -> Millis {
        local_time(now, self.parts.clock_rate_ppm)
    }

    /// Submit a client request at virtual time `now`, with a deadline `timeout_ms` later (on
    /// this node's clock).
    pub fn submit(
        &mut self,
        now: Millis,
        request_id: u64,
        request: ClientRequest,
        timeout_ms: u64,
    ) {
        debug_assert_eq!(request_id & INTERNAL_REQUEST_BIT, 0, "reserved request id");
        let local = self.local(now);
        self.core
            .submit(local, request_id, request, local + timeout_ms);
        self.observe_applied(now);
    }

    /// Feed one of the core's named inputs (`on_transfer`, `on_campaign`,
    /// `on_local_health`, `on_peer_info`, ...) at virtual time `now`: `input` gets the core
    /// and this node's local time, and its answer is returned.
    pub fn command<T>(
        &mut self,
        now: Millis,
        input: impl FnOnce(&mut ReplicaCore<WithLocks<()>, MemoryStore>, Millis) -> T,
    ) -> T {
        let local = self.local(now);
        let answer = input(&mut self.core, local);
        self.observe_applied(now);
        answer
    }

    /// Report the entries applied since the last call to the shared log, with `now`.
    fn observe_applied(&mut self, now: Millis) {
        let applied = self.core.applier().applied_index();
        if applied <= self.observed_applied {
            return;
        }
        let mut log = self.parts.applied_log.borrow_mut();
        for index in self.observed_applied.0 + 1..=applied.0 {
            // An entry is missing only when a snapshot from the leader replaced it; the node
            // that applied it first has reported it already.
            if let Some(entry) = self.core.engine().entry(LogIndex(index)) {
                log.record(self.parts.node, now, entry);
            }
        }
        self.observed_applied = applied;
    }

    /// The tracker's turn: what it decides is proposed through the log like any write.
    fn on_expiry_tick(&mut self, now: Millis) {
        let local = self.local(now);
        let engine = self.core.engine();
        let leading = engine.is_leader().then(|| engine.term());
        let leases = if leading.is_some() {
            match self
                .core
                .applier()
                .machine()
                .locks()
                .query(&LockQuery::Leases)
            {
                LockQueryResponse::Leases(leases) => leases,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let timeout_ms = u64::try_from(EXPIRY_PROPOSAL_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        for command in self.tracker.on_tick(local, leading, &leases) {
            if let LockCommand::LeaseExpire { lease, renewals } = &command {
                self.pending
                    .push(SimEffect::Output(LockNodeOutput::ExpiryProposed {
                        lease: *lease,
                        renewals: *renewals,
                        local_now: local,
                    }));
            }
            let Ok(bytes) = postcard::to_allocvec(&Command::<()>::Lock(command)) else {
                continue;
            };
            let request_id = INTERNAL_REQUEST_BIT | self.next_internal_request;
            self.next_internal_request += 1;
            let sequence = self.expiry_next_sequence;
            self.expiry_next_sequence += 1;
            let request = ClientRequest::Write(WriteRequest {
                session: SessionId(self.parts.expiry_session),
                sequence,
                // Proposed once, never retried: nothing older is awaited.
                lowest_unanswered: sequence,
                command: bytes,
                consistency: Consistency::Quorum,
            });
            self.core
                .submit(local, request_id, request, local + timeout_ms);
        }
        let after_ms = global_delay(self.parts.expiry_tick_ms, self.parts.clock_rate_ppm);
        self.pending.push(SimEffect::Schedule {
            after_ms,
            timer: LockNodeTimer::ExpiryTick,
        });
    }
}

impl SimActor for SimLockNode {
    type Timer = LockNodeTimer;
    type Output = LockNodeOutput;

    fn on_message(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        let Some(from) = self.parts.directory.id_at(&from).cloned() else {
            return;
        };
        let Ok(rpc) = postcard::from_bytes::<Rpc>(bytes) else {
            return;
        };
        self.last_input_at = now;
        let local = self.local(now);
        self.core.on_rpc(local, from, rpc);
        self.observe_applied(now);
    }

    fn on_timer(&mut self, now: Millis, timer: LockNodeTimer) {
        self.last_input_at = now;
        match timer {
            LockNodeTimer::Replica(timer) => {
                let local = self.local(now);
                self.core.on_timer(local, timer);
            }
            LockNodeTimer::Flush => {
                if let Some(through) = self.syncs.complete() {
                    let local = self.local(now);
                    self.core.complete_sync(local, through);
                }
            }
            LockNodeTimer::ReportedEarly(through) => {
                let local = self.local(now);
                self.core.on_persisted(local, through);
            }
            LockNodeTimer::ExpiryTick => self.on_expiry_tick(now),
            LockNodeTimer::SnapshotWritten => {
                if let Some(written) = self.snapshot_writes.finish() {
                    let local = self.local(now);
                    self.core.on_snapshot_written(local, written);
                }
            }
        }
        self.observe_applied(now);
    }

    fn drain(&mut self) -> Vec<SimEffect<LockNodeTimer, LockNodeOutput>> {
        let mut effects = std::mem::take(&mut self.pending);
        // Reports the mutation makes before the disk is durable.
        let mut early = Vec::new();
        for effect in self.core.drain_effects() {
            effects.push(match effect {
                ReplicaEffect::Send { to, rpc } => {
                    let Some(addr) = self.parts.directory.addr_of(&to) else {
                        continue;
                    };
                    let Ok(bytes) = postcard::to_allocvec(&rpc) else {
                        continue;
                    };
                    SimEffect::Send { to: addr, bytes }
                }
                ReplicaEffect::SetTimer { timer, after_ms } => SimEffect::Schedule {
                    after_ms: global_delay(after_ms, self.parts.clock_rate_ppm),
                    timer: LockNodeTimer::Replica(timer),
                },
                ReplicaEffect::Reply { request_id, reply }
                    if request_id & INTERNAL_REQUEST_BIT != 0 =>
                {
                    SimEffect::Output(LockNodeOutput::ExpiryAnswered { reply })
                }
                ReplicaEffect::Reply { request_id, reply } => {
                    SimEffect::Output(LockNodeOutput::Reply { request_id, reply })
                }
                ReplicaEffect::RoleChanged { role, term, leader } => {
                    SimEffect::Output(LockNodeOutput::Role { role, term, leader })
                }
                ReplicaEffect::Fatal(failure) => {
                    SimEffect::Output(LockNodeOutput::Fatal(failure.to_string()))
                }
                ReplicaEffect::Sync { through } => {
                    if self.parts.mutation == Some(SimMutation::SendBeforeDurable) {
                        early.push(SimEffect::Schedule {
                            after_ms: 0,
                            timer: LockNodeTimer::ReportedEarly(through),
                        });
                    }
                    SimEffect::Schedule {
                        after_ms: self.syncs.request(self.last_input_at, through),
                        timer: LockNodeTimer::Flush,
                    }
                }
                // Every node is given the same founding voters at start.
                ReplicaEffect::Founded { .. } => continue,
                ReplicaEffect::WriteSnapshot(job) => {
                    self.snapshot_writes.start(&job);
                    SimEffect::Schedule {
                        after_ms: SNAPSHOT_WRITE_MS,
                        timer: LockNodeTimer::SnapshotWritten,
                    }
                }
                // The lock simulation runs with the consistency monitor off (the replica
                // simulation covers it): no digest is ever asked for.
                ReplicaEffect::ComputeDigest(_) => continue,
                // The lock simulation applies inline (the replica simulation covers a slow
                // host): the core runs its apply tasks itself and hands none out.
                ReplicaEffect::Apply(_) => continue,
            });
        }
        effects.append(&mut early);
        effects
    }
}
