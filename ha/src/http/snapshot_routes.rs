//! `GET /v1/snapshot` (issue 14, item 2): a backup of the whole replicated state, as a
//! [backup file](crate::backup_file) (header, then body), role `admin`.
//!
//! Which state: the node's latest **durable** snapshot, the one its store holds
//! (`<data_dir>/log/snapshot-<index>.snap`), not a fresh one taken for the call. It is a
//! consistent point-in-time copy (the replica takes it in one apply step and writes it off the
//! apply path), and serving it never touches the apply loop: the file is immutable once in
//! place and is read through its own handle, so the node may commit a newer snapshot and
//! delete this one meanwhile. The header's `last_index`/`last_term` (and the response headers
//! `X-Ha-Snapshot-Index`/`X-Ha-Snapshot-Term`) are the snapshot's: entries applied after it
//! (at most `snapshot_every` entries, see `X-Ha-Applied-Index`) are not in the backup. A
//! node with no snapshot yet, or without a data dir, answers 409 with the reason.
//!
//! The body is hashed in a first pass (the header in front carries its SHA-256), then
//! streamed in chunks of [`CHUNK_BYTES`]: memory does not grow with the state.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;
use ha_core::codec::{self, RPC_FRAME_BYTES_MAX};
use ha_replicate::snapshot_meta::SnapshotMeta;
use http_body_util::channel::Channel;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};
use crate::backup_file::{BACKUP_FORMAT_VERSION, BACKUP_HEADER_BYTES, BackupHeader};

/// The bytes read and sent at a time.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks queued for a slow client before reading waits.
const CHUNKS_QUEUED: usize = 4;

/// The store's snapshot file header: magic (8) | meta length u32 | data length u64 | meta
/// crc32c | data crc32c | header crc32c (ha-replicate's `storage/snapshot_file.rs`).
const STORE_HEADER_BYTES: u64 = 32;
const STORE_MAGIC_V1: [u8; 8] = *b"ha-snap\x01";
const STORE_MAGIC_V2: [u8; 8] = *b"ha-snap\x02";

/// How often the newest snapshot file is looked for again when the node removed it between
/// listing the directory and opening it.
const OPEN_ATTEMPTS: usize = 3;

/// An open durable snapshot: its meta and where its data lie in the file.
struct DurableSnapshot {
    file: File,
    path: PathBuf,
    meta: SnapshotMeta,
    data_offset: u64,
    data_bytes: u64,
}

/// The newest `snapshot-<20 digits>.snap` in `dir`, or `None`.
fn newest_snapshot_path(dir: &Path) -> io::Result<Option<PathBuf>> {
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|name| name.strip_prefix("snapshot-"))
            .and_then(|rest| rest.strip_suffix(".snap"))
            .filter(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(best, _)| index > *best) {
            newest = Some((index, entry.path()));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// Open the snapshot at `path` and read its meta. The store verified the file (checksums
/// included) when it committed or recovered it; this checks the layout again so that a bad
/// file gives an error rather than a wrong backup, and the body's SHA-256 is computed from the
/// bytes served.
fn open_snapshot(path: &Path) -> io::Result<DurableSnapshot> {
    let invalid = |reason: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {reason}", path.display()),
        )
    };
    let mut file = File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut header = [0u8; STORE_HEADER_BYTES as usize];
    file.read_exact(&mut header)?;
    let version_one = match <[u8; 8]>::try_from(&header[0..8]) {
        Ok(STORE_MAGIC_V1) => true,
        Ok(STORE_MAGIC_V2) => false,
        _ => return Err(invalid("not a snapshot file (bad magic)".to_string())),
    };
    let mut meta_length = [0u8; 4];
    meta_length.copy_from_slice(&header[8..12]);
    let meta_length = u64::from(u32::from_le_bytes(meta_length));
    let mut data_bytes = [0u8; 8];
    data_bytes.copy_from_slice(&header[12..20]);
    let data_bytes = u64::from_le_bytes(data_bytes);
    if meta_length > RPC_FRAME_BYTES_MAX as u64
        || STORE_HEADER_BYTES
            .checked_add(meta_length)
            .and_then(|bytes| bytes.checked_add(data_bytes))
            != Some(file_bytes)
    {
        return Err(invalid(format!(
            "header describes {meta_length} meta and {data_bytes} data bytes in a file of \
             {file_bytes} bytes"
        )));
    }
    let (meta_offset, data_offset) = if version_one {
        (STORE_HEADER_BYTES, STORE_HEADER_BYTES + meta_length)
    } else {
        (STORE_HEADER_BYTES + data_bytes, STORE_HEADER_BYTES)
    };
    // Bounded: at most RPC_FRAME_BYTES_MAX, and within the file's real size.
    let mut meta_bytes = vec![0u8; usize::try_from(meta_length).unwrap_or(0)];
    file.seek(SeekFrom::Start(meta_offset))?;
    file.read_exact(&mut meta_bytes)?;
    let meta: SnapshotMeta = codec::decode("snapshot meta", &meta_bytes, RPC_FRAME_BYTES_MAX)
        .map_err(|error| invalid(format!("meta does not decode: {error}")))?;
    Ok(DurableSnapshot {
        file,
        path: path.to_path_buf(),
        meta,
        data_offset,
        data_bytes,
    })
}

