//! The multi-master shared map through the facade (issue 15): the `/v1/state` HTTP contract
//! and its refusals, three in-process nodes that converge, a restarted node that keeps what it
//! acknowledged, and hostile requests.
//!
//! Every wait polls a condition with a deadline; nodes bind only to 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::config_file::ConfigLoader;
use ha::core::SharedStateFsync;
use ha::core::keyring::ClusterKey;
use ha::gossip::shared_state::SHARED_STATE_DIR_NAME;
use ha::{Config, Node, NodeId, StateData};
use serde_json::{Value, json};
use support::{call_router as call, one_node};

const WAIT: Duration = Duration::from_secs(30);

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(body)))
}

async fn call_json(node: &Node<()>, method: Method, uri: &str, body: &[u8]) -> (StatusCode, Value) {
    let (status, bytes) = call(node, method, uri, body.to_vec()).await;
    (status, json_of(&bytes))
}

/// Every route with the bodies the contract names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_contract_of_the_shared_state() {
    let node = one_node().await;
    let own = node.id().as_str().to_string();

    // PUT answers the write's stamp and node; GET gives the value back with them.
    let (status, put) = call_json(&node, Method::PUT, "/v1/state/color", b"blue").await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["node"], json!(own));
    let stamp = put["stamp"].as_str().expect("stamp is text").to_string();
    assert_eq!(stamp.len(), 19, "{stamp}: 13 digits, a dot, 5 digits");
    let (status, got) = call_json(&node, Method::GET, "/v1/state/color", b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, json!({"value": "blue", "stamp": stamp, "node": own}));

    // A later write has a larger stamp (sortable text).
    let (_, again) = call_json(&node, Method::PUT, "/v1/state/color", b"green").await;
    assert!(again["stamp"].as_str().unwrap() > stamp.as_str());

    // Keys may hold slashes; values may be any bytes (not UTF-8: value_base64).
    let (status, _) = call_json(&node, Method::PUT, "/v1/state/a/b/c", &[0xff, 0x00, 0x61]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, binary) = call_json(&node, Method::GET, "/v1/state/a/b/c", b"").await;
    assert_eq!(binary["value_base64"], json!("/wBh"));
    assert!(binary.get("value").is_none(), "{binary}");

    // Counters: by defaults to 1, may be negative; a read gives a JSON number.
    let (status, counted) = call_json(&node, Method::POST, "/v1/state/hits/incr", b"").await;
    assert_eq!((status, counted), (StatusCode::OK, json!({"value": 1})));
    let (_, counted) = call_json(&node, Method::POST, "/v1/state/hits/incr?by=-5", b"").await;
    assert_eq!(counted, json!({"value": -4}));
    let (_, read) = call_json(&node, Method::GET, "/v1/state/hits", b"").await;
    assert_eq!(read["value"], json!(-4));
    assert_eq!(read["node"], json!(own));

    // The listing: key order, prefix, limit, truncated.
    for key in ["list/1", "list/2", "list/3"] {
        call_json(
            &node,
            Method::PUT,
            &format!("/v1/state/{key}"),
            key.as_bytes(),
        )
        .await;
    }
    let (status, listed) =
        call_json(&node, Method::GET, "/v1/state?prefix=list/&limit=2", b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["truncated"], json!(true));
    let keys: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["list/1", "list/2"]);
    assert_eq!(listed["entries"][0]["value"], json!("list/1"));
    assert_eq!(listed["entries"][0]["node"], json!(own));
    let (_, everything) = call_json(&node, Method::GET, "/v1/state", b"").await;
    assert_eq!(everything["truncated"], json!(false));
    assert_eq!(everything["entries"].as_array().unwrap().len(), 6);

    // DELETE: the tombstone's stamp; then 404 for reads and for a second delete.
    let (status, deleted) = call_json(&node, Method::DELETE, "/v1/state/color", b"").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["stamp"].as_str().unwrap() > again["stamp"].as_str().unwrap());
    let (status, missing) = call_json(&node, Method::GET, "/v1/state/color", b"").await;
    assert_eq!(
        (status, missing["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (status, _) = call_json(&node, Method::DELETE, "/v1/state/color", b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The Rust handle sees the same map.
    let state = node.shared_state();
    assert_eq!(state.get("hits").unwrap().data, StateData::Counter(-4));
    assert!(state.get("color").is_none());

    // Metrics.
    let (_, metrics) = call(&node, Method::GET, "/v1/metrics", Vec::new()).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("ha_shared_state_keys 5\n"), "{metrics}");
    assert!(
        metrics.contains("ha_shared_state_tombstones 1\n"),
        "{metrics}"
    );
    for family in [
        "ha_shared_state_sent_bytes_total",
        "ha_shared_state_received_bytes_total",
        "ha_shared_state_merged_deltas_total",
        "ha_shared_state_anti_entropy_rounds_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} counter")),
            "{family}"
        );
    }
    node.shutdown().await;
}

