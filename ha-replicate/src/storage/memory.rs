//! [`MemoryStore`]: a [`LogStore`] in memory, for tests and the deterministic simulator, on a
//! [`MemoryDisk`] that survives a simulated crash and loses exactly what a real disk may lose.

use std::io::{Cursor, Read};
use std::sync::Arc;

use ha_core::LogIndex;
use parking_lot::Mutex;

use super::log_bounds::LogBounds;
use super::{
    IncomingSnapshot, LogStore, Recovered, SnapshotSink, StorageError, WrittenSnapshot, receiving,
};
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

/// A simulated disk, shared by cloning: the simulator keeps one handle per node and gives a
/// clone to each [`MemoryStore`] it opens on it.
///
/// The disk holds the synced state plus the list of writes made since the last sync, in order.
/// [`crash`](Self::crash) keeps the synced state and a prefix of those writes, which is
/// exactly what the [`LogStore`] contract allows a crash to keep. The write granularity is the
/// same as [`WalStore`](super::wal::WalStore)'s records: one write per appended entry, one per
/// truncation that removed something, one per saved hard state, one per chunk added to a
/// snapshot being received ([`LogStore::append_incoming`]) and one per
/// [`LogStore::discard_incoming`].
///
/// Everything else is synced on return, together with every earlier write:
/// [`LogStore::commit_snapshot`], [`LogStore::begin_incoming`],
/// [`LogStore::verify_incoming`] and [`LogStore::install_incoming`]. The bytes written to a
/// [`SnapshotSink`] are not on the disk at all until they are committed: a crash forgets them.
///
/// ```
/// use ha_core::{LogIndex, Term};
/// use ha_replicate::entry::{Entry, Payload};
/// use ha_replicate::storage::LogStore;
/// use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
///
/// let entry = |index| Entry {
///     term: Term(1),
///     index: LogIndex(index),
///     payload: Payload::Command(vec![]),
/// };
/// let disk = MemoryDisk::new();
/// let mut store = MemoryStore::open(disk.clone());
/// store.recover()?;
/// store.append(&[entry(1), entry(2)])?;
/// store.sync()?;
/// store.append(&[entry(3), entry(4)])?;
///
/// // Keep 1 of the 2 unsynced writes: entry 3 survives, entry 4 is lost.
/// assert_eq!(disk.crash(1), 1);
/// let mut restarted = MemoryStore::open(disk.clone());
/// assert_eq!(restarted.recover()?.entries, vec![entry(1), entry(2), entry(3)]);
/// # Ok::<(), ha_replicate::storage::StorageError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Debug, Default)]
struct DiskState {
    synced: Image,
    unsynced: Vec<Write>,
    /// Bumped by every crash and every open, so a store from before is refused.
    generation: u64,
    /// A fault injected by a test: every write fails with it until cleared.
    fault: Option<DiskFault>,
}

/// A fault a test injects into a [`MemoryDisk`] ([`MemoryDisk::set_fault`]): every write, sync
/// and snapshot sink fails with it (an append keeps the first half of its entries, as a torn
/// batch does), and the store that saw it refuses everything until
/// [`LogStore::reopen`]. Reads and recovery still work, as on a full disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// `ENOSPC`: the disk is full.
    Full,
    /// `EIO`: the disk failed a write.
    Io,
    /// Not an IO error: the store found a corrupt record ([`StorageError::Corrupt`] at
    /// [`CORRUPT_FAULT_PATH`], offset 0), which stops a replica instead of stalling it.
    Corrupt,
}

/// The path a [`DiskFault::Corrupt`] names.
pub const CORRUPT_FAULT_PATH: &str = "memory disk/injected";

impl DiskFault {
    fn error(self) -> StorageError {
        let source = match self {
            DiskFault::Full => std::io::Error::from_raw_os_error(28),
            DiskFault::Io => std::io::Error::from_raw_os_error(5),
            DiskFault::Corrupt => {
                return StorageError::Corrupt {
                    path: CORRUPT_FAULT_PATH.into(),
                    offset: 0,
                    reason: "injected corruption".to_string(),
                };
            }
        };
        StorageError::Io {
            path: "memory disk".into(),
            source,
        }
    }
}

