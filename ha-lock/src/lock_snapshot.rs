//! The lock table's snapshot as a stream of bounded records (issue 18), so that neither taking
//! nor installing a snapshot holds the state twice in memory. The layout is documented at
//! [`SNAPSHOT_FORMAT_VERSION`].

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::sync::Arc;

use ha_core::{SnapshotSource, StateMachineError};
use imbl::OrdSet;
use serde::{Deserialize, Serialize};

use crate::command::{
    FencingToken, HolderDigest, KEY_BYTES_MAX, LeaseId, SessionId, VALUE_BYTES_MAX,
};
use crate::lock_table::{ChangeRecord, Entry, Lease, Lock, LockTotals, TableState, Waiter};

/// The first bytes of a lock table snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"HALK";
/// The version of the snapshot layout that follows [`SNAPSHOT_MAGIC`]. Version 1 (before
/// issue 18) was one postcard message; it is not read. Version 2 (before issue 13) had no
/// holder digests; it is still read (its records are a subset of version 3's), and an older
/// binary refuses a version 3 snapshot by its version number.
///
/// The layout of a [`WithLocks`](crate::WithLocks) snapshot (integers little-endian):
///
/// ```text
/// "HALK" | format version: u32 = 3
/// record* : length: u32 (at most SNAPSHOT_RECORD_BYTES_MAX) | postcard(Record)
///           Totals, Entry* (keys ascending), Lease* (ids ascending),
///           (Lock Waiter*)* (names ascending), Change* (log order), End (counts)
/// the host state machine's snapshot, to the end of the stream
/// ```
///
/// A lock granted with a holder digest is a `KeyedLock` record instead of a `Lock` record, and
/// a waiter that asked with one a `KeyedWaiter` record instead of a `Waiter` record (each the
/// same fields plus the 32-byte digest; they are the last variants of the record enum, so a
/// version 2 stream decodes as version 3).
///
/// A change record whose value is still its key's current value is written as a reference to
/// it (the bytes once, in the entry) and restored sharing the entry's value. A lease's key and
/// lock sets are not written: restore derives them from the entries and locks that name the
/// lease (the table keeps them equal).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;
/// The oldest format version a restore reads.
const SNAPSHOT_FORMAT_VERSION_READ_MIN: u32 = 2;
/// Most bytes of one record of a lock table snapshot: the largest record is a key of
/// [`KEY_BYTES_MAX`] with a value of [`VALUE_BYTES_MAX`]; restore refuses a longer length
/// before reading it.
pub const SNAPSHOT_RECORD_BYTES_MAX: usize = VALUE_BYTES_MAX + KEY_BYTES_MAX + 1024;

/// How much the snapshot's reader and writer buffer.
const STREAM_BUFFER_BYTES: usize = 64 * 1024;
/// The record buffer the writer keeps between records; a record longer than this (a large
/// value) gets a buffer of its own, dropped after it.
const RECORD_BUFFER_BYTES: usize = 4 * 1024;

/// One record of the stream. Borrowed strings and bytes: writing encodes straight from the
/// table, and reading decodes from the one record buffer.
#[derive(Debug, Serialize, Deserialize)]
enum Record<'a> {
    Totals {
        compacted_through: u64,
        grants: u64,
        waits: u64,
        deadlocks: u64,
    },
    Entry {
        key: &'a str,
        #[serde(borrow)]
        value: RawBytes<'a>,
        version: u64,
        lease: Option<LeaseId>,
    },
    Lease {
        lease: LeaseId,
        session: SessionId,
        ttl_ms: u64,
        renewals: u64,
    },
    Lock {
        name: &'a str,
        holder: SessionId,
        lease: LeaseId,
        token: FencingToken,
    },
    /// The next waiter in the line of the lock in the last `Lock` record.
    Waiter { session: SessionId, lease: LeaseId },
    Change {
        version: u64,
        key: &'a str,
        #[serde(borrow)]
        value: ChangeValue<'a>,
    },
    End {
        entries: u64,
        leases: u64,
        locks: u64,
        waiters: u64,
        changes: u64,
    },
    /// A `Lock` granted with a holder digest (format 3).
    KeyedLock {
        name: &'a str,
        holder: SessionId,
        lease: LeaseId,
        token: FencingToken,
        holder_digest: HolderDigest,
    },
    /// A `Waiter` that asked with a holder digest (format 3).
    KeyedWaiter {
        session: SessionId,
        lease: LeaseId,
        holder_digest: HolderDigest,
    },
}

