//! `GET /v1/snapshot` and the backup file format (issue 14, item 2) on an in-process node with
//! a data dir: the backup holds the replicated state at the snapshot's index, its header and
//! SHA-256 verify, the call needs the admin role, and a corrupted file (a flipped byte, a
//! truncated body, trailing bytes, another cluster) is refused with the reason.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ha::backup_file::{BACKUP_HEADER_BYTES, BackupError, BackupHeader};
use ha::core::{Consistency, StateMachine};
use ha::lock::{LockQuery, LockQueryResponse, Query, QueryResponse, WithLocks};
use ha::replicate::replica::Applier;
use ha::{AdminRole, AdminTokens, Config, Node, NodeId};
use http_body_util::BodyExt;
use tower::ServiceExt;

const CLUSTER: &str = "backup-test";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";
const READ_TOKEN: &str = "read-token-0123456789abcdef0123456789ab";
const SNAPSHOT_EVERY: u64 = 50;

async fn node_with_data_dir(dir: &std::path::Path) -> Node<()> {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.cluster.name = CLUSTER.to_string();
    config.data_dir = Some(dir.to_path_buf());
    let tokens = AdminTokens::new()
        .with_token(AdminRole::Admin, "alice", ADMIN_TOKEN)
        .and_then(|tokens| tokens.with_token(AdminRole::Read, "grafana", READ_TOKEN))
        .expect("valid tokens");
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .snapshot_every(SNAPSHOT_EVERY)
        .admin_tokens(tokens)
        .start()
        .await
        .expect("starts");
    support::wait_for_leader(&node).await;
    node
}

/// `GET /v1/snapshot` with `token`: the status, the response headers and the body.
async fn get_snapshot(
    node: &Node<()>,
    token: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/v1/snapshot")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("valid request");
    let response = node
        .http_router()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, bytes.to_vec())
}

