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
    /// On a witness: the snapshot being received and dropped, how many of its bytes went by
    /// and their running CRC-32C.
    discarding: Option<Discarding>,
}

/// A snapshot a witness receives without keeping its bytes.
#[derive(Clone, Copy, Debug)]
struct Discarding {
    id: SnapshotId,
    passed: u64,
    crc32c: u32,
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

    /// On a witness: a chunk of snapshot `id` at `offset` arrived from the leader (the engine
    /// took it). The witness keeps none of the host's bytes: they are checked in order
    /// (contiguous offsets, the prefix, the size and the CRC-32C of the whole) and dropped, so
    /// the leader still sends the whole snapshot (the bandwidth cost of a witness that fell
    /// behind the leader's log), but the witness's disk and memory hold none of it. Nothing is
    /// kept across a restart: an interrupted transfer starts over from 0.
    pub(crate) fn on_chunk_discarding(
        &mut self,
        meta: &SnapshotMeta,
        id: SnapshotId,
        offset: u64,
        data: &[u8],
    ) -> ChunkOutcome {
        if id.last_index != meta.last_index || id.last_term != meta.last_term {
            return ChunkOutcome::Refused(format!(
                "chunk names snapshot {}/{} but describes {}/{}",
                id.last_index, id.last_term, meta.last_index, meta.last_term
            ));
        }
        let len = data.len() as u64;
        if offset > id.size || len > id.size - offset {
            return ChunkOutcome::Refused(format!(
                "chunk of {len} bytes at {offset} passes the snapshot's {} bytes",
                id.size
            ));
        }
        self.seen = Some(id);
        let mut discarding = match self.discarding {
            Some(discarding) if discarding.id == id => {
                if discarding.passed != offset {
                    return ChunkOutcome::Ack(discarding.passed);
                }
                discarding
            }
            other => {
                if offset != 0 {
                    return ChunkOutcome::Ack(0);
                }
                if let Err(problem) = check_prefix(meta, id, data) {
                    return ChunkOutcome::Refused(problem);
                }
                if other.is_some() {
                    self.counts.discards += 1;
                }
                Discarding {
                    id,
                    passed: 0,
                    crc32c: 0,
                }
            }
        };
        discarding.crc32c = crc32c::crc32c_append(discarding.crc32c, data);
        discarding.passed += len;
        self.counts.bytes_received += len;
        if discarding.passed < id.size {
            self.discarding = Some(discarding);
            return ChunkOutcome::Ack(discarding.passed);
        }
        self.discarding = None;
        if discarding.crc32c == id.crc32c {
            return ChunkOutcome::Complete;
        }
        self.counts.discards += 1;
        tracing::warn!("received snapshot failed its checksum; receiving it again");
        ChunkOutcome::Ack(0)
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
    use crate::membership::VoterSet;
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
            membership: VoterSet::with_voters([ha_core::NodeId::new("n1").unwrap()]),
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
    fn a_witness_checks_chunks_in_order_and_keeps_none_of_them() {
        let (meta, id, bytes) = snapshot(200);
        let mut receiver = SnapshotReceiver::default();
        // Not from the start: told to start at 0.
        assert_eq!(
            receiver.on_chunk_discarding(&meta, id, 64, &bytes[64..128]),
            ChunkOutcome::Ack(0)
        );
        assert_eq!(
            receiver.on_chunk_discarding(&meta, id, 0, &bytes[..64]),
            ChunkOutcome::Ack(64)
        );
        // A gap: told where to go on from.
        assert_eq!(
            receiver.on_chunk_discarding(&meta, id, 128, &bytes[128..]),
            ChunkOutcome::Ack(64)
        );
        assert_eq!(
            receiver.on_chunk_discarding(&meta, id, 64, &bytes[64..]),
            ChunkOutcome::Complete
        );
        assert_eq!(receiver.counts().bytes_received, 200);
        // A damaged copy fails its checksum and starts over.
        let mut damaged = bytes.clone();
        damaged[150] ^= 1;
        assert_eq!(
            receiver.on_chunk_discarding(&meta, id, 0, &damaged),
            ChunkOutcome::Ack(0)
        );
        assert_eq!(receiver.counts().discards, 1);
        // A chunk whose prefix names another index is refused.
        let mut wrong = meta.clone();
        wrong.last_index = LogIndex(10);
        let wrong_id = SnapshotId {
            last_index: LogIndex(10),
            ..id
        };
        assert!(matches!(
            receiver.on_chunk_discarding(&wrong, wrong_id, 0, &bytes),
            ChunkOutcome::Refused(_)
        ));
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