impl Record<'_> {
    /// The section of the stream the record belongs to; sections come in this order.
    fn section(&self) -> u8 {
        match self {
            Record::Totals { .. } => 0,
            Record::Entry { .. } => 1,
            Record::Lease { .. } => 2,
            Record::Lock { .. }
            | Record::Waiter { .. }
            | Record::KeyedLock { .. }
            | Record::KeyedWaiter { .. } => 3,
            Record::Change { .. } => 4,
            Record::End { .. } => 5,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum ChangeValue<'a> {
    Deleted,
    #[serde(borrow)]
    Bytes(RawBytes<'a>),
    /// The key's current value (its entry has this change's version).
    Current,
}

/// A value's bytes, encoded with `serialize_bytes` (one copy of the slice) rather than as a
/// sequence of `u8` (one call per byte, which is what serde does for `&[u8]`). Postcard
/// encodes both the same way: a varint length, then the bytes.
#[derive(Debug)]
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(RawBytes)
    }
}

/// What `WithLocks::snapshot_source` hands out: the table's replicated state at one point in
/// time (persistent collections, so taking it was O(1)) and the host's own source.
pub(crate) struct LockSnapshotSource {
    pub(crate) table: TableState,
    pub(crate) host: Box<dyn SnapshotSource>,
}

impl SnapshotSource for LockSnapshotSource {
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> Result<(), StateMachineError> {
        let mut out = BufWriter::with_capacity(STREAM_BUFFER_BYTES, out);
        write_table(&self.table, &mut out)?;
        // The table's state is no longer needed: let go of it before the host writes.
        drop(self.table);
        self.host.write_to(&mut out)?;
        out.flush().map_err(write_failed)
    }
}

fn write_failed(error: std::io::Error) -> StateMachineError {
    StateMachineError::SnapshotFailed(format!("writing the lock snapshot: {error}"))
}

fn corrupt(problem: impl std::fmt::Display) -> StateMachineError {
    StateMachineError::Corrupt(format!("lock snapshot: {problem}"))
}

struct RecordWriter<'o> {
    out: &'o mut dyn Write,
    /// One buffer for every record of the stream: its length prefix and its postcard bytes,
    /// handed to `out` in one call. Reused, so a snapshot of a million records does not
    /// allocate (and grow) a million vectors (issue 17: the per-record `to_allocvec` and its
    /// regrowth were about half of the cost of writing the stream).
    buffer: Vec<u8>,
}

/// A postcard output that appends to a borrowed `Vec`, copying slices in one call.
struct AppendTo<'b>(&'b mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<'o> RecordWriter<'o> {
    fn new(out: &'o mut dyn Write) -> Self {
        Self {
            out,
            buffer: Vec::with_capacity(RECORD_BUFFER_BYTES),
        }
    }

    fn write(&mut self, record: &Record<'_>) -> Result<(), StateMachineError> {
        self.buffer.clear();
        // The length goes first; it is filled in once the record is encoded.
        self.buffer.extend_from_slice(&[0; 4]);
        postcard::serialize_with_flavor(record, AppendTo(&mut self.buffer)).map_err(|error| {
            StateMachineError::SnapshotFailed(format!("encoding a lock snapshot record: {error}"))
        })?;
        let record_bytes = self.buffer.len() - 4;
        let length = u32::try_from(record_bytes)
            .ok()
            .filter(|length| *length as usize <= SNAPSHOT_RECORD_BYTES_MAX)
            .ok_or_else(|| {
                StateMachineError::SnapshotFailed(format!(
                    "a lock snapshot record of {record_bytes} bytes is longer than \
                     {SNAPSHOT_RECORD_BYTES_MAX}"
                ))
            })?;
        self.buffer[..4].copy_from_slice(&length.to_le_bytes());
        let written = self.out.write_all(&self.buffer).map_err(write_failed);
        if self.buffer.capacity() > RECORD_BUFFER_BYTES {
            // A large value's record: do not hold its buffer for the rest of the stream.
            self.buffer = Vec::with_capacity(RECORD_BUFFER_BYTES);
        }
        written
    }
}

