//! The shared map's durable log: `<dir>/state.log`, an append-only file of framed records.
//!
//! ```text
//! file   = magic "HASMAP\0\x01" (8 bytes) | record*
//! record = body length (u32 LE) | crc32c of the body (u32 LE) | body (postcard Delta)
//! ```
//!
//! Every delta that changed this node's map (a local write, or a remote delta that was new)
//! is appended. Replaying the file and merging every record gives back the map: merge is a
//! join, so order and duplicates do not matter, and a record superseded by a later one costs
//! only disk space until the next compaction.
//!
//! - **Recovery.** A record that is incomplete or fails its checksum at the end of the file
//!   is a torn write (the only writer appends, so a crash can only tear the last record): it
//!   is cut off. A damaged record with a valid record after it is corruption: opening fails
//!   with a clear error rather than silently dropping acknowledged writes. Nothing read from
//!   the file can panic the node or allocate more than [`STATE_RECORD_BYTES_MAX`] at a time.
//! - **Durability.** [`StateStore::append`] writes the record to the file (one `write`, no
//!   sync). [`StoreSync::sync`] makes everything appended so far durable with one `fdatasync`:
//!   concurrent writers share it (group commit), and it runs outside the map's lock.
//! - **Failure.** A failed write is cut back off the file so the log stays well formed; a
//!   failed sync (the kernel may have dropped the dirty pages) poisons the store: every later
//!   write is refused until the node restarts and replays what the disk really holds.
//! - **Compaction.** When the file grows past twice the size of the live state (and past
//!   [`COMPACT_BYTES_MIN`]), the map's current entries are written to `state.log.tmp`, synced,
//!   renamed over `state.log`, and the directory is synced: a crash at any point leaves either
//!   the old file or the new one.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ha_core::codec;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::StateError;

/// The log's file name inside the store directory.
pub const STATE_LOG_FILE_NAME: &str = "state.log";
const TEMP_FILE_NAME: &str = "state.log.tmp";
const MAGIC: [u8; 8] = *b"HASMAP\0\x01";
const RECORD_HEADER_BYTES: usize = 8;
/// The largest record body. An entry must fit one 8 KiB state packet to exist at all, so this
/// leaves room for counters with many writers; a length field above it is damage, refused
/// before anything is allocated for it.
pub const STATE_RECORD_BYTES_MAX: usize = 64 * 1024;
/// The file is never compacted below this size: rewriting a small file buys nothing.
pub const COMPACT_BYTES_MIN: u64 = 1024 * 1024;

/// How the driver and the handle make appended records durable, outside the map's lock.
///
/// Cloned out of the [`StateStore`] (it is an `Arc`): `sync` takes only its own lock, so a
/// writer waiting for the disk never blocks readers of the map.
#[derive(Clone, Debug)]
pub struct StoreSync {
    shared: Arc<SyncShared>,
}

#[derive(Debug)]
struct SyncShared {
    /// A handle on the current log file (replaced by compaction, under this lock), or `None`
    /// for a memory-only store.
    file: Mutex<Option<File>>,
    /// Records appended so far (a sequence number, not a count of live records).
    appended: AtomicU64,
    /// Records known durable.
    synced: AtomicU64,
    /// Why the store refuses writes, once a write or sync failed.
    poisoned: Mutex<Option<String>>,
}

impl StoreSync {
    /// Make every record appended so far durable. Returns at once when they already are
    /// (another writer's sync covered them) or when the store keeps no file.
    ///
    /// # Errors
    /// [`StateError::Storage`] when the sync fails; the store is then poisoned.
    pub fn sync(&self) -> Result<(), StateError> {
        self.sync_through(self.shared.appended.load(Ordering::Acquire))
    }

