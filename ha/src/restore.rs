//! Restoring a backup into a data dir (issue 14, item 2: disaster recovery and point-in-time
//! restore).
//!
//! Two steps, so that the tool that prepares the restore needs neither the node's id nor its
//! state machine type:
//!
//! 1. [`prepare_restore`] (what `bot snapshot restore FILE --data-dir DIR` runs) verifies the
//!    whole backup file (header, SHA-256 of the body, the cluster name when given) and, for a
//!    point-in-time restore, reads the entries `backup index + 1 ..= N` from a WAL archive
//!    ([`read_archive`]), refusing a gap. Only then does it touch `DIR`: it writes a *pending
//!    restore* (`DIR/restore-pending/`: a copy of the backup, the entries, a manifest with
//!    their SHA-256) into a temporary directory, syncs it and renames it into place. A `DIR`
//!    that already holds a log or a pending restore is refused.
//! 2. [`install_pending_restore`], called by [`NodeBuilder::start`](crate::NodeBuilder::start)
//!    before the log store is opened, verifies the pending restore again (the backup against
//!    the node's own cluster name), writes a log directory beside the real one
//!    (`DIR/log.restoring`): the backup's state as the store's snapshot, whose membership is
//!    this node alone as a voter, then the archived entries, then a hard state whose term is
//!    at least every entry's. It renames that directory to `DIR/log` and removes the pending
//!    restore. A crash before the rename leaves the pending restore to be installed again; a
//!    crash after it leaves a log, and the pending restore is then only removed.
//!
//! The node then starts as a one-voter cluster holding the state: it elects itself, commits the
//! archived entries through its first entry of the new term, and applies them (so a
//! point-in-time restore replays them through the same applier as the original cluster did).
//! Membership entries among them are rewritten to this node alone, so the old voters never come
//! back. Other nodes started empty join it and catch up through the learner and snapshot path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use ha_core::codec::{RPC_FRAME_BYTES_MAX, decode, encode};
use ha_core::{Config, LogIndex, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::hard_state::HardState;
use ha_replicate::membership::VoterSet;
use ha_replicate::snapshot_meta::SnapshotMeta;
use ha_replicate::storage::LogStore;
use ha_replicate::storage::archive::{ArchiveError, read_archive};
use ha_replicate::storage::wal::{WalOptions, WalStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backup_file::{BACKUP_HEADER_BYTES, BackupError, BackupHeader, hex};
use crate::builder::LOG_DIR_NAME;
use crate::error::NodeError;

/// The pending restore's directory inside the data dir.
pub const RESTORE_DIR_NAME: &str = "restore-pending";
/// The log directory being written by an install, renamed to [`LOG_DIR_NAME`] when complete.
const RESTORING_LOG_DIR_NAME: &str = "log.restoring";
const MANIFEST_NAME: &str = "manifest.json";
const BACKUP_NAME: &str = "backup.habackup";
const ENTRIES_NAME: &str = "entries.bin";
/// The manifest's layout version.
const MANIFEST_FORMAT: u32 = 1;
/// Largest manifest read, in bytes (a real one is about 400).
const MANIFEST_BYTES_MAX: u64 = 64 * 1024;
/// The most bytes of archived entries a point-in-time restore holds in memory
/// ([`Entry::size_bytes`]): 512 MiB. Restore to an earlier index, or from a later backup, past
/// it.
pub const RESTORE_ENTRIES_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Why a restore is refused. Nothing in the data dir was changed unless the error says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The backup file does not verify.
    #[error("backup {path} refused: {source}; the data dir was not touched")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        source: BackupError,
    },
    /// The data dir already holds a log or a pending restore.
    #[error("data dir {path} {reason}; the data dir was not touched")]
    DataDirInUse {
        /// The data dir.
        path: PathBuf,
        /// What it holds.
        reason: String,
    },
    /// The index asked for is before the backup.
    #[error(
        "--to-index {to} is before the backup's index {backup}: use an older backup; the data \
         dir was not touched"
    )]
    BeforeBackup {
        /// The index asked for.
        to: LogIndex,
        /// The backup's last index.
        backup: LogIndex,
    },
    /// The WAL archive cannot give the entries asked for.
    #[error("{0}; the data dir was not touched")]
    Archive(#[from] ArchiveError),
    /// Writing the pending restore failed (what was written is removed).
    #[error("writing the pending restore at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What [`prepare_restore`] prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedRestore {
    /// The backup's header.
    pub header: BackupHeader,
    /// The index the restored node will hold: the backup's, or the one asked for.
    pub to_index: LogIndex,
    /// That entry's term.
    pub to_term: Term,
    /// The archived entries replayed after the backup.
    pub entries: usize,
}

