//! Streamed snapshots (issue 18) through both stores alike: snapshots written through a sink
//! and read back in chunks or with a reader, and snapshots received in chunks from a leader,
//! resumed after a restart, verified and installed. `WalStore` restarts by dropping the store
//! and opening the directory again; `MemoryStore` restarts by a simulated crash that keeps a
//! chosen prefix of the unsynced writes, every prefix in turn where it matters.
//!
//! The damaged-file cases (a damaged `incoming.meta`, a cut or damaged `incoming.data`, a crash
//! in the middle of an install) are `WalStore` only: they are about its files.

use crate::wal_support;

use std::fs;
use std::io::{Read, Write};

use ha_core::LogIndex;
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::WalStore;
use ha_replicate::storage::{IncomingSnapshot, LogStore, Recovered, StorageError, WrittenSnapshot};
use wal_support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Wal,
    Memory,
}

const KINDS: [Kind; 2] = [Kind::Wal, Kind::Memory];

/// One store of either kind, and what it needs to restart.
struct Subject {
    kind: Kind,
    directory: tempfile::TempDir,
    disk: MemoryDisk,
    store: Box<dyn LogStore>,
}

impl Subject {
    fn new(kind: Kind) -> (Self, Recovered) {
        let mut subject = Self {
            kind,
            directory: tempfile::tempdir().unwrap(),
            disk: MemoryDisk::new(),
            store: Box::new(MemoryStore::open(MemoryDisk::new())),
        };
        let recovered = subject.reopen();
        (subject, recovered)
    }

    /// Stops the store and starts a new one on the same data: `WalStore` is dropped (its
    /// writes are in the page cache, so nothing is lost); the memory disk crashes, keeping
    /// `choice % (unsynced writes + 1)` of its unsynced writes.
    fn restart(&mut self, choice: u64) -> Recovered {
        if self.kind == Kind::Memory {
            self.disk.crash(choice);
        }
        self.reopen()
    }

    fn reopen(&mut self) -> Recovered {
        // The old store goes first, as its process would.
        self.store = Box::new(MemoryStore::open(MemoryDisk::new()));
        self.store = match self.kind {
            Kind::Wal => Box::new(WalStore::open(self.directory.path(), options(1 << 20)).unwrap()),
            Kind::Memory => Box::new(MemoryStore::open(self.disk.clone())),
        };
        self.store.recover().unwrap()
    }

    fn incoming_data(&self) -> std::path::PathBuf {
        self.directory.path().join("incoming.data")
    }

    fn incoming_meta(&self) -> std::path::PathBuf {
        self.directory.path().join("incoming.meta")
    }
}

/// `length` bytes that differ with `seed` and position.
fn bytes(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|position| {
            let mixed = (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
            mixed as u8 ^ seed
        })
        .collect()
}

/// Writes `data` through a new sink in pieces of `piece` bytes and finishes it.
fn write_sink(store: &mut dyn LogStore, data: &[u8], piece: usize) -> WrittenSnapshot {
    let mut sink = store.snapshot_sink().unwrap();
    for chunk in data.chunks(piece) {
        sink.write_all(chunk).unwrap();
    }
    sink.finish().unwrap()
}

/// The current snapshot read with `read_snapshot` in chunks of `chunk` bytes.
fn read_in_chunks(store: &mut dyn LogStore, chunk: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..100_000 {
        let piece = store.read_snapshot(data.len() as u64, chunk).unwrap();
        assert!(piece.len() <= chunk);
        if piece.is_empty() {
            return data;
        }
        data.extend_from_slice(&piece);
    }
    panic!("read_snapshot never reached the end");
}

fn read_whole(reader: &mut dyn Read) -> Vec<u8> {
    let mut data = Vec::new();
    reader.read_to_end(&mut data).unwrap();
    data
}

fn is_misuse<T: std::fmt::Debug>(result: Result<T, StorageError>) -> bool {
    matches!(result, Err(StorageError::Misuse(_)))
}

