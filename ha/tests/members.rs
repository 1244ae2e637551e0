//! The membership API (issue 14, item 1) in one process: `GET`/`POST /v1/members` and
//! `DELETE /v1/members/<id>` through the admin router, and `Node::add_member` /
//! `remove_member` on a 3-voter cluster that a 4th node (configured not to vote, so only the
//! API makes it a member) joins and leaves. Every wait polls with a deadline.

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::{Config, Node, NodeId, Priority};
use serde_json::{Value, json};
use support::{call_router, one_node};

const WAIT: Duration = Duration::from_secs(20);

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

async fn call(node: &Node<()>, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let (status, answer) = call_router(node, method, uri, bytes).await;
    let value = serde_json::from_slice(&answer)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&answer)));
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_lists_adds_and_removes_members_and_refuses_with_reasons() {
    let node = one_node().await;
    let (status, list) = call(&node, Method::GET, "/v1/members", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!({
            "voters": [{"id": "n1", "addr": node.rpc_addr().to_string()}],
            "learners": [],
            "witnesses": [],
        })
    );

    // The last voter is never removed; an unknown node is not found; both with a reason.
    let (status, refused) = call(&node, Method::DELETE, "/v1/members/n1", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "membership_refused");
    assert_eq!(refused["reason"], "last_voter");
    assert!(refused["message"].as_str().unwrap().contains("last voter"));
    let (status, refused) = call(&node, Method::DELETE, "/v1/members/zz", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(refused["reason"], "not_a_member");

    // Bad bodies are refused before anything is asked.
    for body in [
        json!({"addr": "127.0.0.1:1"}),
        json!({"id": "bad id!"}),
        json!({"id": "n2", "extra": 1}),
    ] {
        let (status, answer) = call(&node, Method::POST, "/v1/members", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }

    // A learner that only replicates: committed by the one voter alone.
    let body = json!({"id": "n2", "addr": "127.0.0.1:1", "voter": false});
    let (status, added) = call(&node, Method::POST, "/v1/members", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["state"], "learner");
    assert_eq!(added["promotion_pending"], false);
    let (_, list) = call(&node, Method::GET, "/v1/members", Value::Null).await;
    assert_eq!(
        list["learners"],
        json!([{"id": "n2", "addr": "127.0.0.1:1"}])
    );
    // Asking again changes nothing and answers the same entry.
    let (status, again) = call(&node, Method::POST, "/v1/members", body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["index"], added["index"]);
    // A voter cannot be added back as a learner.
    let body = json!({"id": "n1", "voter": false});
    let (status, refused) = call(&node, Method::POST, "/v1/members", body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["reason"], "already_voter");

    let (status, removed) = call(&node, Method::DELETE, "/v1/members/n2", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["committed"], true);
    let (_, list) = call(&node, Method::GET, "/v1/members", Value::Null).await;
    assert_eq!(list["learners"], json!([]));
    node.shutdown().await;
}

async fn start(name: &str, seed: Option<std::net::SocketAddr>, voter: bool) -> Node<()> {
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())];
    let mut config = Config::full_ha(id(name), "127.0.0.1:0".parse().unwrap(), seeds);
    config.priority = Priority(1);
    config.voter = voter;
    Node::builder(config)
        .request_timeout(Duration::from_secs(10))
        .drain_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_only_through_the_api_and_leaves_through_it() {
    let first = start("n1", None, true).await;
    let seed = Some(first.gossip_addr());
    let nodes = [
        first,
        start("n2", seed, true).await,
        start("n3", seed, true).await,
    ];
    support::wait_until(WAIT, "one leader", async || {
        nodes.iter().filter(|node| node.is_leader()).count() == 1
    })
    .await;
    // n4 is configured not to vote: gossip meets it, the automatic membership ignores it.
    let fourth = start("n4", seed, false).await;
    support::wait_until(WAIT, "n4 seen by gossip", async || {
        nodes
            .iter()
            .all(|node| node.members().iter().any(|member| member.id == id("n4")))
    })
    .await;
    let leader = nodes.iter().position(Node::is_leader).unwrap();
    let follower = &nodes[(leader + 1) % 3];
    assert!(
        !follower
            .status()
            .await
            .unwrap()
            .membership
            .contains(&id("n4"))
    );

    // Added through a follower (forwarded to the leader) and promoted once caught up.
    let added = follower
        .add_member(id("n4"), Some(fourth.rpc_addr()), true)
        .await
        .unwrap();
    assert_eq!((added.state, added.promotion_pending), ("voter", false));
    let list = follower.member_list().await.unwrap();
    let voters: Vec<_> = list
        .voters
        .iter()
        .map(|member| member.id.as_str())
        .collect();
    assert_eq!(voters, ["n1", "n2", "n3", "n4"]);
    assert!(list.voters.iter().all(|member| member.addr.is_some()));
    support::wait_until(WAIT, "n4 knows it votes", async || {
        fourth
            .status()
            .await
            .unwrap()
            .membership
            .is_voter(&id("n4"))
    })
    .await;

    // A running voter configured to vote would be added back: refused with the reason.
    let running = nodes[(leader + 2) % 3].id().clone();
    let refused = follower.remove_member(running.clone()).await.unwrap_err();
    assert!(
        refused.to_string().contains("configured to vote"),
        "{refused}"
    );

    // n4 does not want a vote by itself: removing it sticks.
    let removed = follower.remove_member(id("n4")).await.unwrap();
    assert!(removed.committed);
    let membership = follower.status().await.unwrap().membership;
    assert!(!membership.contains(&id("n4")), "{membership:?}");
    // The leader's next heartbeats (every 50 ms) do not add it back: watched for 10 of them.
    let watched_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < watched_until {
        let membership = nodes[leader].status().await.unwrap().membership;
        assert!(!membership.contains(&id("n4")), "{membership:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fourth.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}