/// What a pending restore holds, in `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    cluster: String,
    backup_index: u64,
    backup_term: u64,
    backup_sha256: String,
    to_index: u64,
    to_term: u64,
    entries: u64,
    entries_sha256: String,
}

/// Verify `backup` and prepare `data_dir` so that a node started on it holds the backup's state
/// (and, with `point_in_time = Some((N, archive))`, the archived entries up to index `N`).
/// With `expected_cluster`, a backup of another cluster is refused.
///
/// # Errors
/// [`RestoreError::Backup`], [`RestoreError::DataDirInUse`], [`RestoreError::BeforeBackup`],
/// [`RestoreError::Archive`]: `data_dir` untouched. [`RestoreError::Io`] while writing.
pub fn prepare_restore(
    backup: &Path,
    data_dir: &Path,
    expected_cluster: Option<&str>,
    point_in_time: Option<(LogIndex, &Path)>,
) -> Result<PreparedRestore, RestoreError> {
    let refused = |source| RestoreError::Backup {
        path: backup.to_path_buf(),
        source,
    };
    let header = BackupHeader::verify_file(backup, expected_cluster).map_err(refused)?;
    check_data_dir_free(data_dir)?;
    let backup_index = LogIndex(header.last_index);
    let backup_term = Term(header.last_term);
    let entries = match point_in_time {
        None => Vec::new(),
        Some((to, _)) if to < backup_index => {
            return Err(RestoreError::BeforeBackup {
                to,
                backup: backup_index,
            });
        }
        Some((to, _)) if to == backup_index => Vec::new(),
        Some((to, archive)) => read_archive(
            archive,
            backup_index,
            backup_term,
            to,
            RESTORE_ENTRIES_BYTES_MAX,
        )?,
    };
    let (to_index, to_term) = entries.last().map_or((backup_index, backup_term), |entry| {
        (entry.index, entry.term)
    });
    let temporary = data_dir.join(format!("{RESTORE_DIR_NAME}.tmp"));
    let written = write_pending(backup, &header, &entries, &temporary, data_dir);
    if written.is_err() {
        let _ = fs::remove_dir_all(&temporary);
    }
    written?;
    Ok(PreparedRestore {
        header,
        to_index,
        to_term,
        entries: entries.len(),
    })
}

/// Refuse a data dir that holds a log (a node ran there) or a pending restore.
fn check_data_dir_free(data_dir: &Path) -> Result<(), RestoreError> {
    let in_use = |reason: String| RestoreError::DataDirInUse {
        path: data_dir.to_path_buf(),
        reason,
    };
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(in_use("is not a directory".to_string()));
    }
    let log = data_dir.join(LOG_DIR_NAME);
    let log_has_files = fs::read_dir(&log)
        .map(|mut listing| listing.next().is_some())
        .unwrap_or(false);
    if log_has_files {
        return Err(in_use(format!(
            "already holds a log ({}): restore into an empty directory, or move it aside",
            log.display()
        )));
    }
    if data_dir.join(RESTORE_DIR_NAME).exists() {
        return Err(in_use(format!(
            "already holds a pending restore ({RESTORE_DIR_NAME}): start the node to install it, \
             or remove it"
        )));
    }
    Ok(())
}

/// Write the pending restore into `temporary` and rename it into place.
fn write_pending(
    backup: &Path,
    header: &BackupHeader,
    entries: &[Entry],
    temporary: &Path,
    data_dir: &Path,
) -> Result<(), RestoreError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { path, source }
    };
    fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
    let _ = fs::remove_dir_all(temporary);
    fs::create_dir(temporary).map_err(io_error(temporary))?;
    // The copy is verified again: the bytes installed are the bytes checked.
    let copy = temporary.join(BACKUP_NAME);
    copy_synced(backup, &copy).map_err(io_error(&copy))?;
    let copied = BackupHeader::verify_file(&copy, Some(&header.cluster)).map_err(|source| {
        RestoreError::Backup {
            path: backup.to_path_buf(),
            source,
        }
    })?;
    if copied != *header {
        return Err(RestoreError::Io {
            path: copy,
            source: io::Error::other("the backup changed while it was being copied"),
        });
    }
    let entries_path = temporary.join(ENTRIES_NAME);
    let mut file = create_private(&entries_path).map_err(io_error(&entries_path))?;
    let mut hasher = Sha256::new();
    for entry in entries {
        let bytes = encode("a restored entry", entry, RPC_FRAME_BYTES_MAX).map_err(|error| {
            RestoreError::Io {
                path: entries_path.clone(),
                source: io::Error::other(error.to_string()),
            }
        })?;
        let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes();
        hasher.update(length);
        hasher.update(&bytes);
        file.write_all(&length)
            .and_then(|()| file.write_all(&bytes))
            .map_err(io_error(&entries_path))?;
    }
    file.sync_all().map_err(io_error(&entries_path))?;
    let (to_index, to_term) = entries
        .last()
        .map_or((header.last_index, header.last_term), |entry| {
            (entry.index.0, entry.term.0)
        });
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        cluster: header.cluster.clone(),
        backup_index: header.last_index,
        backup_term: header.last_term,
        backup_sha256: hex(&header.body_sha256),
        to_index,
        to_term,
        entries: entries.len() as u64,
        entries_sha256: hex(&hasher.finalize()),
    };
    let manifest_path = temporary.join(MANIFEST_NAME);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|error| RestoreError::Io {
        path: manifest_path.clone(),
        source: io::Error::other(error.to_string()),
    })?;
    let mut file = create_private(&manifest_path).map_err(io_error(&manifest_path))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&manifest_path))?;
    sync_dir(temporary).map_err(io_error(temporary))?;
    let pending = data_dir.join(RESTORE_DIR_NAME);
    fs::rename(temporary, &pending).map_err(io_error(&pending))?;
    sync_dir(data_dir).map_err(io_error(data_dir))
}

fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn copy_synced(from: &Path, to: &Path) -> io::Result<()> {
    let mut input = File::open(from)?;
    let mut output = create_private(to)?;
    io::copy(&mut input, &mut output)?;
    output.sync_all()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// What [`install_pending_restore`] installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledRestore {
    /// The backup's last index.
    pub backup_index: LogIndex,
    /// The last index the log holds after it.
    pub to_index: LogIndex,
}

/// Install the pending restore in `data_dir`, if there is one, as this node's log: see the
/// [module documentation](self). Called by the builder before the log store is opened.
///
/// # Errors
/// [`NodeError::DataDir`] naming what is wrong (a damaged pending restore, a backup of another
/// cluster, a node that is not a voter, a log that cannot be written); the pending restore is
/// then left in place and nothing is installed.
pub fn install_pending_restore(
    config: &Config,
    data_dir: &Path,
    options: &WalOptions,
) -> Result<Option<InstalledRestore>, NodeError> {
    let pending = data_dir.join(RESTORE_DIR_NAME);
    let restoring = data_dir.join(RESTORING_LOG_DIR_NAME);
    let failed = |path: &Path, reason: String| NodeError::DataDir {
        path: path.to_path_buf(),
        reason,
    };
    if !pending.exists() {
        if restoring.exists() {
            let _ = fs::remove_dir_all(&restoring);
        }
        return Ok(None);
    }
    let log = data_dir.join(LOG_DIR_NAME);
    if log.exists() {
        // The install renamed its log into place and stopped before removing the pending
        // restore (prepare_restore refuses a data dir with a log).
        fs::remove_dir_all(&pending).map_err(|error| failed(&pending, error.to_string()))?;
        return Ok(None);
    }
    if !config.voter {
        return Err(failed(
            &pending,
            "a restored node starts as the one voter of its cluster: start it with voter = true"
                .to_string(),
        ));
    }
    let manifest = load_manifest(&pending).map_err(|reason| failed(&pending, reason))?;
    let backup = pending.join(BACKUP_NAME);
    let header = BackupHeader::verify_file(&backup, Some(&config.cluster.name))
        .map_err(|error| failed(&backup, format!("the pending restore is refused: {error}")))?;
    if manifest.cluster != header.cluster
        || manifest.backup_index != header.last_index
        || manifest.backup_term != header.last_term
        || manifest.backup_sha256 != hex(&header.body_sha256)
    {
        return Err(failed(
            &pending,
            "the manifest does not describe the backup beside it: prepare the restore again"
                .to_string(),
        ));
    }
    let entries = load_entries(&pending, &manifest).map_err(|reason| failed(&pending, reason))?;
    let _ = fs::remove_dir_all(&restoring);
    write_log(config, &restoring, options, &header, &backup, &entries)
        .map_err(|reason| failed(&restoring, reason))?;
    fs::rename(&restoring, &log).map_err(|error| failed(&log, error.to_string()))?;
    sync_dir(data_dir).map_err(|error| failed(data_dir, error.to_string()))?;
    fs::remove_dir_all(&pending).map_err(|error| failed(&pending, error.to_string()))?;
    let _ = sync_dir(data_dir);
    let installed = InstalledRestore {
        backup_index: LogIndex(header.last_index),
        to_index: LogIndex(manifest.to_index),
    };
    tracing::warn!(
        node = %config.node_id,
        cluster = %config.cluster.name,
        backup_index = %installed.backup_index,
        to_index = %installed.to_index,
        "installed a restored backup: this node starts as the one voter of its cluster"
    );
    Ok(Some(installed))
}

