//! The admin API's contract (docs/ARCHITECTURE.md, "Admin HTTP contract") on a one-node
//! cluster, through the router a host would mount: paths, bodies, status codes and JSON errors for bad requests. The
//! multi-process tests in tests/processes check the same API served by the bot over TCP.

mod support;

use axum::http::{Method, StatusCode};
use ha::Node;
use serde_json::Value;
use support::{call_router, one_node};

async fn call(node: &Node<()>, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let (status, bytes) = call_router(node, method, uri, body.as_bytes().to_vec()).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn call_json(node: &Node<()>, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = call(node, method, uri, body).await;
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{uri}: not JSON ({error}): {text}"));
    (status, json)
}

fn assert_error(json: &Value, kind: &str) {
    assert_eq!(json["error"], kind, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert!(
        json.get("leader").is_some(),
        "the leader field is always present: {json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_cluster_metrics_and_history() {
    let node = one_node().await;
    let (status, health) = call_json(&node, Method::GET, "/v1/health", "").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    for field in [
        "node", "role", "state", "health", "term", "leader", "quorum",
    ] {
        assert!(
            health.get(field).is_some(),
            "health lacks {field}: {health}"
        );
    }
    assert_eq!(health["role"], "leader");
    assert_eq!(health["quorum"], true);

    let (status, cluster) = call_json(&node, Method::GET, "/v1/cluster", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cluster["leader"], "n1");
    let member = &cluster["members"][0];
    for field in [
        "id",
        "addr",
        "priority",
        "role",
        "state",
        "health",
        "match_index",
        "lag_entries",
        "last_contact_ms",
    ] {
        assert!(
            member.get(field).is_some(),
            "member lacks {field}: {member}"
        );
    }

    let (status, history) = call_json(&node, Method::GET, "/v1/failover/history", "").await;
    assert_eq!(status, StatusCode::OK);
    let first = &history[0];
    assert_eq!(first["to"], "n1");
    assert_eq!(first["cause"], "startup");
    assert!(
        first["at_ms"].as_u64().unwrap() > 1_600_000_000_000,
        "{first}"
    );
    for field in ["term", "from", "leaderless_ms"] {
        assert!(first.get(field).is_some(), "{first}");
    }

    let (status, text) = call(&node, Method::GET, "/v1/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "ha_term ",
        "ha_role{role=\"leader\"} 1",
        "ha_commit_index ",
        "ha_applied_index ",
        "ha_elections_started_total ",
        "ha_leaderless_seconds_total ",
        "ha_lock_grants_total ",
        "ha_lock_waits_total ",
        "ha_lock_limit_refusals_total{limit=\"WAITERS_PER_LOCK_MAX\"} 0",
        "ha_gossip_members{state=\"LEADER\"} 1",
        "ha_gossip_packets_dropped_total{cause=",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    node.shutdown().await;
    // After shutdown the router answers 503 with a JSON error.
    let (status, json) = call_json(&node, Method::GET, "/v1/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_versions_cas_and_errors() {
    let node = one_node().await;
    let (status, json) = call_json(&node, Method::GET, "/v1/kv/a/b", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&json, "not_found");

    let (status, json) = call_json(&node, Method::PUT, "/v1/kv/a/b?cas=0", "one").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let version = json["version"].as_u64().unwrap();
    let (status, json) = call_json(&node, Method::PUT, "/v1/kv/a/b?cas=0", "again").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "create-only on an existing key"
    );
    assert_error(&json, "cas_mismatch");
    let (status, json) = call_json(
        &node,
        Method::PUT,
        &format!("/v1/kv/a/b?cas={}", version + 100),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&json, "cas_mismatch");
    let uri = format!("/v1/kv/a/b?consistency=strong&cas={version}");
    let (status, json) = call_json(&node, Method::PUT, &uri, "two").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let second = json["version"].as_u64().unwrap();
    assert!(second > version);

    for consistency in ["strong", "quorum", "eventual"] {
        let uri = format!("/v1/kv/a/b?consistency={consistency}");
        let (status, json) = call_json(&node, Method::GET, &uri, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["value"], "two");
        assert_eq!(json["version"], second);
    }

    // Malformed requests: 400 with a JSON error, and nothing written.
    for (method, uri, body) in [
        (Method::GET, "/v1/kv/a/b?consistency=sometimes", ""),
        (Method::PUT, "/v1/kv/a/b?cas=abc", "v"),
        (Method::PUT, "/v1/kv/a/b?cass=1", "v"),
        (Method::DELETE, "/v1/kv/a/b?cas=-1", ""),
        (Method::POST, "/v1/lock/l?ttl_ms=5", ""),
        (Method::POST, "/v1/lock/l?wait_ms=99999999", ""),
        (Method::DELETE, "/v1/lock/l", ""),
        (Method::POST, "/v1/failover", "{not json"),
        (Method::POST, "/v1/failover", "{\"target\": \"bad id!\"}"),
        (Method::POST, "/v1/failover", "{\"targett\": \"n1\"}"),
    ] {
        let (status, json) = call_json(&node, method.clone(), uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {json}");
        assert_error(&json, "bad_request");
    }
    let (status, _) = call_router(&node, Method::PUT, "/v1/kv/bytes", vec![0xff, 0xfe]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not UTF-8");
    let big = "x".repeat(ha::lock::VALUE_BYTES_MAX + 4096);
    let (status, _) = call(&node, Method::PUT, "/v1/kv/big", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, json) = call_json(&node, Method::GET, "/v1/kv/a/b", "").await;
    assert_eq!(json["value"], "two", "{status}");

    let (status, json) = call_json(&node, Method::DELETE, "/v1/kv/a/b?cas=1", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    let uri = format!("/v1/kv/a/b?cas={second}");
    let (status, _) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_json(&node, Method::DELETE, "/v1/kv/a/b", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, json) = call_json(&node, Method::GET, "/v1/nothing", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&json, "not_found");
    let (status, json) = call_json(&node, Method::PATCH, "/v1/health", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&json, "method_not_allowed");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_fenced_and_time_out() {
    let node = one_node().await;
    let (status, first) = call_json(&node, Method::POST, "/v1/lock/jobs?ttl_ms=5000", "").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let token = first["token"].as_u64().unwrap();
    assert!(first["lease"].as_u64().is_some());
    let holder = first["holder"].as_str().unwrap().to_string();

    // Held: a try fails at once, a short wait times out; both 409.
    let (status, json) = call_json(&node, Method::POST, "/v1/lock/jobs", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&json, "busy");
    let (status, json) = call_json(&node, Method::POST, "/v1/lock/jobs?wait_ms=200", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&json, "lock_timeout");

    let uri = format!("/v1/lock/jobs?token={}&holder={holder}", token + 1);
    let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a token that is not the holder's"
    );
    assert_error(&json, "not_holder");
    let uri = format!("/v1/lock/jobs?token={token}&holder={holder}");
    let (status, _) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "released twice");

    // The next holder gets a larger token; its lock ends with its TTL when not released.
    let (status, second) = call_json(&node, Method::POST, "/v1/lock/jobs?ttl_ms=300", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(second["token"].as_u64().unwrap() > token);
    let (status, third) = call_json(&node, Method::POST, "/v1/lock/jobs?wait_ms=5000", "").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "granted once the 300 ms lease expired: {third}"
    );
    assert!(third["token"].as_u64() > second["token"].as_u64());

    // A single node has nobody to hand over to.
    let (status, json) = call_json(&node, Method::POST, "/v1/failover", "{}").await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    let (status, json) =
        call_json(&node, Method::POST, "/v1/failover", "{\"target\": \"n9\"}").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    node.shutdown().await;
}

/// Issue 13, item 5: an acquire returns an unguessable `holder` key (32 lowercase hex digits)
/// beside the fencing token, and a release needs it: without it, with a malformed one or with
/// another grant's, 409 `not_holder` and the lock stays held (a second acquire is refused);
/// with it, 200. The token alone (a log index, guessable from `/v1/metrics`) releases nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_release_needs_the_holder_key() {
    let node = one_node().await;
    let is_holder_key = |text: &str| {
        text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (status, other) = call_json(&node, Method::POST, "/v1/lock/other?ttl_ms=60000", "").await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let other_holder = other["holder"].as_str().unwrap_or_default().to_string();
    assert!(is_holder_key(&other_holder), "{other}");

    let (status, grant) = call_json(&node, Method::POST, "/v1/lock/keyed?ttl_ms=60000", "").await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let token = grant["token"].as_u64().unwrap();
    assert!(grant["lease"].as_u64().is_some(), "{grant}");
    assert_eq!(grant["ttl_ms"], 60000, "{grant}");
    let holder = grant["holder"].as_str().unwrap_or_default().to_string();
    assert!(is_holder_key(&holder), "{grant}");
    assert_ne!(holder, other_holder, "each grant has its own key");
    let mut wrong = holder.clone().into_bytes();
    wrong[31] = if wrong[31] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();

    for (refused, why) in [
        (format!("token={token}"), "no holder"),
        (format!("token={token}&holder="), "an empty holder"),
        (format!("token={token}&holder=xyz"), "a malformed holder"),
        (
            format!("token={token}&holder={}", &holder[..31]),
            "31 digits",
        ),
        (format!("token={token}&holder={holder}0"), "33 digits"),
        (format!("token={token}&holder={wrong}"), "a wrong holder"),
        (
            format!("token={token}&holder={other_holder}"),
            "another grant's holder",
        ),
        (
            format!("token={}&holder={holder}", token + 1),
            "a wrong token",
        ),
    ] {
        let uri = format!("/v1/lock/keyed?{refused}");
        let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{why}: {json}");
        assert_error(&json, "not_holder");
        // Nothing changed: the lock is still held.
        let (status, json) = call_json(&node, Method::POST, "/v1/lock/keyed", "").await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "still held after {why}: {json}"
        );
        assert_error(&json, "busy");
    }

    let uri = format!("/v1/lock/keyed?token={token}&holder={holder}");
    let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json, serde_json::json!({"released": true}));
    let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "released twice: {json}");
    assert_error(&json, "not_holder");
    let (status, json) = call_json(&node, Method::POST, "/v1/lock/keyed", "").await;
    assert_eq!(status, StatusCode::OK, "free once released: {json}");
    assert!(json["token"].as_u64() > Some(token), "{json}");
    node.shutdown().await;
}

/// The value of metric sample `sample` (name and labels) in a Prometheus text answer.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// Issue 17, item 5: an HTTP lock cycle is two replicated writes: the acquire grants its lease
/// and the lock in one log entry, the release frees the lock and ends that lease in one (the
/// lease no longer lingers until its TTL). Counted with `ha_last_index` and `ha_leases`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_lock_cycle_is_two_log_entries() {
    let node = one_node().await;
    let gauges = |node: &Node<()>| {
        let node = node.clone();
        async move {
            let (status, text) = call(&node, Method::GET, "/v1/metrics", "").await;
            assert_eq!(status, StatusCode::OK);
            let value = |name| metric(&text, name).unwrap_or_else(|| panic!("{name} in {text}"));
            (value("ha_last_index") as u64, value("ha_leases") as u64)
        }
    };
    // A write first, so that the term's first entry is behind us.
    let (status, _) = call(&node, Method::PUT, "/v1/kv/settle", "x").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..3 {
        let (before, leases) = gauges(&node).await;
        let (status, grant) =
            call_json(&node, Method::POST, "/v1/lock/cycle?ttl_ms=60000", "").await;
        assert_eq!(status, StatusCode::OK, "{grant}");
        let (acquired, held) = gauges(&node).await;
        assert_eq!((acquired - before, held), (1, leases + 1), "{grant}");
        assert_eq!(grant["token"].as_u64(), Some(acquired));
        assert_eq!(grant["lease"].as_u64(), Some(acquired));
        let uri = format!(
            "/v1/lock/cycle?token={}&holder={}",
            grant["token"],
            grant["holder"].as_str().unwrap_or_default()
        );
        let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let (released, after) = gauges(&node).await;
        assert_eq!(
            (released - acquired, after),
            (1, leases),
            "the lease ended too"
        );
    }
    node.shutdown().await;
}

/// Issue 12, bug 2: a lock's line holds at most `WAITERS_PER_LOCK_MAX` waiters; one more is
/// answered at once with 429 `limit` (nothing queued), and counted in
/// `ha_lock_limit_refusals_total{limit="WAITERS_PER_LOCK_MAX"}`. The router cannot be built with
/// a smaller limit, so this fills the shipped line (512 HTTP waiters, one node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_line_answers_429_limit_and_counts_the_refusal() {
    let node = one_node().await;
    let (status, holder) = call_json(&node, Method::POST, "/v1/lock/full?ttl_ms=60000", "").await;
    assert_eq!(status, StatusCode::OK, "{holder}");
    let mut waiters = Vec::new();
    for _ in 0..ha::lock::WAITERS_PER_LOCK_MAX {
        let node = node.clone();
        waiters.push(tokio::spawn(async move {
            call(
                &node,
                Method::POST,
                "/v1/lock/full?ttl_ms=60000&wait_ms=60000",
                "",
            )
            .await
        }));
    }
    let line_full = format!("ha_lock_waiters {}", ha::lock::WAITERS_PER_LOCK_MAX);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, text) = call(&node, Method::GET, "/v1/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        if text.lines().any(|line| line == line_full) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the line did not fill in 60 s:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let (status, json) = call_json(&node, Method::POST, "/v1/lock/full?wait_ms=60000", "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    assert_error(&json, "limit");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused at once, not after waiting"
    );
    let (_, text) = call(&node, Method::GET, "/v1/metrics", "").await;
    let refused = |limit: &str| {
        metric(
            &text,
            &format!("ha_lock_limit_refusals_total{{limit=\"{limit}\"}}"),
        )
    };
    assert_eq!(refused("WAITERS_PER_LOCK_MAX"), Some(1.0), "{text}");
    assert_eq!(refused("WAITERS_MAX"), Some(0.0), "{text}");
    for waiter in &waiters {
        assert!(!waiter.is_finished(), "a waiter was answered early");
    }
    for waiter in waiters {
        waiter.abort();
    }
    node.shutdown().await;
}