#[test]
fn a_sink_committed_reads_back_in_chunks_with_a_reader_and_after_a_restart() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        assert!(
            is_misuse(store.read_snapshot(0, 10)),
            "{kind:?}: no snapshot"
        );
        assert!(store.snapshot_reader().unwrap().is_none());

        store.append(&entries(1, 1, 9)).unwrap();
        let data = bytes(300_001, 1);
        let written = write_sink(store, &data, 4_099);
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.crc32c, crc32c::crc32c(&data));
        let meta = snapshot_meta(6, 1);
        let id = store.commit_snapshot(&meta, &written).unwrap();
        assert_eq!(id, snapshot_id(&meta, &data), "{kind:?}");

        for chunk in [7_000, 65_536, 1 << 20] {
            assert_eq!(read_in_chunks(store, chunk), data, "{kind:?} chunk {chunk}");
        }
        for offset in 0..50 {
            assert_eq!(
                store.read_snapshot(offset, 1).unwrap(),
                [data[offset as usize]]
            );
        }
        assert_eq!(store.read_snapshot(300_000, 10).unwrap(), &data[300_000..]);
        assert!(store.read_snapshot(300_001, 10).unwrap().is_empty());
        assert!(store.read_snapshot(u64::MAX, 10).unwrap().is_empty());
        assert!(store.read_snapshot(5, 0).unwrap().is_empty());
        let (reader_meta, reader_id, mut reader) = store.snapshot_reader().unwrap().unwrap();
        assert_eq!((reader_meta, reader_id), (meta.clone(), id));
        assert_eq!(read_whole(&mut reader), data);

        let recovered = subject.restart(0);
        assert_eq!(recovered.snapshot, Some((meta.clone(), id)), "{kind:?}");
        assert_eq!(recovered.entries, entries(1, 7, 9), "{kind:?}");
        assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        assert_eq!(read_in_chunks(&mut *subject.store, 65_536), data);
        assert_eq!(snapshot_bytes(&mut *subject.store), Some((meta, data)));
    }
}

#[test]
fn a_sink_is_written_on_another_thread_while_the_store_goes_on() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let data = bytes(200_000, 2);
        let mut sink = subject.store.snapshot_sink().unwrap();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                for chunk in data.chunks(1_000) {
                    sink.write_all(chunk).unwrap();
                }
                sink.finish().unwrap()
            })
        };
        subject.store.append(&entries(1, 1, 5)).unwrap();
        subject.store.sync().unwrap();
        let written = writer.join().unwrap();
        let id = subject
            .store
            .commit_snapshot(&snapshot_meta(3, 1), &written)
            .unwrap();
        assert_eq!(id, snapshot_id(&snapshot_meta(3, 1), &data), "{kind:?}");
        assert_eq!(read_in_chunks(&mut *subject.store, 10_000), data);
    }
}

#[test]
fn only_the_latest_finished_sink_commits_with_the_figures_it_wrote() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        store.append(&entries(1, 1, 9)).unwrap();
        let first = write_sink(store, b"first", 2);
        let second = write_sink(store, b"second", 2);
        assert!(
            is_misuse(store.commit_snapshot(&snapshot_meta(4, 1), &first)),
            "{kind:?}: a stale ticket"
        );
        for forged in [
            WrittenSnapshot {
                size: 5,
                ..second.clone()
            },
            WrittenSnapshot {
                crc32c: second.crc32c ^ 1,
                ..second.clone()
            },
            WrittenSnapshot {
                ticket: second.ticket + 1,
                ..second.clone()
            },
        ] {
            assert!(
                is_misuse(store.commit_snapshot(&snapshot_meta(4, 1), &forged)),
                "{kind:?}: {forged:?}"
            );
        }
        assert!(
            store.snapshot_reader().unwrap().is_none(),
            "nothing committed"
        );
        store
            .commit_snapshot(&snapshot_meta(4, 1), &second)
            .unwrap();
        assert!(
            is_misuse(store.commit_snapshot(&snapshot_meta(5, 1), &second)),
            "{kind:?}: committed twice"
        );

        // A sink not yet finished cannot commit, and starting another abandons it.
        let mut unfinished = store.snapshot_sink().unwrap();
        unfinished.write_all(b"unfinished").unwrap();
        let guessed = WrittenSnapshot {
            size: 10,
            crc32c: crc32c::crc32c(b"unfinished"),
            ticket: second.ticket + 1,
        };
        assert!(is_misuse(
            store.commit_snapshot(&snapshot_meta(6, 1), &guessed)
        ));
        let third = write_sink(store, b"third", 100);
        let abandoned = unfinished.finish().unwrap();
        assert!(is_misuse(
            store.commit_snapshot(&snapshot_meta(6, 1), &abandoned)
        ));

        // A meta older than the current snapshot is refused, and that sink is spent.
        assert!(is_misuse(
            store.commit_snapshot(&snapshot_meta(3, 1), &third)
        ));
        assert!(is_misuse(
            store.commit_snapshot(&snapshot_meta(6, 1), &third)
        ));
        assert_eq!(read_in_chunks(store, 3), b"second");

        let recovered = subject.restart(0);
        assert_eq!(
            recovered.snapshot,
            recovered_snapshot(snapshot_meta(4, 1), b"second")
        );
        assert!(
            recovered.repairs.is_empty(),
            "{kind:?}: {:?}",
            recovered.repairs
        );
        if kind == Kind::Wal {
            assert_eq!(snapshot_files(subject.directory.path()).len(), 1);
            let leftovers: Vec<_> = fs::read_dir(subject.directory.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .filter(|name| name.to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }
}

#[test]
fn a_sink_abandoned_by_a_restart_leaves_nothing_and_the_old_snapshot_stands() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        subject.store.append(&entries(1, 1, 4)).unwrap();
        subject
            .store
            .save_snapshot(&snapshot_meta(2, 1), b"two")
            .unwrap();
        let mut sink = subject.store.snapshot_sink().unwrap();
        sink.write_all(&bytes(10_000, 3)).unwrap();
        let written = sink.finish().unwrap();
        let recovered = subject.restart(1);
        assert_eq!(
            recovered.snapshot,
            recovered_snapshot(snapshot_meta(2, 1), b"two")
        );
        if kind == Kind::Wal {
            assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
            assert!(
                recovered.repairs[0].contains("sink-"),
                "{:?}",
                recovered.repairs
            );
        }
        assert!(is_misuse(
            subject
                .store
                .commit_snapshot(&snapshot_meta(3, 1), &written)
        ));
    }
}

