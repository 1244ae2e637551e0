//! The driver's storage thread: the store's log writes and fsyncs run here, off the tokio
//! task, so a slow disk (a 2 s fsync) delays no heartbeat, vote, gossip or HTTP answer.
//!
//! The replica core keeps talking to a [`LogStore`]: the [`ThreadedStore`] it is given hands
//! every call to one thread that owns the real store and runs them in the order made.
//! - Log writes (`append`, `save_hard_state`, `truncate_from`) are buffered and return at
//!   once; the driver hands the buffer over once per event-loop turn with the turn's last
//!   sync request ([`ThreadedStore::request_sync`], for the
//!   [`ReplicaEffect::Sync`](crate::replica::ReplicaEffect::Sync) effects), so a turn of many
//!   writes costs one channel send and one wake-up of the thread, and the thread one fsync
//!   (it also merges turns queued behind an fsync in progress: group commit). It reports
//!   [`StorageReport::Persisted`] with the last write id covered, waking the loop only when
//!   the loop waits for it (`driver/thread_reports.rs`: a leader whose followers have not
//!   answered yet reads it when their answer wakes it). A failed write is reported as
//!   [`StorageReport::Failed`], always at once; later writes and syncs are skipped until the
//!   store is reopened (the store is not to be trusted, see [`LogStore`]).
//! - Everything else (reads of stored entries for a lagging follower, snapshot files,
//!   recovery, reopening, an in-place `sync` while resuming from a full disk) is a call that
//!   waits for its answer: it runs after the writes queued before it, so it sees them. These
//!   happen off the steady state (catch-up, snapshots, recovery), and waiting keeps the core's
//!   view of the store exact; they may wait behind an fsync in progress.

use std::cell::RefCell;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::driver::lazy_queue::{LazyReceiver, LazySender, lazy_queue};
use crate::driver::thread_reports::{ReportReceiver, ReportSender, Wake, thread_reports};
use crate::engine::PersistId;
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};
use crate::storage::{
    IncomingSnapshot, LogStore, Recovered, SnapshotSink, StorageError, WrittenSnapshot,
};
use ha_core::LogIndex;

/// Operations queued for the storage thread at most. A full queue makes the event loop wait
/// (back-pressure from a disk that cannot keep up) instead of holding unbounded memory; one
/// operation is one event-loop turn's writes and sync request (or one call), so a healthy
/// disk never fills it. The queue's memory grows with what it holds (`driver/lazy_queue.rs`).
pub const STORAGE_OPS_QUEUED_MAX: usize = 1_024;

/// Operations the thread takes before it syncs (the group commit's batch bound).
pub const STORAGE_OPS_PER_SYNC_MAX: usize = 256;

/// What the storage thread reports back to the event loop.
#[derive(Debug)]
pub enum StorageReport {
    /// Every write through this id is durable: feed it to
    /// [`ReplicaCore::on_persisted`](crate::replica::ReplicaCore::on_persisted).
    Persisted(PersistId),
    /// A queued write or a sync failed: feed it to
    /// [`ReplicaCore::on_storage_failed`](crate::replica::ReplicaCore::on_storage_failed).
    /// Nothing more is written or synced until the store is reopened.
    Failed(StorageError),
}

type Call<L> = Box<dyn FnOnce(&mut L) + Send>;

/// A log write, buffered until the turn's sync request.
enum Write {
    Append(Vec<Entry>),
    HardState(HardState),
    TruncateFrom(LogIndex),
}

enum Op<L> {
    /// Writes in order, then (when given) a sync reported with this id.
    Writes(Vec<Write>, Option<PersistId>),
    /// Sync in place and answer (resuming from a stall).
    SyncNow(mpsc::SyncSender<Result<(), StorageError>>),
    /// Reopen (clears the failed state) and answer.
    Reopen(mpsc::SyncSender<Result<Recovered, StorageError>>),
    Call(Call<L>),
}

/// A [`LogStore`] whose every operation runs on a storage thread that owns the real store
/// (see the module documentation for which calls wait).
pub struct ThreadedStore<L: LogStore + 'static> {
    ops: LazySender<Op<L>>,
    /// Writes made since the last hand-over (at most one turn's).
    buffered: RefCell<Vec<Write>>,
    thread: Option<JoinHandle<()>>,
}

