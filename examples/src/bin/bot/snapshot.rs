//! `bot snapshot save` and `bot snapshot inspect` (issue 14, item 2): a backup of the
//! replicated state from a node's `GET /v1/snapshot`, in the format of
//! [`ha::backup_file`].
//!
//! ```text
//!   save:     GET /v1/snapshot -> .FILE.<pid>.tmp (create_new, mode 0600) -> fsync
//!             -> verify header + SHA-256 -> link to FILE (never overwrites) -> fsync dir
//!   inspect:  the header's fields, then "verified: sha256 ok", or exit 1 with the reason
//! ```
//!
//! A backup holds all the data, so the temporary and the final file are readable by the owner
//! only. What the node sends is not trusted: the header is checked as soon as it has arrived,
//! a body longer than the header says is refused while it streams, and the whole file is
//! verified before it gets its name.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ha::backup_file::{BACKUP_HEADER_BYTES, BackupHeader, hex};

use crate::admin_client::{AdminClient, denied};
use crate::cli::{SnapshotArgs, SnapshotCommand, SnapshotSaveArgs};
use crate::error::BotError;

/// The whole download may take this long (a large state over a slow link).
const SAVE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The most bytes of an error answer read for its message.
const ERROR_BODY_BYTES_MAX: usize = 64 * 1024;

/// Run `bot snapshot ...`.
pub fn run(args: &SnapshotArgs) -> Result<(), BotError> {
    match &args.command {
        SnapshotCommand::Save(save_args) => save(save_args),
        SnapshotCommand::Inspect(inspect_args) => {
            let (report, verdict) =
                inspect_report(&inspect_args.file, inspect_args.cluster.as_deref());
            print!("{report}");
            verdict
        }
        SnapshotCommand::Restore(restore_args) => crate::snapshot_restore::restore(restore_args),
    }
}

/// A failure about `path`, with `reason`.
fn file_error(path: &Path, kind: io::ErrorKind, reason: impl Into<String>) -> BotError {
    BotError::File {
        path: path.to_path_buf(),
        source: io::Error::new(kind, reason.into()),
    }
}

/// The header's fields, one a line.
fn describe(header: &BackupHeader) -> String {
    format!(
        "format:     {}\ncluster:    {}\nindex:      {}\nterm:       {}\ncreated_at: {} (unix ms)\nbody_bytes: {}\nsha256:     {}\n",
        header.format_version,
        header.cluster,
        header.last_index,
        header.last_term,
        header.created_at_unix_ms,
        header.body_bytes,
        hex(&header.body_sha256),
    )
}

/// What `bot snapshot inspect` prints, and whether the file verified: the header's fields
/// when it decodes, then `verified: sha256 ok`; an error naming the file and the reason
/// otherwise.
fn inspect_report(path: &Path, cluster: Option<&str>) -> (String, Result<(), BotError>) {
    let refused = |error: ha::backup_file::BackupError| match error {
        ha::backup_file::BackupError::Io(source) => BotError::File {
            path: path.to_path_buf(),
            source,
        },
        other => file_error(path, io::ErrorKind::InvalidData, other.to_string()),
    };
    let mut file = match File::open(path) {
        Ok(file) => io::BufReader::new(file),
        Err(source) => {
            return (
                String::new(),
                Err(BotError::File {
                    path: path.to_path_buf(),
                    source,
                }),
            );
        }
    };
    let header = match BackupHeader::read(&mut file) {
        Ok(header) => header,
        Err(error) => return (String::new(), Err(refused(error))),
    };
    let mut report = format!("file:       {}\n{}", path.display(), describe(&header));
    match header.verify(&mut file, cluster) {
        Ok(()) => {
            report.push_str("verified: sha256 ok\n");
            (report, Ok(()))
        }
        Err(error) => (report, Err(refused(error))),
    }
}