#[test]
fn a_reader_keeps_its_bytes_when_a_newer_snapshot_is_committed() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        store.append(&entries(1, 1, 20)).unwrap();
        let old = bytes(150_000, 4);
        let old_id = store.save_snapshot(&snapshot_meta(5, 1), &old).unwrap();
        let (_, reader_id, mut reader) = store.snapshot_reader().unwrap().unwrap();
        assert_eq!(reader_id, old_id);
        let mut start = vec![0; 1_000];
        reader.read_exact(&mut start).unwrap();

        // Newer snapshots replace it, one of them at the same index.
        let new = bytes(90_000, 5);
        store
            .save_snapshot(&snapshot_meta(5, 1), &bytes(10, 6))
            .unwrap();
        store.save_snapshot(&snapshot_meta(10, 1), &new).unwrap();
        assert_eq!(read_in_chunks(store, 8_192), new, "{kind:?}");
        if kind == Kind::Wal {
            assert_eq!(snapshot_files(subject.directory.path()).len(), 1);
        }

        start.extend(read_whole(&mut reader));
        assert_eq!(start, old, "{kind:?}: the reader kept the old bytes");
        drop(reader);
        let recovered = subject.restart(0);
        assert_eq!(
            recovered.snapshot,
            Some((
                snapshot_meta(10, 1),
                snapshot_id(&snapshot_meta(10, 1), &new)
            ))
        );
    }
}

/// Starts receiving `data` as the snapshot `meta`.
fn begin(store: &mut dyn LogStore, meta: &SnapshotMeta, data: &[u8]) -> SnapshotId {
    let id = snapshot_id(meta, data);
    store.begin_incoming(meta, id).unwrap();
    id
}

/// Appends `data[from..]` in chunks of `chunk` bytes.
fn send(store: &mut dyn LogStore, data: &[u8], from: usize, chunk: usize) {
    let mut offset = from;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        store
            .append_incoming(offset as u64, &data[offset..end])
            .unwrap();
        offset = end;
    }
}