    /// Make records up to sequence number `appended` durable.
    ///
    /// # Errors
    /// [`StateError::Storage`] when the sync fails; the store is then poisoned.
    pub fn sync_through(&self, appended: u64) -> Result<(), StateError> {
        if self.shared.synced.load(Ordering::Acquire) >= appended {
            return Ok(());
        }
        let file = self.shared.file.lock();
        // Read the target under the lock: everything appended before it is covered.
        let target = self.shared.appended.load(Ordering::Acquire);
        if self.shared.synced.load(Ordering::Acquire) >= appended {
            return Ok(());
        }
        if let Some(reason) = self.shared.poisoned.lock().clone() {
            return Err(StateError::Storage(reason));
        }
        let Some(file) = file.as_ref() else {
            self.shared.synced.fetch_max(target, Ordering::AcqRel);
            return Ok(());
        };
        match file.sync_data() {
            Ok(()) => {
                self.shared.synced.fetch_max(target, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => Err(self.poison(format!("syncing the shared state log: {error}"))),
        }
    }

    /// Whether every record up to sequence number `appended` is known durable.
    pub fn is_synced_through(&self, appended: u64) -> bool {
        self.shared.synced.load(Ordering::Acquire) >= appended
    }

    /// Whether records were appended that are not known durable yet.
    pub fn has_unsynced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire) < self.shared.appended.load(Ordering::Acquire)
    }

    /// The sequence number of the last record appended.
    pub fn appended(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned.lock().clone()
    }

    fn poison(&self, reason: String) -> StateError {
        tracing::error!(%reason, "shared state store failed; local writes are refused until restart");
        let mut poisoned = self.shared.poisoned.lock();
        poisoned.get_or_insert(reason.clone());
        StateError::Storage(reason)
    }
}

/// The durable log of one node's shared map, or nothing (memory only).
#[derive(Debug)]
pub struct StateStore {
    file: Option<LogFile>,
    sync: StoreSync,
}

#[derive(Debug)]
struct LogFile {
    dir: PathBuf,
    /// The append handle.
    file: File,
    /// File length in bytes: where the next record goes.
    bytes: u64,
    /// Compaction is considered when the file grows past this.
    compact_check_at_bytes: u64,
}

/// What [`StateStore::open`] found.
#[derive(Debug)]
pub struct Recovered<T> {
    /// Every record, in file order.
    pub records: Vec<T>,
    /// Bytes of a torn tail that were cut off (0 when the file was whole).
    pub truncated_bytes: u64,
}

impl StateStore {
    /// A store that keeps nothing on disk.
    pub fn memory() -> Self {
        Self {
            file: None,
            sync: StoreSync {
                shared: Arc::new(SyncShared {
                    file: Mutex::new(None),
                    appended: AtomicU64::new(0),
                    synced: AtomicU64::new(0),
                    poisoned: Mutex::new(None),
                }),
            },
        }
    }