/// Everything durable.
#[derive(Clone, Debug, Default)]
struct Image {
    hard_state: HardState,
    /// The current snapshot. Its bytes are shared with the readers handed out, so a reader
    /// keeps reading them after a newer snapshot replaces them.
    snapshot: Option<(SnapshotMeta, SnapshotId, Arc<[u8]>)>,
    /// The entries after the snapshot, contiguous.
    entries: Vec<Entry>,
    /// The snapshot being received.
    incoming: Option<IncomingImage>,
}

/// A snapshot being received, as the disk holds it.
#[derive(Clone, Debug)]
struct IncomingImage {
    meta: SnapshotMeta,
    id: SnapshotId,
    /// The bytes held, a prefix of the snapshot's.
    data: Vec<u8>,
}

/// One write that a crash may lose.
#[derive(Clone, Debug)]
enum Write {
    Append(Entry),
    Truncate(LogIndex),
    HardState(HardState),
    /// Bytes added to the snapshot being received.
    IncomingBytes(Vec<u8>),
    /// The snapshot being received is forgotten.
    DiscardIncoming,
}

impl Image {
    fn apply(&mut self, write: Write) {
        match write {
            Write::Append(entry) => self.entries.push(entry),
            Write::Truncate(from) => self.entries.retain(|entry| entry.index < from),
            Write::HardState(hard_state) => self.hard_state = hard_state,
            Write::IncomingBytes(bytes) => {
                // The store only adds bytes to a snapshot it is receiving, and starting
                // another one syncs first, so these bytes always belong to this one.
                if let Some(incoming) = self.incoming.as_mut() {
                    incoming.data.extend_from_slice(&bytes);
                }
            }
            Write::DiscardIncoming => self.incoming = None,
        }
    }

    /// Makes `meta` with `data` the current snapshot and drops the entries it covers.
    fn install(&mut self, meta: &SnapshotMeta, id: SnapshotId, data: Arc<[u8]>) {
        self.entries.retain(|entry| entry.index > meta.last_index);
        self.snapshot = Some((meta.clone(), id, data));
    }
}

impl DiskState {
    fn sync(&mut self) {
        for write in self.unsynced.drain(..) {
            self.synced.apply(write);
        }
    }
}

impl MemoryDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power failure: keeps the synced state and the first
    /// `choice % (unsynced writes + 1)` unsynced writes, drops the rest, and returns how many
    /// were kept. `choice` comes from the caller's seeded RNG, so a run replays exactly; pass
    /// 0 to lose every unsynced write.
    ///
    /// Every store opened on this disk before the crash is refused from now on (its process
    /// is gone); open a new [`MemoryStore`] to recover.
    pub fn crash(&self, choice: u64) -> usize {
        let mut state = self.state.lock();
        let unsynced = state.unsynced.len() as u64;
        // unsynced + 1 never overflows: it is at most the number of writes made in memory.
        let kept = (choice % (unsynced + 1)) as usize;
        let survivors: Vec<Write> = state.unsynced.drain(..).take(kept).collect();
        for write in survivors {
            state.synced.apply(write);
        }
        state.generation += 1;
        kept
    }

    /// How many writes a crash could lose now.
    pub fn unsynced_writes(&self) -> usize {
        self.state.lock().unsynced.len()
    }

    /// Make every later write fail with `fault` (see [`DiskFault`]), or stop failing (`None`).
    pub fn set_fault(&self, fault: Option<DiskFault>) {
        self.state.lock().fault = fault;
    }

    /// The entries the disk holds now, synced or not (what a reopen would recover), for tests.
    pub fn entries_written(&self) -> Vec<Entry> {
        let state = self.state.lock();
        let mut image = state.synced.clone();
        for write in state.unsynced.iter().cloned() {
            image.apply(write);
        }
        image.entries
    }
}

const STALE_STORE: &str = "this memory store's disk crashed or was opened again; open a new store";

/// The snapshot being received, as this store sees it (the disk may still lose a suffix of
/// its bytes).
#[derive(Clone, Debug)]
struct IncomingView {
    meta: SnapshotMeta,
    id: SnapshotId,
    held: u64,
    /// Checked by `verify_incoming` since this store was opened.
    verified: bool,
}

/// Where sinks leave their bytes for `commit_snapshot`, shared by the store and its sinks.
#[derive(Debug, Default)]
struct SinkSlot {
    /// The ticket of the latest sink handed out (0: none, or it was committed).
    latest: u64,
    /// What the latest sink wrote, once finished.
    finished: Option<(u64, Arc<[u8]>)>,
}