/// Each refusal: its status and kind; nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_their_cause_and_change_nothing() {
    let mut config = Config::single(NodeId::new("n1").unwrap(), "127.0.0.1:0".parse().unwrap());
    config.shared_state.value_bytes_max = 8;
    config.shared_state.keys_max = 2;
    let node = Node::builder(config).start().await.expect("starts");
    support::wait_for_leader(&node).await;

    let cases: [(Method, String, Vec<u8>, StatusCode, &str); 9] = [
        (
            Method::PUT,
            "/v1/state/k".into(),
            vec![b'x'; 9],
            StatusCode::CONFLICT,
            "limit",
        ),
        (
            Method::PUT,
            format!("/v1/state/{}", "k".repeat(257)),
            b"v".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/v1/state/tab%09key".into(),
            b"v".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/state/n/incr?by=abc".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/state/n/incr?by=1&bogus=2".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/state/n".into(),
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/state?limit=0".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/state?limit=1001".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/state/k?consistency=strong".into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (method, uri, body, status, kind) in cases {
        let (got, answer) = call_json(&node, method.clone(), &uri, &body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(kind)),
            "{method} {uri}: {answer}"
        );
        assert!(answer["message"].is_string(), "{answer}");
    }
    // The value limit is named for programs.
    let (_, answer) = call_json(&node, Method::PUT, "/v1/state/k", &[b'x'; 9]).await;
    assert_eq!(answer["limit"], json!("shared_state.value_bytes_max"));

    // A register is not a counter.
    call_json(&node, Method::PUT, "/v1/state/reg", b"v").await;
    let (status, answer) = call_json(&node, Method::POST, "/v1/state/reg/incr", b"").await;
    assert_eq!(
        (status, answer["error"].clone()),
        (StatusCode::CONFLICT, json!("not_a_counter"))
    );

    // At keys_max (2) a new key is refused, an existing one can still be written.
    call_json(&node, Method::POST, "/v1/state/count/incr", b"").await;
    let (status, answer) = call_json(&node, Method::PUT, "/v1/state/third", b"v").await;
    assert_eq!(
        (status, answer["limit"].clone()),
        (StatusCode::CONFLICT, json!("shared_state.keys_max"))
    );
    let (status, _) = call_json(&node, Method::PUT, "/v1/state/reg", b"w").await;
    assert_eq!(status, StatusCode::OK);

    // Nothing refused was applied.
    let state = node.shared_state();
    assert!(state.get("k").is_none() && state.get("n").is_none() && state.get("third").is_none());
    assert_eq!(
        state.get("reg").unwrap().data,
        StateData::Bytes(b"w".to_vec())
    );
    assert_eq!(state.stats().map.live, 2);
    node.shutdown().await;
}

