//! Scheduled backups (issue 14, item 2) on an in-process one-voter node (it leads, so it takes
//! them): written atomically and verified, the oldest beyond `keep` removed (a corrupt file
//! counted among them), listed by `GET /v1/backups`, the newest holding the last write, the
//! age metric and the `backup` health check; and a backup dir that cannot be written makes the
//! check fail after two intervals (the node DEGRADED, not unhealthy), then recover by itself
//! once the dir can be written.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::backup_file::{BACKUP_HEADER_BYTES, BackupHeader};
use ha::core::{BackupConfig, Consistency, HealthStatus, StateMachine};
use ha::lock::{LockQuery, LockQueryResponse, Query, QueryResponse, WithLocks};
use ha::replicate::replica::Applier;
use ha::{Config, Node, NodeId};

const CLUSTER: &str = "schedule-test";

async fn node_with_backups(data_dir: &Path, backup_dir: &Path, keep: usize) -> Node<()> {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.cluster.name = CLUSTER.to_string();
    config.data_dir = Some(data_dir.to_path_buf());
    config.backup = BackupConfig {
        dir: Some(backup_dir.to_path_buf()),
        interval_s: 1,
        keep,
    };
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("starts");
    support::wait_for_leader(&node).await;
    node
}

/// The value of an unlabelled sample in `/v1/metrics`.
async fn metric(node: &Node<()>, name: &str) -> f64 {
    let (status, body) = support::call_router(node, Method::GET, "/v1/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).expect("utf-8");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"))
        .parse()
        .expect("a number")
}

async fn backup_check(node: &Node<()>) -> Option<HealthStatus> {
    node.health()
        .await
        .expect("running")
        .checks
        .into_iter()
        .find(|check| check.name == "backup")
        .map(|check| check.status)
}