/// A [`SnapshotSink`] into memory: its bytes reach the store when finished and are on the
/// disk only once committed.
struct MemorySink {
    disk: MemoryDisk,
    ticket: u64,
    bytes: Vec<u8>,
    crc32c: u32,
    slot: Arc<Mutex<SinkSlot>>,
}

impl std::io::Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        self.crc32c = crc32c::crc32c_append(self.crc32c, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SnapshotSink for MemorySink {
    fn finish(self: Box<Self>) -> Result<WrittenSnapshot, StorageError> {
        if let Some(fault) = self.disk.state.lock().fault {
            return Err(fault.error());
        }
        let written = WrittenSnapshot {
            size: self.bytes.len() as u64,
            crc32c: self.crc32c,
            ticket: self.ticket,
        };
        let mut slot = self.slot.lock();
        // An abandoned sink leaves nothing behind; committing it is refused by its ticket.
        if slot.latest == self.ticket {
            slot.finished = Some((self.ticket, Arc::from(self.bytes)));
        }
        Ok(written)
    }
}

/// A [`LogStore`] in memory on a [`MemoryDisk`]. Obeys the same contract, and accepts and
/// refuses the same calls, as [`WalStore`](super::wal::WalStore); see [`MemoryDisk`] for how
/// a crash is simulated.
#[derive(Debug)]
pub struct MemoryStore {
    disk: MemoryDisk,
    generation: u64,
    /// `None` until `recover` has run.
    bounds: Option<LogBounds>,
    incoming: Option<IncomingView>,
    sinks: Arc<Mutex<SinkSlot>>,
    /// The ticket of the last sink handed out.
    last_ticket: u64,
    /// A write failed (an injected [`DiskFault`]): everything is refused until reopened.
    failed: bool,
}

impl MemoryStore {
    /// Opens a store on `disk`, as a restarted process would. A store opened earlier on the
    /// same disk is refused from now on.
    pub fn open(disk: MemoryDisk) -> Self {
        let generation = {
            let mut state = disk.state.lock();
            state.generation += 1;
            state.generation
        };
        Self {
            disk,
            generation,
            bounds: None,
            incoming: None,
            sinks: Arc::default(),
            last_ticket: 0,
            failed: false,
        }
    }

    /// The disk this store writes to.
    pub fn disk(&self) -> &MemoryDisk {
        &self.disk
    }

    /// Runs a call with the disk locked, after checking that this store is still current and
    /// has recovered.
    fn with_disk<T>(
        &mut self,
        operation: impl FnOnce(
            &mut DiskState,
            &mut LogBounds,
            &mut Option<IncomingView>,
        ) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if self.failed {
            return Err(StorageError::Io {
                path: "memory disk".into(),
                source: std::io::Error::other(
                    "an earlier write or sync failed; reopen the store and recover",
                ),
            });
        }
        let mut state = self.disk.state.lock();
        if state.generation != self.generation {
            return Err(StorageError::Misuse(STALE_STORE.to_string()));
        }
        let Some(bounds) = self.bounds.as_mut() else {
            return Err(StorageError::Misuse(
                "recover must be called before any other method".to_string(),
            ));
        };
        operation(&mut state, bounds, &mut self.incoming)
    }
}

impl MemoryStore {
    /// Fails a write when a fault is injected, marking the store failed (as the disk store
    /// marks itself after an IO error).
    fn check_fault(&mut self) -> Result<(), StorageError> {
        let fault = self.disk.state.lock().fault;
        match fault {
            Some(fault) if !self.failed => {
                self.failed = true;
                Err(fault.error())
            }
            _ => Ok(()),
        }
    }
}

impl LogStore for MemoryStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let mut state = self.disk.state.lock();
        if state.generation != self.generation {
            return Err(StorageError::Misuse(STALE_STORE.to_string()));
        }
        if self.bounds.is_some() {
            return Err(StorageError::Misuse(
                "recover is called once, on a freshly opened store".to_string(),
            ));
        }
        // Like the disk store, everything recovered is made durable before it is returned.
        state.sync();
        let image = &state.synced;
        let snapshot_last = image
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |(meta, _, _)| meta.last_index);
        let last = image
            .entries
            .last()
            .map_or(snapshot_last, |entry| entry.index);
        self.bounds = Some(LogBounds::new(snapshot_last, last));
        self.incoming = image.incoming.as_ref().map(|incoming| IncomingView {
            meta: incoming.meta.clone(),
            id: incoming.id,
            held: incoming.data.len() as u64,
            verified: false,
        });
        Ok(Recovered {
            hard_state: image.hard_state.clone(),
            snapshot: image
                .snapshot
                .as_ref()
                .map(|(meta, id, _)| (meta.clone(), *id)),
            incoming: self.incoming(),
            entries: image.entries.clone(),
            repairs: Vec::new(),
        })
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let fault = self.disk.state.lock().fault;
        if let Some(fault) = fault.filter(|_| !self.failed) {
            // A torn batch: the first half of the records reached the disk.
            let kept = &entries[..entries.len() / 2];
            self.with_disk(|state, bounds, _| {
                bounds.check_append(kept)?;
                state
                    .unsynced
                    .extend(kept.iter().cloned().map(Write::Append));
                Ok(())
            })?;
            self.failed = true;
            return Err(fault.error());
        }
        self.with_disk(|state, bounds, _| {
            bounds.check_append(entries)?;
            state
                .unsynced
                .extend(entries.iter().cloned().map(Write::Append));
            if let Some(last) = entries.last() {
                bounds.appended(last.index);
            }
            Ok(())
        })
    }

    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.with_disk(|state, bounds, _| {
            bounds.check_read(from)?;
            // The synced image, less what an unsynced truncation removed.
            let mut end = bounds.last;
            for write in &state.unsynced {
                if let Write::Truncate(cut) = write {
                    end = end.min(LogIndex(cut.0.saturating_sub(1)));
                }
            }
            let mut chosen = Vec::new();
            let mut bytes = 0usize;
            let entries = &state.synced.entries;
            let start = entries.partition_point(|entry| entry.index < from);
            for entry in &entries[start..] {
                let size = entry.size_bytes();
                if entry.index > end
                    || !super::batch_takes(chosen.len(), bytes, size, count_max, bytes_max)
                {
                    break;
                }
                bytes = bytes.saturating_add(size);
                chosen.push(entry.clone());
            }
            Ok(chosen)
        })
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, bounds, _| {
            if let Some(from) = bounds.truncation_point(from) {
                state.unsynced.push(Write::Truncate(from));
                bounds.truncated(from);
            }
            Ok(())
        })
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, _| {
            state.unsynced.push(Write::HardState(hard_state.clone()));
            Ok(())
        })
    }

    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.check_fault()?;
        self.with_disk(|_, _, _| Ok(()))?;
        self.last_ticket += 1;
        let ticket = self.last_ticket;
        {
            let mut slot = self.sinks.lock();
            slot.latest = ticket;
            slot.finished = None;
        }
        Ok(Box::new(MemorySink {
            disk: self.disk.clone(),
            ticket,
            bytes: Vec::new(),
            crc32c: 0,
            slot: Arc::clone(&self.sinks),
        }))
    }

    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        self.check_fault()?;
        let sinks = Arc::clone(&self.sinks);
        self.with_disk(|state, bounds, _| {
            let mut slot = sinks.lock();
            let data = match &slot.finished {
                Some((ticket, data)) if slot.latest == written.ticket && *ticket == written.ticket => {
                    Arc::clone(data)
                }
                _ => {
                    return Err(StorageError::Misuse(format!(
                        "snapshot sink {} is not the latest finished sink (latest: {})",
                        written.ticket, slot.latest
                    )))
                }
            };
            let id = SnapshotId {
                last_index: meta.last_index,
                last_term: meta.last_term,
                size: data.len() as u64,
                crc32c: crc32c::crc32c(&data),
            };
            if id.size != written.size || id.crc32c != written.crc32c {
                return Err(StorageError::Misuse(format!(
                    "snapshot sink {} reported {} bytes with CRC-32C {:08x}, but wrote {} with {:08x}",
                    written.ticket, written.size, written.crc32c, id.size, id.crc32c
                )));
            }
            if let Err(error) = bounds.check_snapshot(meta) {
                // Its bytes can never be committed, as in the disk store.
                slot.latest = 0;
                slot.finished = None;
                return Err(error);
            }
            slot.latest = 0;
            slot.finished = None;
            // As in the disk store: earlier writes become durable with the snapshot.
            state.sync();
            state.synced.install(meta, id, data);
            bounds.snapshotted(meta.last_index);
            Ok(id)
        })
    }

    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        self.with_disk(|state, _, _| {
            let Some((_, _, data)) = state.synced.snapshot.as_ref() else {
                return Err(StorageError::Misuse(
                    "there is no snapshot to read".to_string(),
                ));
            };
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start.saturating_add(max).min(data.len());
            Ok(data[start..end].to_vec())
        })
    }

    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn Read + Send>)>, StorageError> {
        self.with_disk(|state, _, _| {
            Ok(state.synced.snapshot.as_ref().map(|(meta, id, data)| {
                let reader: Box<dyn Read + Send> = Box::new(Cursor::new(Arc::clone(data)));
                (meta.clone(), *id, reader)
            }))
        })
    }

    fn incoming(&self) -> Option<IncomingSnapshot> {
        self.incoming.as_ref().map(|incoming| IncomingSnapshot {
            meta: incoming.meta.clone(),
            id: incoming.id,
            held: incoming.held,
        })
    }

    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, incoming| {
            if meta.last_index != id.last_index || meta.last_term != id.last_term {
                return Err(StorageError::Misuse(format!(
                    "snapshot meta ends at {} in term {} but its id at {} in term {}",
                    meta.last_index, meta.last_term, id.last_index, id.last_term
                )));
            }
            // Durable on return, with every earlier write (so the chunks added later are
            // always the suffix of the writes a crash may lose).
            state.sync();
            let resumed = incoming
                .as_ref()
                .is_some_and(|current| current.id == id && current.meta == *meta);
            if !resumed {
                state.synced.incoming = Some(IncomingImage {
                    meta: meta.clone(),
                    id,
                    data: Vec::new(),
                });
                *incoming = Some(IncomingView {
                    meta: meta.clone(),
                    id,
                    held: 0,
                    verified: false,
                });
            }
            Ok(())
        })
    }

    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, incoming| {
            let incoming = receiving(incoming)?;
            super::check_incoming_append(incoming.held, incoming.id.size, offset, bytes.len())?;
            if !bytes.is_empty() {
                state.unsynced.push(Write::IncomingBytes(bytes.to_vec()));
                incoming.held += bytes.len() as u64;
            }
            Ok(())
        })
    }

    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, incoming| {
            let view = receiving(incoming)?;
            if view.held != view.id.size {
                return Err(StorageError::Misuse(format!(
                    "snapshot being received holds {} of its {} bytes",
                    view.held, view.id.size
                )));
            }
            state.sync();
            let Some(image) = state.synced.incoming.as_mut() else {
                return Err(StorageError::Misuse(
                    "the snapshot being received is not on the disk".to_string(),
                ));
            };
            let matches = image.data.len() as u64 == view.id.size
                && crc32c::crc32c(&image.data) == view.id.crc32c;
            if matches {
                view.verified = true;
            } else {
                image.data = Vec::new();
                view.held = 0;
                view.verified = false;
            }
            Ok(matches)
        })
    }

    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        self.check_fault()?;
        self.with_disk(|state, bounds, incoming| {
            let Some(view) = incoming.as_ref().filter(|view| view.verified) else {
                return Err(StorageError::Misuse(
                    "no verified snapshot is being received".to_string(),
                ));
            };
            bounds.check_snapshot(&view.meta)?;
            state.sync();
            let Some(image) = state.synced.incoming.take() else {
                return Err(StorageError::Misuse(
                    "the snapshot being received is not on the disk".to_string(),
                ));
            };
            let id = view.id;
            state.synced.install(&image.meta, id, Arc::from(image.data));
            bounds.snapshotted(image.meta.last_index);
            *incoming = None;
            Ok(id)
        })
    }

    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, incoming| {
            if incoming.take().is_some() {
                state.unsynced.push(Write::DiscardIncoming);
            }
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_fault()?;
        self.with_disk(|state, _, _| {
            state.sync();
            Ok(())
        })
    }

    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        // As a restarted process would: a new store on the same disk (what was written but
        // not synced is still there, as in the page cache).
        *self = MemoryStore::open(self.disk.clone());
        self.recover()
    }
}
