//! Writing a snapshot of this node's own state, off the apply path.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ha_core::SnapshotSource;

use crate::replica::applier::AppliedSnapshot;
use crate::snapshot_meta::SnapshotMeta;
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
}

impl SnapshotJob {
    pub(crate) fn new(
        meta: SnapshotMeta,
        source: AppliedSnapshot,
        sink: Box<dyn SnapshotSink>,
    ) -> Self {
        Self {
            meta,
            work: Arc::new(Mutex::new(Some((source, sink)))),
        }
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
        let result = Box::new(source)
            .write_to(&mut sink)
            .map_err(|error| error.to_string())
            .and_then(|()| sink.finish().map_err(|error| error.to_string()));
        Some(SnapshotWritten {
            meta: self.meta.clone(),
            result,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SnapshotJob")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SnapshotJob {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.work, &other.work)
    }
}