#[test]
fn an_interrupted_transfer_resumes_where_the_restarted_store_says() {
    const CHUNK: usize = 10_000;
    for kind in KINDS {
        // The memory disk keeps 0, 1, 2 or 3 of the three chunks; the directory keeps all.
        for choice in 0..4u64 {
            let (mut subject, _) = Subject::new(kind);
            subject.store.append(&entries(1, 1, 5)).unwrap();
            let data = bytes(45_000, 7);
            let meta = snapshot_meta(30, 2);
            let id = begin(&mut *subject.store, &meta, &data);
            assert_eq!(
                subject.store.incoming(),
                Some(IncomingSnapshot {
                    meta: meta.clone(),
                    id,
                    held: 0
                })
            );
            send(&mut *subject.store, &data[..3 * CHUNK], 0, CHUNK);
            assert_eq!(subject.store.incoming().unwrap().held, 3 * CHUNK as u64);

            let recovered = subject.restart(choice);
            let held = recovered
                .incoming
                .as_ref()
                .expect("still being received")
                .held;
            let expected = match kind {
                Kind::Wal => 3 * CHUNK as u64,
                // The log's five entries were synced with the begin.
                Kind::Memory => choice * CHUNK as u64,
            };
            assert_eq!(held, expected, "{kind:?} choice {choice}");
            assert_eq!(recovered.incoming, subject.store.incoming());
            assert_eq!(recovered.snapshot, None, "never current before installed");
            assert_eq!(recovered.entries, entries(1, 1, 5));

            // A leader (the same or a new one) offers the same snapshot: it resumes.
            subject.store.begin_incoming(&meta, id).unwrap();
            assert_eq!(subject.store.incoming().unwrap().held, held);
            assert!(is_misuse(subject.store.install_incoming()), "not verified");
            assert!(is_misuse(subject.store.verify_incoming()), "not complete");
            send(&mut *subject.store, &data, held as usize, 7_777);
            assert!(subject.store.verify_incoming().unwrap(), "{kind:?}");
            assert_eq!(subject.store.install_incoming().unwrap(), id);
            assert_eq!(subject.store.incoming(), None);
            assert_eq!(read_in_chunks(&mut *subject.store, 4_096), data);
            // A snapshot past the log leaves an empty log that continues after it.
            assert!(is_misuse(subject.store.append(&entries(2, 6, 6))));
            subject.store.append(&entries(2, 31, 32)).unwrap();

            let recovered = subject.restart(u64::MAX);
            assert_eq!(recovered.snapshot, Some((meta.clone(), id)));
            assert_eq!(recovered.incoming, None);
            assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
            assert_eq!(snapshot_bytes(&mut *subject.store), Some((meta, data)));
        }
    }
}

#[test]
fn another_snapshot_offered_starts_over_and_discard_forgets() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        let first = bytes(20_000, 8);
        begin(store, &snapshot_meta(10, 1), &first);
        send(store, &first[..5_000], 0, 5_000);
        // Another snapshot (another id) replaces it, bytes and all.
        let second = bytes(20_000, 9);
        let second_id = begin(store, &snapshot_meta(10, 1), &second);
        assert_eq!(store.incoming().unwrap().held, 0);
        assert_eq!(store.incoming().unwrap().id, second_id);
        send(store, &second, 0, 6_000);
        assert!(store.verify_incoming().unwrap());
        store.discard_incoming().unwrap();
        assert_eq!(store.incoming(), None);
        assert!(is_misuse(store.append_incoming(0, b"x")));
        assert!(is_misuse(store.verify_incoming()));
        assert!(is_misuse(store.install_incoming()));
        store.discard_incoming().unwrap();
        store.sync().unwrap();
        let recovered = subject.restart(0);
        assert_eq!(recovered.incoming, None, "{kind:?}");
        assert_eq!(recovered.snapshot, None);
        assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        if kind == Kind::Wal {
            assert!(!subject.incoming_meta().exists() && !subject.incoming_data().exists());
        }
    }
}

#[test]
fn chunks_at_the_wrong_offset_or_past_the_size_are_refused_without_effect() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        assert!(is_misuse(store.append_incoming(0, b"nothing begun")));
        let data = bytes(1_000, 10);
        let meta = snapshot_meta(3, 1);
        let mismatched_id = SnapshotId {
            last_index: LogIndex(4),
            ..snapshot_id(&meta, &data)
        };
        assert!(
            is_misuse(store.begin_incoming(&meta, mismatched_id)),
            "{kind:?}"
        );
        assert_eq!(store.incoming(), None);
        begin(store, &meta, &data);
        store.append_incoming(0, &data[..400]).unwrap();
        for (offset, length) in [(399, 10), (401, 10), (0, 10), (400, 601), (u64::MAX, 1)] {
            assert!(
                is_misuse(store.append_incoming(offset, &data[..length])),
                "{kind:?}: {length} bytes at {offset}"
            );
            assert_eq!(store.incoming().unwrap().held, 400);
        }
        store.append_incoming(400, &[]).unwrap();
        store.append_incoming(400, &data[400..]).unwrap();
        assert!(
            is_misuse(store.append_incoming(1_000, b"x")),
            "past the size"
        );
        store.append_incoming(1_000, &[]).unwrap();
        assert!(store.verify_incoming().unwrap());
        assert_eq!(store.install_incoming().unwrap(), snapshot_id(&meta, &data));
        assert_eq!(read_in_chunks(store, 333), data);
    }
}

