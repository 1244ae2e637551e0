//! When this node takes its own snapshot: the housekeeping rule (the log since the last
//! snapshot long enough, in entries or bytes), and the consistency checkpoints that take it
//! in the same pass over the state as their digest.
//!
//! Writing a snapshot and hashing a checkpoint's digest each stream the whole state, and both
//! come due at about the same rate (once the log since the last one is as large as the
//! state). At 64 HTTP clients each pass cost 6-7% of a follower's CPU (issue 17). So while
//! the consistency monitor places checkpoints, a snapshot due by the entry count waits a little
//! longer ([`SNAPSHOT_WAITS_FOR_CHECKPOINT_PERCENT`]), and a checkpoint whose copy arrives when
//! the snapshot is at least [`SNAPSHOT_AT_CHECKPOINT_PERCENT`] due writes it from that copy,
//! hashing the stream on its way to the file: one pass instead of two.

use ha_core::{LogIndex, StateMachine};

use super::{ReplicaCore, ReplicaEffect};
use crate::replica::applier::AppliedSnapshot;
use crate::replica::digest_job::{DigestJob, DigestTarget};
use crate::replica::settings::SNAPSHOT_HOLD_BACK_FACTOR_MAX;
use crate::replica::snapshot_job::SnapshotJob;
use crate::snapshot_meta::SnapshotMeta;
use crate::storage::LogStore;

/// A snapshot is put off while a follower is being sent the current one (a new snapshot
/// would restart its transfer), until the log grows this many times past the usual trigger.
const DEFER_WHILE_SENDING_FACTOR: u64 = 4;

/// While checkpoints are placed, a snapshot waits until the log reaches this share (percent)
/// of the usual entry thresholds, so that a checkpoint (due at about 100%) takes it first.
/// Without the wait the two rules race, and whichever fires first leaves the other a pass of
/// its own. The byte bound (`ReplicaSettings::snapshot_log_bytes`) is not stretched.
pub(crate) const SNAPSHOT_WAITS_FOR_CHECKPOINT_PERCENT: u64 = 150;

/// A checkpoint's copy of the whole state also writes this node's snapshot when the log since
/// the last snapshot has reached this share (percent) of the usual thresholds.
pub(crate) const SNAPSHOT_AT_CHECKPOINT_PERCENT: u64 = 50;

/// `threshold` scaled by `percent`, saturating (a threshold of `u64::MAX` stays out of reach).
fn scaled(threshold: u64, percent: u64) -> u64 {
    let scaled = u128::from(threshold) * u128::from(percent) / 100;
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Housekeeping: take a snapshot when the log since the last one is long enough (in
    /// entries or bytes), unless one is being written.
    pub(super) fn maybe_snapshot(&mut self) {
        if !self.own_snapshot_may_start() {
            return;
        }
        let applied = self.apply.applied_index;
        let for_repair = std::mem::take(&mut self.snapshot_for_repair);
        let percent = if self.checkpoints_take_snapshots() {
            SNAPSHOT_WAITS_FOR_CHECKPOINT_PERCENT
        } else {
            100
        };
        let since = applied.0 - self.engine.snapshot_meta().last_index.0.min(applied.0);
        if since == 0 || !(for_repair || self.own_snapshot_due(applied, percent)) {
            return;
        }
        if self.engine.snapshot_meta_at(applied).is_none() {
            return;
        }
        // The worker takes the copy (a witness's holds only the metadata: its host state
        // machine is never asked for anything); it comes back to `on_snapshot_captured`.
        self.hand_out_capture();
    }

    /// Whether a snapshot at `at` is due, with the thresholds scaled to `percent`: at least
    /// the entry count since the last snapshot once the log reached a share of that
    /// snapshot's size (see `ReplicaSettings::snapshot_log_percent_of_last`), so a large
    /// state is not rewritten after every few small writes; or at least the byte bound.
    fn own_snapshot_due(&self, at: LogIndex, percent: u64) -> bool {
        let since = at.0 - self.engine.snapshot_meta().last_index.0.min(at.0);
        if since == 0 {
            return false;
        }
        let log_bytes = self.engine.log_bytes() as u64;
        let mut factor = 1;
        if self.sender.is_sending() {
            factor = DEFER_WHILE_SENDING_FACTOR;
        }
        let every_entries = scaled(
            self.settings.snapshot_every_entries.saturating_mul(factor),
            percent,
        );
        // The byte bound keeps the log on disk (and its replay at a restart) short; it is
        // never stretched: a log of a few large values may reach it long before a
        // checkpoint's entry count.
        let every_bytes = scaled(
            self.settings.snapshot_log_bytes.saturating_mul(factor),
            percent.min(100),
        );
        let last_bytes = self.current_snapshot.map_or(0, |id| id.size);
        let log_floor = scaled(
            last_bytes.saturating_mul(self.settings.snapshot_log_percent_of_last) / 100,
            percent,
        );
        let held_back_max = every_entries.saturating_mul(SNAPSHOT_HOLD_BACK_FACTOR_MAX);
        let due_by_entries =
            since >= every_entries && (log_bytes >= log_floor || since >= held_back_max);
        due_by_entries || log_bytes >= every_bytes
    }

    /// Whether no snapshot of this node is being written, or its copy being taken.
    fn own_snapshot_may_start(&self) -> bool {
        self.snapshot_in_progress.is_none() && !self.apply.capture_requested
    }

    /// Whether checkpoints' copies take this node's snapshots: the monitor places them, and
    /// the copies are of the state (a witness digests nothing).
    fn checkpoints_take_snapshots(&self) -> bool {
        self.monitor.settings().enabled() && !self.settings.witness
    }

    /// A checkpoint's copy arrived: write this node's snapshot from it as well, hashing the
    /// digest on the way, when the snapshot is at least [`SNAPSHOT_AT_CHECKPOINT_PERCENT`]
    /// due and none is being taken. Otherwise the digest job goes out alone.
    pub(super) fn hand_out_checkpoint_copy(&mut self, job: DigestJob) {
        let index = job.index();
        let rides = self.checkpoints_take_snapshots()
            && self.fatal.is_none()
            && self.stall.is_none()
            && self.own_snapshot_may_start()
            && self.own_snapshot_due(index, SNAPSHOT_AT_CHECKPOINT_PERCENT);
        let meta = rides.then(|| self.engine.snapshot_meta_at(index)).flatten();
        // A host that keeps its own digest gives a copy of 32 bytes, not the state.
        let Some((meta, source)) = meta.and_then(|meta| Some((meta, job.take_whole_state()?)))
        else {
            self.outputs.push(ReplicaEffect::ComputeDigest(job));
            return;
        };
        self.hand_out_snapshot(meta, source, Some(job.target()));
    }

    /// Write this node's snapshot of `source` (a copy of the state at `meta.last_index`) off
    /// the apply path, hashing it as the digest for `digest` on the way if given.
    pub(super) fn hand_out_snapshot(
        &mut self,
        meta: SnapshotMeta,
        source: AppliedSnapshot,
        digest: Option<DigestTarget>,
    ) {
        let sink = match self.store.snapshot_sink() {
            Ok(sink) => sink,
            Err(error) => {
                self.fail(error);
                return;
            }
        };
        self.snapshot_in_progress = Some(meta.last_index);
        let mut job = SnapshotJob::new(meta, source, sink);
        if let Some(target) = digest {
            job = job.hashing_for(target);
        }
        self.outputs.push(ReplicaEffect::WriteSnapshot(job));
    }
}