/// Hostile keys, queries and bodies: always a documented status with the JSON error body,
/// never a 500, and the node still serves normal requests afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_documented_answers() {
    let node = one_node().await;
    let keys = [
        "%FF%FE",
        "%00",
        "a%2Fb",
        "%",
        "..%2F..",
        "k%20k",
        "%E2%80%8B",
        "x/incr/incr",
    ];
    let queries = [
        "",
        "?by=9223372036854775807",
        "?by=-9223372036854775808",
        "?by=1e3",
        "?by=",
        "?limit=-1",
        "?prefix=%FF",
    ];
    let bodies: [Vec<u8>; 4] = [
        Vec::new(),
        vec![0xff; 4096],
        vec![0; 5000],
        b"{\"value\":1}".to_vec(),
    ];
    let mut count = 0;
    for key in keys {
        for query in queries {
            for (position, body) in bodies.iter().enumerate() {
                for method in [
                    Method::GET,
                    Method::PUT,
                    Method::POST,
                    Method::DELETE,
                    Method::PATCH,
                ] {
                    if position > 0 && method != Method::PUT {
                        continue;
                    }
                    let suffix = if method == Method::POST { "/incr" } else { "" };
                    let uri = format!("/v1/state/{key}{suffix}{query}");
                    let (status, bytes) = call(&node, method.clone(), &uri, body.clone()).await;
                    count += 1;
                    assert!(
                        [200, 400, 404, 405, 409, 413].contains(&status.as_u16()),
                        "{method} {uri}: {status}"
                    );
                    if status != StatusCode::OK {
                        let answer = json_of(&bytes);
                        assert!(answer["error"].is_string(), "{method} {uri}: {answer}");
                    }
                }
            }
        }
    }
    // Counter overflow is refused, not wrapped.
    call_json(
        &node,
        Method::POST,
        "/v1/state/big/incr?by=9223372036854775807",
        b"",
    )
    .await;
    let (status, answer) = call_json(&node, Method::POST, "/v1/state/big/incr?by=1", b"").await;
    assert_eq!(
        (status, answer["error"].clone()),
        (StatusCode::CONFLICT, json!("counter_overflow"))
    );
    let (status, _) = call_json(&node, Method::PUT, "/v1/state/after", b"fine").await;
    assert_eq!(status, StatusCode::OK);
    let (_, read) = call_json(&node, Method::GET, "/v1/state/after", b"").await;
    assert_eq!(read["value"], json!("fine"));
    println!("{count} hostile requests answered");
    node.shutdown().await;
}

async fn start_member(index: usize, seed: Option<std::net::SocketAddr>) -> Node<()> {
    let id = NodeId::new(format!("n{index}")).unwrap();
    // The first node has no one to join yet; a validated 3-voter config needs a seed.
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())];
    let mut config = Config::full_ha(id, "127.0.0.1:0".parse().unwrap(), seeds);
    config.shared_state.anti_entropy_interval_ms = 200;
    // Sealed: state packets travel in gossip's envelope, like SWIM and metadata.
    config.security.cluster_keys = vec![ClusterKey::from_bytes([42; 32])];
    Node::builder(config).start().await.expect("starts")
}

