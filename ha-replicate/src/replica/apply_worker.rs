//! The host's state machine off the heartbeat path (issue 17, item 2).
//!
//! [`ApplyWorker`] owns the [`Applier`] (the host's state machine, client sessions and the
//! failover history) and runs [`ApplyTask`]s one at a time, in the order the replica handed
//! them out: apply committed entries, answer a query, take a point-in-time copy (a snapshot of
//! this node's own, an export, a consistency digest at a checkpoint), restore a snapshot. It
//! is sans-IO: the tokio driver runs it on a dedicated thread fed by a bounded queue, the
//! simulator runs it inline or after a seeded delay, and each [`ApplyDone`] goes back to the
//! replica as an input ([`ReplicaCore::on_apply_done`](crate::replica::ReplicaCore)).
//!
//! Because tasks run in order, a task sees every entry handed out before it: a query queued
//! after the entries up to a read index is answered from a state at or after that index, and a
//! copy queued after entries up to `i` is of a state at or after `i` (it reports the exact
//! index it was taken at).

use std::io::Read;
use std::sync::{Arc, Mutex};

use ha_core::{LogIndex, StateMachine, Term};

use crate::entry::Entry;
use crate::replica::applier::{AppliedSnapshot, Applier};
use crate::replica::consistency_monitor::ConsistencySettings;
use crate::replica::digest_job::DigestJob;
use crate::replica::failover_record::FailoverRecord;
use crate::replica::reply_route::{ReplyRoute, RoutedReply};
use crate::replica::session::ApplyOutcome;

/// Why a copy of the applied state is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapturePurpose {
    /// This node's own snapshot (log compaction).
    OwnSnapshot,
    /// An export requested by the driver with this id.
    Export(u64),
}

/// One unit of work for the [`ApplyWorker`].
pub(crate) enum ApplyWork {
    /// Apply committed entries, in order; take a digest copy at each consistency checkpoint
    /// (for the monitor's state `generation`).
    Entries {
        entries: Vec<Entry>,
        generation: u64,
    },
    /// Answer a query from the applied state.
    Query { query_id: u64, query: Vec<u8> },
    /// Take a point-in-time copy of everything applied.
    Capture(CapturePurpose),
    /// Replace the applied state with the snapshot `reader` yields (ending at `last_index`).
    Restore {
        last_index: LogIndex,
        reader: Box<dyn Read + Send>,
    },
}

/// A task handed out by the replica ([`ReplicaEffect::Apply`](crate::replica::ReplicaEffect)):
/// run it with [`ApplyWorker::run`] (or [`ReplicaCore::run_apply_task`] while the core holds
/// its worker) and give the result back with
/// [`ReplicaCore::on_apply_done`](crate::replica::ReplicaCore::on_apply_done). Tasks must run
/// in the order they were handed out.
///
/// Clones share the one task: only the first run does the work.
///
/// A task of entries may carry [`ReplyRoute`]s: writes the worker answers itself once their
/// entries are applied ([`ApplyDone::routed_replies_mut`]), so that the thread running it can
/// answer their callers directly (`replica/reply_route.rs`).
///
/// [`ReplicaCore::run_apply_task`]: crate::replica::ReplicaCore::run_apply_task
#[derive(Clone)]
pub struct ApplyTask {
    entries: usize,
    /// Writes answered by this task, in index order; each index is one of its entries.
    routes: Vec<ReplyRoute>,
    work: Arc<Mutex<Option<ApplyWork>>>,
}

impl ApplyTask {
    pub(crate) fn new(work: ApplyWork) -> Self {
        Self::with_routes(work, Vec::new())
    }

    /// A task whose run answers the writes `routes` names (each at an index of its entries).
    pub(crate) fn with_routes(work: ApplyWork, routes: Vec<ReplyRoute>) -> Self {
        let entries = match &work {
            ApplyWork::Entries { entries, .. } => entries.len(),
            _ => 0,
        };
        debug_assert!(
            routes.is_empty() || matches!(work, ApplyWork::Entries { .. }),
            "only a task of entries answers writes"
        );
        Self {
            entries,
            routes,
            work: Arc::new(Mutex::new(Some(work))),
        }
    }

    /// How many log entries the task applies (0 for queries, copies and restores).
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// The writes this task answers once their entries are applied: a driver that runs it on
    /// a thread of its own hands that thread the callers' answer channels for these request
    /// ids.
    pub fn reply_routes(&self) -> &[ReplyRoute] {
        &self.routes
    }

    fn take(&self) -> Option<ApplyWork> {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for ApplyTask {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApplyTask")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ApplyTask {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.work, &other.work)
    }
}

/// The outcome of one applied command entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppliedCommand {
    pub(crate) index: LogIndex,
    pub(crate) term: Term,
    pub(crate) outcome: ApplyOutcome,
}