/// `bot snapshot save`.
fn save(args: &SnapshotSaveArgs) -> Result<(), BotError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BotError::Runtime)?;
    let started = Instant::now();
    let header = runtime.block_on(async {
        let client = AdminClient::new(
            args.admin.tls_ca.as_deref(),
            args.admin.token.as_deref(),
            SAVE_TIMEOUT,
        )?;
        let url = client
            .url(&args.admin.http, "/v1/snapshot")
            .map_err(|reason| {
                BotError::AdminClient(format!(
                    "snapshot save: --http {:?} is not a host:port address: {reason}",
                    args.admin.http
                ))
            })?;
        download(&client, &url, &args.file).await
    })?;
    println!(
        "saved {}: cluster {}, index {}, term {}, {} bytes in {} ms\nverified: sha256 ok",
        args.file.display(),
        header.cluster,
        header.last_index,
        header.last_term,
        BACKUP_HEADER_BYTES as u64 + header.body_bytes,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// The temporary file `save` writes beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// GET `url` into a temporary file, verify it and give it `path`'s name.
async fn download(client: &AdminClient, url: &str, path: &Path) -> Result<BackupHeader, BotError> {
    if path.exists() {
        return Err(BotError::FileExists {
            path: path.to_path_buf(),
        });
    }
    let mut response = client.get(url).send().await.map_err(|error| {
        file_error(
            path,
            io::ErrorKind::Other,
            format!("cannot reach {url}: {error}. Is a node serving its admin HTTP API there?"),
        )
    })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let mut message = Vec::new();
        while message.len() < ERROR_BODY_BYTES_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => message.extend_from_slice(&chunk),
                _ => break,
            }
        }
        message.truncate(ERROR_BODY_BYTES_MAX);
        let message = String::from_utf8_lossy(&message).into_owned();
        if let Some(error) = denied(url, status, &message) {
            return Err(error);
        }
        return Err(file_error(
            path,
            io::ErrorKind::Other,
            format!("{url} answered HTTP {status}: {message}"),
        ));
    }
    let temporary = temporary_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|source| BotError::File {
            path: temporary.clone(),
            source,
        })?;
    let result = receive(&mut response, &mut file, &temporary, url).await;
    let result = result.and_then(|()| {
        file.sync_all().map_err(|source| BotError::File {
            path: temporary.clone(),
            source,
        })?;
        drop(file);
        let header = BackupHeader::verify_file(&temporary, None).map_err(|error| {
            file_error(&temporary, io::ErrorKind::InvalidData, error.to_string())
        })?;
        // A link, not a rename: an existing FILE (made meanwhile) is never replaced.
        std::fs::hard_link(&temporary, path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                BotError::FileExists {
                    path: path.to_path_buf(),
                }
            } else {
                BotError::File {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        if let Ok(directory) = File::open(parent_dir(path)) {
            let _ = directory.sync_all();
        }
        Ok(header)
    });
    let _ = std::fs::remove_file(&temporary);
    result
}

/// Write the response body to `file`, checking the header as soon as it has arrived and
/// refusing more bytes than it announces.
async fn receive(
    response: &mut reqwest::Response,
    file: &mut File,
    temporary: &Path,
    url: &str,
) -> Result<(), BotError> {
    let mut head = Vec::with_capacity(BACKUP_HEADER_BYTES);
    let mut expected: Option<u64> = None;
    let mut received = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => {
                return Err(file_error(
                    temporary,
                    io::ErrorKind::Other,
                    format!("the download from {url} broke after {received} bytes: {error}"),
                ));
            }
        };
        received = received.saturating_add(chunk.len() as u64);
        if expected.is_none() {
            let take = (BACKUP_HEADER_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if let Ok(bytes) = <[u8; BACKUP_HEADER_BYTES]>::try_from(head.as_slice()) {
                let header = BackupHeader::decode(&bytes).map_err(|error| {
                    file_error(
                        temporary,
                        io::ErrorKind::InvalidData,
                        format!("{url} sent a bad backup header: {error}"),
                    )
                })?;
                expected = Some((BACKUP_HEADER_BYTES as u64).saturating_add(header.body_bytes));
            }
        }
        if let Some(expected) = expected
            && received > expected
        {
            return Err(file_error(
                temporary,
                io::ErrorKind::InvalidData,
                format!("{url} sent more than the {expected} bytes its header announces"),
            ));
        }
        file.write_all(&chunk).map_err(|source| BotError::File {
            path: temporary.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ha::backup_file::BACKUP_FORMAT_VERSION;

    use crate::cli::AdminArgs;

    use super::*;

    /// A backup of `body` for cluster `prod`, written to `dir/name`.
    fn write_backup(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let header = BackupHeader {
            format_version: BACKUP_FORMAT_VERSION,
            cluster: "prod".to_string(),
            last_index: 120,
            last_term: 4,
            created_at_unix_ms: 1_760_000_000_000,
            body_bytes: body.len() as u64,
            body_sha256: ha::backup_file::sha256(body),
        };
        let mut bytes = header.encode().expect("valid header").to_vec();
        bytes.extend_from_slice(body);
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn inspect_prints_the_header_and_verifies_a_good_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write_backup(dir.path(), "good.habackup", b"the replicated state");
        let (report, verdict) = inspect_report(&path, Some("prod"));
        verdict.expect("a good backup verifies");
        for line in [
            "cluster:    prod",
            "index:      120",
            "term:       4",
            "body_bytes: 20",
            "verified: sha256 ok",
        ] {
            assert!(report.contains(line), "{line:?} missing:\n{report}");
        }
    }

    #[test]
    fn inspect_refuses_a_corrupt_file_with_the_reason_and_exit_code_1() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write_backup(dir.path(), "bad.habackup", b"the replicated state");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let (report, verdict) = inspect_report(&path, None);
        let error = verdict.expect_err("a flipped byte is refused");
        assert_eq!(error.exit_code(), crate::error::EXIT_FAILURE);
        assert!(error.report().contains("SHA-256"), "{}", error.report());
        assert!(!report.contains("verified"), "{report}");

        std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("write");
        let (_, verdict) = inspect_report(&path, None);
        let error = verdict.expect_err("a truncated body is refused");
        assert!(error.report().contains("truncated"), "{}", error.report());

        let good = write_backup(dir.path(), "other.habackup", b"state");
        let (_, verdict) = inspect_report(&good, Some("staging"));
        let error = verdict.expect_err("another cluster is refused");
        assert!(error.report().contains("\"staging\""), "{}", error.report());

        std::fs::write(&path, vec![b'x'; 300]).expect("write");
        let (_, verdict) = inspect_report(&path, None);
        let error = verdict.expect_err("a stranger file is refused");
        assert!(error.report().contains("bad magic"), "{}", error.report());
    }

    /// A one-voter node with a data dir serving its admin API on loopback, leading, with a
    /// snapshot taken; on its own runtime so that `save` can make its own.
    fn node_with_a_snapshot(dir: &Path) -> (tokio::runtime::Runtime, ha::Node<()>, String) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let node = runtime.block_on(async {
            let mut config = ha::Config::single(
                "n1".parse().expect("valid id"),
                "127.0.0.1:0".parse().expect("valid address"),
            );
            config.cluster.name = "saved".to_string();
            config.data_dir = Some(dir.to_path_buf());
            config.http_addr = Some("127.0.0.1:0".parse().expect("valid address"));
            let node = ha::Node::builder(config)
                .snapshot_every(20)
                .start()
                .await
                .expect("starts");
            let mut roles = node.watch_role();
            tokio::time::timeout(
                Duration::from_secs(10),
                roles.wait_for(|role| role.leader.is_some()),
            )
            .await
            .expect("leads within 10 s")
            .expect("running");
            for key in 0..60 {
                node.kv()
                    .put(
                        format!("k{key}"),
                        b"v".to_vec(),
                        ha::core::Consistency::Quorum,
                    )
                    .await
                    .expect("put");
            }
            node
        });
        let addr = node.http_addr().expect("serves HTTP").to_string();
        (runtime, node, addr)
    }

    #[test]
    fn save_writes_a_verified_backup_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, node, addr) = node_with_a_snapshot(&dir.path().join("node"));
        let file = dir.path().join("backup.habackup");
        let args = SnapshotSaveArgs {
            admin: AdminArgs {
                http: addr.clone(),
                tls_ca: None,
                token: None,
            },
            file: file.clone(),
        };
        // The node takes its snapshot off the apply path: retry (bounded) until it has one.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match save(&args) {
                Ok(()) => break,
                Err(error) => {
                    assert!(
                        error.report().contains("409") && Instant::now() < deadline,
                        "{}",
                        error.report()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let header = BackupHeader::verify_file(&file, Some("saved")).expect("verifies");
        assert!(header.last_index >= 20, "{header:?}");
        let (report, verdict) = inspect_report(&file, Some("saved"));
        verdict.expect("inspect verifies it");
        assert!(report.contains("verified: sha256 ok"), "{report}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "a backup is readable by its owner only");
        // No temporary file is left behind, and an existing file is not overwritten.
        let before = std::fs::read(&file).expect("read");
        let error = save(&args).expect_err("FILE exists");
        assert!(matches!(error, BotError::FileExists { .. }), "{error}");
        assert_eq!(std::fs::read(&file).expect("read"), before);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(
            names.iter().all(|name| !name.ends_with(".tmp")),
            "{names:?}"
        );
        runtime.block_on(node.shutdown());
    }
}