fn load_manifest(pending: &Path) -> Result<Manifest, String> {
    let path = pending.join(MANIFEST_NAME);
    let mut text = String::new();
    File::open(&path)
        .and_then(|file| file.take(MANIFEST_BYTES_MAX + 1).read_to_string(&mut text))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if text.len() as u64 > MANIFEST_BYTES_MAX {
        return Err(format!("{} is too large", path.display()));
    }
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|error| format!("{} does not parse: {error}", path.display()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "{} has format {}, this build reads {MANIFEST_FORMAT}",
            path.display(),
            manifest.format
        ));
    }
    Ok(manifest)
}

/// The entries of the pending restore, checked against the manifest (count, SHA-256, each
/// following the one before, ending at its `to_index`).
fn load_entries(pending: &Path, manifest: &Manifest) -> Result<Vec<Entry>, String> {
    let path = pending.join(ENTRIES_NAME);
    let damaged = |why: &str| format!("{} is damaged: {why}", path.display());
    let mut input = BufReader::new(File::open(&path).map_err(|error| error.to_string())?);
    let mut hasher = Sha256::new();
    let mut entries = Vec::new();
    let mut bytes_held = 0usize;
    let mut expected = manifest.backup_index + 1;
    loop {
        let mut length = [0u8; 4];
        match input.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error.to_string()),
        }
        let size = u32::from_le_bytes(length) as usize;
        if size > RPC_FRAME_BYTES_MAX {
            return Err(damaged("an entry longer than one frame"));
        }
        bytes_held = bytes_held.saturating_add(size);
        if bytes_held > RESTORE_ENTRIES_BYTES_MAX {
            return Err(damaged("more bytes than a restore holds"));
        }
        let mut bytes = vec![0u8; size];
        input
            .read_exact(&mut bytes)
            .map_err(|_| damaged("truncated"))?;
        hasher.update(length);
        hasher.update(&bytes);
        let entry: Entry = decode("a restored entry", &bytes, RPC_FRAME_BYTES_MAX)
            .map_err(|error| damaged(&error.to_string()))?;
        if entry.index.0 != expected {
            return Err(damaged("entries out of order"));
        }
        expected += 1;
        entries.push(entry);
    }
    if hex(&hasher.finalize()) != manifest.entries_sha256
        || entries.len() as u64 != manifest.entries
        || expected - 1 != manifest.to_index
    {
        return Err(damaged("its SHA-256 or count is not the manifest's"));
    }
    Ok(entries)
}

/// Write the restored log into `directory`: the backup's state as the snapshot (this node the
/// one voter), the archived entries (membership entries rewritten to this node alone), and a
/// hard state no older than any of them.
fn write_log(
    config: &Config,
    directory: &Path,
    options: &WalOptions,
    header: &BackupHeader,
    backup: &Path,
    entries: &[Entry],
) -> Result<(), String> {
    let alone = VoterSet::with_voters([config.node_id.clone()]);
    let mut store =
        WalStore::open(directory, options.clone()).map_err(|error| error.to_string())?;
    store.recover().map_err(|error| error.to_string())?;
    let mut input = BufReader::new(File::open(backup).map_err(|error| error.to_string())?);
    let mut skipped = [0u8; BACKUP_HEADER_BYTES];
    input
        .read_exact(&mut skipped)
        .map_err(|error| error.to_string())?;
    let mut sink = store.snapshot_sink().map_err(|error| error.to_string())?;
    let copied = io::copy(&mut input.take(header.body_bytes), &mut sink)
        .map_err(|error| error.to_string())?;
    if copied != header.body_bytes {
        return Err(format!(
            "the backup body ended after {copied} of {} bytes",
            header.body_bytes
        ));
    }
    let written = sink.finish().map_err(|error| error.to_string())?;
    let meta = SnapshotMeta {
        last_index: LogIndex(header.last_index),
        last_term: Term(header.last_term),
        membership: alone.clone(),
    };
    store
        .commit_snapshot(&meta, &written)
        .map_err(|error| error.to_string())?;
    let mut term = Term(header.last_term);
    for entry in entries {
        let mut entry = entry.clone();
        if let Payload::Membership(_) = entry.payload {
            // The old voters must not come back: the restored node is the only voter.
            entry.payload = Payload::Membership(alone.clone());
        }
        term = term.max(entry.term);
        store
            .append(std::slice::from_ref(&entry))
            .map_err(|error| error.to_string())?;
    }
    store
        .save_hard_state(&HardState {
            term,
            voted_for: None,
        })
        .map_err(|error| error.to_string())?;
    store.sync().map_err(|error| error.to_string())
}