/// What running an [`ApplyTask`] produced, for
/// [`ReplicaCore::on_apply_done`](crate::replica::ReplicaCore::on_apply_done).
pub struct ApplyDone(pub(crate) DoneKind);

impl ApplyDone {
    /// The answers to the task's routed writes ([`ApplyTask::reply_routes`]), in index order.
    /// Whoever delivers an answer takes it out of its [`RoutedReply::reply`]; the core emits
    /// those still there as [`ReplicaEffect::Reply`](crate::replica::ReplicaEffect::Reply)
    /// (unless it answered the write otherwise meanwhile: a deadline, a lost quorum).
    pub fn routed_replies_mut(&mut self) -> &mut [RoutedReply] {
        match &mut self.0 {
            DoneKind::Applied { routed, .. } => routed,
            _ => &mut [],
        }
    }

    /// Whether the replica must see this report at once, whatever it waits for: an answer
    /// to a query, a copy, a restore, a digest to send, a changed failover history, or an
    /// answer to a routed write not yet delivered. Applied entries alone may wait for the
    /// replica's next turn (`driver/thread_reports.rs`).
    pub(crate) fn needs_prompt_report(&self) -> bool {
        match &self.0 {
            DoneKind::Applied {
                digests,
                history,
                routed,
                ..
            } => {
                !digests.is_empty()
                    || history.is_some()
                    || routed.iter().any(|routed| routed.reply.is_some())
            }
            _ => true,
        }
    }

    /// A report of entries applied through `last`, with nothing else in it.
    #[cfg(test)]
    pub(crate) fn applied_through(last: LogIndex) -> Self {
        Self(DoneKind::Applied {
            last,
            commands: Vec::new(),
            digests: Vec::new(),
            history: None,
            routed: Vec::new(),
        })
    }

    /// The index a report of applied entries reaches.
    #[cfg(test)]
    pub(crate) fn applied_last(&self) -> Option<LogIndex> {
        match &self.0 {
            DoneKind::Applied { last, .. } => Some(*last),
            _ => None,
        }
    }
}

/// The result of each kind of [`ApplyWork`].
pub(crate) enum DoneKind {
    Applied {
        /// Every entry up to here is applied.
        last: LogIndex,
        /// The outcome of each command entry (entries with no outcome are absent).
        commands: Vec<AppliedCommand>,
        /// Digest copies taken at checkpoints.
        digests: Vec<DigestJob>,
        /// The failover history, when a leader's start changed it.
        history: Option<Vec<FailoverRecord>>,
        /// The answers to the task's routed writes, in index order.
        routed: Vec<RoutedReply>,
    },
    Answered {
        query_id: u64,
        applied: LogIndex,
        result: Result<Vec<u8>, String>,
    },
    Captured {
        purpose: CapturePurpose,
        applied: LogIndex,
        source: Result<AppliedSnapshot, String>,
    },
    Restored {
        last_index: LogIndex,
        result: Result<(LogIndex, Vec<FailoverRecord>), String>,
    },
}

impl std::fmt::Debug for ApplyDone {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            DoneKind::Applied { .. } => "applied",
            DoneKind::Answered { .. } => "answered",
            DoneKind::Captured { .. } => "captured",
            DoneKind::Restored { .. } => "restored",
        };
        formatter
            .debug_struct("ApplyDone")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// Owns the applied state and runs [`ApplyTask`]s in order. No clock, no IO besides what the
/// host's state machine does and reading a restore's snapshot stream.
pub struct ApplyWorker<S: StateMachine> {
    applier: Applier<S>,
    witness: bool,
    consistency: ConsistencySettings,
}

impl<S: StateMachine> ApplyWorker<S> {
    pub(crate) fn new(
        applier: Applier<S>,
        witness: bool,
        consistency: ConsistencySettings,
    ) -> Self {
        Self {
            applier,
            witness,
            consistency,
        }
    }

    /// The applied state.
    pub fn applier(&self) -> &Applier<S> {
        &self.applier
    }

    pub(crate) fn applier_mut(&mut self) -> &mut Applier<S> {
        &mut self.applier
    }

