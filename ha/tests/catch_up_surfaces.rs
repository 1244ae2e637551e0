//! Issue 18's "no silent dead ends", as a host and an operator see it on a running node:
//! `/v1/cluster` rows carry `catch_up`, `/v1/health` carries `problems`, `/v1/metrics` has the
//! catch-up and snapshot transfer families, and the leader's catch-up watch (polling its
//! followers) does not disturb its health while no follower is stalled. The rules themselves
//! (who is reported stalled, the exact metric text) are unit-tested in `health_runner.rs`,
//! `cluster_view.rs` and `metrics.rs` with hand-built statuses.

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::{HealthStatus, Node, NodeEvent};
use serde_json::Value;
use support::{call_router, one_node};

async fn get(node: &Node<()>, uri: &str) -> (StatusCode, String) {
    let (status, bytes) = call_router(node, Method::GET, uri, Vec::new()).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get_json(node: &Node<()>, uri: &str) -> Value {
    let (status, text) = get(node, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{uri}: not JSON ({error}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_stalled_followers_shows_empty_catch_up_surfaces() {
    let node = one_node().await;
    let mut events = node.events();

    let cluster = get_json(&node, "/v1/cluster").await;
    let member = &cluster["members"][0];
    assert_eq!(member["id"], "n1");
    assert!(
        member.get("catch_up").is_some_and(Value::is_null),
        "catch_up is present and null: {member}"
    );

    let health = get_json(&node, "/v1/health").await;
    assert_eq!(health["health"], "HEALTHY", "{health}");
    assert_eq!(health["problems"], serde_json::json!([]), "{health}");
    // Only the node's built-in checks (issue 14: `storage` and the host checks), no `catch_up`.
    let checks = health["checks"].as_array().expect("checks is a list");
    assert!(
        checks.iter().all(|check| check["name"] != "catch_up"),
        "{health}"
    );
    assert!(
        checks.iter().any(|check| check["name"] == "storage"),
        "{health}"
    );

    let (status, metrics) = get(&node, "/v1/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "ha_catch_up_followers{state=\"snapshot\"} 0\n",
        "ha_catch_up_followers{state=\"stalled\"} 0\n",
        "ha_snapshot_bytes_sent_total ",
        "ha_snapshot_bytes_received_total ",
        "ha_snapshot_installs_total ",
        "ha_snapshot_resumes_total ",
        "ha_snapshot_discards_total ",
        "ha_snapshots_taken_total ",
        "ha_snapshot_last_take_seconds ",
        "ha_snapshot_bytes ",
    ] {
        assert!(metrics.contains(line), "metrics lack {line:?}:\n{metrics}");
    }

    // The watch polls a leader's followers every half election timeout (500 ms by default):
    // over several polls with nothing to report, the health is not republished (a
    // republished health would send HealthChanged to every subscriber each time).
    let watch_for = Duration::from_millis(1_600);
    let until = Instant::now() + watch_for;
    let mut seen = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        events.recv(),
    )
    .await
    {
        seen.push(event);
        assert!(seen.len() < 1_000, "an event flood: {seen:?}");
    }
    assert!(
        !seen.iter().any(|event| matches!(
            event,
            NodeEvent::HealthChanged(_)
                | NodeEvent::FollowerStalled { .. }
                | NodeEvent::FollowerUnstalled { .. }
        )),
        "{seen:?}"
    );
    assert_eq!(node.health_status(), HealthStatus::Healthy);
    node.shutdown().await;
}