/// Issue 12, bug 5: an EVENTUAL write is answered when the leader appends it, before it is
/// applied, so the answer to a compare-and-swap (or a create-only put) would come before the
/// compare: it must be refused (400, nothing written), over HTTP and through `Kv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_compare_and_swap_is_refused() {
    let node = one_node().await;
    let (status, json) = call_json(&node, Method::PUT, "/v1/kv/c?cas=0", "first").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let version = json["version"].as_u64().expect("a version");

    for uri in [
        // A compare that would fail (wrong version), one that would succeed, a create-only
        // put of an existing key and one of a new key: all refused before anything happens.
        format!("/v1/kv/c?consistency=eventual&cas={}", version + 7),
        format!("/v1/kv/c?consistency=eventual&cas={version}"),
        "/v1/kv/c?consistency=eventual&cas=0".to_string(),
        "/v1/kv/fresh?consistency=eventual&cas=0".to_string(),
    ] {
        let (status, json) = call_json(&node, Method::PUT, &uri, "second").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PUT {uri}: {json}");
        assert_error(&json, "bad_request");
    }
    // DELETE takes no consistency (it is QUORUM): asking for EVENTUAL is refused too.
    let uri = format!("/v1/kv/c?consistency=eventual&cas={version}");
    let (status, json) = call_json(&node, Method::DELETE, &uri, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "DELETE {uri}: {json}");
    assert_error(&json, "bad_request");

    // Nothing was written: the key keeps its value and version, the new key does not exist.
    let (status, json) = call_json(&node, Method::GET, "/v1/kv/c", "").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (json["value"].as_str(), json["version"].as_u64()),
        (Some("first"), Some(version))
    );
    let (status, _) = call_json(&node, Method::GET, "/v1/kv/fresh", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A blind EVENTUAL put is still accepted.
    let (status, json) = call_json(&node, Method::PUT, "/v1/kv/c?consistency=eventual", "x").await;
    assert_eq!(status, StatusCode::OK, "{json}");

    // The Rust client refuses the same requests with a typed error, before sending anything.
    let kv = node.kv();
    for expected in [Some(0), Some(version), Some(version + 7)] {
        let refused = kv
            .put_checked("c", "y", expected, ha::Consistency::Eventual)
            .await;
        assert!(
            matches!(refused, Err(ha::lock::LockError::CompareNeedsApply { .. })),
            "expected {expected:?}: {refused:?}"
        );
    }
    node.shutdown().await;
}

