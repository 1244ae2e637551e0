//! Taking a fresh backup (issue 14, item 2): a point-in-time copy of the replicated state that
//! holds every write acknowledged before the call, written as a [backup file](crate::backup_file).
//!
//! Freshness: [`Node::export_snapshot`] first makes a linearizable read (it goes to the leader,
//! which confirms its leadership with a majority, like any STRONG read), whose answer carries
//! the leader's applied index; every write acknowledged before the call is at or below it. The
//! replica then copies its applied state in one apply step once it has applied that far
//! ([`ReplicaNode::export_snapshot`](ha_replicate::driver::ReplicaNode::export_snapshot)): on
//! the leader at once, on a follower as soon as it catches up. Writes are held up for that one
//! step only (cloning sessions and the host's [`ha_core::SnapshotSource`]
//! capture); the bytes are written afterwards on a blocking thread.
//!
//! Writing ([`write_backup`]): the header has a fixed size, so a placeholder goes first, the
//! body is streamed through a SHA-256 hasher, then the real header is written over the
//! placeholder. Memory does not grow with the state.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ha_core::{LogIndex, SnapshotSource, StateMachine};
use ha_lock::{LockQuery, Query};
use ha_replicate::replica::{ClientError, ExportError, ExportedSnapshot};
use sha2::{Digest, Sha256};

use crate::backup_file::{BACKUP_FORMAT_VERSION, BACKUP_HEADER_BYTES, BackupError, BackupHeader};
use crate::node::Node;

/// Backups being written at once by one node (HTTP exports and the scheduler together); a
/// further `GET /v1/snapshot` is refused with 429 `limit` rather than queued, so a burst of
/// requests cannot hold many copies of the state (and disk for each) at once.
pub const BACKUPS_CONCURRENT_MAX: usize = 2;

/// The buffer the body is written through.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// What a node keeps for its backups: the bound on concurrent writers, and the scheduler's
/// state ([`crate::backup_schedule`]).
pub(crate) struct BackupShared {
    /// One permit per backup being written.
    pub(crate) writers: std::sync::Arc<tokio::sync::Semaphore>,
    /// Scheduled backups, when a backup dir is configured.
    pub(crate) schedule: Option<std::sync::Arc<crate::backup_schedule::BackupSchedule>>,
}

impl BackupShared {
    pub(crate) fn new(config: &ha_core::BackupConfig) -> Self {
        Self {
            writers: std::sync::Arc::new(tokio::sync::Semaphore::new(BACKUPS_CONCURRENT_MAX)),
            schedule: crate::backup_schedule::BackupSchedule::new(config),
        }
    }
}

