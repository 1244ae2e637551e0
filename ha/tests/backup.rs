//! `GET /v1/snapshot` and the backup file format (issue 14, item 2) on an in-process node with
//! a data dir: the backup is fresh (it holds every write acknowledged before the request, with
//! no snapshot of the node's own needed), its header and SHA-256 verify, the call needs the
//! admin role, no temporary file is left behind, and a corrupted file (a flipped byte, a
//! truncated body, trailing bytes, another cluster) is refused with the reason.

mod support;

use std::time::Duration;

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
    let answer = support::send(node, request).await;
    (answer.status, answer.headers, answer.body)
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

    // Fresh: the node has taken no snapshot of its own (SNAPSHOT_EVERY is far off), and the
    // backup still holds every acknowledged write, the last one included.
    kv.put("early", b"1".to_vec(), Consistency::Quorum)
        .await
        .expect("put");

    // A read token may not take a backup: it holds all the data.
    let (status, _, _) = get_snapshot(&node, READ_TOKEN).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for key in 0..(SNAPSHOT_EVERY / 2) {
        kv.put(
            format!("key-{key:04}"),
            format!("value-{key}").into_bytes(),
            Consistency::Quorum,
        )
        .await
        .expect("put");
    }
    let last = kv
        .put("last", b"acknowledged".to_vec(), Consistency::Quorum)
        .await
        .expect("put");
    let (status, headers, backup) = get_snapshot(&node, ADMIN_TOKEN).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&backup)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("data dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains("backup-export"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        headers[header::CONTENT_LENGTH].to_str().unwrap(),
        backup.len().to_string()
    );

    let parsed = check(&backup, Some(CLUSTER)).expect("a served backup verifies");
    assert_eq!(parsed.cluster, CLUSTER);
    assert!(parsed.last_index >= last, "{parsed:?} misses index {last}");
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
    // and locks): restored into a fresh applier it is at the header's index and holds every
    // key written before the request, the last acknowledged one included.
    let mut applier = Applier::new(WithLocks::new(()));
    applier
        .restore(&backup[BACKUP_HEADER_BYTES..])
        .expect("the body restores");
    assert_eq!(applier.applied_index().0, parsed.last_index);
    let machine = applier.machine();
    for key in [
        "early".to_string(),
        "key-0000".to_string(),
        "key-0024".to_string(),
        "last".to_string(),
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
async fn a_node_without_a_data_dir_serves_a_backup_through_the_temp_dir() {
    let config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    let node = Node::builder(config).start().await.expect("starts");
    support::wait_for_leader(&node).await;
    let index = node
        .kv()
        .put("in-memory", b"yes".to_vec(), Consistency::Quorum)
        .await
        .expect("put");
    let request = Request::builder()
        .uri("/v1/snapshot")
        .body(Body::empty())
        .expect("valid request");
    let answer = support::send(&node, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.body;
    let parsed = check(&body, Some(&node.config().cluster.name)).expect("verifies");
    assert!(parsed.last_index >= index, "{parsed:?}");
    node.shutdown().await;
}

/// A backup being streamed is the state at its index, whole and verified, even when the node
/// applies more writes (and takes snapshots of its own) before the client has read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_the_state_at_its_index_while_writes_go_on() {
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
    assert_eq!(response.status(), StatusCode::OK);
    let first_index: u64 = response.headers()["x-ha-snapshot-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Writes (and the node's own snapshots) while the body is unread.
    for key in 0..(SNAPSHOT_EVERY * 3) {
        kv.put(
            format!("later-{key:04}"),
            b"x".to_vec(),
            Consistency::Quorum,
        )
        .await
        .expect("put");
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
    let mut applier = Applier::new(WithLocks::new(()));
    applier
        .restore(&backup[BACKUP_HEADER_BYTES..])
        .expect("the body restores");
    let machine = applier.machine();
    let get = |key: &str| {
        machine.query(&Query::Lock(LockQuery::Get {
            key: key.to_string(),
        }))
    };
    assert!(matches!(
        get("big-0149"),
        QueryResponse::Lock(LockQueryResponse::Value(Some(_)))
    ));
    assert!(matches!(
        get("later-0000"),
        QueryResponse::Lock(LockQueryResponse::Value(None))
    ));
    node.shutdown().await;
}

/// Freshness on a follower: the backup it serves holds a write acknowledged by the leader just
/// before the request (the read point comes from the leader; the follower waits to apply it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_a_backup_holding_the_last_acknowledged_write() {
    let start = |index: usize, seed: Option<std::net::SocketAddr>| async move {
        let id = NodeId::new(format!("n{index}")).expect("valid");
        let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().expect("valid"))];
        let mut config = Config::full_ha(id, "127.0.0.1:0".parse().expect("valid"), seeds);
        config.cluster.name = CLUSTER.to_string();
        Node::builder(config)
            .request_timeout(Duration::from_secs(10))
            .start()
            .await
            .expect("starts")
    };
    let first = start(1, None).await;
    let seed = Some(first.gossip_addr());
    let nodes = [first, start(2, seed).await, start(3, seed).await];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while nodes.iter().filter(|node| node.is_leader()).count() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no leader within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = nodes.iter().position(Node::is_leader).expect("a leader");
    let follower = &nodes[(leader + 1) % 3];
    let kv = nodes[leader].kv();
    for round in 0..3u64 {
        let key = format!("fresh-{round}");
        let index = kv
            .put(key.clone(), b"v".to_vec(), Consistency::Quorum)
            .await
            .expect("put");
        // At once, on the follower.
        let exported = follower.export_snapshot().await.expect("exports");
        assert!(
            exported.last_index().0 >= index,
            "{exported:?} misses {index}"
        );
        let mut body = Vec::new();
        exported.write_to(&mut body).expect("writes");
        let mut applier = Applier::new(WithLocks::new(()));
        applier.restore(&body).expect("restores");
        let answer = applier
            .machine()
            .query(&Query::Lock(LockQuery::Get { key: key.clone() }));
        assert!(
            matches!(
                answer,
                QueryResponse::Lock(LockQueryResponse::Value(Some(_)))
            ),
            "{key}: {answer:?}"
        );
    }
    for node in &nodes {
        node.shutdown().await;
    }
}
