//! `bot snapshot restore FILE --data-dir DIR [--to-index N --wal-archive DIR]` (issue 14,
//! item 2): prepare an empty data dir from a verified backup, the disaster-recovery path. See
//! [`ha::restore`] for what is written and how the node installs it.
//!
//! ```text
//!   verify FILE (header, SHA-256, --cluster) ─┐ refused: exit 1 with the reason, DIR untouched
//!   [read the archive backup+1..=N, contiguous]┤
//!   DIR/restore-pending.tmp -> fsync -> rename DIR/restore-pending
//!   bot --data-dir DIR --bootstrap-expect 1 ... installs it: a one-voter cluster with the state
//! ```

use std::io;
use std::path::PathBuf;

use clap::Args;
use ha::core::LogIndex;
use ha::restore::{PreparedRestore, RestoreError, prepare_restore};

use crate::error::BotError;

/// Options of `bot snapshot restore`.
#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// The data dir to prepare: empty or missing (one that holds a log is refused).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Also refuse the backup unless it is of this cluster (the node checks its own cluster
    /// name again when it installs the restore).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// Point-in-time restore: replay archived entries after the backup up to this log index.
    #[arg(long, value_name = "N", requires = "wal_archive")]
    pub to_index: Option<u64>,

    /// The WAL archive (a node's --wal-archive directory) holding the entries to replay.
    #[arg(long, value_name = "DIR", requires = "to_index")]
    pub wal_archive: Option<PathBuf>,

    /// The backup file (from `bot snapshot save` or a scheduled backup).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Run `bot snapshot restore`.
pub fn restore(args: &SnapshotRestoreArgs) -> Result<(), BotError> {
    let point_in_time = match (args.to_index, &args.wal_archive) {
        (Some(index), Some(archive)) => Some((LogIndex(index), archive.as_path())),
        _ => None,
    };
    let prepared = prepare_restore(
        &args.file,
        &args.data_dir,
        args.cluster.as_deref(),
        point_in_time,
    )
    .map_err(|error| refused(args, error))?;
    print!("{}", describe(args, &prepared));
    Ok(())
}

/// What a successful restore prints.
fn describe(args: &SnapshotRestoreArgs, prepared: &PreparedRestore) -> String {
    format!(
        "verified:   sha256 ok\ncluster:    {}\nbackup:     index {} term {}\nrestored:   index {} term {} ({} archived entries replayed)\nprepared:   {}\nnext: start ONE node on it: bot --data-dir {} --cluster {} --bootstrap-expect 1 ...; \
         then start the other nodes with empty data dirs and --seeds pointing at it\n",
        prepared.header.cluster,
        prepared.header.last_index,
        prepared.header.last_term,
        prepared.to_index,
        prepared.to_term,
        prepared.entries,
        args.data_dir.display(),
        args.data_dir.display(),
        prepared.header.cluster,
    )
}

/// The error for a refused restore: the file or directory involved and the reason.
fn refused(args: &SnapshotRestoreArgs, error: RestoreError) -> BotError {
    let path = match &error {
        RestoreError::Backup { path, .. } => path.clone(),
        RestoreError::Io { path, .. } => path.clone(),
        RestoreError::Archive(_) => args.wal_archive.clone().unwrap_or_default(),
        _ => args.data_dir.clone(),
    };
    BotError::File {
        path,
        source: io::Error::new(io::ErrorKind::InvalidData, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use ha::backup_file::{BACKUP_FORMAT_VERSION, BackupHeader};

    use super::*;

    fn write_backup(dir: &std::path::Path, body: &[u8]) -> PathBuf {
        let header = BackupHeader {
            format_version: BACKUP_FORMAT_VERSION,
            cluster: "prod".to_string(),
            last_index: 7,
            last_term: 2,
            created_at_unix_ms: 1_760_000_000_000,
            body_bytes: body.len() as u64,
            body_sha256: ha::backup_file::sha256(body),
        };
        let mut bytes = header.encode().expect("valid header").to_vec();
        bytes.extend_from_slice(body);
        let path = dir.join("b.habackup");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn args(file: PathBuf, data_dir: PathBuf, cluster: Option<&str>) -> SnapshotRestoreArgs {
        SnapshotRestoreArgs {
            data_dir,
            cluster: cluster.map(str::to_string),
            to_index: None,
            wal_archive: None,
            file,
        }
    }

    #[test]
    fn a_corrupt_or_foreign_backup_is_refused_with_the_reason_and_dir_untouched() {
        let dir = tempfile::tempdir().expect("dir");
        let file = write_backup(dir.path(), b"state");
        let data = dir.path().join("data");
        let error = restore(&args(file.clone(), data.clone(), Some("staging")))
            .expect_err("another cluster");
        assert_eq!(error.exit_code(), crate::error::EXIT_FAILURE);
        assert!(error.report().contains("\"staging\""), "{}", error.report());
        let mut bytes = std::fs::read(&file).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).expect("write");
        let error = restore(&args(file.clone(), data.clone(), None)).expect_err("flipped");
        assert!(error.report().contains("SHA-256"), "{}", error.report());
        std::fs::write(&file, &bytes[..bytes.len() - 2]).expect("write");
        let error = restore(&args(file, data.clone(), None)).expect_err("truncated");
        assert!(error.report().contains("truncated"), "{}", error.report());
        assert!(!data.exists(), "the data dir was not created");
    }

    #[test]
    fn a_good_backup_is_prepared_once() {
        let dir = tempfile::tempdir().expect("dir");
        let file = write_backup(dir.path(), b"state");
        let data = dir.path().join("data");
        restore(&args(file.clone(), data.clone(), Some("prod"))).expect("prepared");
        assert!(data.join(ha::restore::RESTORE_DIR_NAME).is_dir());
        let error = restore(&args(file, data, None)).expect_err("already pending");
        assert!(
            error.report().contains("pending restore"),
            "{}",
            error.report()
        );
    }
}