/// Three nodes with a cluster key write on their own (no leader needed), the same key on all three and one
/// counter incremented on all three; they converge to one state: the LWW winner is the
/// largest stamp, the counter the sum of every increment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_in_process_nodes_converge() {
    let first = start_member(1, None).await;
    let seed = Some(first.gossip_addr());
    let nodes = [
        first,
        start_member(2, seed).await,
        start_member(3, seed).await,
    ];
    support::wait_until(WAIT, "every node to see the two others", async || {
        nodes.iter().all(|node| {
            node.members()
                .iter()
                .filter(|member| member.reachable)
                .count()
                == 2
        })
    })
    .await;

    let mut stamps = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let state = node.shared_state();
        state
            .put(&format!("own/{index}"), format!("from {index}"))
            .await
            .unwrap();
        stamps.push(
            state
                .put("shared", format!("writer {index}"))
                .await
                .unwrap(),
        );
        for _ in 0..=index {
            state.increment("visits", 1).await.unwrap();
        }
    }
    let winner = stamps.iter().max().unwrap().clone();
    let took = support::wait_until(WAIT, "the three maps to agree", async || {
        nodes.iter().all(|node| {
            let state = node.shared_state();
            let own_keys = (0..3).all(|index| state.get(&format!("own/{index}")).is_some());
            let shared = state
                .get("shared")
                .is_some_and(|value| value.stamp == winner);
            let visits = state
                .get("visits")
                .is_some_and(|value| value.data == StateData::Counter(6));
            own_keys && shared && visits
        })
    })
    .await;
    println!(
        "three nodes converged {} ms after the last write",
        took.as_millis()
    );
    for node in &nodes {
        let stats = node.shared_state().stats();
        assert_eq!(stats.map.live, 5, "{stats:?}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// With `fsync = "always"` a node that stops without a graceful shutdown (dropped, like a
/// crash) and starts again on the same data dir keeps every write it acknowledged; a torn
/// record at the end of its log is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = Config::single(NodeId::new("n1").unwrap(), "127.0.0.1:0".parse().unwrap());
        config.data_dir = Some(dir.path().to_path_buf());
        config
    };
    let node = Node::builder(config()).start().await.expect("starts");
    let state = node.shared_state();
    let kept = state.put("kept", "yes").await.unwrap();
    state.put("gone", "soon").await.unwrap();
    state.delete("gone").await.unwrap();
    assert_eq!(state.increment("count", 5).await.unwrap(), 5);
    assert_eq!(state.increment("count", -2).await.unwrap(), 3);
    drop(state);
    drop(node);
    // A write that was torn by the crash: half a record at the end of the log.
    let log = dir.path().join(SHARED_STATE_DIR_NAME).join("state.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&log, &bytes).unwrap();

    let node = wait_for_restart(config()).await;
    let state = node.shared_state();
    let read = state
        .get("kept")
        .expect("an acknowledged write survives the restart");
    assert_eq!(
        (read.data, read.stamp),
        (StateData::Bytes(b"yes".to_vec()), kept.clone())
    );
    assert!(state.get("gone").is_none(), "a delete survives too");
    assert_eq!(state.get("count").unwrap().data, StateData::Counter(3));
    // The clock moved past every stored stamp: a new write wins over the old ones.
    let newer = state.put("kept", "again").await.unwrap();
    assert!(newer > kept);
    node.shutdown().await;
}

/// The data dir is claimed by the node file; a dropped node's tasks may hold it a moment.
async fn wait_for_restart(config: Config) -> Node<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        match Node::builder(config.clone()).start().await {
            Ok(node) => return node,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the node does not restart: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The `[shared_state]` table of a config file, and a field out of range named at load.
#[test]
fn the_config_file_sets_the_shared_state() {
    let base = "node_id = \"n1\"\nbind_addr = \"127.0.0.1:7101\"\npreset = \"single\"\n";
    let text = format!(
        "{base}[shared_state]\nfsync = \"batched\"\nfsync_interval_ms = 50\nvalue_bytes_max = 1024\nfanout = 5\n"
    );
    let config = ConfigLoader::new()
        .toml_text(&text, "inline")
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(config.shared_state.fsync, SharedStateFsync::Batched);
    assert_eq!(config.shared_state.fsync_interval_ms, 50);
    assert_eq!(config.shared_state.value_bytes_max, 1024);
    assert_eq!(config.shared_state.fanout, 5);
    let from_env = ConfigLoader::new()
        .toml_text(base, "inline")
        .unwrap()
        .env_vars([("HA_SHARED_STATE__FSYNC".to_string(), "never".to_string())])
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(from_env.shared_state.fsync, SharedStateFsync::Never);
    for (table, named) in [
        ("[shared_state]\nfanout = 0\n", "shared_state.fanout"),
        ("[shared_state]\nfsync = \"sometimes\"\n", "fsync"),
        ("[shared_state]\nfanuot = 3\n", "fanuot"),
    ] {
        let error = ConfigLoader::new()
            .toml_text(&format!("{base}{table}"), "inline")
            .unwrap()
            .load()
            .unwrap_err();
        assert!(error.to_string().contains(named), "{table}: {error}");
    }
}

/// With admin tokens, a `read` token reads the shared state and cannot write it; a `write`
/// token can (docs/ARCHITECTURE.md: GET needs read, the others write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_role_and_writes_the_write_role() {
    use axum::body::Body;
    use axum::http::Request;
    use ha::{AdminRole, AdminTokens};
    use tower::ServiceExt;

    const READ_TOKEN: &str = "read-token-0123456789abcdef";
    const WRITE_TOKEN: &str = "write-token-0123456789abcdef";
    let tokens = AdminTokens::new()
        .with_token(AdminRole::Read, "reader", READ_TOKEN)
        .and_then(|tokens| tokens.with_token(AdminRole::Write, "writer", WRITE_TOKEN))
        .expect("valid tokens");
    let config = Config::single(NodeId::new("n1").unwrap(), "127.0.0.1:0".parse().unwrap());
    let node = Node::builder(config)
        .admin_tokens(tokens)
        .start()
        .await
        .expect("starts");
    let status = |method: Method, uri: &'static str, token: &'static str| {
        let router = node.http_router();
        async move {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from("v"))
                .expect("valid request");
            router.oneshot(request).await.expect("infallible").status()
        }
    };
    assert_eq!(
        status(Method::PUT, "/v1/state/k", READ_TOKEN).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, "/v1/state/c/incr", READ_TOKEN).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::PUT, "/v1/state/k", WRITE_TOKEN).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::GET, "/v1/state/k", READ_TOKEN).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::GET, "/v1/state", READ_TOKEN).await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::DELETE, "/v1/state/k", READ_TOKEN).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::DELETE, "/v1/state/k", WRITE_TOKEN).await,
        StatusCode::OK
    );
    node.shutdown().await;
}