/// Write the table part of the stream (header, records, end record) to `out`.
fn write_table(table: &TableState, out: &mut dyn Write) -> Result<(), StateMachineError> {
    out.write_all(&SNAPSHOT_MAGIC).map_err(write_failed)?;
    out.write_all(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())
        .map_err(write_failed)?;
    let mut writer = RecordWriter::new(out);
    writer.write(&Record::Totals {
        compacted_through: table.compacted_through,
        grants: table.totals.grants,
        waits: table.totals.waits,
        deadlocks: table.totals.deadlocks,
    })?;
    // The entry of each key a kept change wrote a value to, found during the pass over the
    // entries (one hash look-up per entry) instead of one B-tree search per change record
    // after it (issue 17: those searches were a third of the cost of writing the stream).
    // Transient: one slot per such key, at most `CHANGES_MAX`. Hashed with foldhash, not
    // std's SipHash: every entry's key is hashed once per pass, and a pass runs for each
    // snapshot and each consistency digest; SipHash's resistance to chosen keys buys nothing
    // here (keys hash into a map that lives for one pass, sized up front) and its cost was
    // about a fifth of the pass at 64 HTTP clients (issue 17, leader profile).
    let mut changed: HashMap<&str, Option<&Entry>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(
            table.changes.len().min(table.entries.len()),
            foldhash::fast::RandomState::default(),
        );
    for change in &table.changes {
        if change.value.is_some() {
            changed.insert(change.key.as_str(), None);
        }
    }
    for (key, entry) in &table.entries {
        if let Some(slot) = changed.get_mut(key.as_str()) {
            *slot = Some(entry);
        }
        writer.write(&Record::Entry {
            key,
            value: RawBytes(&entry.value),
            version: entry.version,
            lease: entry.lease,
        })?;
    }
    for (lease, record) in &table.leases {
        writer.write(&Record::Lease {
            lease: *lease,
            session: record.session,
            ttl_ms: record.ttl_ms,
            renewals: record.renewals,
        })?;
    }
    let mut waiters = 0u64;
    for (name, lock) in &table.locks {
        writer.write(&match lock.holder_digest {
            None => Record::Lock {
                name,
                holder: lock.holder,
                lease: lock.lease,
                token: lock.token,
            },
            Some(holder_digest) => Record::KeyedLock {
                name,
                holder: lock.holder,
                lease: lock.lease,
                token: lock.token,
                holder_digest,
            },
        })?;
        for waiter in &lock.waiters {
            let (session, lease) = (waiter.session, waiter.lease);
            writer.write(&match waiter.holder_digest {
                None => Record::Waiter { session, lease },
                Some(holder_digest) => Record::KeyedWaiter {
                    session,
                    lease,
                    holder_digest,
                },
            })?;
            waiters += 1;
        }
    }
    for change in &table.changes {
        let value = match &change.value {
            None => ChangeValue::Deleted,
            Some(value) => match changed.get(change.key.as_str()).copied().flatten() {
                // The same write: versions are log indexes, one write per index. The bytes
                // are compared too (cheap when shared), so a restored table that broke that
                // rule round-trips exactly.
                Some(entry)
                    if entry.version == change.version
                        && (Arc::ptr_eq(&entry.value, value) || entry.value == *value) =>
                {
                    ChangeValue::Current
                }
                _ => ChangeValue::Bytes(RawBytes(value)),
            },
        };
        writer.write(&Record::Change {
            version: change.version,
            key: &change.key,
            value,
        })?;
    }
    writer.write(&Record::End {
        entries: table.entries.len() as u64,
        leases: table.leases.len() as u64,
        locks: table.locks.len() as u64,
        waiters,
        changes: table.changes.len() as u64,
    })
}