fn check(bytes: &[u8], cluster: Option<&str>) -> Result<BackupHeader, BackupError> {
    let mut input = bytes;
    let header = BackupHeader::read(&mut input)?;
    header.verify(&mut input, cluster)?;
    Ok(header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_the_state_at_its_index_and_corruption_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node_with_data_dir(dir.path()).await;
    let kv = node.kv();

    // Before the first snapshot there is nothing durable to serve: 409 with the reason.
    kv.put("early", b"1".to_vec(), Consistency::Quorum)
        .await
        .expect("put");
    let (status, _, body) = get_snapshot(&node, ADMIN_TOKEN).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("no_snapshot"));

    // A read token may not take a backup: it holds all the data.
    let (status, _, _) = get_snapshot(&node, READ_TOKEN).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Enough writes for a snapshot, then wait (bounded) until the node has taken one.
    for key in 0..(SNAPSHOT_EVERY * 2) {
        kv.put(
            format!("key-{key:04}"),
            format!("value-{key}").into_bytes(),
            Consistency::Quorum,
        )
        .await
        .expect("put");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (headers, backup) = loop {
        let (status, headers, body) = get_snapshot(&node, ADMIN_TOKEN).await;
        if status == StatusCode::OK {
            break (headers, body);
        }
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(Instant::now() < deadline, "no snapshot within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        headers[header::CONTENT_LENGTH].to_str().unwrap(),
        backup.len().to_string()
    );

    let parsed = check(&backup, Some(CLUSTER)).expect("a served backup verifies");
    assert_eq!(parsed.cluster, CLUSTER);
    assert!(parsed.last_index >= SNAPSHOT_EVERY, "{parsed:?}");
    assert!(parsed.last_term >= 1, "{parsed:?}");
    assert_eq!(
        headers["x-ha-snapshot-index"].to_str().unwrap(),
        parsed.last_index.to_string()
    );
    assert_eq!(
        headers["x-ha-snapshot-term"].to_str().unwrap(),
        parsed.last_term.to_string()
    );
    let applied: u64 = headers["x-ha-applied-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        applied >= parsed.last_index,
        "applied {applied} < {parsed:?}"
    );
    let age_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - parsed.created_at_unix_ms;
    assert!(age_ms < 60_000, "created {age_ms} ms ago");
    assert_eq!(
        parsed.body_bytes as usize,
        backup.len() - BACKUP_HEADER_BYTES
    );

    // The body is the replica's snapshot (sessions, failover history, then the KV store, leases
    // and locks): restored into a fresh applier it is at the header's index and holds the keys
    // written up to the snapshot's index (index 1 is the leader's first entry, and each put
    // is one entry, so at least the first SNAPSHOT_EVERY - 10 puts are in).
    let mut applier = Applier::new(WithLocks::new(()));
    applier
        .restore(&backup[BACKUP_HEADER_BYTES..])
        .expect("the body restores");
    assert_eq!(applier.applied_index().0, parsed.last_index);
    let machine = applier.machine();
    for key in [
        "early".to_string(),
        "key-0000".to_string(),
        "key-0030".to_string(),
    ] {
        let answer = machine.query(&Query::Lock(LockQuery::Get { key: key.clone() }));
        let QueryResponse::Lock(LockQueryResponse::Value(Some(found))) = answer else {
            panic!("{key} is not in the backup: {answer:?}");
        };
        assert_eq!(found.key, key);
    }

    // Corruption: each refused with its reason.
    let mut flipped_body = backup.clone();
    let last = flipped_body.len() - 1;
    flipped_body[last] ^= 0x01;
    let error = check(&flipped_body, Some(CLUSTER)).unwrap_err();
    assert!(matches!(error, BackupError::BodyChecksum { .. }), "{error}");
    assert!(error.to_string().contains("SHA-256"), "{error}");

    let mut flipped_header = backup.clone();
    flipped_header[BACKUP_HEADER_BYTES - 40] ^= 0x01; // inside the body's digest field
    let error = check(&flipped_header, Some(CLUSTER)).unwrap_err();
    assert!(matches!(error, BackupError::HeaderChecksum), "{error}");

    let truncated = &backup[..backup.len() - 100];
    let error = check(truncated, Some(CLUSTER)).unwrap_err();
    assert!(matches!(error, BackupError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("truncated"), "{error}");

    let mut trailing = backup.clone();
    trailing.extend_from_slice(b"junk");
    let error = check(&trailing, Some(CLUSTER)).unwrap_err();
    assert!(
        matches!(error, BackupError::TrailingBytes { .. }),
        "{error}"
    );

    let error = check(&backup, Some("another-cluster")).unwrap_err();
    assert!(matches!(error, BackupError::WrongCluster { .. }), "{error}");
    assert!(error.to_string().contains("another-cluster"), "{error}");

    // The same checks through a file, as `bot snapshot inspect` makes them.
    let file = dir.path().join("saved.habackup");
    std::fs::write(&file, &backup).expect("write");
    let from_file = BackupHeader::verify_file(&file, Some(CLUSTER)).expect("verifies");
    assert_eq!(from_file, parsed);
    std::fs::write(&file, truncated).expect("write");
    assert!(matches!(
        BackupHeader::verify_file(&file, None),
        Err(BackupError::Truncated { .. })
    ));

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_data_dir_refuses_with_the_reason() {
    let config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    let node = Node::builder(config).start().await.expect("starts");
    let request = Request::builder()
        .uri("/v1/snapshot")
        .body(Body::empty())
        .expect("valid request");
    let response = node
        .http_router()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("no data_dir"), "{text}");
    node.shutdown().await;
}

/// A backup being streamed is the snapshot it started from, whole and verified, even when
/// the node commits newer snapshots (and removes the old file) before the client has read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_newer_snapshots_committed_meanwhile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node_with_data_dir(dir.path()).await;
    let kv = node.kv();
    // About 600 KiB of state: more than the chunks the server queues, so it waits on the
    // client with the file open.
    let value = vec![7u8; 4096];
    for key in 0..150 {
        kv.put(format!("big-{key:04}"), value.clone(), Consistency::Quorum)
            .await
            .expect("put");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        let request = Request::builder()
            .uri("/v1/snapshot")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .expect("valid request");
        let response = node
            .http_router()
            .oneshot(request)
            .await
            .expect("infallible");
        // A snapshot that holds all the big values (index 150 or later).
        let index = response
            .headers()
            .get("x-ha-snapshot-index")
            .and_then(|index| index.to_str().ok()?.parse::<u64>().ok());
        if response.status() == StatusCode::OK && index.is_some_and(|index| index >= 150) {
            break response;
        }
        assert!(Instant::now() < deadline, "no snapshot at 150+ within 20 s");
        // Snapshots come every SNAPSHOT_EVERY entries: small writes bring the next one.
        kv.put("filler", b"f".to_vec(), Consistency::Quorum)
            .await
            .expect("put");
    };
    let first_index: u64 = response.headers()["x-ha-snapshot-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Newer snapshots while the body is unread.
    for key in 0..(SNAPSHOT_EVERY * 3) {
        kv.put(
            format!("later-{key:04}"),
            b"x".to_vec(),
            Consistency::Quorum,
        )
        .await
        .expect("put");
    }
    let log_dir = node.log_dir().expect("has a data dir");
    let newer_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let newest = std::fs::read_dir(&log_dir)
            .expect("log dir")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("snapshot-")?
                    .strip_suffix(".snap")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        if newest > first_index {
            break;
        }
        assert!(
            Instant::now() < newer_deadline,
            "no newer snapshot than {first_index} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store removed the file being served when it committed the newer one; the open
    // handle still reads it.
    let served = log_dir.join(format!("snapshot-{first_index:020}.snap"));
    let gone_deadline = Instant::now() + Duration::from_secs(10);
    while served.exists() {
        assert!(
            Instant::now() < gone_deadline,
            "{} is still there",
            served.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backup = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let parsed = check(&backup, Some(CLUSTER)).expect("the stream verifies");
    assert_eq!(parsed.last_index, first_index);
    assert!(parsed.body_bytes > 150 * 4096, "{parsed:?}");
    node.shutdown().await;
}