#[test]
fn a_mismatch_discards_the_bytes_and_the_transfer_starts_over() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        let data = bytes(30_000, 11);
        let meta = snapshot_meta(7, 1);
        let id = begin(store, &meta, &data);
        // Bytes that are not the snapshot's: the checksum catches them.
        let mut wrong = data.clone();
        wrong[12_345] ^= 0x40;
        send(store, &wrong, 0, 8_000);
        assert!(!store.verify_incoming().unwrap(), "{kind:?}");
        assert_eq!(store.incoming().unwrap().held, 0);
        assert!(is_misuse(store.install_incoming()));
        send(store, &data, 0, 8_000);
        assert!(store.verify_incoming().unwrap());
        assert!(
            store.verify_incoming().unwrap(),
            "verifying again is harmless"
        );

        // An id whose checksum no bytes of that size match: refused every time.
        let (mut other, _) = Subject::new(kind);
        let bad_id = SnapshotId {
            crc32c: id.crc32c ^ 1,
            ..id
        };
        other.store.begin_incoming(&meta, bad_id).unwrap();
        for _ in 0..2 {
            send(&mut *other.store, &data, 0, 30_000);
            assert!(!other.store.verify_incoming().unwrap());
            assert_eq!(other.store.incoming().unwrap().held, 0);
        }
        let recovered = other.restart(0);
        assert_eq!(recovered.incoming.map(|incoming| incoming.held), Some(0));
        assert_eq!(recovered.snapshot, None);

        // An empty snapshot verifies at once.
        let (mut empty, _) = Subject::new(kind);
        begin(&mut *empty.store, &meta, b"");
        assert!(empty.store.verify_incoming().unwrap());
        assert_eq!(
            empty.store.install_incoming().unwrap(),
            snapshot_id(&meta, b"")
        );
        assert!(empty.store.read_snapshot(0, 10).unwrap().is_empty());
    }
}

#[test]
fn an_install_drops_the_entries_it_covers_and_keeps_later_ones() {
    for kind in KINDS {
        let (mut subject, _) = Subject::new(kind);
        let store = &mut *subject.store;
        store.save_hard_state(&hard_state(3, Some("n2"))).unwrap();
        store.append(&entries(1, 1, 20)).unwrap();
        let data = bytes(5_000, 12);
        let meta = snapshot_meta(12, 1);
        begin(store, &meta, &data);
        send(store, &data, 0, 1_024);
        // An entry appended while receiving (a follower keeps its log) stays.
        store.append(&entries(1, 21, 21)).unwrap();
        assert!(store.verify_incoming().unwrap());
        store.install_incoming().unwrap();
        assert!(is_misuse(store.append(&entries(1, 13, 13))));
        store.append(&entries(1, 22, 22)).unwrap();

        // An incoming snapshot older than the current one cannot be installed.
        let older = bytes(100, 13);
        begin(store, &snapshot_meta(9, 1), &older);
        send(store, &older, 0, 100);
        assert!(store.verify_incoming().unwrap());
        assert!(is_misuse(store.install_incoming()), "{kind:?}");
        store.discard_incoming().unwrap();

        let recovered = subject.restart(u64::MAX);
        assert_eq!(
            recovered.snapshot,
            Some((meta.clone(), snapshot_id(&meta, &data)))
        );
        assert_eq!(recovered.entries, entries(1, 13, 22), "{kind:?}");
        assert_eq!(recovered.hard_state, hard_state(3, Some("n2")));
    }
}

