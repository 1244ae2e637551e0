//! Writing a snapshot of this node's own state, off the apply path.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ha_core::SnapshotSource;

use crate::replica::applier::AppliedSnapshot;
use crate::replica::digest_job::{DigestComputed, DigestTarget, HashingWriter};
use crate::snapshot_meta::SnapshotMeta;
use crate::storage::io_failure::{StorageFailureKind, classify, io_error_is_full};
use crate::storage::{SnapshotSink, WrittenSnapshot};

/// A point-in-time copy of the applied state and the sink to write it to. The driver runs it
/// ([`run`](Self::run)) wherever writing gigabytes does not hold up the apply loop (a blocking
/// thread) and hands the result to
/// [`ReplicaCore::on_snapshot_written`](crate::replica::ReplicaCore::on_snapshot_written).
///
/// Clones share the one job: only the first `run` writes.
#[derive(Clone)]
pub struct SnapshotJob {
    meta: SnapshotMeta,
    /// The consistency checkpoint this copy was taken at, when the job also hashes what it
    /// writes for it (one pass over the state for both; see
    /// [`ReplicaCore`](crate::replica::ReplicaCore)'s checkpoint handling).
    digest: Option<DigestTarget>,
    work: Arc<Mutex<Option<Work>>>,
}

/// What a job writes, and where.
type Work = (AppliedSnapshot, Box<dyn SnapshotSink>);

/// What running a [`SnapshotJob`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotWritten {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// What was written, or why writing failed.
    pub result: Result<WrittenSnapshot, String>,
    /// How long writing took, in milliseconds.
    pub elapsed_ms: u64,
    /// When writing failed because the disk did (full, or an IO error), which: the replica
    /// then stalls as on a failed WAL write. `None` on success or a host error.
    pub failure: Option<StorageFailureKind>,
    /// The consistency digest of what was written, when the job was taken at a checkpoint
    /// and hashed its stream on the way (the replica core takes it as it takes a
    /// [`DigestJob`](crate::replica::DigestJob)'s).
    pub digest: Option<DigestComputed>,
}

/// The sink as the host's snapshot writer sees it, remembering whether the disk refused a
/// write (the host reports only a message).
struct WatchedSink<'a> {
    sink: &'a mut Box<dyn SnapshotSink>,
    failure: Option<StorageFailureKind>,
}

impl std::io::Write for WatchedSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.write(buf).inspect_err(|error| self.note(error))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush().inspect_err(|error| self.note(error))
    }
}

impl WatchedSink<'_> {
    fn note(&mut self, error: &std::io::Error) {
        let kind = if io_error_is_full(error) {
            StorageFailureKind::Full
        } else {
            StorageFailureKind::Failed
        };
        self.failure.get_or_insert(kind);
    }
}

impl SnapshotJob {
    pub(crate) fn new(
        meta: SnapshotMeta,
        source: AppliedSnapshot,
        sink: Box<dyn SnapshotSink>,
    ) -> Self {
        Self {
            meta,
            digest: None,
            work: Arc::new(Mutex::new(Some((source, sink)))),
        }
    }

    /// A job that also hashes the stream it writes, as the digest for `target` (the copy
    /// was taken at that checkpoint).
    pub(crate) fn hashing_for(mut self, target: DigestTarget) -> Self {
        self.digest = Some(target);
        self
    }

    /// What the snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Write the snapshot to its sink and finish the sink. `None` when this job (or a clone)
    /// already ran.
    pub fn run(&self) -> Option<SnapshotWritten> {
        let (source, mut sink) = self
            .work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        let started = Instant::now();
        let mut watched = WatchedSink {
            sink: &mut sink,
            failure: None,
        };
        let (written, digest) = match self.digest {
            None => (Box::new(source).write_to(&mut watched), None),
            Some(target) => {
                let mut hashing = HashingWriter::new(&mut watched);
                let written = Box::new(source).write_to(&mut hashing);
                let digest = hashing.computed(target, written.as_ref().map(|_| ()), started);
                (written, Some(digest))
            }
        };
        let mut failure = watched.failure;
        let result = match written {
            Ok(()) => sink.finish().map_err(|error| {
                failure = classify(&error);
                error.to_string()
            }),
            Err(error) => Err(error.to_string()),
        };
        Some(SnapshotWritten {
            meta: self.meta.clone(),
            result,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            failure,
            digest,
        })
    }
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SnapshotJob")
            .field("meta", &self.meta)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SnapshotJob {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.work, &other.work)
    }
}
