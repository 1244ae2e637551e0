//! A failed disk in the replica: a WAL write, a sync or a snapshot write that fails with an IO
//! error (a full disk, `EIO`) stalls the replica instead of stopping it, and a retry with a
//! bounded backoff resumes it once the store can be written again.
//!
//! While stalled the replica:
//! - refuses writes at once (`ClientError::StorageFull` / `StorageFailed`, not applied);
//! - drops every message whose sending would promise something about its own disk (append and
//!   vote answers, snapshot acks: lost messages, which Raft tolerates), and the messages that
//!   would make it write (appends, votes, snapshot chunks, `TimeoutNow`), but keeps what needs
//!   no write of its own: a leader's appends (its log counts towards a commit only once synced,
//!   and it is not synced), `TimeoutNow` (so an unhealthy leader can still hand over), the
//!   answers it receives, forwarded requests and client answers;
//! - skips the engine's `Persist` effects: the engine's log and term in memory are the truth,
//!   and resuming writes back whatever the disk does not hold.
//!
//! Resuming reopens the store, which recovers from the disk as a restart would (a torn record
//! at the tail is cut back to the last whole one: nothing synced, so nothing acknowledged, is
//! touched), then cuts the disk's log where it stops agreeing with the engine's, appends the
//! engine's entries after that point, saves the term and vote, and syncs. Only then is the
//! engine told the log is durable. See docs/ARCHITECTURE.md, "A full disk (issue 14)".

use ha_core::{LogIndex, Millis, StateMachine};

use super::{ReplicaCore, ReplicaEffect};
use crate::engine::Message;
use crate::replica::client::{ClientError, ClientReply};
use crate::replica::rpc::Rpc;
use crate::storage::io_failure::{StorageFailureKind, StorageStall, classify};
use crate::storage::{LogStore, StorageError};

/// The first wait before resuming is tried, in milliseconds.
pub const RESUME_RETRY_MS_MIN: u64 = 100;
/// The longest wait between two tries, in milliseconds (each failed try doubles the wait).
pub const RESUME_RETRY_MS_MAX: u64 = 5_000;