/// Issue 12, item 11: a node with no leader (here, the first of three voters, alone: it never
/// founds the cluster) answers QUORUM/STRONG requests and lock acquires at once with 503
/// `no_quorum`, not after its request timeout; an EVENTUAL read is still served locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_quorum_answers_no_quorum_at_once() {
    // Seeds where nobody listens (loopback ports 1 and 2): the other two voters never come.
    let seeds = vec![
        "127.0.0.1:1".parse().expect("valid"),
        "127.0.0.1:2".parse().expect("valid"),
    ];
    let config = ha::Config::full_ha(
        ha::NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
        seeds,
    );
    let request_timeout = std::time::Duration::from_secs(5);
    let node = Node::builder(config)
        .request_timeout(request_timeout)
        .start()
        .await
        .expect("starts");
    for (method, uri) in [
        (Method::GET, "/v1/kv/k?consistency=strong"),
        (Method::GET, "/v1/kv/k?consistency=quorum"),
        (Method::PUT, "/v1/kv/k?consistency=quorum"),
        (Method::PUT, "/v1/kv/k?consistency=strong&cas=0"),
        (Method::DELETE, "/v1/kv/k"),
        (Method::POST, "/v1/lock/l?ttl_ms=2000"),
        (Method::POST, "/v1/lock/l?ttl_ms=2000&wait_ms=100"),
    ] {
        let started = std::time::Instant::now();
        let (status, json) = call_json(&node, method.clone(), uri, "v").await;
        let took = started.elapsed();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {json}"
        );
        assert_error(&json, "no_quorum");
        // At once: far below the request timeout (a loaded machine may add some latency).
        assert!(
            took < request_timeout / 5,
            "{method} {uri} answered after {took:?}: {json}"
        );
    }
    let (status, json) = call_json(&node, Method::GET, "/v1/kv/k?consistency=eventual", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "served locally: {json}");
    node.shutdown().await;
}