/// Why a backup was not taken or not written. Nothing changed in the replicated state in any
/// case; a partly written file is removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupWriteError {
    /// The linearizable read that fixes the backup's freshness failed (no leader, no quorum,
    /// or no answer in time). Retry once the cluster has a leader.
    #[error("no linearizable read point for a fresh backup: {0}")]
    Barrier(ClientError),
    /// The replica did not export its state; see [`ExportError`].
    #[error("exporting the state failed: {0}")]
    Export(ExportError),
    /// This node did not apply up to the read point in time (it lags far behind the leader).
    /// Ask the leader, or retry.
    #[error("this node did not apply up to index {index} within {timeout_ms} ms")]
    Lagging {
        /// The read point.
        index: LogIndex,
        /// How long it waited.
        timeout_ms: u64,
    },
    /// Too many backups are being written on this node ([`BACKUPS_CONCURRENT_MAX`]).
    /// Retry when one finished.
    #[error("{BACKUPS_CONCURRENT_MAX} backups are being written already; retry later")]
    Busy,
    /// Writing the file failed (disk full, permissions). The partial file was removed.
    #[error("writing the backup failed: {0}")]
    Io(#[from] io::Error),
    /// The state machine failed to write its state. Its error says why.
    #[error("the state machine failed to write its state: {0}")]
    StateMachine(String),
    /// The file written does not verify when read back: the disk returned other bytes than
    /// were written. The file was removed; check the disk.
    #[error("the written backup does not verify: {0}")]
    Verify(#[from] BackupError),
}

/// Write `exported` as a complete backup file into `file` (from offset 0; `file` must be
/// readable and writable and is left holding exactly the backup), for `cluster`, stamped
/// `created_at_unix_ms`. Blocking: call it on a blocking thread. Does not sync.
///
/// # Errors
/// [`BackupWriteError::Io`], [`BackupWriteError::StateMachine`].
pub fn write_backup(
    exported: ExportedSnapshot,
    cluster: &str,
    created_at_unix_ms: u64,
    file: &mut File,
) -> Result<BackupHeader, BackupWriteError> {
    let meta = exported.meta().clone();
    let position = (meta.last_index, meta.last_term);
    write_backup_with(
        |out| exported.write_to(out),
        position,
        cluster,
        created_at_unix_ms,
        file,
    )
}

/// [`write_backup`] from any [`SnapshotSource`] that writes the replica's snapshot stream
/// (an [`Applier::snapshot_source`](ha_replicate::replica::Applier::snapshot_source) copy),
/// at log position `(last_index, last_term)`: for tools and benchmarks that hold an applier
/// rather than a running node.
///
/// # Errors
/// As [`write_backup`].
pub fn write_backup_from_source(
    source: Box<dyn SnapshotSource>,
    position: (LogIndex, ha_core::Term),
    cluster: &str,
    created_at_unix_ms: u64,
    file: &mut File,
) -> Result<BackupHeader, BackupWriteError> {
    write_backup_with(
        |out| source.write_to(out),
        position,
        cluster,
        created_at_unix_ms,
        file,
    )
}

fn write_backup_with(
    write_body: impl FnOnce(&mut dyn Write) -> Result<(), ha_core::StateMachineError>,
    (last_index, last_term): (LogIndex, ha_core::Term),
    cluster: &str,
    created_at_unix_ms: u64,
    file: &mut File,
) -> Result<BackupHeader, BackupWriteError> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    let (hasher, bytes) = {
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(WRITE_BUFFER_BYTES, &mut *file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        out.inner.write_all(&[0u8; BACKUP_HEADER_BYTES])?;
        write_body(&mut out).map_err(|error| BackupWriteError::StateMachine(error.to_string()))?;
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = out;
        inner.into_inner().map_err(io::IntoInnerError::into_error)?;
        (hasher, bytes)
    };
    let header = BackupHeader {
        format_version: BACKUP_FORMAT_VERSION,
        cluster: cluster.to_string(),
        last_index: last_index.0,
        last_term: last_term.0,
        created_at_unix_ms,
        body_bytes: bytes,
        body_sha256: hasher.finalize().into(),
    };
    let encoded = header.encode()?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&encoded)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(header)
}

/// Write `exported` as a backup file in `dir` atomically, named `name_for(header)`: into a
/// temporary file in `dir`, synced, renamed into place, the directory synced, then read back
/// and verified whole. A failure at any step leaves no new file (the temporary one is
/// removed). Blocking. Returns the file's name and header.
///
/// # Errors
/// [`BackupWriteError::Io`], [`BackupWriteError::StateMachine`],
/// [`BackupWriteError::Verify`].
pub fn write_backup_atomically(
    exported: ExportedSnapshot,
    cluster: &str,
    created_at_unix_ms: u64,
    dir: &Path,
    name_for: impl FnOnce(&BackupHeader) -> String,
) -> Result<(String, BackupHeader), BackupWriteError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temporary = dir.join(format!(
        ".backup-{}-{created_at_unix_ms}-{}.habackup.tmp",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut target = None;
    let result = (|| {
        std::fs::create_dir_all(dir)?;
        let mut file =
            owner_only(File::options().read(true).write(true).create_new(true)).open(&temporary)?;
        let header = write_backup(exported, cluster, created_at_unix_ms, &mut file)?;
        file.sync_all()?;
        drop(file);
        let name = name_for(&header);
        let path = dir.join(&name);
        if path.exists() {
            return Err(BackupWriteError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            )));
        }
        std::fs::rename(&temporary, &path)?;
        target = Some(path.clone());
        sync_dir(dir)?;
        let verified = BackupHeader::verify_file(&path, Some(cluster))?;
        if verified != header {
            return Err(BackupWriteError::Io(io::Error::other(
                "the backup read back has another header than the one written",
            )));
        }
        Ok((name, header))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
        if let Some(target) = target {
            let _ = std::fs::remove_file(target);
        }
    }
    result
}