/// Read the table part of a snapshot stream (up to and including its end record), leaving
/// `input` at the first byte of the host's part.
///
/// Memory: one record buffer of at most [`SNAPSHOT_RECORD_BYTES_MAX`], grown only as bytes
/// arrive (never from a claimed length), plus the table the records describe.
pub(crate) fn read_table(input: &mut dyn Read) -> Result<TableState, StateMachineError> {
    let mut header = [0u8; 8];
    input.read_exact(&mut header).map_err(|error| {
        corrupt(format_args!(
            "the stream ended in its 8-byte header ({error})"
        ))
    })?;
    if header[..4] != SNAPSHOT_MAGIC {
        return Err(corrupt(format_args!(
            "the stream does not start with {:?} (a snapshot of format 1, from before issue \
             18, is not read by this version)",
            String::from_utf8_lossy(&SNAPSHOT_MAGIC)
        )));
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(SNAPSHOT_FORMAT_VERSION_READ_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(corrupt(format_args!(
            "format {version} is not one this version reads \
             ({SNAPSHOT_FORMAT_VERSION_READ_MIN} to {SNAPSHOT_FORMAT_VERSION})"
        )));
    }
    let mut reader = TableReader::default();
    let mut buffer = Vec::new();
    let mut number = 0u64;
    loop {
        read_record(input, number, &mut buffer)?;
        let (record, rest) = postcard::take_from_bytes::<Record<'_>>(&buffer)
            .map_err(|error| corrupt(format_args!("record {number} is malformed: {error}")))?;
        if !rest.is_empty() {
            return Err(corrupt(format_args!(
                "record {number} has {} bytes after its end",
                rest.len()
            )));
        }
        if reader.take(number, record)? {
            return Ok(reader.state);
        }
        number += 1;
    }
}

/// Read record `number`'s bytes into `buffer`.
fn read_record(
    input: &mut dyn Read,
    number: u64,
    buffer: &mut Vec<u8>,
) -> Result<(), StateMachineError> {
    let mut length = [0u8; 4];
    input.read_exact(&mut length).map_err(|error| {
        if error.kind() == ErrorKind::UnexpectedEof {
            corrupt(format_args!(
                "the stream ended before its end record (at record {number})"
            ))
        } else {
            corrupt(format_args!("reading record {number}: {error}"))
        }
    })?;
    let length = u32::from_le_bytes(length) as usize;
    if length > SNAPSHOT_RECORD_BYTES_MAX {
        return Err(corrupt(format_args!(
            "record {number} claims {length} bytes; a record is at most \
             {SNAPSHOT_RECORD_BYTES_MAX}"
        )));
    }
    buffer.clear();
    input
        .take(length as u64)
        .read_to_end(buffer)
        .map_err(|error| corrupt(format_args!("reading record {number}: {error}")))?;
    if buffer.len() != length {
        return Err(corrupt(format_args!(
            "record {number} claims {length} bytes but the stream ends after {}",
            buffer.len()
        )));
    }
    Ok(())
}

/// The table being rebuilt from the records, and what the order rules need.
#[derive(Default)]
struct TableReader {
    state: TableState,
    /// The section of the last record (see [`Record::section`]); `None` before the first.
    section: Option<u8>,
    /// The lock of the last `Lock` record, whose waiters may follow.
    lock: Option<(String, Lock)>,
    waiters: u64,
}

impl TableReader {
    /// Take record `number`; true when it was the end record.
    fn take(&mut self, number: u64, record: Record<'_>) -> Result<bool, StateMachineError> {
        let section = record.section();
        match self.section {
            None if section != 0 => {
                return Err(corrupt("the first record is not the totals record"));
            }
            Some(_) if section == 0 => {
                return Err(corrupt(format_args!(
                    "record {number} is a second totals record"
                )));
            }
            Some(previous) if section < previous => {
                return Err(corrupt(format_args!(
                    "record {number} is out of order (section {section} after {previous})"
                )));
            }
            _ => {}
        }
        self.section = Some(section);
        if !matches!(record, Record::Waiter { .. } | Record::KeyedWaiter { .. })
            && let Some((name, lock)) = self.lock.take()
        {
            self.state.locks.insert(name, lock);
        }
        match record {
            Record::Totals {
                compacted_through,
                grants,
                waits,
                deadlocks,
            } => {
                self.state.compacted_through = compacted_through;
                self.state.totals = LockTotals {
                    grants,
                    waits,
                    deadlocks,
                };
            }
            Record::Entry {
                key,
                value,
                version,
                lease,
            } => {
                if self
                    .state
                    .entries
                    .get_max()
                    .is_some_and(|(last, _)| last.as_str() >= key)
                {
                    return Err(corrupt(format_args!(
                        "entry record {number} ({key:?}) is not after the previous key"
                    )));
                }
                self.state.entries.insert(
                    key.to_string(),
                    Entry {
                        value: Arc::from(value.0),
                        version,
                        lease,
                    },
                );
            }
            Record::Lease {
                lease,
                session,
                ttl_ms,
                renewals,
            } => {
                if self
                    .state
                    .leases
                    .get_max()
                    .is_some_and(|(last, _)| *last >= lease)
                {
                    return Err(corrupt(format_args!(
                        "lease record {number} (lease {lease}) is not after the previous lease"
                    )));
                }
                self.state.leases.insert(
                    lease,
                    Lease {
                        session,
                        ttl_ms,
                        renewals,
                        keys: OrdSet::new(),
                        locks: OrdSet::new(),
                    },
                );
            }
            Record::Lock {
                name,
                holder,
                lease,
                token,
            } => self.take_lock(number, name, holder, lease, token, None)?,
            Record::KeyedLock {
                name,
                holder,
                lease,
                token,
                holder_digest,
            } => self.take_lock(number, name, holder, lease, token, Some(holder_digest))?,
            Record::Waiter { session, lease } => self.take_waiter(number, session, lease, None)?,
            Record::KeyedWaiter {
                session,
                lease,
                holder_digest,
            } => self.take_waiter(number, session, lease, Some(holder_digest))?,
            Record::Change {
                version,
                key,
                value,
            } => {
                let value = match value {
                    ChangeValue::Deleted => None,
                    ChangeValue::Bytes(bytes) => Some(Arc::from(bytes.0)),
                    ChangeValue::Current => match self.state.entries.get(key) {
                        Some(entry) if entry.version == version => Some(Arc::clone(&entry.value)),
                        _ => {
                            return Err(corrupt(format_args!(
                                "change record {number} (version {version} of {key:?}) refers \
                                 to the key's current value, but the key is not at that version"
                            )));
                        }
                    },
                };
                self.state.changes.push_back(ChangeRecord {
                    version,
                    key: key.to_string(),
                    value,
                });
            }
            Record::End {
                entries,
                leases,
                locks,
                waiters,
                changes,
            } => {
                let read = [
                    self.state.entries.len() as u64,
                    self.state.leases.len() as u64,
                    self.state.locks.len() as u64,
                    self.waiters,
                    self.state.changes.len() as u64,
                ];
                let claimed = [entries, leases, locks, waiters, changes];
                if read != claimed {
                    return Err(corrupt(format_args!(
                        "the end record counts {claimed:?} (entries, leases, locks, waiters, \
                         changes) but the stream held {read:?}"
                    )));
                }
                derive_lease_sets(&mut self.state);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl TableReader {
    /// Take a lock record (its waiters follow).
    fn take_lock(
        &mut self,
        number: u64,
        name: &str,
        holder: SessionId,
        lease: LeaseId,
        token: FencingToken,
        holder_digest: Option<HolderDigest>,
    ) -> Result<(), StateMachineError> {
        if self
            .state
            .locks
            .get_max()
            .is_some_and(|(last, _)| last.as_str() >= name)
        {
            return Err(corrupt(format_args!(
                "lock record {number} ({name:?}) is not after the previous lock"
            )));
        }
        self.lock = Some((
            name.to_string(),
            Lock {
                holder,
                lease,
                token,
                holder_digest,
                waiters: Default::default(),
            },
        ));
        Ok(())
    }

    /// Take a waiter record: the next waiter in the line of the last lock record.
    fn take_waiter(
        &mut self,
        number: u64,
        session: SessionId,
        lease: LeaseId,
        holder_digest: Option<HolderDigest>,
    ) -> Result<(), StateMachineError> {
        let Some((_, lock)) = self.lock.as_mut() else {
            return Err(corrupt(format_args!(
                "waiter record {number} does not follow a lock or waiter record"
            )));
        };
        lock.waiters.push_back(Waiter {
            session,
            lease,
            holder_digest,
        });
        self.waiters += 1;
        Ok(())
    }
}

/// Fill each lease's key and lock sets from the entries and locks that name it.
fn derive_lease_sets(state: &mut TableState) {
    let leases = &mut state.leases;
    for (key, entry) in &state.entries {
        if let Some(lease) = entry.lease
            && let Some(record) = leases.get_mut(&lease)
        {
            record.keys.insert(key.clone());
        }
    }
    for (name, lock) in &state.locks {
        if let Some(record) = leases.get_mut(&lock.lease) {
            record.locks.insert(name.clone());
        }
    }
}

/// Read a whole snapshot stream: the table, then `restore_host` with the rest of the stream
/// (buffered). Returns the table only when both parts were read.
pub(crate) fn read_snapshot(
    input: &mut dyn Read,
    restore_host: impl FnOnce(&mut dyn Read) -> Result<(), StateMachineError>,
) -> Result<TableState, StateMachineError> {
    let mut input = BufReader::with_capacity(STREAM_BUFFER_BYTES, input);
    let table = read_table(&mut input)?;
    restore_host(&mut input)?;
    Ok(table)
}

#[cfg(test)]
#[path = "lock_snapshot_tests.rs"]
mod tests;
