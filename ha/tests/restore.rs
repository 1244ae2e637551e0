//! Restore and point-in-time restore (issue 14, item 2) on in-process nodes with data dirs: a
//! backup restored into an empty data dir starts a one-voter cluster (under another node id)
//! holding exactly the backup's state; a restore to an index between the backup and the newest
//! archived WAL segment holds exactly the state at that index, compared both with what was
//! written and with a replay of the archive through a fresh applier; a corrupted backup (a
//! flipped byte, a truncated body, another cluster) and an archive that does not reach the
//! index asked for are refused with the reason and the data dir untouched.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::backup_file::{BACKUP_HEADER_BYTES, BackupHeader};
use ha::core::{Consistency, LogIndex, StateMachine, Term, WalArchiveConfig};
use ha::lock::{KeyValue, LockQuery, LockQueryResponse, Query, QueryResponse, WithLocks};
use ha::replicate::replica::Applier;
use ha::replicate::storage::archive::read_archive;
use ha::restore::{RESTORE_DIR_NAME, RestoreError, prepare_restore};
use ha::{Config, Node, NodeError, NodeId};

const CLUSTER: &str = "restore-test";

fn config(id: &str, dir: &Path) -> Config {
    let mut config = Config::single(
        NodeId::new(id).expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.cluster.name = CLUSTER.to_string();
    config.data_dir = Some(dir.to_path_buf());
    config
}

async fn start(config: Config, snapshot_every: u64) -> Node<()> {
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .snapshot_every(snapshot_every)
        .start()
        .await
        .expect("starts");
    support::wait_for_leader(&node).await;
    node
}

/// `GET /v1/snapshot` (a fresh export: it holds every write acknowledged before the call,
/// so its index is at or past `at_least`), written to `file`.
async fn save_backup(node: &Node<()>, at_least: u64, file: &Path) -> BackupHeader {
    let (status, body) = support::call_router(node, Method::GET, "/v1/snapshot", Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut input = &body[..];
    let header = BackupHeader::read(&mut input).expect("header");
    assert!(
        header.last_index >= at_least,
        "a fresh backup at {} misses index {at_least}",
        header.last_index
    );
    std::fs::write(file, &body).expect("write backup");
    header
}

/// Every key, read at QUORUM.
async fn all_keys(node: &Node<()>) -> Vec<KeyValue> {
    node.kv().range("").await.expect("range")
}

/// Write `key-<i>` = `value-<i>` for i in `range`, each once; returns each write's index.
async fn write_keys(node: &Node<()>, range: std::ops::Range<u64>) -> Vec<(String, u64)> {
    let mut written = Vec::new();
    for i in range {
        let key = format!("key-{i:05}");
        let index = node
            .kv()
            .put(
                key.clone(),
                format!("value-{i}").into_bytes(),
                Consistency::Quorum,
            )
            .await
            .expect("put");
        written.push((key, index));
    }
    written
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(listing) => listing.map(|item| item.expect("item").path()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_holds_exactly_the_backup_and_corrupt_backups_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let node = start(config("n1", &dir.path().join("n1")), 50).await;
    let written = write_keys(&node, 0..130).await;
    let last = written.last().expect("written").1;
    let file = dir.path().join("backup.habackup");
    let header = save_backup(&node, last, &file).await;
    let live = all_keys(&node).await;
    node.shutdown().await;
    let expected: Vec<KeyValue> = live
        .into_iter()
        .filter(|kv| kv.version <= header.last_index)
        .collect();
    assert!(expected.len() >= 130, "{}", expected.len());

    // Corrupted backups are refused with the reason; the data dir is untouched.
    let target = dir.path().join("restored");
    std::fs::create_dir(&target).expect("dir");
    std::fs::write(target.join("keep.txt"), b"operator's note").expect("write");
    let before = listing(&target);
    let good = std::fs::read(&file).expect("read");
    let bad = dir.path().join("bad.habackup");
    let mut flipped = good.clone();
    flipped[BACKUP_HEADER_BYTES + 10] ^= 0x04;
    std::fs::write(&bad, &flipped).expect("write");
    let error = prepare_restore(&bad, &target, None, None).expect_err("flipped byte");
    assert!(matches!(error, RestoreError::Backup { .. }), "{error}");
    assert!(error.to_string().contains("SHA-256"), "{error}");
    std::fs::write(&bad, &good[..good.len() - 7]).expect("write");
    let error = prepare_restore(&bad, &target, None, None).expect_err("truncated");
    assert!(error.to_string().contains("truncated"), "{error}");
    let error = prepare_restore(&file, &target, Some("other"), None).expect_err("cluster");
    assert!(error.to_string().contains("\"other\""), "{error}");
    assert_eq!(listing(&target), before, "the data dir was touched");

    // The good backup, restored and started under another node id: exactly the backup.
    let prepared = prepare_restore(&file, &target, Some(CLUSTER), None).expect("prepared");
    assert_eq!(prepared.to_index.0, header.last_index);
    assert_eq!(prepared.entries, 0);
    let error = prepare_restore(&file, &target, None, None).expect_err("pending already");
    assert!(
        matches!(error, RestoreError::DataDirInUse { .. }),
        "{error}"
    );
    let restored = start(config("r1", &target), 50).await;
    assert_eq!(all_keys(&restored).await, expected);
    let status = restored.status().await.expect("status");
    assert!(status.term >= Term(header.last_term), "{status:?}");
    // It is a working one-voter cluster.
    restored
        .kv()
        .put("after", b"restore".to_vec(), Consistency::Quorum)
        .await
        .expect("writes");
    restored.shutdown().await;
    assert!(
        !target.join(RESTORE_DIR_NAME).exists(),
        "the pending restore was removed"
    );
    // A data dir that holds a log is refused.
    let error = prepare_restore(&file, &target, None, None).expect_err("holds a log");
    assert!(error.to_string().contains("already holds a log"), "{error}");
    // Restarted, it keeps its state (the restore is not installed twice).
    let again = start(config("r1", &target), 50).await;
    let keys = all_keys(&again).await;
    assert_eq!(keys.len(), expected.len() + 1);
    again.shutdown().await;

    // A backup installed by a node of another cluster is refused at start, and left pending.
    let other = dir.path().join("other");
    prepare_restore(&file, &other, None, None).expect("prepared without a cluster check");
    let mut wrong = config("x1", &other);
    wrong.cluster.name = "another".to_string();
    let error = Node::builder(wrong)
        .start()
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(matches!(error, NodeError::DataDir { .. }), "{error}");
    assert!(error.to_string().contains("another"), "{error}");
    assert!(other.join(RESTORE_DIR_NAME).is_dir());
    assert!(
        !other
            .join("log")
            .join("wal-00000000000000000001.log")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restore_equals_a_replay_to_that_index() {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("archive");
    let mut source = config("n1", &dir.path().join("n1"));
    source.wal_archive = WalArchiveConfig {
        dir: Some(archive.clone()),
        segment_bytes: Some(4096),
    };
    let node = start(source, 40).await;
    let mut written = write_keys(&node, 0..60).await;
    let file = dir.path().join("backup.habackup");
    let header = save_backup(&node, 40, &file).await;
    written.extend(write_keys(&node, 60..400).await);
    // The index in the middle: a key written well after the backup, well before the end.
    let (_, middle) = written[250].clone();
    assert!(middle > header.last_index + 50, "{middle} vs {header:?}");
    // Wait (bounded) until the archive covers it: compaction follows snapshots.
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_archive(
        &archive,
        LogIndex(header.last_index),
        Term(header.last_term),
        LogIndex(middle),
        1 << 30,
    )
    .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the archive never reached {middle}"
        );
        written.extend(
            write_keys(
                &node,
                10_000 + written.len() as u64..10_010 + written.len() as u64,
            )
            .await,
        );
    }
    node.shutdown().await;

    // Refused: an index past the archive, and one before the backup; the data dir untouched.
    let target = dir.path().join("pitr");
    let error = prepare_restore(&file, &target, None, Some((LogIndex(1_000_000), &archive)))
        .expect_err("past the archive");
    assert!(matches!(error, RestoreError::Archive(_)), "{error}");
    assert!(error.to_string().contains("does not hold entry"), "{error}");
    let error = prepare_restore(&file, &target, None, Some((LogIndex(1), &archive)))
        .expect_err("before the backup");
    assert!(
        matches!(error, RestoreError::BeforeBackup { .. }),
        "{error}"
    );
    assert!(!target.exists(), "the data dir was created");

    // The replay: the backup's body into a fresh applier, the archive's entries through it.
    let backup = std::fs::read(&file).expect("read");
    let mut applier = Applier::new(WithLocks::new(()));
    applier
        .restore(&backup[BACKUP_HEADER_BYTES..])
        .expect("restores");
    let entries = read_archive(
        &archive,
        LogIndex(header.last_index),
        Term(header.last_term),
        LogIndex(middle),
        1 << 30,
    )
    .expect("covered");
    for entry in &entries {
        applier.apply(entry);
    }
    assert_eq!(applier.applied_index(), LogIndex(middle));
    let QueryResponse::Lock(LockQueryResponse::Values(replayed)) =
        applier.machine().query(&Query::Lock(LockQuery::Range {
            prefix: String::new(),
            limit: 10_000,
        }))
    else {
        panic!("a range answer");
    };

    let prepared = prepare_restore(
        &file,
        &target,
        Some(CLUSTER),
        Some((LogIndex(middle), &archive)),
    )
    .expect("prepared");
    assert_eq!(prepared.to_index, LogIndex(middle));
    assert_eq!(prepared.entries as u64, middle - header.last_index);
    let restored = start(config("p1", &target), 40).await;
    let keys = all_keys(&restored).await;
    restored.shutdown().await;
    // Exactly the keys written at or before the index, with their values and versions...
    let expected: Vec<(String, u64)> = written
        .iter()
        .filter(|(_, index)| *index <= middle)
        .cloned()
        .collect();
    let mut expected = expected;
    expected.sort();
    let found: Vec<(String, u64)> = keys.iter().map(|kv| (kv.key.clone(), kv.version)).collect();
    assert_eq!(found, expected);
    // ...and exactly what the replay holds.
    assert_eq!(keys, replayed);
}