/// The replica's view of a failed store.
#[derive(Clone, Debug)]
pub(super) struct Stall {
    pub(super) report: StorageStall,
    retry_at: Millis,
    backoff_ms: u64,
}

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Why the replica refuses writes, while its store is failed (`None` when it works).
    pub fn storage_stall(&self) -> Option<&StorageStall> {
        self.stall.as_ref().map(|stall| &stall.report)
    }

    /// The answer to a write while stalled: refused, nothing appended.
    pub(super) fn stalled_write_error(&self) -> Option<ClientError> {
        let stall = self.stall.as_ref()?;
        let detail = format!("{} ({})", stall.report.detail, stall.report.advice());
        Some(match stall.report.kind {
            StorageFailureKind::Full => ClientError::StorageFull(detail),
            StorageFailureKind::Failed => ClientError::StorageFailed(detail),
        })
    }

    /// The store failed with an error the node survives: stall (or note the latest error).
    pub(super) fn stall_on(&mut self, kind: StorageFailureKind, detail: String) {
        let now = self.last_now;
        if self.stall.is_some() {
            // Later calls fail because the store is failed: the first error says why.
            return;
        }
        tracing::error!(
            code = kind.code(),
            %detail,
            "storage failed; refusing writes until it can be written again"
        );
        self.stall = Some(Stall {
            report: StorageStall {
                kind,
                detail,
                since_ms: now.0,
                attempts: 0,
            },
            retry_at: now + RESUME_RETRY_MS_MIN,
            backoff_ms: RESUME_RETRY_MS_MIN,
        });
        // What waited for the failed sync promised something about the disk: drop the
        // messages (lost), keep client answers, except an EVENTUAL write's `Accepted` (its
        // append may not be on the disk; it may still commit through the followers, so its
        // outcome is unknown).
        for effect in self.gate.take_held() {
            match effect {
                ReplicaEffect::Reply {
                    request_id,
                    reply: ClientReply::Accepted { .. },
                } => self.outputs.push(ReplicaEffect::Reply {
                    request_id,
                    reply: ClientReply::Failed(ClientError::LeadershipLost),
                }),
                ReplicaEffect::Send {
                    to,
                    rpc:
                        Rpc::ForwardReply {
                            forward_id,
                            reply: ClientReply::Accepted { .. },
                        },
                } => self.outputs.push(ReplicaEffect::Send {
                    to,
                    rpc: Rpc::ForwardReply {
                        forward_id,
                        reply: ClientReply::Failed(ClientError::LeadershipLost),
                    },
                }),
                effect if Self::leaves_while_stalled(&effect) => self.outputs.push(effect),
                _ => {}
            }
        }
    }

    /// Whether an outgoing effect may leave while stalled: it promises nothing about this
    /// node's disk.
    pub(super) fn leaves_while_stalled(effect: &ReplicaEffect) -> bool {
        match effect {
            ReplicaEffect::Send { rpc, .. } => match rpc {
                Rpc::Raft(Message::TimeoutNow { .. }) => true,
                Rpc::Raft(_) | Rpc::SnapshotAck { .. } | Rpc::SnapshotChunk { .. } => false,
                Rpc::Forward { .. } | Rpc::TracedForward { .. } | Rpc::ForwardReply { .. } => true,
                // Consistency digests and verdicts say nothing about this node's disk.
                Rpc::Digest { .. } | Rpc::DigestVerdict { .. } | Rpc::RepairRequest { .. } => true,
            },
            _ => true,
        }
    }

    /// Whether an incoming message is taken while stalled: answers and forwarded requests
    /// (a write among them is refused); not what would make this node write.
    pub(super) fn taken_while_stalled(rpc: &Rpc) -> bool {
        match rpc {
            Rpc::Raft(message) => matches!(
                message,
                Message::PreVoteResponse { .. }
                    | Message::VoteResponse { .. }
                    | Message::AppendResponse { .. }
                    | Message::InstallSnapshotResponse { .. }
            ),
            Rpc::SnapshotAck { .. }
            | Rpc::Forward { .. }
            | Rpc::TracedForward { .. }
            | Rpc::ForwardReply { .. } => true,
            // A digest or a verdict writes nothing; a repair request would make this node
            // take a snapshot, which writes.
            Rpc::Digest { .. } | Rpc::DigestVerdict { .. } => true,
            Rpc::SnapshotChunk { .. } | Rpc::RepairRequest { .. } => false,
        }
    }

    /// Housekeeping while stalled: try to resume when the backoff allows.
    pub(super) fn try_resume(&mut self, now: Millis) {
        let Some(stall) = self.stall.as_ref() else {
            return;
        };
        if now < stall.retry_at {
            return;
        }
        match self.resume(now) {
            Ok(()) => {}
            Err(error) => match classify(&error) {
                Some(kind) => {
                    if let Some(stall) = self.stall.as_mut() {
                        stall.report.kind = kind;
                        stall.report.detail = error.to_string();
                        stall.report.attempts = stall.report.attempts.saturating_add(1);
                        stall.backoff_ms = (stall.backoff_ms * 2).min(RESUME_RETRY_MS_MAX);
                        stall.retry_at = now + stall.backoff_ms;
                        tracing::warn!(
                            %error,
                            attempts = stall.report.attempts,
                            retry_in_ms = stall.backoff_ms,
                            advice = stall.report.advice(),
                            "storage still fails"
                        );
                    }
                }
                None => self.stop(error),
            },
        }
    }

    /// Reopen the store and write back what the disk lost, so that it holds the engine's log
    /// and hard state, synced.
    fn resume(&mut self, now: Millis) -> Result<(), StorageError> {
        if self.snapshot_in_progress.is_some() {
            // Reopening removes its sink's file: its result is ignored when it comes.
            self.snapshot_sink_lost = true;
        }
        let recovered = self.store.reopen()?;
        for repair in &recovered.repairs {
            tracing::warn!(%repair, "storage repaired on resuming");
        }
        if let Some((meta, id)) = &recovered.snapshot {
            let known = self.engine.snapshot_meta().last_index;
            if meta.last_index > known {
                // Committed before a later step failed (the directory sync): the engine has
                // applied past it (it was taken from the applied state), so it may compact.
                self.engine.on_snapshot_taken(now, meta.clone());
            }
            self.current_snapshot = Some(*id);
        }
        let base = self.engine.snapshot_meta().last_index;
        let disk_base = recovered
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |(meta, _)| meta.last_index);
        if disk_base < base {
            return Err(StorageError::Misuse(format!(
                "the disk's snapshot ends at {disk_base} but the replica installed one ending \
                 at {base} before the disk failed; restart the node (it recovers the older \
                 snapshot and catches up from the leader)"
            )));
        }
        // The disk's log agrees with the engine's up to `agreed`; anything after is cut.
        let mut agreed = base;
        let mut disk_last = base;
        for entry in recovered.entries.iter().filter(|entry| entry.index > base) {
            disk_last = entry.index;
            if agreed.next() == entry.index && self.engine.term_at(entry.index) == Some(entry.term)
            {
                agreed = entry.index;
            }
        }
        if disk_last > agreed {
            self.store.truncate_from(agreed.next())?;
        }
        let last = self.engine.last_index();
        let mut missing = Vec::new();
        let mut index = agreed.next();
        while index <= last {
            let Some(entry) = self.engine.entry(index) else {
                return Err(StorageError::Misuse(format!(
                    "entry {index} is neither on the disk nor held in memory; restart the node"
                )));
            };
            missing.push(entry.clone());
            index = index.next();
        }
        if !missing.is_empty() {
            self.store.append(&missing)?;
        }
        self.store.save_hard_state(&self.engine.hard_state())?;
        self.store.sync()?;
        if let Some(stall) = self.stall.take() {
            tracing::info!(
                code = stall.report.kind.code(),
                attempts = stall.report.attempts + 1,
                stalled_ms = now.0.saturating_sub(stall.report.since_ms),
                "storage works again; writes resume"
            );
        }
        // Every write the engine issued is on the disk now: the log and hard state above are
        // its whole durable state.
        let issued = self.engine.persist_issued();
        self.gate.on_persisted(issued, &mut self.outputs);
        self.engine.on_persisted(now, issued);
        self.sync_requested = issued;
        self.process_engine_effects(now);
        Ok(())
    }
}

#[cfg(test)]
#[path = "storage_stall_tests.rs"]
pub(super) mod tests;
