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
    /// The snapshot the last chunk was about, since this node started.
    seen: Option<SnapshotId>,
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
        // The first chunk of this snapshot since this node started, or a sender starting
        // over (a new leader, a new transfer), while bytes of it are held: a resume.
        let first_contact = self.seen != Some(id);
        self.seen = Some(id);
        if let Some(held) = held
            && held > 0
            && held < id.size
            && (first_contact || offset == 0)
        {
            self.counts.resumes += 1;
            tracing::info!(
                last_index = %id.last_index,
                offset = held,
                size = id.size,
                "snapshot transfer resumed"
            );
        }
        let held = match held {
            Some(held) if held >= id.size => {
                // Held whole already (verified before a restart, not yet installed).
                return self.verify(store);
            }
            Some(held) if held != offset => return Ok(ChunkOutcome::Ack(held)),
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

#[cfg(test)]
mod tests {
    use ha_core::{LogIndex, Term};

    use super::*;
    use crate::membership::Membership;
    use crate::storage::memory::{MemoryDisk, MemoryStore};

    /// A snapshot of `size` bytes ending at index 9 whose prefix says so.
    fn snapshot(size: usize) -> (SnapshotMeta, SnapshotId, Vec<u8>) {
        let mut bytes = vec![7u8; size];
        bytes[..4].copy_from_slice(&2u32.to_le_bytes());
        bytes[4..12].copy_from_slice(&9u64.to_le_bytes());
        bytes[12..16].copy_from_slice(&0u32.to_le_bytes());
        let meta = SnapshotMeta {
            last_index: LogIndex(9),
            last_term: Term(1),
            membership: Membership::with_voters([ha_core::NodeId::new("n1").unwrap()]),
        };
        let id = SnapshotId {
            last_index: LogIndex(9),
            last_term: Term(1),
            size: size as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        (meta, id, bytes)
    }

    fn store(disk: &MemoryDisk) -> MemoryStore {
        let mut store = MemoryStore::open(disk.clone());
        store.recover().unwrap();
        store
    }

    #[test]
    fn a_restarted_node_and_a_sender_starting_over_both_count_as_resumes() {
        let (meta, id, bytes) = snapshot(200);
        let disk = MemoryDisk::new();
        let mut first = store(&disk);
        let mut receiver = SnapshotReceiver::default();
        let outcome = receiver
            .on_chunk(&mut first, &meta, id, 0, &bytes[..64])
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Ack(64));
        first.sync().unwrap();
        // A restart: a new receiver over the same disk; the leader goes on from 64.
        drop(first);
        let mut second = store(&disk);
        let mut receiver = SnapshotReceiver::default();
        let outcome = receiver
            .on_chunk(&mut second, &meta, id, 64, &bytes[64..128])
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Ack(128));
        assert_eq!(receiver.counts().resumes, 1, "resumed after the restart");
        // A new leader sends the same snapshot from 0: told to go on from 128.
        let outcome = receiver
            .on_chunk(&mut second, &meta, id, 0, &bytes[..64])
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Ack(128));
        assert_eq!(receiver.counts().resumes, 2);
        let outcome = receiver
            .on_chunk(&mut second, &meta, id, 128, &bytes[128..])
            .unwrap();
        assert_eq!(outcome, ChunkOutcome::Complete);
        assert_eq!(receiver.counts().bytes_received, 136);
    }

    #[test]
    fn a_chunk_that_names_another_index_than_its_contents_is_refused() {
        let (mut meta, mut id, bytes) = snapshot(100);
        meta.last_index = LogIndex(10);
        id.last_index = LogIndex(10);
        let mut store = store(&MemoryDisk::new());
        let outcome = SnapshotReceiver::default()
            .on_chunk(&mut store, &meta, id, 0, &bytes[..64])
            .unwrap();
        assert!(
            matches!(&outcome, ChunkOutcome::Refused(problem) if problem.contains("end at 9")),
            "{outcome:?}"
        );
        assert!(store.incoming().is_none());
    }
}
