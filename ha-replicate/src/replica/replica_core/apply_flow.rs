//! The host's state machine in the replica (issue 17, item 2): committed entries, queries,
//! copies and restores are handed to the [`ApplyWorker`] as [`ApplyTask`]s, and what it did
//! comes back through [`ReplicaCore::on_apply_done`]. The core never calls the host itself; it
//! keeps the applied index and failover history the worker reported.
//!
//! Three modes, one code path for the outcomes:
//! - inline (the default): the core holds the worker and runs each task as it hands it out,
//!   so the outcome is taken within the same input (unit tests, most simulations);
//! - deferred: the core holds the worker but hands tasks out as [`ReplicaEffect::Apply`]; the
//!   simulator runs them later with [`ReplicaCore::run_apply_task`] (a slow host);
//! - detached: the driver took the worker ([`ReplicaCore::detach_apply_worker`]) and runs the
//!   tasks on its apply thread, so a slow `apply` cannot delay heartbeats, votes or appends.
//!
//! Bounds (what stays in memory while the host is slow): at most
//! [`APPLY_AHEAD_ENTRIES_MAX`] entries are handed out and not yet reported applied (the engine
//! keeps the rest of the committed log, as it does for any lagging node); at most
//! [`APPLY_QUERIES_MAX`] queries wait on the worker (more are refused with `Busy`); a leader
//! refuses new writes with `Busy` while [`APPLY_LAG_ENTRIES_MAX`] committed entries wait to be
//! applied, which bounds how far its own commit runs ahead of its state machine.

use std::collections::BTreeMap;

use ha_core::{Consistency, LogIndex, Millis, StateMachine};

use super::{Origin, QueryWait, ReplicaCore, ReplicaEffect, StrongWait};
use crate::entry::Entry;
use crate::replica::applier::AppliedSnapshot;
use crate::replica::apply_worker::{
    AppliedCommand, ApplyDone, ApplyTask, ApplyWork, ApplyWorker, CapturePurpose, DoneKind,
};
use crate::replica::client::{ClientError, ClientReply};
use crate::replica::failover_record::FailoverRecord;
use crate::replica::reply_route::{ReplyRoute, RoutedReply, applied_outcome};
use crate::replica::state_export::{ExportError, ExportedSnapshot};
use crate::storage::{LogStore, StorageError};

#[cfg(test)]
#[path = "reply_route_tests.rs"]
mod reply_route_tests;

/// Most entries handed to a deferred or detached worker and not yet reported applied.
pub const APPLY_AHEAD_ENTRIES_MAX: u64 = 4_096;
/// Most queries waiting for the worker's answer; more are refused with `Busy`.
pub const APPLY_QUERIES_MAX: usize = 65_536;
/// A leader refuses new writes with `Busy` while this many committed entries wait to be
/// applied on it.
pub const APPLY_LAG_ENTRIES_MAX: u64 = 65_536;

/// How apply tasks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ApplyMode {
    /// The core holds the worker and runs each task at once.
    Inline,
    /// The core holds the worker; tasks go out as effects and come back through
    /// `run_apply_task`.
    Deferred,
    /// The driver holds the worker.
    Detached,
}

