//! `GET /v1/snapshot` (issue 14, item 2): a fresh backup of the whole replicated state, as a
//! [backup file](crate::backup_file) (header, then body), role `admin`.
//!
//! Which state: a point-in-time copy taken for the call that holds every write acknowledged
//! before the request arrived ([`Node::export_snapshot`](crate::Node::export_snapshot): a
//! linearizable read point from the leader, then a copy in one apply step once this node has
//! applied that far). Any node answers; a follower that lags more than the request timeout
//! answers 503 `lagging`. Writes are held up for that one apply step only.
//!
//! The body is written to an anonymous temporary file in the data dir (the OS temp dir for a
//! node without one) to learn its length and SHA-256, which the header in front carries; then
//! the file is streamed in chunks of [`CHUNK_BYTES`]. The file is unlinked as soon as it is
//! created, so it is gone however the request ends (client gone, error, crash). At most
//! [`BACKUPS_CONCURRENT_MAX`](crate::backup_writer::BACKUPS_CONCURRENT_MAX) backups are written at once per node: more answer 429 `limit`.
//! Memory does not grow with the state.

use std::io::{self, Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;
use http_body_util::channel::Channel;

use super::{ApiError, ApiState};
use crate::backup_file::BACKUP_HEADER_BYTES;
use crate::backup_writer::{AnonymousFile, BackupWriteError, unix_now_ms, write_backup};

/// The bytes read and sent at a time.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks queued for a slow client before reading waits.
const CHUNKS_QUEUED: usize = 4;

/// The answer for a backup that could not be taken.
pub(crate) fn backup_error(error: &BackupWriteError) -> ApiError {
    let (status, kind) = match error {
        BackupWriteError::Barrier(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_quorum"),
        BackupWriteError::Lagging { .. } => (StatusCode::SERVICE_UNAVAILABLE, "lagging"),
        BackupWriteError::Busy => (StatusCode::TOO_MANY_REQUESTS, "limit"),
        BackupWriteError::Export(ha_replicate::replica::ExportError::Busy { .. }) => {
            (StatusCode::TOO_MANY_REQUESTS, "limit")
        }
        BackupWriteError::Export(ha_replicate::replica::ExportError::NothingApplied) => {
            (StatusCode::CONFLICT, "no_snapshot")
        }
        BackupWriteError::Export(ha_replicate::replica::ExportError::Witness) => {
            (StatusCode::SERVICE_UNAVAILABLE, "witness")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "snapshot_failed"),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(%error, "GET /v1/snapshot failed");
    }
    ApiError::new(status, kind, error.to_string())
}

/// Read `length` bytes of `file` from its start through a fixed buffer, handing each chunk to
/// `each`; stops early when `each` returns `false`.
fn read_chunks(
    file: &mut std::fs::File,
    length: u64,
    mut each: impl FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut left = length;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK_BYTES);
        file.read_exact(&mut buffer[..want])?;
        left -= want as u64;
        if !each(&buffer[..want]) {
            break;
        }
    }
    Ok(())
}

/// `GET /v1/snapshot`: a fresh backup file of the whole replicated state.
pub(crate) async fn snapshot<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    let node = state.data_node()?;
    let permit = std::sync::Arc::clone(&node.shared.backup.writers)
        .try_acquire_owned()
        .map_err(|_| backup_error(&BackupWriteError::Busy))?;
    let exported = node
        .export_snapshot()
        .await
        .map_err(|error| backup_error(&error))?;
    let applied_index = node.status().await?.applied_index.0;
    let cluster = node.config().cluster.name.clone();
    let dir = node
        .config()
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    drop(node);
    // Write and hash off the async threads: the state may be gigabytes.
    let (mut temporary, header) = tokio::task::spawn_blocking(move || {
        let mut temporary = AnonymousFile::create_in(&dir)?;
        let header = write_backup(exported, &cluster, unix_now_ms(), &mut temporary.file)?;
        Ok::<_, BackupWriteError>((temporary, header))
    })
    .await
    .map_err(|error| backup_error(&BackupWriteError::Io(io::Error::other(error.to_string()))))?
    .map_err(|error| backup_error(&error))?;
    let length = BACKUP_HEADER_BYTES as u64 + header.body_bytes;
    let (mut sender, body) = Channel::<Bytes, io::Error>::new(CHUNKS_QUEUED);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // The permit is held until the file is streamed: the disk it uses counts.
        let _permit = permit;
        let mut sent = true;
        let result = read_chunks(&mut temporary.file, length, |chunk| {
            sent = runtime
                .block_on(sender.send_data(Bytes::copy_from_slice(chunk)))
                .is_ok();
            sent
        });
        if let Err(error) = result {
            tracing::warn!(%error, "GET /v1/snapshot: reading the temporary file failed mid-stream");
            sender.abort(error);
        } else if !sent {
            tracing::info!("GET /v1/snapshot: the client went away");
        }
        drop(temporary);
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-{}.habackup\"",
                    header.cluster, header.last_index
                ),
            ),
        ],
        [
            ("x-ha-snapshot-index", header.last_index.to_string()),
            ("x-ha-snapshot-term", header.last_term.to_string()),
            ("x-ha-applied-index", applied_index.to_string()),
            (
                "x-ha-body-sha256",
                crate::backup_file::hex(&header.body_sha256),
            ),
        ],
        Body::new(body),
    )
        .into_response())
}
