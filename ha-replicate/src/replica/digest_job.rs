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
    index: LogIndex,
    generation: u64,
    work: Arc<Mutex<Option<AppliedSnapshot>>>,
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
    pub(crate) fn new(index: LogIndex, generation: u64, source: AppliedSnapshot) -> Self {
        Self {
            index,
            generation,
            work: Arc::new(Mutex::new(Some(source))),
        }
    }

    /// The checkpoint index.
    pub fn index(&self) -> LogIndex {
        self.index
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
        let mut hasher = HashingWriter {
            hasher: Sha256::new(),
            bytes: 0,
        };
        let written = Box::new(source).write_to(&mut hasher);
        let state_bytes = hasher.bytes;
        let result = written
            .map(|()| hasher.hasher.finalize().into())
            .map_err(|error| error.to_string());
        Some(DigestComputed {
            index: self.index,
            generation: self.generation,
            result,
            state_bytes,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A writer that only hashes what it is given, and counts it.
struct HashingWriter {
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(bytes);
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for DigestJob {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DigestJob")
            .field("index", &self.index)
            .field("generation", &self.generation)
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