    /// Open (or create) the log in `dir` and read every record back. A torn tail is cut off
    /// (and the cut synced).
    ///
    /// # Errors
    /// [`StateError::Storage`] when the directory or file cannot be used, the file is not a
    /// shared state log, or a record before the end is damaged (corruption: the file is left
    /// as it is for a person to look at).
    pub fn open<T: DeserializeOwned>(dir: &Path) -> Result<(Self, Recovered<T>), StateError> {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let path = dir.join(STATE_LOG_FILE_NAME);
        // A temp file is a compaction that did not finish; the old log is still whole.
        let temp = dir.join(TEMP_FILE_NAME);
        if temp.exists() {
            std::fs::remove_file(&temp).map_err(io_error("removing", &temp))?;
        }
        if !path.exists() {
            write_new_log(dir, &[])?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        let length = file
            .metadata()
            .map_err(io_error("reading the size of", &path))?
            .len();
        let (records, valid_bytes) = read_records(&mut file, length, &path)?;
        let truncated_bytes = length - valid_bytes;
        if truncated_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                truncated_bytes,
                "shared state log had a torn tail; cut it off"
            );
            file.set_len(valid_bytes)
                .and_then(|()| file.sync_all())
                .map_err(io_error("truncating the torn tail of", &path))?;
        }
        file.seek(SeekFrom::Start(valid_bytes))
            .map_err(io_error("seeking in", &path))?;
        let sync_handle = file.try_clone().map_err(io_error("opening", &path))?;
        let store = Self {
            file: Some(LogFile {
                dir: dir.to_path_buf(),
                file,
                bytes: valid_bytes,
                compact_check_at_bytes: COMPACT_BYTES_MIN.max(valid_bytes.saturating_mul(2)),
            }),
            sync: StoreSync {
                shared: Arc::new(SyncShared {
                    file: Mutex::new(Some(sync_handle)),
                    appended: AtomicU64::new(0),
                    synced: AtomicU64::new(0),
                    poisoned: Mutex::new(None),
                }),
            },
        };
        Ok((
            store,
            Recovered {
                records,
                truncated_bytes,
            },
        ))
    }

    /// The handle that syncs this store, for use outside the map's lock.
    pub fn sync_handle(&self) -> StoreSync {
        self.sync.clone()
    }

    /// Whether records go to a file.
    pub fn is_durable(&self) -> bool {
        self.file.is_some()
    }

    /// The log file's size in bytes (0 for a memory-only store).
    pub fn file_bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |log| log.bytes)
    }

    /// Refuse early, before the map changes, when the store can no longer write.
    ///
    /// # Errors
    /// [`StateError::Storage`] once a write or sync has failed.
    pub fn check_writable(&self) -> Result<(), StateError> {
        match self.sync.poisoned() {
            Some(reason) => Err(StateError::Storage(reason)),
            None => Ok(()),
        }
    }

    /// Append `records` with one write (not synced: see [`StoreSync::sync`]). Returns the
    /// sequence number to sync through; for a memory-only store, a number that is already
    /// "synced".
    ///
    /// # Errors
    /// [`StateError::Storage`] when a record is too large or the write fails; a failed write
    /// is cut back off the file, and if that fails too the store is poisoned.
    pub fn append<'a, T: Serialize + 'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a T>,
    ) -> Result<u64, StateError> {
        self.check_writable()?;
        let mut buffer = Vec::new();
        let mut count = 0u64;
        for record in records {
            frame_record(record, &mut buffer)?;
            count += 1;
        }
        let shared = &self.sync.shared;
        let Some(log) = self.file.as_mut() else {
            let sequence = shared.appended.fetch_add(count, Ordering::AcqRel) + count;
            shared.synced.fetch_max(sequence, Ordering::AcqRel);
            return Ok(sequence);
        };
        if count == 0 {
            return Ok(shared.appended.load(Ordering::Acquire));
        }
        if let Err(error) = log.file.write_all(&buffer) {
            let path = log.dir.join(STATE_LOG_FILE_NAME);
            let reason = format!("appending to {}: {error}", path.display());
            // Cut off whatever part was written, so no damaged record sits before later ones.
            let restored = log
                .file
                .set_len(log.bytes)
                .and_then(|()| log.file.seek(SeekFrom::Start(log.bytes)).map(|_| ()));
            return Err(match restored {
                Ok(()) => StateError::Storage(reason),
                Err(cut) => self
                    .sync
                    .poison(format!("{reason}; cutting it back: {cut}")),
            });
        }
        log.bytes += buffer.len() as u64;
        Ok(shared.appended.fetch_add(count, Ordering::AcqRel) + count)
    }

    /// Whether the file has grown enough that [`compact`](Self::compact) is worth asking for
    /// (the caller then gathers the live records).
    pub fn wants_compaction(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|log| log.bytes > log.compact_check_at_bytes)
    }

    /// Rewrite the log as exactly `live` when the file is more than twice their size; else
    /// only remember to look again later. Returns whether it rewrote.
    ///
    /// # Errors
    /// [`StateError::Storage`] when the new file cannot be written; the old log is untouched
    /// and stays in use (unless the swap itself failed, which poisons the store).
    pub fn compact<'a, T: Serialize + 'a>(
        &mut self,
        live: impl IntoIterator<Item = &'a T>,
    ) -> Result<bool, StateError> {
        let Some(log) = self.file.as_mut() else {
            return Ok(false);
        };
        let mut buffer = Vec::new();
        for record in live {
            frame_record(record, &mut buffer)?;
        }
        let live_bytes = (MAGIC.len() + buffer.len()) as u64;
        if log.bytes <= live_bytes.saturating_mul(2) {
            // Look again once the file has grown by half the live size: a scan of the map per
            // that many appended bytes keeps the cost per write constant.
            log.compact_check_at_bytes = COMPACT_BYTES_MIN
                .max(live_bytes.saturating_mul(2))
                .max(log.bytes + live_bytes / 2);
            return Ok(false);
        }
        let path = log.dir.join(STATE_LOG_FILE_NAME);
        // Hold the sync lock across the swap: a concurrent sync must not hit the old handle
        // after its records were moved to the new file.
        let mut sync_file = self.sync.shared.file.lock();
        let appended = self.sync.shared.appended.load(Ordering::Acquire);
        write_new_log(&log.dir, &buffer)?;
        let reopened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|mut file| {
                file.seek(SeekFrom::End(0))?;
                let clone = file.try_clone()?;
                Ok((file, clone))
            });
        let (file, clone) = match reopened {
            Ok(handles) => handles,
            Err(error) => {
                drop(sync_file);
                return Err(self.sync.poison(format!(
                    "reopening {} after compaction: {error}",
                    path.display()
                )));
            }
        };
        tracing::info!(
            before_bytes = log.bytes,
            after_bytes = live_bytes,
            "shared state log compacted"
        );
        log.file = file;
        log.bytes = live_bytes;
        log.compact_check_at_bytes = COMPACT_BYTES_MIN.max(live_bytes.saturating_mul(2));
        *sync_file = Some(clone);
        // The new file was synced whole: everything appended before it is durable.
        self.sync
            .shared
            .synced
            .fetch_max(appended, Ordering::AcqRel);
        Ok(true)
    }
}

