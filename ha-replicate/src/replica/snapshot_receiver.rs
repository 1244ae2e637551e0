//! The follower's side of a snapshot transfer: chunks into the store's incoming snapshot.
//!
//! Sans-IO apart from the store it is handed. The store keeps the bytes received (on disk for
//! a [`WalStore`](crate::storage::wal::WalStore)), so an interrupted transfer resumes where it
//! stopped: after a dropped connection, a restart of this node, or a new leader sending the
//! same snapshot. A different snapshot replaces the partial one; the whole is checked against
//! its size and CRC-32C before the engine hears of it.

use crate::replica::applier::{SNAPSHOT_PREFIX_BYTES, snapshot_applied_index};
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};
use crate::storage::{LogStore, StorageError};

/// What to do after a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChunkOutcome {
    /// Answer with the offset the next chunk must start at.
    Ack(u64),
    /// The snapshot is held whole and verified: hand it to the engine, then answer with its
    /// size.
    Complete,
    /// The chunk is one no correct leader sends; the reason, for the refusal count.
    Refused(String),
}

/// Counts of what was received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReceiveCounts {
    pub(crate) bytes_received: u64,
    pub(crate) resumes: u64,
    pub(crate) discards: u64,
}

/// Takes chunks into the store's incoming snapshot.
#[derive(Debug, Default)]
pub(crate) struct SnapshotReceiver {
    counts: ReceiveCounts,
}

impl SnapshotReceiver {
    /// What was received since start.
    pub(crate) fn counts(&self) -> ReceiveCounts {
        self.counts
    }

    /// A chunk of snapshot `id` at `offset` arrived from the leader (the engine took it).
    ///
    /// # Errors
    /// [`StorageError`] from the store: fatal, as every storage error.
    pub(crate) fn on_chunk<L: LogStore>(
        &mut self,
        store: &mut L,
        meta: &SnapshotMeta,
        id: SnapshotId,
        offset: u64,
        data: &[u8],
    ) -> Result<ChunkOutcome, StorageError> {
        if id.last_index != meta.last_index || id.last_term != meta.last_term {
            return Ok(ChunkOutcome::Refused(format!(
                "chunk names snapshot {}/{} but describes {}/{}",
                id.last_index, id.last_term, meta.last_index, meta.last_term
            )));
        }
        let len = data.len() as u64;
        if offset > id.size || len > id.size - offset {
            return Ok(ChunkOutcome::Refused(format!(
                "chunk of {len} bytes at {offset} passes the snapshot's {} bytes",
                id.size
            )));
        }
        let held = store
            .incoming()
            .filter(|incoming| incoming.id == id)
            .map(|incoming| incoming.held);
        let held = match held {
            Some(held) if held >= id.size => {
                // Held whole already (verified before a restart, not yet installed).
                return self.verify(store);
            }
            Some(held) if held != offset => {
                if offset == 0 && held > 0 {
                    // A sender starting over (a new transfer, a new leader): resume.
                    self.counts.resumes += 1;
                    tracing::info!(
                        last_index = %id.last_index,
                        offset = held,
                        size = id.size,
                        "snapshot transfer resumed"
                    );
                }
                return Ok(ChunkOutcome::Ack(held));
            }
            Some(held) => held,
            None if offset != 0 => return Ok(ChunkOutcome::Ack(0)),
            None => {
                if let Err(problem) = check_prefix(meta, id, data) {
                    return Ok(ChunkOutcome::Refused(problem));
                }
                if store.incoming().is_some() {
                    self.counts.discards += 1;
                }
                store.begin_incoming(meta, id)?;
                0
            }
        };
        store.append_incoming(held, data)?;
        self.counts.bytes_received += len;
        if held + len == id.size {
            return self.verify(store);
        }
        Ok(ChunkOutcome::Ack(held + len))
    }

    fn verify<L: LogStore>(&mut self, store: &mut L) -> Result<ChunkOutcome, StorageError> {
        if store.verify_incoming()? {
            return Ok(ChunkOutcome::Complete);
        }
        self.counts.discards += 1;
        tracing::warn!("received snapshot failed its checksum; receiving it again");
        Ok(ChunkOutcome::Ack(0))
    }
}

/// A snapshot's first bytes must say it ends where its metadata says.
fn check_prefix(meta: &SnapshotMeta, id: SnapshotId, data: &[u8]) -> Result<(), String> {
    if id.size < SNAPSHOT_PREFIX_BYTES as u64 {
        return Err(format!(
            "snapshot of {} bytes is shorter than its prefix",
            id.size
        ));
    }
    match snapshot_applied_index(data) {
        Ok(index) if index == meta.last_index => Ok(()),
        Ok(index) => Err(format!(
            "snapshot contents end at {index}, its metadata says {}",
            meta.last_index
        )),
        Err(error) => Err(format!("snapshot does not decode: {error}")),
    }
}