/// The contract's rule 5 under every crash point the memory disk offers: whatever a crash
/// keeps, the current snapshot is the old one or the verified new one, complete.
#[test]
fn no_crash_between_begin_and_install_makes_an_unverified_snapshot_current() {
    let old = b"old state".to_vec();
    let new = bytes(40_000, 14);
    let meta = snapshot_meta(8, 2);
    // Stop after: 0 begin, 1 half the bytes, 2 all bytes, 3 verify, 4 install.
    for stop in 0..5 {
        for choice in 0..6u64 {
            for kind in KINDS {
                let (mut subject, _) = Subject::new(kind);
                subject.store.append(&entries(1, 1, 9)).unwrap();
                subject
                    .store
                    .save_snapshot(&snapshot_meta(2, 1), &old)
                    .unwrap();
                let id = begin(&mut *subject.store, &meta, &new);
                if stop >= 1 {
                    send(&mut *subject.store, &new[..20_000], 0, 5_000);
                }
                if stop >= 2 {
                    send(&mut *subject.store, &new, 20_000, 5_000);
                }
                if stop >= 3 {
                    assert!(subject.store.verify_incoming().unwrap());
                }
                if stop >= 4 {
                    subject.store.install_incoming().unwrap();
                }
                let recovered = subject.restart(choice);
                let current = snapshot_bytes(&mut *subject.store);
                if stop >= 4 {
                    assert_eq!(current, Some((meta.clone(), new.clone())));
                    assert_eq!(recovered.incoming, None);
                    assert_eq!(recovered.entries, entries(1, 9, 9));
                    continue;
                }
                assert_eq!(current, Some((snapshot_meta(2, 1), old.clone())));
                let incoming = recovered.incoming.expect("begin is durable");
                assert_eq!(incoming.id, id);
                assert!(incoming.held <= new.len() as u64);
                if stop >= 3 {
                    assert_eq!(incoming.held, new.len() as u64, "verify is durable");
                }
                // Verification is not carried over a restart: the bytes are checked again.
                assert!(
                    is_misuse(subject.store.install_incoming()),
                    "{kind:?} {stop} {choice}"
                );
                send(&mut *subject.store, &new, incoming.held as usize, 9_000);
                assert!(subject.store.verify_incoming().unwrap());
                subject.store.install_incoming().unwrap();
                assert_eq!(read_in_chunks(&mut *subject.store, 40_000), new);
            }
        }
    }
}

#[test]
fn a_damaged_incoming_meta_is_removed_and_the_transfer_starts_over() {
    let data = bytes(20_000, 15);
    let meta = snapshot_meta(5, 1);
    let length = {
        let (mut subject, _) = Subject::new(Kind::Wal);
        begin(&mut *subject.store, &meta, &data);
        fs::metadata(subject.incoming_meta()).unwrap().len()
    };
    for position in (0..length).step_by(3) {
        let (mut subject, _) = Subject::new(Kind::Wal);
        subject.store.append(&entries(1, 1, 3)).unwrap();
        begin(&mut *subject.store, &meta, &data);
        send(&mut *subject.store, &data[..10_000], 0, 10_000);
        drop(std::mem::replace(
            &mut subject.store,
            Box::new(MemoryStore::open(MemoryDisk::new())),
        ));
        flip(&subject.incoming_meta(), position, 0x10);
        let recovered = subject.reopen();
        assert_eq!(recovered.incoming, None, "flip at {position}");
        assert_eq!(recovered.entries, entries(1, 1, 3));
        assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
        assert!(
            recovered.repairs[0].contains("incoming.meta"),
            "{:?}",
            recovered.repairs
        );
        assert!(!subject.incoming_meta().exists() && !subject.incoming_data().exists());
        // The store goes on: the transfer starts over.
        begin(&mut *subject.store, &meta, &data);
        send(&mut *subject.store, &data, 0, 6_000);
        assert!(subject.store.verify_incoming().unwrap());
        subject.store.install_incoming().unwrap();
    }
    // Cut anywhere, or empty.
    for cut_at in [0, 1, 15, 16, length - 1] {
        let (mut subject, _) = Subject::new(Kind::Wal);
        begin(&mut *subject.store, &meta, &data);
        subject.reopen();
        cut(&subject.incoming_meta(), cut_at);
        let recovered = subject.reopen();
        assert_eq!(recovered.incoming, None, "cut at {cut_at}");
        assert_eq!(recovered.repairs.len(), 1);
    }
}

