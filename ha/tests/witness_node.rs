//! A witness as a node (issue 15), in one process: two data nodes and a witness made with
//! `Config::simple_failover`. The witness founds the cluster with the data nodes, never
//! leads, is listed under `witnesses` and shown with role `witness` on every node, refuses
//! the KV, lock and snapshot routes with 503 `witness` naming the leader, refuses reads,
//! and forwards writes to the leader. Every wait polls with a deadline.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ha::{Config, Consistency, Node, NodeId};
use serde_json::Value;
use support::call_router;

const WAIT: Duration = Duration::from_secs(20);

fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("literal id")
}

async fn start(name: &str, seed: SocketAddr, witness: bool) -> Node<()> {
    let config = Config::simple_failover(
        id(name),
        "127.0.0.1:0".parse().expect("literal address"),
        vec![seed],
        witness,
    );
    Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .drain_timeout(Duration::from_secs(3))
        .start()
        .await
        .expect("starts")
}

async fn call(node: &Node<()>, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, bytes) = call_router(node, method, uri, body.as_bytes().to_vec()).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|member| member["id"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_votes_is_shown_as_a_witness_and_serves_no_data() {
    // A placeholder seed for the first node: the others seed from it.
    let first = start("d1", "127.0.0.1:9".parse().expect("literal"), false).await;
    let seed = first.gossip_addr();
    let nodes = [
        first,
        start("d2", seed, false).await,
        start("w", seed, true).await,
    ];
    let witness = &nodes[2];
    assert!(witness.is_witness() && !nodes[0].is_witness());
    support::wait_until(WAIT, "a leader known to all three", async || {
        let leader = nodes[0].role().leader;
        leader.is_some() && nodes.iter().all(|node| node.role().leader == leader)
    })
    .await;
    let leader_id = nodes[0].role().leader.expect("a leader");
    assert_ne!(leader_id, id("w"), "the witness leads");
    let leader = nodes
        .iter()
        .position(|node| *node.id() == leader_id)
        .expect("a member leads");

    // Listed apart on every node, once gossip has described the witness.
    for node in &nodes {
        support::wait_until(WAIT, "the witness under witnesses", async || {
            let list = node.member_list().await.expect("running");
            let voters: Vec<&str> = list.voters.iter().map(|m| m.id.as_str()).collect();
            let witnesses: Vec<&str> = list.witnesses.iter().map(|m| m.id.as_str()).collect();
            voters == ["d1", "d2"] && witnesses == ["w"]
        })
        .await;
        let (status, list) = call(node, Method::GET, "/v1/members", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&list["witnesses"]), ["w"], "{list}");
        assert_eq!(ids(&list["voters"]), ["d1", "d2"], "{list}");
        let table = node.cluster().await.expect("running");
        let row = table
            .members
            .iter()
            .find(|row| row.id == id("w"))
            .expect("the witness has a row");
        assert_eq!((row.role.as_str(), row.voter), ("witness", true));
    }
    let health = witness.health().await.expect("running");
    assert_eq!(health.role, "witness");
    assert!(health.quorum);

    // The data routes refuse on the witness, naming the leader; served on a data node.
    for (method, uri) in [
        (Method::GET, "/v1/kv/k"),
        (Method::PUT, "/v1/kv/k"),
        (Method::DELETE, "/v1/kv/k"),
        (Method::POST, "/v1/lock/l?ttl_ms=1000"),
        (Method::GET, "/v1/snapshot"),
        (Method::GET, "/v1/state/s"),
        (Method::PUT, "/v1/state/s"),
        (Method::POST, "/v1/state/s/incr"),
    ] {
        let (status, body) = call(witness, method.clone(), uri, "v").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
        assert_eq!(body["error"], "witness", "{body}");
        assert_eq!(body["leader"], leader_id.as_str(), "{body}");
    }
    let (status, body) = call(&nodes[leader], Method::PUT, "/v1/kv/k", "v").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Through the Rust API: a write on the witness is forwarded to the leader; a read is
    // refused at every consistency.
    let client = witness.kv();
    client
        .put("forwarded", "yes", Consistency::Quorum)
        .await
        .expect("forwarded to the leader");
    for consistency in [
        Consistency::Strong,
        Consistency::Quorum,
        Consistency::Eventual,
    ] {
        let error = client
            .get("forwarded", consistency)
            .await
            .expect_err("a witness serves no read");
        assert!(error.to_string().contains("witness"), "{error}");
    }
    let found = nodes[leader]
        .kv()
        .get("forwarded", Consistency::Strong)
        .await
        .expect("read on the leader")
        .expect("the forwarded write is there");
    assert_eq!(found.value, b"yes");
    assert!(!witness.is_leader());
    assert_eq!(
        witness.status().await.expect("running").elections_started,
        0
    );

    // The shared map (outside the log) lives on the data nodes only: a write on one reaches
    // the other, and the witness is nobody's peer for it, so it holds nothing.
    let (status, body) = call(&nodes[0], Method::PUT, "/v1/state/shared", "on d1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    support::wait_until(WAIT, "the shared write on d2", async || {
        nodes[1].shared_state().get("shared").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        witness.shared_state().stats().map.live,
        0,
        "the witness got the shared map"
    );

    for node in nodes {
        node.shutdown().await;
    }
}
