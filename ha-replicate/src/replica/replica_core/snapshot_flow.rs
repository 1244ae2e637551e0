//! Snapshots in the replica: taking its own off the apply path, streaming the current one to
//! followers in chunks, and receiving one from the leader.

use ha_core::{Millis, NodeId, StateMachine, Term};

use super::{ReplicaCore, ReplicaEffect};
use crate::driver::SnapshotTransferStats;
use crate::engine::{Message, RefusalCause, Role};
use crate::replica::rpc::Rpc;
use crate::replica::snapshot_job::SnapshotWritten;
use crate::replica::snapshot_receiver::ChunkOutcome;
use crate::replica::snapshot_sender::{ChunkPlace, TransferProgress};
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};
use crate::storage::LogStore;

/// A [`Rpc::SnapshotChunk`] as received.
pub(super) struct ReceivedChunk {
    pub(super) term: Term,
    pub(super) meta: SnapshotMeta,
    pub(super) id: SnapshotId,
    pub(super) place: ChunkPlace,
    pub(super) data: Vec<u8>,
}

/// What the replica counts about snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SnapshotCounts {
    pub(super) bytes_sent: u64,
    pub(super) installs: u64,
    pub(super) taken: u64,
    pub(super) last_take_ms: u64,
}

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// A snapshot job handed out as [`ReplicaEffect::WriteSnapshot`] finished: commit it to
    /// the store and compact the log, unless a newer snapshot was installed meanwhile.
    pub fn on_snapshot_written(&mut self, now: Millis, mut written: SnapshotWritten) {
        if self.fatal.is_some() {
            return;
        }
        // Taken at a checkpoint: its digest counts whatever becomes of the snapshot.
        if let Some(digest) = written.digest.take() {
            self.on_digest_computed(now, digest);
        }
        if self.snapshot_in_progress.as_ref() == Some(&written.meta.last_index) {
            self.snapshot_in_progress = None;
        }
        if std::mem::take(&mut self.snapshot_sink_lost) {
            tracing::debug!(last_index = %written.meta.last_index, "snapshot written before the store was reopened; dropped");
            return;
        }
        let written_snapshot = match written.result {
            Ok(written_snapshot) => written_snapshot,
            Err(error) => {
                match written.failure {
                    // The disk refused it: stall as on a failed WAL write (writes refused,
                    // health critical) until the store can be written again.
                    Some(kind) => self.stall_on(kind, format!("writing a snapshot: {error}")),
                    None => tracing::warn!(%error, "snapshot failed; will retry"),
                }
                self.after_input(now);
                return;
            }
        };
        if self.stall.is_some() {
            // The store is failed; reopening it removes the sink's file.
            return;
        }
        if written.meta.last_index <= self.engine.snapshot_meta().last_index {
            return;
        }
        match self.store.commit_snapshot(&written.meta, &written_snapshot) {
            Ok(id) => {
                self.current_snapshot = Some(id);
                self.snapshot_counts.taken += 1;
                self.snapshot_counts.last_take_ms = written.elapsed_ms;
                tracing::debug!(
                    last_index = %written.meta.last_index,
                    bytes = id.size,
                    elapsed_ms = written.elapsed_ms,
                    "snapshot taken"
                );
                self.engine.on_snapshot_taken(now, written.meta);
                self.serve_repairs(now);
            }
            Err(error) => self.fail(error),
        }
        self.after_input(now);
    }

    /// Counts of snapshots taken, sent and received since start.
    pub fn snapshot_stats(&self) -> SnapshotTransferStats {
        let received = self.receiver.counts();
        SnapshotTransferStats {
            bytes_sent: self.snapshot_counts.bytes_sent,
            bytes_received: received.bytes_received,
            installs: self.snapshot_counts.installs,
            resumes: received.resumes,
            discards: received.discards,
            taken: self.snapshot_counts.taken,
            last_take_ms: self.snapshot_counts.last_take_ms,
            current_bytes: self.current_snapshot.map_or(0, |id| id.size),
        }
    }

    /// How far the snapshot transfer to `peer` is, if one is under way.
    pub fn transfer_progress(&self, now: Millis, peer: &NodeId) -> Option<TransferProgress> {
        self.sender.progress(now, peer)
    }

    /// After how long without progress a transfer counts as stalled.
    pub fn transfer_stalled_after_ms(&self) -> u64 {
        self.sender.settings().stalled_after_ms
    }

    /// The engine asks to send the snapshot `meta` to `to`: stream the store's current one.
    pub(super) fn start_snapshot_transfer(
        &mut self,
        now: Millis,
        to: NodeId,
        term: Term,
        meta: SnapshotMeta,
    ) {
        match self.current_snapshot {
            Some(id) if id.last_index == meta.last_index && id.last_term == meta.last_term => {
                self.sender.start(now, to, term, meta, id);
                self.send_snapshot_chunks(now);
            }
            _ => tracing::warn!(
                %to,
                last_index = %meta.last_index,
                "follower needs a snapshot the store does not hold"
            ),
        }
    }

    /// Send what the transfer windows allow.
    pub(super) fn send_snapshot_chunks(&mut self, now: Millis) {
        if self.engine.role() != Role::Leader {
            self.sender.stop_all();
            return;
        }
        for chunk in self.sender.chunks_to_send(now) {
            if self.current_snapshot != Some(chunk.id) {
                // A newer snapshot replaced this one: send that instead, from its start.
                self.sender.stop(&chunk.to);
                let meta = self.engine.snapshot_meta().clone();
                if let Some(id) = self.current_snapshot {
                    self.sender.start(now, chunk.to, chunk.term, meta, id);
                }
                continue;
            }
            let data = match self.store.read_snapshot(chunk.offset, chunk.len) {
                Ok(data) => data,
                Err(error) => {
                    self.fail(error);
                    return;
                }
            };
            self.snapshot_counts.bytes_sent += data.len() as u64;
            // Like appends, chunks promise nothing about this node's disk: they leave at once.
            self.outputs.push(ReplicaEffect::Send {
                to: chunk.to,
                rpc: Rpc::SnapshotChunk {
                    term: chunk.term,
                    meta: chunk.meta,
                    id: chunk.id,
                    offset: chunk.offset,
                    round: chunk.round,
                    data,
                },
            });
        }
    }

    /// A chunk from the leader.
    pub(super) fn on_snapshot_chunk(&mut self, now: Millis, from: NodeId, chunk: ReceivedChunk) {
        let ReceivedChunk {
            term,
            meta,
            id,
            place,
            data,
        } = chunk;
        let offset = place.offset;
        if !self
            .engine
            .on_snapshot_chunk(now, from.clone(), term, &meta)
        {
            if term < self.engine.term() {
                // A stale leader: tell it the term, so it steps down.
                self.send_snapshot_ack(from, id, place, 0);
            }
            return;
        }
        let outcome = if self.settings.witness {
            self.receiver.on_chunk_discarding(&meta, id, offset, &data)
        } else {
            match self
                .receiver
                .on_chunk(&mut self.store, &meta, id, offset, &data)
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.fail(error);
                    return;
                }
            }
        };
        match outcome {
            ChunkOutcome::Ack(next_offset) => self.send_snapshot_ack(from, id, place, next_offset),
            ChunkOutcome::Refused(problem) => {
                self.engine
                    .refuse_input(now, &from, RefusalCause::BadSnapshot, &problem);
            }
            ChunkOutcome::Complete => {
                self.engine
                    .on_message(now, from.clone(), Message::InstallSnapshot { term, meta });
                self.process_engine_effects(now);
                if self.fatal.is_some() {
                    return;
                }
                // Not installed (the log already covers it): drop the bytes.
                if self.store.incoming().is_some()
                    && let Err(error) = self.store.discard_incoming()
                {
                    self.fail(error);
                    return;
                }
                self.send_snapshot_ack(from, id, place, id.size);
            }
        }
    }

    fn send_snapshot_ack(
        &mut self,
        to: NodeId,
        id: SnapshotId,
        place: ChunkPlace,
        next_offset: u64,
    ) {
        // An answer about bytes received, not a promise about the disk: it leaves at once.
        self.outputs.push(ReplicaEffect::Send {
            to,
            rpc: Rpc::SnapshotAck {
                term: self.engine.term(),
                id,
                chunk_offset: place.offset,
                round: place.round,
                next_offset,
            },
        });
    }

    /// A follower's answer to a chunk.
    pub(super) fn on_snapshot_ack(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        id: SnapshotId,
        place: ChunkPlace,
        next_offset: u64,
    ) {
        self.engine.on_snapshot_ack(now, from.clone(), term);
        if self.engine.role() != Role::Leader || term != self.engine.term() {
            return;
        }
        self.sender
            .on_ack(now, &from, &id, place.offset, place.round, next_offset);
        self.send_snapshot_chunks(now);
    }

    /// Install the verified snapshot received from the leader, described by `meta`, as the
    /// store's current one. A witness kept none of its bytes: it stores a snapshot of its own
    /// (the witness format: the index, no state) described by the same `meta`, which compacts
    /// its log the same way.
    pub(super) fn install_received_snapshot(
        &mut self,
        meta: &SnapshotMeta,
    ) -> Result<(), crate::storage::StorageError> {
        let id = if self.settings.witness {
            let mut bytes = Vec::new();
            let history = self.apply.history.clone();
            let written = crate::replica::applier::witness_snapshot(meta.last_index, history)
                .and_then(|source| ha_core::SnapshotSource::write_to(Box::new(source), &mut bytes));
            if let Err(error) = written {
                return Err(crate::storage::StorageError::Misuse(format!(
                    "a witness snapshot did not encode: {error}"
                )));
            }
            self.store.save_snapshot(meta, &bytes)?
        } else {
            self.store.install_incoming()?
        };
        self.current_snapshot = Some(id);
        self.snapshot_counts.installs += 1;
        Ok(())
    }

    /// Restore the state machine from the store's current snapshot, at start (the core holds
    /// its apply worker then).
    pub(super) fn restore_current_snapshot(
        &mut self,
        what: &str,
    ) -> Result<(), crate::storage::StorageError> {
        let corrupt = |reason: String| crate::storage::StorageError::Corrupt {
            path: what.into(),
            offset: 0,
            reason,
        };
        let Some((_, _, mut reader)) = self.store.snapshot_reader()? else {
            return Err(corrupt(
                "the store holds no snapshot to restore".to_string(),
            ));
        };
        let witness = self.settings.witness;
        let Some(applier) = self.worker.as_mut().map(|worker| worker.applier_mut()) else {
            return Err(corrupt(
                "the apply worker is detached: restore through it".to_string(),
            ));
        };
        let restored = if witness {
            applier.restore_metadata_from(&mut reader)
        } else {
            applier.restore_from(&mut reader)
        };
        restored.map_err(|error| corrupt(error.to_string()))
    }
}