/// The log is compacted by the node itself (on the replicator's tick) once it is over twice
/// the live size, and the compacted log reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_compacts_its_log_and_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = Config::single(NodeId::new("n1").unwrap(), "127.0.0.1:0".parse().unwrap());
        config.data_dir = Some(dir.path().to_path_buf());
        config.shared_state.fsync = SharedStateFsync::Never;
        config
    };
    let node = Node::builder(config()).start().await.expect("starts");
    let state = node.shared_state();
    // 600 overwrites of one 4,000-byte value: about 2.4 MB of log for 4 KB of live state.
    // The node's tick may compact while the loop runs (on a loaded machine it does), so
    // the test keeps the largest size seen: compaction waits for 1 MiB of log at least.
    let mut grown = 0;
    for round in 0..600u32 {
        let mut value = vec![b'x'; 4000];
        value[..4].copy_from_slice(&round.to_le_bytes());
        state.put("big", value).await.unwrap();
        grown = grown.max(state.stats().log_bytes);
    }
    state.put("small", "kept").await.unwrap();
    assert!(
        grown > ha_gossip::shared_state::COMPACT_BYTES_MIN,
        "{grown} bytes"
    );
    support::wait_until(WAIT, "the log to be compacted", async || {
        state.stats().log_bytes < 100_000
    })
    .await;
    println!(
        "log compacted from {grown} to {} bytes",
        state.stats().log_bytes
    );
    drop(state);
    node.shutdown().await;
    let node = wait_for_restart(config()).await;
    let state = node.shared_state();
    let StateData::Bytes(big) = state.get("big").unwrap().data else {
        panic!("a register");
    };
    assert_eq!(big[..4], 599u32.to_le_bytes());
    assert_eq!(
        state.get("small").unwrap().data,
        StateData::Bytes(b"kept".to_vec())
    );
    node.shutdown().await;
}