/// A backup holds all the data: its files are readable by their owner only (mode 0600 on
/// Unix), like the files `bot snapshot save` writes.
fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600)
    }
    #[cfg(not(unix))]
    {
        options
    }
}

/// Make a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A temporary file that is gone from its directory as soon as it is created on Unix (the
/// open handle still reads and writes it), and removed when dropped elsewhere: nothing is left
/// behind whatever happens to the request, a crash included.
pub(crate) struct AnonymousFile {
    pub(crate) file: File,
    remove_on_drop: Option<PathBuf>,
}

impl AnonymousFile {
    /// A new empty file in `dir`.
    pub(crate) fn create_in(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            ".backup-export-{}-{}-{}.tmp",
            std::process::id(),
            unix_now_ms(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file =
            owner_only(File::options().read(true).write(true).create_new(true)).open(&path)?;
        let remove_on_drop = match std::fs::remove_file(&path) {
            Ok(()) => None,
            Err(_) => Some(path),
        };
        Ok(Self {
            file,
            remove_on_drop,
        })
    }
}

impl Drop for AnonymousFile {
    fn drop(&mut self) {
        if let Some(path) = self.remove_on_drop.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch (the backup's `created_at`).
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: StateMachine> Node<S> {
    /// A fresh point-in-time copy of the whole replicated state (the host's state machine, the
    /// KV store, leases, locks, client sessions, failover history) that holds every write
    /// acknowledged before this call, with its log position. Write it with
    /// [`write_backup`] (or [`ExportedSnapshot::write_to`]) on a blocking thread.
    ///
    /// Any node answers: the read point comes from the leader, and a follower waits (up to
    /// the request timeout) until it has applied that far. Writes wait for one apply step at
    /// most.
    ///
    /// # Errors
    /// [`BackupWriteError::Barrier`] (no leader or quorum), [`BackupWriteError::Lagging`],
    /// [`BackupWriteError::Export`]. Nothing changed.
    pub async fn export_snapshot(&self) -> Result<ExportedSnapshot, BackupWriteError> {
        let timeout = self.shared.request_timeout;
        // The cheapest linearizable query: one key lookup, answered with "absent".
        let query = Query::Lock(LockQuery::Get { key: String::new() });
        let index = self
            .shared
            .writer
            .replica()
            .linearizable_index(query, timeout)
            .await
            .map_err(BackupWriteError::Barrier)?;
        match tokio::time::timeout(timeout, self.shared.replica.export_snapshot(index)).await {
            Ok(exported) => exported.map_err(BackupWriteError::Export),
            Err(_) => Err(BackupWriteError::Lagging {
                index,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Take a fresh backup ([`export_snapshot`](Self::export_snapshot)) and write it into
    /// `dir`, named `name_for(header)`, atomically and verified ([`write_backup_atomically`]).
    /// Counts against [`BACKUPS_CONCURRENT_MAX`]. Returns the file's name and header.
    ///
    /// # Errors
    /// [`BackupWriteError`]; no new file is left on failure.
    pub async fn write_backup_to(
        &self,
        dir: &Path,
        name_for: fn(&BackupHeader) -> String,
    ) -> Result<(String, BackupHeader), BackupWriteError> {
        let _permit = self
            .shared
            .backup
            .writers
            .try_acquire()
            .map_err(|_| BackupWriteError::Busy)?;
        let exported = self.export_snapshot().await?;
        let cluster = self.config().cluster.name.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            write_backup_atomically(exported, &cluster, unix_now_ms(), &dir, name_for)
        })
        .await
        .map_err(|error| BackupWriteError::Io(io::Error::other(error.to_string())))?
    }
}