#[test]
fn a_cut_or_missing_incoming_data_resumes_from_what_is_left() {
    let data = bytes(50_000, 16);
    let meta = snapshot_meta(5, 1);
    // The data file holds a 32-byte header before the bytes (see the wal module docs).
    for (file_bytes, held) in [
        (Some(32 + 30_000), 30_000),
        (Some(32 + 1), 1),
        (Some(32), 0),
        (Some(7), 0),
        (Some(0), 0),
        (None, 0),
    ] {
        let (mut subject, _) = Subject::new(Kind::Wal);
        begin(&mut *subject.store, &meta, &data);
        send(&mut *subject.store, &data[..40_000], 0, 10_000);
        subject.reopen();
        match file_bytes {
            Some(length) => cut(&subject.incoming_data(), length),
            None => fs::remove_file(subject.incoming_data()).unwrap(),
        }
        let recovered = subject.reopen();
        assert_eq!(
            recovered.incoming.as_ref().map(|incoming| incoming.held),
            Some(held),
            "{file_bytes:?}"
        );
        assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        send(&mut *subject.store, &data, held as usize, 16_384);
        assert!(subject.store.verify_incoming().unwrap(), "{file_bytes:?}");
        subject.store.install_incoming().unwrap();
        assert_eq!(read_in_chunks(&mut *subject.store, 50_000), data);
    }
}

#[test]
fn damaged_incoming_bytes_fail_verification_and_are_received_again() {
    let data = bytes(50_000, 17);
    let meta = snapshot_meta(5, 1);
    let (mut subject, _) = Subject::new(Kind::Wal);
    begin(&mut *subject.store, &meta, &data);
    send(&mut *subject.store, &data, 0, 10_000);
    subject.reopen();
    flip(&subject.incoming_data(), 32 + 25_000, 0x01);
    let recovered = subject.reopen();
    assert_eq!(recovered.incoming.unwrap().held, 50_000);
    assert!(!subject.store.verify_incoming().unwrap());
    assert_eq!(subject.store.incoming().unwrap().held, 0);
    assert_eq!(fs::metadata(subject.incoming_data()).unwrap().len(), 32);
    send(&mut *subject.store, &data, 0, 10_000);
    assert!(subject.store.verify_incoming().unwrap());
    subject.store.install_incoming().unwrap();
}

#[test]
fn leftovers_of_an_install_interrupted_by_a_crash_are_cleared_up() {
    let data = bytes(10_000, 18);
    let meta = snapshot_meta(5, 1);

    // Before the rename: the data file has the meta sealed on; the old state stands and the
    // transfer still holds all its bytes.
    let (mut subject, _) = Subject::new(Kind::Wal);
    let id = begin(&mut *subject.store, &meta, &data);
    send(&mut *subject.store, &data, 0, 10_000);
    subject.reopen();
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(subject.incoming_data())
        .unwrap();
    file.write_all(b"a meta sealed on by an install that did not finish")
        .unwrap();
    drop(file);
    let recovered = subject.reopen();
    assert_eq!(recovered.snapshot, None);
    assert_eq!(recovered.incoming.as_ref().unwrap().held, 10_000);
    assert_eq!(
        fs::metadata(subject.incoming_data()).unwrap().len(),
        32 + 10_000
    );
    assert!(subject.store.verify_incoming().unwrap());
    subject.store.install_incoming().unwrap();

    // After the rename, before incoming.meta was removed: the meta names the snapshot now
    // current, so it goes.
    let saved_meta = {
        let (mut other, _) = Subject::new(Kind::Wal);
        begin(&mut *other.store, &meta, &data);
        fs::read(other.incoming_meta()).unwrap()
    };
    subject.reopen();
    fs::write(subject.incoming_meta(), &saved_meta).unwrap();
    let recovered = subject.reopen();
    assert_eq!(recovered.snapshot, Some((meta.clone(), id)));
    assert_eq!(recovered.incoming, None);
    assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    assert!(
        recovered.repairs[0].contains("installed"),
        "{:?}",
        recovered.repairs
    );
    assert!(!subject.incoming_meta().exists());

    // Bytes without a meta: removed.
    fs::write(subject.incoming_data(), b"stray").unwrap();
    let recovered = subject.reopen();
    assert_eq!(recovered.incoming, None);
    assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    assert!(!subject.incoming_data().exists());

    // A leftover temporary meta: removed.
    fs::write(subject.directory.path().join("incoming.meta.tmp"), b"half").unwrap();
    let recovered = subject.reopen();
    assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    assert_eq!(snapshot_bytes(&mut *subject.store), Some((meta, data)));
}