impl<L: LogStore + 'static> ThreadedStore<L> {
    /// Start the thread over `store`; reports come out of the receiver returned.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the thread cannot be spawned.
    pub(crate) fn start(
        store: L,
        name: &str,
    ) -> Result<(Self, ReportReceiver<StorageReport>), StorageError> {
        let (ops, receiver) = lazy_queue(STORAGE_OPS_QUEUED_MAX);
        // Unbounded but bounded in practice: at most one report per queued sync (bounded
        // above) plus one failure per reopen.
        let (reports, report_receiver) = thread_reports();
        let thread = std::thread::Builder::new()
            .name(format!("ha-storage-{name}"))
            .spawn(move || run(store, receiver, reports))
            .map_err(|source| StorageError::Io {
                path: "storage thread".into(),
                source,
            })?;
        Ok((
            Self {
                ops,
                buffered: RefCell::new(Vec::new()),
                thread: Some(thread),
            },
            report_receiver,
        ))
    }

    /// Hand the buffered writes over with a sync of them (and of every write before them);
    /// the thread reports [`StorageReport::Persisted`] with `through` once it is durable.
    pub fn request_sync(&self, through: PersistId) {
        let writes = self.buffered.take();
        self.send(Op::Writes(writes, Some(through)));
    }

    /// Hand the buffered writes over without a sync (before a call, which must see them, and
    /// at the end of every event-loop turn).
    pub fn hand_over(&self) {
        if !self.buffered.borrow().is_empty() {
            let writes = self.buffered.take();
            self.send(Op::Writes(writes, None));
        }
    }

    fn buffer(&self, write: Write) {
        let mut buffered = self.buffered.borrow_mut();
        // Appends that continue the previous one join it: the store then encodes and writes
        // a turn's entries in one call (one `write` system call), not one per proposal.
        if let (Some(Write::Append(previous)), Write::Append(entries)) =
            (buffered.last_mut(), &write)
            && let (Some(last), Some(first)) = (previous.last(), entries.first())
            && first.index.0 == last.index.0.saturating_add(1)
        {
            let Write::Append(entries) = write else {
                unreachable!("matched as an append above");
            };
            previous.extend(entries);
            return;
        }
        buffered.push(write);
    }

    fn send(&self, op: Op<L>) {
        // The thread only exits once every sender is gone, so this cannot fail while `self`
        // lives; a panic on the thread would drop the receiver, and then nothing is written:
        // the answers that wait for a sync never come (the node times them out).
        if self.ops.send(op).is_err() {
            tracing::error!("the storage thread is gone; the write is dropped");
        }
    }

    /// Run `call` on the thread after every queued operation and wait for its answer.
    fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut L) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.hand_over();
        let (answer, wait) = mpsc::sync_channel(1);
        self.send(Op::Call(Box::new(move |store: &mut L| {
            let _ = answer.send(call(store));
        })));
        wait.recv().unwrap_or_else(|_| Err(thread_gone()))
    }
}

impl<L: LogStore + 'static> Drop for ThreadedStore<L> {
    fn drop(&mut self) {
        // The thread finishes the operations queued (as a process's page cache would be
        // written back) and exits once the sender is gone; it is not waited for, so a dropped
        // node does not block its caller on a slow disk.
        drop(self.thread.take());
    }
}

fn thread_gone() -> StorageError {
    StorageError::Io {
        path: "storage thread".into(),
        source: std::io::Error::other("the storage thread stopped"),
    }
}