/// What the core knows of the worker's progress, as the worker reported it.
#[derive(Debug, Default)]
pub(super) struct ApplyProgress {
    /// Every entry up to here is applied.
    pub(super) applied_index: LogIndex,
    /// Every entry up to here (or a snapshot ending here) is handed to the worker: a task
    /// handed out now runs on a state at or after it.
    pub(super) handed_out: LogIndex,
    /// The failover history of the applied state.
    pub(super) history: Vec<FailoverRecord>,
    /// Queries handed out, by query id.
    pub(super) queries: BTreeMap<u64, QueryWait>,
    next_query_id: u64,
    /// A copy for this node's own snapshot is being taken.
    pub(super) capture_requested: bool,
    /// Exports answered, for the driver to take.
    exports: Vec<(u64, Result<ExportedSnapshot, ExportError>)>,
    /// Tasks handed out and not yet done.
    pub(super) tasks_in_flight: usize,
    /// The last entry handed out with a pending write the core answers itself once it is
    /// applied (not routed to the worker, not EVENTUAL): until the worker reports it, the
    /// core waits for every report ([`ReplicaCore::waits_for_apply_reports`]).
    answers_after_apply_through: LogIndex,
}

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Take the apply worker out, to run its tasks on a thread of the driver's
    /// ([`ReplicaEffect::Apply`], then [`on_apply_done`](Self::on_apply_done)). `None` on a
    /// witness (it applies only metadata, which costs nothing, so its core keeps the worker)
    /// or when it was taken already. Afterwards [`applier`](Self::applier) is gone.
    pub fn detach_apply_worker(&mut self) -> Option<ApplyWorker<S>> {
        if self.settings.witness {
            return None;
        }
        let worker = self.worker.take()?;
        self.apply_mode = ApplyMode::Detached;
        self.engine
            .set_apply_ahead_entries_max(Some(APPLY_AHEAD_ENTRIES_MAX));
        Some(worker)
    }

    /// Hand apply tasks out as [`ReplicaEffect::Apply`] and run each only when
    /// [`run_apply_task`](Self::run_apply_task) is called (the simulator's slow host). No
    /// effect on a witness or once the worker is detached.
    pub fn defer_apply(&mut self) {
        if self.settings.witness || self.apply_mode != ApplyMode::Inline {
            return;
        }
        self.apply_mode = ApplyMode::Deferred;
        self.engine
            .set_apply_ahead_entries_max(Some(APPLY_AHEAD_ENTRIES_MAX));
    }

    /// Run a task handed out in deferred mode with the worker the core holds, and take its
    /// outcome as [`on_apply_done`](Self::on_apply_done) would. Does nothing once the worker
    /// is detached or when the task already ran.
    pub fn run_apply_task(&mut self, now: Millis, task: &ApplyTask) {
        let Some(done) = self.worker.as_mut().and_then(|worker| worker.run(task)) else {
            return;
        };
        self.on_apply_done(now, done);
    }

    /// A task handed out as [`ReplicaEffect::Apply`] ran: answer what waited for it (writes,
    /// reads, exports), tell the engine what is applied, and hand out more.
    pub fn on_apply_done(&mut self, now: Millis, done: ApplyDone) {
        if self.fatal.is_some() {
            return;
        }
        self.take_done(now, done);
        self.after_input(now);
    }

    /// Whether the core acts on every report of the apply worker as soon as it comes: it
    /// answers a write itself once its entry is applied (a STRONG, forwarded or not yet
    /// durable write), or holds committed entries back until the worker catches up, or
    /// refuses writes because the worker lags. Otherwise a report of applied entries alone
    /// can wait for the core's next input (the driver then does not wake for it:
    /// `driver/thread_reports.rs`); answers, copies and digests are always reported at once.
    pub fn waits_for_apply_reports(&self) -> bool {
        self.apply.answers_after_apply_through > self.apply.applied_index
            || self.engine.commit_index() > self.apply.handed_out
            || self.apply_lags()
    }

    /// The last index the state machine has applied, as the apply worker reported it.
    pub fn applied_index(&self) -> LogIndex {
        self.apply.applied_index
    }

    /// How many entries this node holds that its state machine has not applied yet (its
    /// last log index minus its applied index): what a slow host has queued. A follower's is
    /// bounded by the leader's flow control
    /// ([`EngineSettings::follower_backlog_entries_max`](crate::engine::EngineSettings)) plus
    /// [`APPLY_AHEAD_ENTRIES_MAX`] handed out.
    pub fn apply_backlog(&self) -> u64 {
        self.engine
            .last_index()
            .0
            .saturating_sub(self.apply.applied_index.0)
    }

    /// The failover history of the applied state, oldest first.
    pub fn failover_history(&self) -> &[FailoverRecord] {
        &self.apply.history
    }

    /// Apply tasks handed out and not yet done.
    pub fn apply_tasks_in_flight(&self) -> usize {
        self.apply.tasks_in_flight
    }

    /// Ask for a point-in-time copy of the applied state as it is once every task handed
    /// out so far has run; the answer comes from [`take_exported`](Self::take_exported) with
    /// `export_id`.
    pub fn request_export(&mut self, export_id: u64) {
        let refused = if self.settings.witness {
            Some(ExportError::Witness)
        } else if self.fatal.is_some() {
            Some(ExportError::Stopped)
        } else if self.apply.handed_out == LogIndex(0) {
            Some(ExportError::NothingApplied)
        } else {
            None
        };
        match refused {
            Some(error) => self.apply.exports.push((export_id, Err(error))),
            None => self.hand_out(ApplyWork::Capture(CapturePurpose::Export(export_id))),
        }
    }

    /// The exports answered since the last call.
    pub fn take_exported(&mut self) -> Vec<(u64, Result<ExportedSnapshot, ExportError>)> {
        std::mem::take(&mut self.apply.exports)
    }

    /// Copy the worker's applied index and history (at start, after the first restore).
    pub(super) fn sync_apply_progress(&mut self) {
        if let Some(worker) = &self.worker {
            let applier = worker.applier();
            self.apply.applied_index = applier.applied_index();
            self.apply.handed_out = self.apply.handed_out.max(applier.applied_index());
            self.apply.history = applier.history().cloned().collect();
        }
    }

    /// Committed entries from the engine, with the routes of the QUORUM writes of local
    /// callers among them whose entry is durable on this node already: the worker answers
    /// those itself once applied (`replica/reply_route.rs`). A write committed by the other
    /// voters before this node's own sync is answered the old way, through the durability
    /// gate, so every answer still waits for this node's own copy (HAZARDS.md, "A lost
    /// acknowledged write").
    pub(super) fn hand_out_entries(&mut self, entries: Vec<Entry>) {
        let (Some(first), Some(last)) = (
            entries.first().map(|entry| entry.index),
            entries.last().map(|entry| entry.index),
        ) else {
            return;
        };
        self.apply.handed_out = self.apply.handed_out.max(last);
        let generation = self.monitor.generation();
        // The entries are consecutive, so every pending write in that range is one of them.
        let routed_last = last.min(self.engine.durable_index());
        let mut routes = Vec::new();
        for (index, pending) in self.pending_writes.range(first..=last) {
            match pending.origin {
                Origin::Local(request_id)
                    if pending.consistency == Consistency::Quorum && *index <= routed_last =>
                {
                    routes.push(ReplyRoute {
                        request_id,
                        index: *index,
                        term: pending.term,
                    });
                }
                // Answered when it was appended.
                _ if pending.consistency == Consistency::Eventual => {}
                _ => self.apply.answers_after_apply_through = last,
            }
        }
        let work = ApplyWork::Entries {
            entries,
            generation,
        };
        self.hand_out_task(ApplyTask::with_routes(work, routes));
        self.serve_ready_reads();
    }

    /// The store's current snapshot (just installed from the leader) replaces the applied
    /// state once the tasks before it have run.
    pub(super) fn hand_out_restore(&mut self, last_index: LogIndex) -> Result<(), StorageError> {
        let Some((_, _, reader)) = self.store.snapshot_reader()? else {
            return Err(StorageError::Corrupt {
                path: "snapshot from leader".into(),
                offset: 0,
                reason: "the store holds no snapshot to restore".to_string(),
            });
        };
        self.apply.handed_out = self.apply.handed_out.max(last_index);
        self.hand_out(ApplyWork::Restore { last_index, reader });
        Ok(())
    }

    /// Take a copy for this node's own snapshot.
    pub(super) fn hand_out_capture(&mut self) {
        self.apply.capture_requested = true;
        self.hand_out(ApplyWork::Capture(CapturePurpose::OwnSnapshot));
    }

    /// A query, answered from the state once every task handed out before it has run.
    pub(super) fn hand_out_query(&mut self, origin: Origin, query: Vec<u8>, deadline: Millis) {
        // Counted in tasks too: a query that timed out still holds its place in the queue.
        if self.apply.queries.len() >= APPLY_QUERIES_MAX
            || self.apply.tasks_in_flight >= APPLY_QUERIES_MAX
        {
            self.reply(origin, ClientReply::Failed(ClientError::Busy));
            return;
        }
        let query_id = self.apply.next_query_id;
        self.apply.next_query_id = self.apply.next_query_id.wrapping_add(1);
        self.apply
            .queries
            .insert(query_id, QueryWait { origin, deadline });
        self.hand_out(ApplyWork::Query { query_id, query });
    }

    /// Linearizable reads whose read index is handed out go to the worker: it answers them
    /// after every entry up to that index.
    pub(super) fn serve_ready_reads(&mut self) {
        let handed_out = self.apply.handed_out;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads)
            .into_iter()
            .partition(|(index, _)| *index <= handed_out);
        self.ready_reads = waiting;
        for (_, read_id) in ready {
            if let Some(read) = self.pending_reads.remove(&read_id) {
                self.hand_out_query(read.origin, read.query, read.deadline);
            }
        }
    }

    /// Whether a leader must refuse a new write: its state machine lags its commit index by
    /// [`APPLY_LAG_ENTRIES_MAX`] entries.
    pub(super) fn apply_lags(&self) -> bool {
        self.engine
            .commit_index()
            .0
            .saturating_sub(self.apply.applied_index.0)
            >= APPLY_LAG_ENTRIES_MAX
    }

    fn hand_out(&mut self, work: ApplyWork) {
        self.hand_out_task(ApplyTask::new(work));
    }

    fn hand_out_task(&mut self, task: ApplyTask) {
        self.apply.tasks_in_flight += 1;
        if self.apply_mode == ApplyMode::Inline {
            let done = self.worker.as_mut().and_then(|worker| worker.run(&task));
            if let Some(done) = done {
                let now = self.last_now;
                self.take_done(now, done);
            }
        } else {
            // Tasks are not promises to a peer: nothing holds them back, and they keep their
            // order among themselves.
            self.outputs.push(ReplicaEffect::Apply(task));
        }
    }

    fn take_done(&mut self, now: Millis, done: ApplyDone) {
        self.apply.tasks_in_flight = self.apply.tasks_in_flight.saturating_sub(1);
        match done.0 {
            DoneKind::Applied {
                last,
                commands,
                digests,
                history,
                routed,
            } => {
                self.take_routed(routed);
                self.on_applied(now, last, commands, digests, history);
            }
            DoneKind::Answered {
                query_id,
                applied,
                result,
            } => {
                if let Some(wait) = self.apply.queries.remove(&query_id) {
                    let reply = match result {
                        Ok(response) => ClientReply::Read {
                            index: applied,
                            response,
                        },
                        Err(error) => ClientReply::Failed(ClientError::InvalidQuery(error)),
                    };
                    self.reply(wait.origin, reply);
                }
            }
            DoneKind::Captured {
                purpose: CapturePurpose::OwnSnapshot,
                applied,
                source,
            } => self.on_snapshot_captured(applied, source),
            DoneKind::Captured {
                purpose: CapturePurpose::Export(export_id),
                applied,
                source,
            } => {
                let result = source
                    .map_err(ExportError::StateMachine)
                    .and_then(|source| {
                        let meta = ExportedSnapshot::meta_at(&self.engine, applied)?;
                        Ok(ExportedSnapshot::from_parts(meta, source))
                    });
                self.apply.exports.push((export_id, result));
            }
            DoneKind::Restored { last_index, result } => match result {
                Ok((applied, history)) => {
                    self.apply.applied_index = applied;
                    self.apply.history = history;
                    self.engine.on_applied(now, last_index);
                    self.on_state_replaced(now);
                    self.serve_ready_reads();
                }
                Err(reason) => self.fail(StorageError::Corrupt {
                    path: "snapshot from leader".into(),
                    offset: 0,
                    reason,
                }),
            },
        }
    }

    /// The worker answered these writes. Each still pending is done; an answer nobody
    /// delivered yet (the core runs its worker itself) leaves now, as the driver's apply
    /// thread sends it: at once, not behind the durability gate, for it rests only on the
    /// entry being committed (durable on a majority), durable here (checked at hand-out) and
    /// applied. A write the core answered
    /// otherwise meanwhile (its deadline, a lost quorum, a snapshot from the leader) keeps
    /// that answer: the caller gets whichever came first.
    fn take_routed(&mut self, routed: Vec<RoutedReply>) {
        for RoutedReply { route, reply } in routed {
            let still_pending = self
                .pending_writes
                .get(&route.index)
                .is_some_and(|pending| pending.origin == Origin::Local(route.request_id));
            if !still_pending {
                continue;
            }
            self.pending_writes.remove(&route.index);
            if let Some(reply) = reply {
                self.outputs.push(ReplicaEffect::Reply {
                    request_id: route.request_id,
                    reply,
                });
            }
        }
    }

    fn on_applied(
        &mut self,
        now: Millis,
        last: LogIndex,
        commands: Vec<AppliedCommand>,
        digests: Vec<crate::replica::digest_job::DigestJob>,
        history: Option<Vec<FailoverRecord>>,
    ) {
        self.apply.applied_index = last;
        if let Some(history) = history {
            self.apply.history = history;
        }
        let mut outcomes: BTreeMap<LogIndex, AppliedCommand> = commands
            .into_iter()
            .map(|command| (command.index, command))
            .collect();
        let answered: Vec<LogIndex> = self
            .pending_writes
            .range(..=last)
            .map(|(index, _)| *index)
            .collect();
        let mut strong_waiting = false;
        for index in answered {
            let Some(pending) = self.pending_writes.remove(&index) else {
                continue;
            };
            let command = outcomes.remove(&index);
            let outcome = match applied_outcome(pending.term, command.as_ref()) {
                Some(outcome) => outcome,
                // Another leader's entry took the index (or it was covered by a snapshot):
                // this write's fate is unknown here. An EVENTUAL write was answered already.
                None => {
                    if pending.consistency != Consistency::Eventual {
                        self.reply(
                            pending.origin,
                            ClientReply::Failed(ClientError::LeadershipLost),
                        );
                    }
                    continue;
                }
            };
            match pending.consistency {
                Consistency::Eventual => {}
                Consistency::Quorum => {
                    self.reply(pending.origin, ClientReply::Written { index, outcome })
                }
                Consistency::Strong => {
                    self.strong_waits.insert(
                        index,
                        StrongWait {
                            origin: pending.origin,
                            outcome,
                            deadline: pending.deadline,
                        },
                    );
                    strong_waiting = true;
                }
            }
        }
        if strong_waiting {
            // A STRONG write waits for every voter to apply it: tell them it committed now,
            // not after the commit notice's delay (once for the batch: the notices carry the
            // commit index, which covers every write in it).
            self.engine.send_commit_notices();
        }
        self.engine.on_applied(now, last);
        // After the engine knows the entries applied: a checkpoint's copy may become a
        // snapshot, which must cover applied entries only.
        for job in digests {
            self.monitor.on_copy_taken(job.index());
            self.hand_out_checkpoint_copy(job);
        }
        self.serve_ready_reads();
    }

    /// The copy for this node's own snapshot: write it off the apply path, unless the log
    /// position is no longer known (a snapshot from the leader replaced the log meanwhile).
    fn on_snapshot_captured(&mut self, applied: LogIndex, source: Result<AppliedSnapshot, String>) {
        self.apply.capture_requested = false;
        if self.fatal.is_some() || self.stall.is_some() {
            return;
        }
        let source = match source {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(%error, "snapshot failed; will retry");
                return;
            }
        };
        let Some(meta) = self.engine.snapshot_meta_at(applied) else {
            return;
        };
        self.hand_out_snapshot(meta, source, None);
    }
}
