//! [`MemoryStore`]: a [`LogStore`] in memory, for tests and the deterministic simulator, on a
//! [`MemoryDisk`] that survives a simulated crash and loses exactly what a real disk may lose.

use std::sync::Arc;

use ha_core::LogIndex;
use parking_lot::Mutex;

use super::log_bounds::LogBounds;
use super::{LogStore, Recovered, StorageError};
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::SnapshotMeta;

/// A simulated disk, shared by cloning: the simulator keeps one handle per node and gives a
/// clone to each [`MemoryStore`] it opens on it.
///
/// The disk holds the synced state plus the list of writes made since the last sync, in order.
/// [`crash`](Self::crash) keeps the synced state and a prefix of those writes, which is
/// exactly what the [`LogStore`] contract allows a crash to keep. The write granularity is the
/// same as [`WalStore`](super::wal::WalStore)'s records: one write per appended entry, one per
/// truncation that removed something, one per saved hard state. Snapshots are synced when
/// saved, together with every earlier write.
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
}

/// Everything durable.
#[derive(Clone, Debug, Default)]
struct Image {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// The entries after the snapshot, contiguous.
    entries: Vec<Entry>,
}

/// One write that a crash may lose.
#[derive(Clone, Debug)]
enum Write {
    Append(Entry),
    Truncate(LogIndex),
    HardState(HardState),
}

impl Image {
    fn apply(&mut self, write: Write) {
        match write {
            Write::Append(entry) => self.entries.push(entry),
            Write::Truncate(from) => self.entries.retain(|entry| entry.index < from),
            Write::HardState(hard_state) => self.hard_state = hard_state,
        }
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
}

const STALE_STORE: &str = "this memory store's disk crashed or was opened again; open a new store";

/// A [`LogStore`] in memory on a [`MemoryDisk`]. Obeys the same contract, and accepts and
/// refuses the same calls, as [`WalStore`](super::wal::WalStore); see [`MemoryDisk`] for how
/// a crash is simulated.
#[derive(Debug)]
pub struct MemoryStore {
    disk: MemoryDisk,
    generation: u64,
    /// `None` until `recover` has run.
    bounds: Option<LogBounds>,
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
        operation: impl FnOnce(&mut DiskState, &mut LogBounds) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut state = self.disk.state.lock();
        if state.generation != self.generation {
            return Err(StorageError::Misuse(STALE_STORE.to_string()));
        }
        let Some(bounds) = self.bounds.as_mut() else {
            return Err(StorageError::Misuse(
                "recover must be called before any other method".to_string(),
            ));
        };
        operation(&mut state, bounds)
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
        let image = state.synced.clone();
        let snapshot_last = image
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |(meta, _)| meta.last_index);
        let last = image
            .entries
            .last()
            .map_or(snapshot_last, |entry| entry.index);
        self.bounds = Some(LogBounds::new(snapshot_last, last));
        Ok(Recovered {
            hard_state: image.hard_state,
            snapshot: image.snapshot,
            entries: image.entries,
            repairs: Vec::new(),
        })
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.with_disk(|state, bounds| {
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

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.with_disk(|state, bounds| {
            if let Some(from) = bounds.truncation_point(from) {
                state.unsynced.push(Write::Truncate(from));
                bounds.truncated(from);
            }
            Ok(())
        })
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.with_disk(|state, _| {
            state.unsynced.push(Write::HardState(hard_state.clone()));
            Ok(())
        })
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.with_disk(|state, bounds| {
            bounds.check_snapshot(meta)?;
            // As in the disk store: earlier writes become durable with the snapshot.
            state.sync();
            state
                .synced
                .entries
                .retain(|entry| entry.index > meta.last_index);
            state.synced.snapshot = Some((meta.clone(), data.to_vec()));
            bounds.snapshotted(meta.last_index);
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.with_disk(|state, _| {
            state.sync();
            Ok(())
        })
    }
}
