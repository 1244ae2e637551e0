//! Computing a digest of the applied state at a checkpoint, off the apply path.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ha_core::{LogIndex, SnapshotSource};
use sha2::{Digest as _, Sha256};

use crate::replica::applier::AppliedSnapshot;

/// A SHA-256 digest of a replica's applied state.
pub type StateDigest = [u8; 32];

/// A point-in-time copy of the applied state at a checkpoint index, to be hashed where
/// hashing gigabytes does not hold up the apply loop (a blocking thread). The driver runs it
/// ([`run`](Self::run)) and hands the result to
/// [`ReplicaCore::on_digest_computed`](crate::replica::ReplicaCore::on_digest_computed); the
/// simulator runs it at once.
///
/// Clones share the one job: only the first `run` hashes.
#[derive(Clone)]
pub struct DigestJob {
    target: DigestTarget,
    /// Whether the copy is the whole state, as a snapshot writes it (not a host's own
    /// 32-byte digest in its place): only then may a snapshot's pass hash it instead.
    whole_state: bool,
    work: Arc<Mutex<Option<AppliedSnapshot>>>,
}

/// Where a digest computed in another job's pass over the state belongs: the checkpoint and
/// the state generation (see [`DigestComputed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DigestTarget {
    pub(crate) index: LogIndex,
    pub(crate) generation: u64,
}

/// What running a [`DigestJob`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestComputed {
    /// The checkpoint index the digest is of.
    pub index: LogIndex,
    /// The replica's state generation when the copy was taken (a repair starts a new one, and
    /// digests of the state before it are dropped).
    pub generation: u64,
    /// The digest, or why the copy could not be hashed.
    pub result: Result<StateDigest, String>,
    /// The length of the state's stream that was hashed, in bytes (the leader's checkpoint
    /// schedule weighs it).
    pub state_bytes: u64,
    /// How long hashing took, in milliseconds.
    pub elapsed_ms: u64,
}

impl DigestJob {
    pub(crate) fn new(
        index: LogIndex,
        generation: u64,
        source: AppliedSnapshot,
        whole_state: bool,
    ) -> Self {
        Self {
            target: DigestTarget { index, generation },
            whole_state,
            work: Arc::new(Mutex::new(Some(source))),
        }
    }

    /// The checkpoint index.
    pub fn index(&self) -> LogIndex {
        self.target.index
    }

    /// Where this job's digest belongs.
    pub(crate) fn target(&self) -> DigestTarget {
        self.target
    }

    /// The copy, for a snapshot to write and hash in one pass, when it is the whole state and
    /// the job has not run. The job is spent either way it goes.
    pub(crate) fn take_whole_state(&self) -> Option<AppliedSnapshot> {
        if !self.whole_state {
            return None;
        }
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Hash the copy: SHA-256 of the snapshot stream (format 2) it writes. `None` when this
    /// job (or a clone) already ran.
    pub fn run(&self) -> Option<DigestComputed> {
        let source = self
            .work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        let started = Instant::now();
        let mut hasher = HashingWriter::new(std::io::sink());
        let written = Box::new(source).write_to(&mut hasher);
        Some(hasher.computed(self.target(), written, started))
    }
}

/// A writer that hashes and counts what passes through it to `inner`: the digest of a stream
/// on its way to a sink (a snapshot file, or nowhere).
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest of everything written, for `target`, once the stream's writer returned
    /// `written` (an error there spoils the digest: the stream is incomplete).
    pub(crate) fn computed<E: std::fmt::Display>(
        self,
        target: DigestTarget,
        written: Result<(), E>,
        started: Instant,
    ) -> DigestComputed {
        let result = written
            .map(|()| self.hasher.finalize().into())
            .map_err(|error| error.to_string());
        DigestComputed {
            index: target.index,
            generation: target.generation,
            result,
            state_bytes: self.bytes,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let taken = self.inner.write(bytes)?;
        let passed = &bytes[..taken.min(bytes.len())];
        self.hasher.update(passed);
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(passed.len()).unwrap_or(u64::MAX));
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl std::fmt::Debug for DigestJob {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DigestJob")
            .field("index", &self.target.index)
            .field("generation", &self.target.generation)
            .field("whole_state", &self.whole_state)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DigestJob {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.work, &other.work)
    }
}

/// Short hex form of a digest for logs and events (the first 8 bytes).
pub fn digest_prefix(digest: &StateDigest) -> String {
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