    /// Run one task. `None` when the task (or a clone) already ran.
    pub fn run(&mut self, task: &ApplyTask) -> Option<ApplyDone> {
        let work = task.take()?;
        Some(ApplyDone(match work {
            ApplyWork::Entries {
                entries,
                generation,
            } => self.apply(entries, generation, task.reply_routes()),
            ApplyWork::Query { query_id, query } => DoneKind::Answered {
                query_id,
                applied: self.applier.applied_index(),
                result: self
                    .applier
                    .query(&query)
                    .map_err(|error| error.to_string()),
            },
            ApplyWork::Capture(purpose) => {
                let applied = self.applier.applied_index();
                let source = if self.witness {
                    self.applier.witness_snapshot_source(applied)
                } else {
                    self.applier.snapshot_source()
                };
                DoneKind::Captured {
                    purpose,
                    applied,
                    source: source.map_err(|error| error.to_string()),
                }
            }
            ApplyWork::Restore {
                last_index,
                mut reader,
            } => {
                let restored = if self.witness {
                    self.applier.restore_metadata_from(&mut reader)
                } else {
                    self.applier.restore_from(&mut reader)
                };
                DoneKind::Restored {
                    last_index,
                    result: restored
                        .map(|()| {
                            (
                                self.applier.applied_index(),
                                self.applier.history().cloned().collect(),
                            )
                        })
                        .map_err(|error| error.to_string()),
                }
            }
        }))
    }

    fn apply(&mut self, entries: Vec<Entry>, generation: u64, routes: &[ReplyRoute]) -> DoneKind {
        let mut commands = Vec::new();
        let mut digests = Vec::new();
        let mut history_changed = false;
        for entry in &entries {
            let before = self.applier.applied_index();
            if matches!(entry.payload, crate::entry::Payload::LeaderStart(_)) {
                history_changed |= entry.index > before;
            }
            if self.witness {
                // No state machine, no sessions, no digests: only the applied index (and the
                // failover history) advances.
                self.applier.apply_metadata(entry);
                continue;
            }
            if let Some(outcome) = self.applier.apply(entry) {
                commands.push(AppliedCommand {
                    index: entry.index,
                    term: entry.term,
                    outcome,
                });
            }
            let checkpoint = matches!(entry.payload, crate::entry::Payload::Checkpoint);
            if entry.index > before && checkpoint && self.consistency.enabled() {
                match self.applier.digest_source() {
                    Ok((source, whole_state)) => {
                        digests.push(DigestJob::new(entry.index, generation, source, whole_state))
                    }
                    Err(error) => {
                        tracing::warn!(index = %entry.index, %error, "consistency digest could not be taken; checkpoint skipped");
                    }
                }
            }
        }
        // Each routed write is answered from its own entry's outcome, with the rule the core
        // applies to the writes it answers itself.
        let routed = routes
            .iter()
            .map(|route| {
                let command = commands
                    .binary_search_by_key(&route.index, |command| command.index)
                    .ok()
                    .map(|at| &commands[at]);
                RoutedReply::decide(*route, command)
            })
            .collect();
        DoneKind::Applied {
            last: self.applier.applied_index(),
            commands,
            digests,
            history: history_changed.then(|| self.applier.history().cloned().collect()),
            routed,
        }
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;
    use crate::replica::client::ClientReply;

    fn applied(change: impl FnOnce(&mut DoneKind)) -> ApplyDone {
        let mut done = ApplyDone::applied_through(LogIndex(5));
        change(&mut done.0);
        done
    }

    /// `driver/thread_reports.rs` lets only plain applied entries wait for the loop's next
    /// input; everything the core must act on wakes it.
    #[test]
    fn only_plain_applied_entries_may_wait_for_the_loop() {
        assert!(!applied(|_| {}).needs_prompt_report());
        let answered = ApplyDone(DoneKind::Answered {
            query_id: 1,
            applied: LogIndex(5),
            result: Ok(Vec::new()),
        });
        assert!(answered.needs_prompt_report(), "a query's answer");
        let restored = ApplyDone(DoneKind::Restored {
            last_index: LogIndex(5),
            result: Err("failed".to_string()),
        });
        assert!(restored.needs_prompt_report(), "a restore");
        let history = applied(|kind| {
            if let DoneKind::Applied { history, .. } = kind {
                *history = Some(Vec::new());
            }
        });
        assert!(history.needs_prompt_report(), "a changed failover history");
        let route = ReplyRoute {
            request_id: 7,
            index: LogIndex(5),
            term: Term(1),
        };
        let mut undelivered = applied(|kind| {
            if let DoneKind::Applied { routed, .. } = kind {
                routed.push(RoutedReply {
                    route,
                    reply: Some(ClientReply::Failed(
                        crate::replica::client::ClientError::LeadershipLost,
                    )),
                });
            }
        });
        assert!(
            undelivered.needs_prompt_report(),
            "an answer the thread did not deliver"
        );
        for routed in undelivered.routed_replies_mut() {
            routed.reply.take();
        }
        assert!(
            !undelivered.needs_prompt_report(),
            "answers delivered: nothing left for the loop at once"
        );
    }
}
