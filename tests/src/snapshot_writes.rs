//! Snapshot writing and streaming as simulated nodes do them.

use ha_core::Timing;
use ha_replicate::replica::{SnapshotJob, SnapshotWritten, TransferSettings};

/// How long a simulated node's snapshot takes to write: the job runs at once into the memory
/// store, and its result comes back this much later, as from a writer thread, so installs,
/// crashes and new snapshots can happen meanwhile.
pub const SNAPSHOT_WRITE_MS: u64 = 5;

/// Chunks small enough that every simulated snapshot (a few hundred bytes) travels in several,
/// so loss, reordering, leader changes and crashes hit chunked transfers mid-way.
pub const SIM_CHUNK_BYTES: usize = 64;

/// Transfer settings for simulated nodes with `timing`.
pub fn sim_transfer_settings(timing: &Timing) -> TransferSettings {
    TransferSettings {
        chunk_bytes: SIM_CHUNK_BYTES,
        window_chunks: 2,
        resend_after_ms: timing.election_timeout_max_ms,
        stalled_after_ms: 10 * timing.election_timeout_max_ms,
    }
}

/// The snapshot a simulated node is writing, if any.
#[derive(Debug, Default)]
pub struct SimSnapshotWrites {
    written: Option<SnapshotWritten>,
}

impl SimSnapshotWrites {
    /// Run `job` now; its result is handed back by [`finish`](Self::finish) after
    /// [`SNAPSHOT_WRITE_MS`].
    pub fn start(&mut self, job: &SnapshotJob) {
        self.written = job.run();
    }

    /// The result of the job started last, once.
    pub fn finish(&mut self) -> Option<SnapshotWritten> {
        self.written.take()
    }
}
