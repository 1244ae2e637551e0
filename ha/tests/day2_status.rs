//! Issue 14, item 6: `/v1/cluster` carries `failover: {"state", "since_ms"}` as the answering
//! node sees it. Three nodes in one process on loopback: once a leader is settled every node
//! says `normal`; the leader is then dropped without a hand-over (its tasks aborted, as in a
//! crash), and each survivor leaves `normal` and comes back to it under a new leader, with
//! `since_ms` counting from after the crash. Every wait polls with a deadline.

mod support;

use std::time::{Duration, Instant};

use axum::http::Method;
use ha::failover_status::FailoverState;
use ha::{Config, Node, NodeId};

const WAIT: Duration = Duration::from_secs(30);

async fn start(index: usize, seed: Option<std::net::SocketAddr>) -> Node<()> {
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())];
    let config = Config::full_ha(
        NodeId::new(format!("n{index}")).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        seeds,
    );
    Node::builder(config).start().await.expect("starts")
}

async fn state_of(node: &Node<()>) -> (FailoverState, u64) {
    let failover = node.cluster().await.expect("running").failover;
    (failover.state, failover.since_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_state_leaves_normal_on_a_crash_and_returns_under_the_new_leader() {
    let first = start(1, None).await;
    let seed = Some(first.gossip_addr());
    let mut nodes = vec![first, start(2, seed).await, start(3, seed).await];
    let deadline = Instant::now() + WAIT;
    loop {
        let mut normal = 0;
        for node in &nodes {
            if state_of(node).await.0 == FailoverState::Normal && node.role().leader.is_some() {
                normal += 1;
            }
        }
        if normal == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not every node reached normal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The JSON shape of the contract.
    let (_, body) = support::call_router(&nodes[0], Method::GET, "/v1/cluster", Vec::new()).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["failover"]["state"], "normal", "{json}");
    assert!(json["failover"]["since_ms"].is_u64(), "{json}");

    let leader = nodes.iter().position(Node::is_leader).expect("a leader");
    let old_leader = nodes[leader].id().clone();
    let crashed = nodes.remove(leader);
    drop(crashed); // no hand-over, no leave: its tasks are aborted
    let crashed_at = Instant::now();

    let deadline = crashed_at + WAIT;
    let mut seen = vec![Vec::new(), Vec::new()];
    loop {
        let mut settled = 0;
        for (slot, node) in nodes.iter().enumerate() {
            let (state, since_ms) = state_of(node).await;
            if seen[slot].last() != Some(&state) {
                seen[slot].push(state);
            }
            let leader = node.role().leader;
            let new_leader = leader.as_ref().is_some_and(|leader| *leader != old_leader);
            let after_crash = Duration::from_millis(since_ms) <= crashed_at.elapsed();
            if state == FailoverState::Normal && new_leader && after_crash {
                settled += 1;
            }
        }
        if settled == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivors did not return to normal under a new leader: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "states seen after the crash (polled every 10 ms): {seen:?}; settled {:?} after it",
        crashed_at.elapsed()
    );
    for node in nodes {
        node.shutdown().await;
    }
}