/// Poll `condition` every 50 ms until it holds or `within` passes (then fail with `what`).
async fn wait_until(within: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("backup dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_takes_verified_backups_keeps_the_newest_and_lists_them() {
    let data = tempfile::tempdir().expect("temp dir");
    let backups = tempfile::tempdir().expect("temp dir");
    // A file that is not a good backup: listed with its problem, and the oldest of all.
    std::fs::write(backups.path().join("junk.habackup"), b"not a backup").expect("write");
    let node = node_with_backups(data.path(), backups.path(), 2).await;
    let kv = node.kv();
    kv.put("before", b"1".to_vec(), Consistency::Quorum)
        .await
        .expect("put");

    wait_until(Duration::from_secs(30), "3 scheduled backups", async || {
        metric(&node, "ha_backups_taken_total").await >= 3.0
    })
    .await;
    let last = kv
        .put("later", b"2".to_vec(), Consistency::Quorum)
        .await
        .expect("put");
    wait_until(
        Duration::from_secs(30),
        "a backup holding the last write",
        async || {
            node.backups()
                .expect("configured")
                .first()
                .is_some_and(|newest| newest.index >= last && newest.verified)
        },
    )
    .await;

    // keep = 2: two files (the junk one went first), no temporary file left, and the list is
    // those two. A new backup is written before the oldest is removed, so the dir holds
    // keep + 1 files for a moment each second: compare at a moment it does not.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (names, listed) = loop {
        let names = files_in(backups.path());
        let (status, body) =
            support::call_router(&node, Method::GET, "/v1/backups", Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let listed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let listed = listed.as_array().expect("an array").clone();
        assert!(listed.len() <= 2, "more than keep listed: {listed:?}");
        let mut listed_names: Vec<String> = listed
            .iter()
            .map(|file| file["file"].as_str().expect("a name").to_string())
            .collect();
        listed_names.sort();
        if names.len() == 2 && listed_names == names {
            break (names, listed);
        }
        assert!(
            Instant::now() < deadline,
            "dir {names:?} vs list {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        names
            .iter()
            .all(|name| name.starts_with(CLUSTER) && name.ends_with(".habackup")),
        "{names:?}"
    );
    for field in [
        "file", "index", "term", "bytes", "sha256", "at_ms", "verified",
    ] {
        assert!(
            listed[0].get(field).is_some(),
            "{field} missing: {listed:?}"
        );
    }
    assert!(listed[0]["at_ms"].as_u64() >= listed[1]["at_ms"].as_u64());
    assert_eq!(listed[0]["verified"], true);
    let newest = backups
        .path()
        .join(listed[0]["file"].as_str().expect("a name"));
    BackupHeader::verify_file(&newest, Some(CLUSTER)).expect("the newest verifies");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&newest).expect("metadata").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "a backup is readable by its owner only");
    assert_eq!(
        listed[0]["bytes"].as_u64(),
        Some(std::fs::metadata(&newest).expect("exists").len())
    );

    // The newest holds every write acknowledged before it was taken.
    let bytes = std::fs::read(&newest).expect("read");
    let mut applier = Applier::new(WithLocks::new(()));
    applier
        .restore(&bytes[BACKUP_HEADER_BYTES..])
        .expect("the body restores");
    for key in ["before", "later"] {
        let answer = applier.machine().query(&Query::Lock(LockQuery::Get {
            key: key.to_string(),
        }));
        assert!(
            matches!(
                answer,
                QueryResponse::Lock(LockQueryResponse::Value(Some(_)))
            ),
            "{key}: {answer:?}"
        );
    }

    // Surfaces: a young newest backup, a healthy check, no failures.
    assert!(metric(&node, "ha_backup_newest_age_seconds").await < 10.0);
    assert_eq!(metric(&node, "ha_backups_failed_total").await, 0.0);
    assert!(metric(&node, "ha_backup_last_bytes").await > 0.0);
    assert_eq!(metric(&node, "ha_backups_kept").await, 2.0);
    assert_eq!(metric(&node, "ha_backup_interval_seconds").await, 1.0);
    assert_eq!(backup_check(&node).await, Some(HealthStatus::Healthy));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_dir_that_cannot_be_written_fails_the_check_then_recovers() {
    let data = tempfile::tempdir().expect("temp dir");
    let parent = tempfile::tempdir().expect("temp dir");
    // The backup dir's path is taken by a plain file: nothing can be created in it (even
    // as root, unlike a permission bit).
    let blocked = parent.path().join("backups");
    std::fs::write(&blocked, b"in the way").expect("write");
    let node = node_with_backups(data.path(), &blocked, 3).await;

    wait_until(Duration::from_secs(30), "a failed backup", async || {
        metric(&node, "ha_backups_failed_total").await >= 1.0
    })
    .await;
    assert!(node.backup_error().is_some());
    assert_eq!(
        metric(&node, "ha_backup_newest_age_seconds").await,
        f64::INFINITY
    );
    // Two intervals (2 s) after becoming leader with no good backup: the check fails, and
    // being non-critical it makes the node DEGRADED, not UNHEALTHY (no handover for it).
    wait_until(
        Duration::from_secs(30),
        "the backup check failing",
        async || backup_check(&node).await == Some(HealthStatus::Unhealthy),
    )
    .await;
    assert_eq!(node.health_status(), HealthStatus::Degraded);

    // Free the path: the scheduler retries by itself and the check recovers.
    std::fs::remove_file(&blocked).expect("remove");
    wait_until(
        Duration::from_secs(60),
        "a backup after the dir was freed",
        async || metric(&node, "ha_backups_taken_total").await >= 1.0,
    )
    .await;
    assert!(node.backup_error().is_none());
    wait_until(
        Duration::from_secs(30),
        "the backup check healthy again",
        async || backup_check(&node).await == Some(HealthStatus::Healthy),
    )
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_backup_dir_the_list_is_refused_with_the_reason() {
    let node = support::one_node().await;
    let (status, body) = support::call_router(&node, Method::GET, "/v1/backups", Vec::new()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("no_backup_dir") && text.contains("--backup-dir"),
        "{text}"
    );
    assert!(node.backups().is_none());
    node.shutdown().await;
}

#[test]
fn bad_backup_settings_are_refused_naming_the_field() {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.backup.interval_s = 0;
    assert_eq!(config.validate().unwrap_err().field, "backup.interval_s");
    config.backup = BackupConfig {
        keep: 0,
        ..BackupConfig::default()
    };
    assert_eq!(config.validate().unwrap_err().field, "backup.keep");
    config.backup = BackupConfig::default();
    config.validate().expect("the defaults are valid");
}
