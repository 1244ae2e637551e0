//! A real 3-node cluster over TCP on loopback with on-disk WALs: writes and reads at every
//! consistency level (through followers too), a killed leader, failover, and a restart from
//! disk with state intact. Every wait polls with a deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::kv::{Kv, Put, start_kv_node};
use ha_core::{Consistency, NodeId};
use ha_replicate::driver::ReplicaNode;

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);

async fn start(index: usize, dir: &Path, snapshot_every: u64) -> ReplicaNode<Kv> {
    start_kv_node(index, dir, 0, snapshot_every, |_| {}).await
}

async fn introduce(nodes: &[Option<ReplicaNode<Kv>>]) {
    let addrs: Vec<(NodeId, SocketAddr)> = nodes
        .iter()
        .flatten()
        .map(|node| (node.node_id().clone(), node.local_addr()))
        .collect();
    for node in nodes.iter().flatten() {
        for (peer, addr) in &addrs {
            node.set_peer(peer.clone(), Some(*addr), None)
                .await
                .unwrap();
        }
    }
}

async fn wait_for_leader(nodes: &[Option<ReplicaNode<Kv>>]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.as_ref().is_some_and(|node| node.is_leader()))
            .map(|(index, _)| index)
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_survive_a_leader_kill_and_a_restart_from_disk() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<ReplicaNode<Kv>>> = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(Some(start(index + 1, dir.path(), 50).await));
    }
    introduce(&nodes).await;
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % 3;

    // Writes at every level, submitted on a follower (forwarded to the leader).
    let client = nodes[follower].as_ref().unwrap().client();
    for (round, consistency) in [
        Consistency::Quorum,
        Consistency::Strong,
        Consistency::Eventual,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("k{round}");
        let written = client
            .write(Put(key.clone(), format!("v{round}")), consistency, TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("{consistency} write failed: {error}"));
        if consistency == Consistency::Eventual {
            assert_eq!(written.response, None, "EVENTUAL answers before applying");
        } else {
            assert_eq!(written.response, Some(None));
        }
    }
    for consistency in [Consistency::Strong, Consistency::Quorum] {
        let value = client
            .read("k0".to_string(), consistency, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("v0"));
    }
    // Many writes, so snapshots (every 50 entries) and log compaction happen.
    for round in 0..200 {
        client
            .write(
                Put(format!("bulk{}", round % 20), round.to_string()),
                Consistency::Quorum,
                TIMEOUT,
            )
            .await
            .unwrap();
    }
    // A STRONG write is applied on every voter when it returns: an EVENTUAL (local) read on
    // each node sees it at once.
    client
        .write(
            Put("strong".into(), "everywhere".into()),
            Consistency::Strong,
            TIMEOUT,
        )
        .await
        .unwrap();
    for node in nodes.iter().flatten() {
        let local = node
            .client()
            .read("strong".into(), Consistency::Eventual, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            local.as_deref(),
            Some("everywhere"),
            "on {}",
            node.node_id()
        );
    }

    // Kill the leader (its task is aborted: no handover) and wait for a new one.
    let killed_at = Instant::now();
    let old_leader_id = nodes[leader].as_ref().unwrap().node_id().clone();
    nodes[leader] = None;
    let new_leader = wait_for_leader(&nodes).await;
    println!(
        "failover after a kill: new leader in {:?}",
        killed_at.elapsed()
    );
    assert_ne!(new_leader, leader);
    let survivor = nodes[new_leader].as_ref().unwrap().client();
    survivor
        .write(
            Put("after".into(), "failover".into()),
            Consistency::Quorum,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        survivor
            .read("bulk7".into(), Consistency::Quorum, TIMEOUT)
            .await
            .unwrap()
            .as_deref(),
        Some("187"),
        "writes acknowledged before the kill survive it"
    );
    let status = nodes[new_leader].as_ref().unwrap().status().await.unwrap();
    let last = status.failover_history.last().unwrap();
    assert_eq!(last.from.as_ref(), Some(&old_leader_id));
    assert_eq!(last.to, status.node_id);

    // Restart the killed node from its data directory (new port) and let it catch up.
    nodes[leader] = Some(start(leader + 1, dirs[leader].path(), 50).await);
    introduce(&nodes).await;
    let restarted = nodes[leader].as_ref().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let value = restarted
            .client()
            .read("after".into(), Consistency::Eventual, TIMEOUT)
            .await
            .unwrap();
        if value.as_deref() == Some("failover") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let local = restarted.client();
    assert_eq!(
        local
            .read("k1".into(), Consistency::Eventual, TIMEOUT)
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
    assert_eq!(
        local
            .read("bulk19".into(), Consistency::Eventual, TIMEOUT)
            .await
            .unwrap()
            .as_deref(),
        Some("199")
    );
    let ids: BTreeSet<String> = restarted
        .status()
        .await
        .unwrap()
        .membership
        .voters
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(ids.len(), 3);

    // Manual transfer to the restarted node.
    let leader_now = wait_for_leader(&nodes).await;
    let target = nodes[leader].as_ref().unwrap().node_id().clone();
    if leader_now != leader {
        nodes[leader_now]
            .as_ref()
            .unwrap()
            .transfer_leadership(Some(target))
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while !nodes[leader].as_ref().unwrap().is_leader() {
            assert!(Instant::now() < deadline, "transfer did not complete");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for node in nodes.into_iter().flatten() {
        node.shutdown(Duration::from_secs(2)).await;
    }
}

/// Issue 17, item 3: one client serves many concurrent writers (its writes pipelined on one
/// session), through a follower, across a leader kill that makes them retry. Every key is
/// written once, so `Put`'s response (the previous value) is `None` for every write applied
/// once; a retry applied a second time would answer `Some`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_pipelines_concurrent_writes_across_a_leader_kill() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    const WRITERS: usize = 16;
    const WRITES_EACH: usize = 30;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<ReplicaNode<Kv>>> = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(Some(start(index + 1, dir.path(), 1_000).await));
    }
    introduce(&nodes).await;
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    let client = std::sync::Arc::new(nodes[follower].as_ref().unwrap().client());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = std::sync::Arc::clone(&client);
        let done = std::sync::Arc::clone(&done);
        writers.push(tokio::spawn(async move {
            for write in 0..WRITES_EACH {
                let key = format!("w{writer}-{write}");
                let written = client
                    .write(Put(key.clone(), "v".into()), Consistency::Quorum, WAIT)
                    .await
                    .unwrap_or_else(|error| panic!("{key}: {error}"));
                assert_eq!(written.response, Some(None), "{key} applied more than once");
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // Kill the leader while the writers run: once a fifth of the writes are done.
    let deadline = Instant::now() + WAIT;
    while done.load(std::sync::atomic::Ordering::Relaxed) < WRITERS * WRITES_EACH / 5 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[leader] = None;
    for writer in writers {
        writer.await.expect("a writer finished");
    }
    for writer in 0..WRITERS {
        for write in [0, WRITES_EACH - 1] {
            let key = format!("w{writer}-{write}");
            let value = client
                .read(key.clone(), Consistency::Quorum, TIMEOUT)
                .await
                .unwrap();
            assert_eq!(value.as_deref(), Some("v"), "{key}");
        }
    }
}