/// A copy of the error a write or sync failed with, for every later call until the store
/// is reopened: the same OS error code, so a full disk still reads as full (`classify`).
fn copy_error(error: &StorageError) -> StorageError {
    match error {
        StorageError::Io { path, source } => StorageError::Io {
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        StorageError::Corrupt {
            path,
            offset,
            reason,
        } => StorageError::Corrupt {
            path: path.clone(),
            offset: *offset,
            reason: reason.clone(),
        },
        StorageError::Misuse(reason) => StorageError::Misuse(reason.clone()),
    }
}

/// The thread: take what is queued, carry it out in order, sync once for the syncs among it.
fn run<L: LogStore>(mut store: L, ops: LazyReceiver<Op<L>>, reports: ReportSender<StorageReport>) {
    // The first error since the store was last (re)opened: nothing more is written or synced
    // until it is reopened.
    let mut failed: Option<StorageError> = None;
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < STORAGE_OPS_PER_SYNC_MAX {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // The last sync asked for in this batch and not yet carried out.
        let mut sync_through: Option<PersistId> = None;
        for op in batch {
            match op {
                Op::Writes(writes, sync) => {
                    for write in writes {
                        // Writes after a failure are skipped: the store is not trusted until
                        // reopened.
                        if failed.is_some() {
                            break;
                        }
                        let result = match write {
                            Write::Append(entries) => store.append(&entries),
                            Write::HardState(hard_state) => store.save_hard_state(&hard_state),
                            Write::TruncateFrom(from) => store.truncate_from(from),
                        };
                        if let Err(error) = result {
                            failed = Some(copy_error(&error));
                            reports.send(StorageReport::Failed(error), Wake::Prompt);
                        }
                    }
                    if let Some(through) = sync {
                        sync_through = Some(sync_through.map_or(through, |id| id.max(through)));
                    }
                }
                Op::SyncNow(answer) => {
                    let result = match &failed {
                        Some(error) => Err(copy_error(error)),
                        None => store.sync(),
                    };
                    if let Err(error) = &result {
                        failed.get_or_insert_with(|| copy_error(error));
                    }
                    let _ = answer.send(result);
                }
                Op::Reopen(answer) => {
                    // Syncs asked for before the reopen are dropped: the replica resumes by
                    // writing back and syncing itself.
                    sync_through = None;
                    let result = store.reopen();
                    if result.is_ok() {
                        failed = None;
                    }
                    let _ = answer.send(result);
                }
                Op::Call(call) => {
                    // A call sees what the syncs before it made durable (a read of stored
                    // entries returns only synced ones).
                    if let Some(through) = sync_through.take() {
                        sync(&mut store, &mut failed, through, &reports);
                    }
                    call(&mut store);
                }
            }
        }
        if let Some(through) = sync_through {
            sync(&mut store, &mut failed, through, &reports);
        }
    }
}

fn sync<L: LogStore>(
    store: &mut L,
    failed: &mut Option<StorageError>,
    through: PersistId,
    reports: &ReportSender<StorageReport>,
) {
    if failed.is_some() {
        return;
    }
    match store.sync() {
        Ok(()) => reports.send(StorageReport::Persisted(through), Wake::Lazy),
        Err(error) => {
            *failed = Some(copy_error(&error));
            reports.send(StorageReport::Failed(error), Wake::Prompt);
        }
    }
}

impl<L: LogStore + 'static> LogStore for ThreadedStore<L> {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.call(|store| store.recover())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.buffer(Write::Append(entries.to_vec()));
        Ok(())
    }

    fn append_owned(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.buffer(Write::Append(entries));
        Ok(())
    }

    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.call(move |store| store.read_entries(from, count_max, bytes_max))
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.buffer(Write::TruncateFrom(from));
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.buffer(Write::HardState(hard_state.clone()));
        Ok(())
    }

    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.call(|store| store.snapshot_sink())
    }

    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        let meta = meta.clone();
        let written = written.clone();
        self.call(move |store| store.commit_snapshot(&meta, &written))
    }

    fn save_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<SnapshotId, StorageError> {
        let meta = meta.clone();
        let data = data.to_vec();
        self.call(move |store| store.save_snapshot(&meta, &data))
    }

    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        self.call(move |store| store.read_snapshot(offset, max))
    }

    #[allow(clippy::type_complexity)]
    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn std::io::Read + Send>)>, StorageError>
    {
        self.call(|store| store.snapshot_reader())
    }

    fn incoming(&self) -> Option<IncomingSnapshot> {
        self.call(|store| Ok(store.incoming())).ok().flatten()
    }

    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        let meta = meta.clone();
        self.call(move |store| store.begin_incoming(&meta, id))
    }

    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let bytes = bytes.to_vec();
        self.call(move |store| store.append_incoming(offset, &bytes))
    }

    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        self.call(|store| store.verify_incoming())
    }

    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        self.call(|store| store.install_incoming())
    }

    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        self.call(|store| store.discard_incoming())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.hand_over();
        let (answer, wait) = mpsc::sync_channel(1);
        self.send(Op::SyncNow(answer));
        wait.recv().unwrap_or_else(|_| Err(thread_gone()))
    }

    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        // Writes made before the reopen are dropped with the store's memory: the replica
        // writes back what the disk lacks after it.
        self.buffered.take();
        let (answer, wait) = mpsc::sync_channel(1);
        self.send(Op::Reopen(answer));
        wait.recv().unwrap_or_else(|_| Err(thread_gone()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ha_core::Term;

    use super::*;
    use crate::entry::Payload;
    use crate::storage::io_failure::{StorageFailureKind, classify};
    use crate::storage::memory::{DiskFault, MemoryDisk, MemoryStore};

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: Payload::Command(vec![index as u8]),
        }
    }

    fn next_report(reports: &mut ReportReceiver<StorageReport>) -> StorageReport {
        // Bounded: 500 polls of 10 ms.
        for _ in 0..500 {
            if let Some((report, _)) = reports.try_recv() {
                return report;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no report from the storage thread within 5 s");
    }

    fn started(disk: &MemoryDisk) -> (ThreadedStore<MemoryStore>, ReportReceiver<StorageReport>) {
        let (mut store, reports) =
            ThreadedStore::start(MemoryStore::open(disk.clone()), "test").expect("starts");
        store.recover().expect("recovers");
        (store, reports)
    }

    #[test]
    fn writes_become_durable_with_the_sync_that_reports_them_and_calls_see_them() {
        let disk = MemoryDisk::new();
        let (mut store, mut reports) = started(&disk);
        store
            .append_owned(vec![entry(1), entry(2)])
            .expect("queued");
        store.request_sync(PersistId(1));
        store.append(&[entry(3)]).expect("queued");
        store.request_sync(PersistId(2));
        // One or two fsyncs, but the last report covers write 2 and nothing is lost.
        let mut last = PersistId(0);
        while last < PersistId(2) {
            match next_report(&mut reports) {
                StorageReport::Persisted(through) => {
                    assert!(through > last, "reports only grow");
                    last = through;
                }
                StorageReport::Failed(error) => panic!("{error}"),
            }
        }
        assert_eq!(disk.unsynced_writes(), 0);
        let read = store
            .read_entries(LogIndex(1), 10, usize::MAX)
            .expect("reads");
        assert_eq!(read, vec![entry(1), entry(2), entry(3)]);
    }

    /// A turn's proposals, appended one by one, reach the store as one append; an append that
    /// does not continue the previous one (after a truncation) stays a write of its own, in
    /// order, and the log read back is what was written.
    #[test]
    fn appends_that_continue_each_other_are_one_write() {
        let disk = MemoryDisk::new();
        let (mut store, mut reports) = started(&disk);
        store.append(&[entry(1)]).expect("queued");
        store.append(&[entry(2)]).expect("queued");
        store
            .append_owned(vec![entry(3), entry(4)])
            .expect("queued");
        assert_eq!(store.buffered.borrow().len(), 1, "one append for the turn");
        store.truncate_from(LogIndex(4)).expect("queued");
        let replaced = Entry {
            term: Term(2),
            ..entry(4)
        };
        store
            .append(std::slice::from_ref(&replaced))
            .expect("queued");
        store
            .append(&[entry(9)])
            .expect("queued (the store refuses the gap)");
        assert_eq!(store.buffered.borrow().len(), 4);
        store.request_sync(PersistId(1));
        match next_report(&mut reports) {
            StorageReport::Failed(error) => {
                assert!(error.to_string().contains("does not continue"), "{error}")
            }
            StorageReport::Persisted(_) => panic!("a gap in the log was accepted"),
        }
        store.reopen().expect("reopens");
        assert_eq!(
            store
                .read_entries(LogIndex(1), 10, usize::MAX)
                .expect("reads"),
            vec![entry(1), entry(2), entry(3), replaced]
        );
    }

    #[test]
    fn a_full_disk_is_reported_once_and_stays_full_until_reopened() {
        let disk = MemoryDisk::new();
        let (mut store, mut reports) = started(&disk);
        disk.set_fault(Some(DiskFault::Full));
        store.append(&[entry(1)]).expect("queued");
        store.request_sync(PersistId(1));
        let StorageReport::Failed(error) = next_report(&mut reports) else {
            panic!("the write fails");
        };
        assert_eq!(classify(&error), Some(StorageFailureKind::Full));
        // Later writes and syncs are skipped; an in-place sync says why, still a full disk.
        store.append(&[entry(2)]).expect("queued");
        let error = store.sync().expect_err("still failed");
        assert_eq!(classify(&error), Some(StorageFailureKind::Full));
        assert!(reports.try_recv().is_none(), "one report per failure");
        disk.set_fault(None);
        store.reopen().expect("reopens");
        store.append(&[entry(1)]).expect("queued");
        store.sync().expect("syncs after the reopen");
        assert_eq!(
            store
                .read_entries(LogIndex(1), 10, usize::MAX)
                .expect("reads"),
            vec![entry(1)]
        );
    }
}