/// Write `magic | records` to the temp file, sync it, rename it to the log, sync the dir.
fn write_new_log(dir: &Path, records: &[u8]) -> Result<(), StateError> {
    replace_file(dir, TEMP_FILE_NAME, STATE_LOG_FILE_NAME, &[&MAGIC, records])
}

/// Replace `dir/name` with `parts` as one step a crash cannot tear: write them to
/// `dir/temp_name`, sync it, rename it over `name`, sync the directory. A failed write removes
/// the temp file.
pub(crate) fn replace_file(
    dir: &Path,
    temp_name: &str,
    name: &str,
    parts: &[&[u8]],
) -> Result<(), StateError> {
    let temp = dir.join(temp_name);
    let path = dir.join(name);
    let written = File::create(&temp).and_then(|mut file| {
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error("writing", &temp)(error));
    }
    std::fs::rename(&temp, &path).map_err(io_error("renaming the new file to", &path))?;
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("syncing", dir))
}

fn frame_record<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<(), StateError> {
    let body = codec::encode("shared state record", record, STATE_RECORD_BYTES_MAX)
        .map_err(|error| StateError::Storage(format!("cannot store a delta: {error}")))?;
    // STATE_RECORD_BYTES_MAX is far below u32::MAX.
    let length = u32::try_from(body.len())
        .map_err(|_| StateError::Storage("record length overflows u32".to_string()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Read every record; returns them and the length of the valid prefix of the file.
fn read_records<T: DeserializeOwned>(
    file: &mut File,
    length: u64,
    path: &Path,
) -> Result<(Vec<T>, u64), StateError> {
    let corrupt = |offset: u64, what: String| {
        StateError::Storage(format!(
            "{} is damaged at byte {offset}: {what}; move the file away to start this node's \
             shared state empty (peers send it back by anti-entropy)",
            path.display()
        ))
    };
    file.seek(SeekFrom::Start(0))
        .map_err(io_error("reading", path))?;
    let mut reader = BufReader::new(&mut *file);
    let mut magic = [0u8; MAGIC.len()];
    match reader.read_exact(&mut magic) {
        Ok(()) if magic == MAGIC => {}
        Ok(()) => {
            return Err(StateError::Storage(format!(
                "{} is not a shared state log (wrong magic bytes)",
                path.display()
            )));
        }
        // A crash while creating the file: nothing was ever stored in it.
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
            drop(reader);
            file.set_len(0)
                .and_then(|()| file.write_all(&MAGIC))
                .and_then(|()| file.sync_all())
                .map_err(io_error("rewriting the header of", path))?;
            return Ok((Vec::new(), MAGIC.len() as u64));
        }
        Err(error) => return Err(io_error("reading", path)(error)),
    }
    let mut records = Vec::new();
    let mut offset = MAGIC.len() as u64;
    let mut body = Vec::new();
    loop {
        if offset == length {
            return Ok((records, offset));
        }
        let remaining = length - offset;
        let mut header = [0u8; RECORD_HEADER_BYTES];
        if remaining < RECORD_HEADER_BYTES as u64 {
            return Ok((records, offset));
        }
        reader
            .read_exact(&mut header)
            .map_err(io_error("reading", path))?;
        let [a, b, c, d, e, f, g, h] = header;
        let body_bytes = u32::from_le_bytes([a, b, c, d]) as usize;
        let checksum = u32::from_le_bytes([e, f, g, h]);
        let damage = if body_bytes == 0 || body_bytes > STATE_RECORD_BYTES_MAX {
            Some(format!("record length {body_bytes}"))
        } else if (body_bytes as u64) > remaining - RECORD_HEADER_BYTES as u64 {
            // Incomplete at the end: a torn write.
            return Ok((records, offset));
        } else {
            body.resize(body_bytes, 0);
            reader
                .read_exact(&mut body)
                .map_err(io_error("reading", path))?;
            (crc32c::crc32c(&body) != checksum).then(|| "checksum mismatch".to_string())
        };
        if let Some(what) = damage {
            // Torn tail or corruption? Only the last record can be torn: damage with a valid
            // record anywhere after it is corruption.
            drop(reader);
            return if valid_record_after(file, offset + 1, length, path)? {
                Err(corrupt(offset, what))
            } else {
                Ok((records, offset))
            };
        }
        match codec::decode::<T>("shared state record", &body, STATE_RECORD_BYTES_MAX) {
            Ok(record) => records.push(record),
            // The checksum holds, so the bytes are what was written: a format this version
            // does not know, never a torn write.
            Err(error) => return Err(corrupt(offset, format!("undecodable record: {error}"))),
        }
        offset += (RECORD_HEADER_BYTES + body_bytes) as u64;
    }
}

/// Whether a well-framed record (plausible length, matching checksum) starts at any offset in
/// `from..length`. Bounded: a torn record is at most one record long, so more bytes than that
/// after the damage are corruption without looking.
fn valid_record_after(
    file: &mut File,
    from: u64,
    length: u64,
    path: &Path,
) -> Result<bool, StateError> {
    let tail_bytes = length.saturating_sub(from);
    if tail_bytes > (RECORD_HEADER_BYTES + STATE_RECORD_BYTES_MAX) as u64 {
        return Ok(true);
    }
    let mut tail = Vec::with_capacity(tail_bytes as usize);
    file.seek(SeekFrom::Start(from))
        .and_then(|_| file.take(tail_bytes).read_to_end(&mut tail))
        .map_err(io_error("reading", path))?;
    for start in 0..tail.len() {
        let Some((header, rest)) = tail[start..].split_first_chunk::<RECORD_HEADER_BYTES>() else {
            break;
        };
        let [a, b, c, d, e, f, g, h] = *header;
        let body_bytes = u32::from_le_bytes([a, b, c, d]) as usize;
        if body_bytes == 0 || body_bytes > rest.len() {
            continue;
        }
        if crc32c::crc32c(&rest[..body_bytes]) == u32::from_le_bytes([e, f, g, h]) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl Fn(std::io::Error) -> StateError + 'a {
    move |error| StateError::Storage(format!("{action} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Record {
        key: String,
        value: Vec<u8>,
    }

    fn record(key: &str, size: usize) -> Record {
        Record {
            key: key.to_string(),
            value: vec![7; size],
        }
    }

    fn open(dir: &Path) -> (StateStore, Recovered<Record>) {
        StateStore::open(dir).unwrap()
    }

    #[test]
    fn records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, recovered) = open(dir.path());
        assert!(recovered.records.is_empty());
        let written = [record("a", 3), record("b", 0), record("a", 9)];
        let sequence = store.append(&written[..2]).unwrap();
        store.append(&written[2..]).unwrap();
        assert_eq!(sequence, 2);
        let sync = store.sync_handle();
        assert!(sync.has_unsynced());
        sync.sync().unwrap();
        assert!(!sync.has_unsynced());
        drop(store);
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.records, written.to_vec());
        assert_eq!(recovered.truncated_bytes, 0);
    }

    /// Every possible cut of the last record is a torn tail: cut off, earlier records kept.
    #[test]
    fn a_torn_tail_is_cut_off_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        store.append(&[record("a", 5)]).unwrap();
        let whole = store.file_bytes();
        store.append(&[record("b", 40)]).unwrap();
        let full = store.file_bytes();
        drop(store);
        let path = dir.path().join(STATE_LOG_FILE_NAME);
        let bytes = std::fs::read(&path).unwrap();
        for cut in whole..full {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (store, recovered) = open(dir.path());
            assert_eq!(recovered.records, vec![record("a", 5)], "cut at {cut}");
            assert_eq!(recovered.truncated_bytes, cut - whole);
            assert_eq!(store.file_bytes(), whole);
        }
    }

    #[test]
    fn a_damaged_record_before_a_good_one_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        store.append(&[record("a", 5), record("b", 5)]).unwrap();
        drop(store);
        let path = dir.path().join(STATE_LOG_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a bit in the first record's body.
        bytes[MAGIC.len() + RECORD_HEADER_BYTES + 1] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let error = StateStore::open::<Record>(dir.path()).unwrap_err();
        assert!(error.to_string().contains("damaged at byte 8"), "{error}");
        // The damaged file is left for a person to look at.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_file_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_LOG_FILE_NAME), b"not a log at all").unwrap();
        let error = StateStore::open::<Record>(dir.path()).unwrap_err();
        assert!(error.to_string().contains("wrong magic"), "{error}");
    }

    #[test]
    fn a_record_over_the_limit_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        let before = store.file_bytes();
        let error = store
            .append(&[record("a", 1), record("big", STATE_RECORD_BYTES_MAX)])
            .unwrap_err();
        assert!(matches!(error, StateError::Storage(_)));
        assert_eq!(store.file_bytes(), before);
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        // 300 overwrites of the same key: about 1.2 MiB of which 4 KiB are live.
        let live = record("k", 4000);
        for _ in 0..300 {
            store.append(std::slice::from_ref(&live)).unwrap();
        }
        assert!(store.wants_compaction());
        assert!(store.compact(std::slice::from_ref(&live)).unwrap());
        assert!(!store.wants_compaction());
        assert!(store.file_bytes() < 4100);
        // Appends after compaction go to the new file.
        store.append(&[record("after", 1)]).unwrap();
        store.sync_handle().sync().unwrap();
        drop(store);
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.records, vec![live, record("after", 1)]);
    }

    #[test]
    fn no_compaction_when_most_of_the_file_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        let records: Vec<Record> = (0..300).map(|i| record(&format!("k{i}"), 4000)).collect();
        store.append(&records).unwrap();
        assert!(store.wants_compaction());
        assert!(!store.compact(&records).unwrap());
        // It looks again only after the file grew by half the live size.
        assert!(!store.wants_compaction());
    }

    #[test]
    fn a_memory_store_is_always_synced() {
        let mut store = StateStore::memory();
        assert!(!store.is_durable());
        store.append(&[record("a", 1)]).unwrap();
        assert!(!store.sync_handle().has_unsynced());
        assert!(!store.wants_compaction());
    }

    /// A leftover temp file (compaction interrupted) is removed; the log is read as it was.
    #[test]
    fn an_interrupted_compaction_leaves_the_old_log_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = open(dir.path());
        store.append(&[record("a", 1)]).unwrap();
        drop(store);
        std::fs::write(dir.path().join(TEMP_FILE_NAME), b"half written").unwrap();
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.records, vec![record("a", 1)]);
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
    }
}