/// The newest durable snapshot in `dir`, opened; `None` when there is none.
fn latest_snapshot(dir: &Path) -> io::Result<Option<DurableSnapshot>> {
    let mut last_error = None;
    for _ in 0..OPEN_ATTEMPTS {
        let Some(path) = newest_snapshot_path(dir)? else {
            return Ok(None);
        };
        match open_snapshot(&path) {
            Ok(snapshot) => return Ok(Some(snapshot)),
            // Replaced by a newer one between the listing and the open: look again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("snapshot kept disappearing")))
}

/// Read `length` bytes of `file` from `offset` through a fixed buffer, handing each chunk to
/// `each`; stops early when `each` returns `false`.
fn read_chunks(
    file: &mut File,
    offset: u64,
    length: u64,
    mut each: impl FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
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

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn storage_error(error: &io::Error) -> ApiError {
    tracing::warn!(%error, "GET /v1/snapshot: reading the snapshot failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "snapshot_failed",
        format!("reading the node's snapshot failed: {error}"),
    )
}

/// `GET /v1/snapshot`: the latest durable snapshot as a backup file.
pub(crate) async fn snapshot<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    let node = state.node()?;
    let Some(dir) = node.log_dir() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_snapshot",
            "this node keeps its log in memory (no data_dir), so it has no durable snapshot \
             to back up; ask a node with a data dir",
        ));
    };
    let applied_index = node.status().await?.applied_index.0;
    let cluster = node.config().cluster.name.clone();
    drop(node);
    // Find, open and hash off the async threads: the state may be gigabytes.
    let prepared = tokio::task::spawn_blocking(move || {
        let Some(mut snapshot) = latest_snapshot(&dir)? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        read_chunks(
            &mut snapshot.file,
            snapshot.data_offset,
            snapshot.data_bytes,
            |chunk| {
                hasher.update(chunk);
                true
            },
        )?;
        let header = BackupHeader {
            format_version: BACKUP_FORMAT_VERSION,
            cluster,
            last_index: snapshot.meta.last_index.0,
            last_term: snapshot.meta.last_term.0,
            created_at_unix_ms: unix_now_ms(),
            body_bytes: snapshot.data_bytes,
            body_sha256: hasher.finalize().into(),
        };
        Ok::<_, io::Error>(Some((snapshot, header)))
    })
    .await
    .map_err(|error| storage_error(&io::Error::other(error.to_string())))?
    .map_err(|error| storage_error(&error))?;
    let Some((mut snapshot, header)) = prepared else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_snapshot",
            format!(
                "this node has taken no snapshot yet (applied index {applied_index}); it takes \
                 one every `snapshot_every` applied entries, try again later"
            ),
        ));
    };
    let header_bytes = header.encode().map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot_failed",
            error.to_string(),
        )
    })?;
    let (mut sender, body) = Channel::<Bytes, io::Error>::new(CHUNKS_QUEUED);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        if runtime
            .block_on(sender.send_data(Bytes::copy_from_slice(&header_bytes)))
            .is_err()
        {
            return;
        }
        let mut sent = true;
        let result = read_chunks(
            &mut snapshot.file,
            snapshot.data_offset,
            snapshot.data_bytes,
            |chunk| {
                sent = runtime
                    .block_on(sender.send_data(Bytes::copy_from_slice(chunk)))
                    .is_ok();
                sent
            },
        );
        if let Err(error) = result {
            tracing::warn!(%error, path = %snapshot.path.display(), "GET /v1/snapshot: reading failed mid-stream");
            sender.abort(error);
        } else if !sent {
            tracing::info!("GET /v1/snapshot: the client went away");
        }
    });
    let length = BACKUP_HEADER_BYTES as u64 + header.body_bytes;
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
