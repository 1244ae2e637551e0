//! A cluster of real replica nodes in this process: TCP on loopback, an on-disk WAL per node
//! (fsync by group commit), as the benchmarks need it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ha_core::{NodeId, StateMachine};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::{COMMIT_NOTICE_DELAY_MS_DEFAULT, EngineSettings};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::transport::TransportSettings;

/// Start `dirs.len()` voters (`n1`, `n2`, ...), each with a fresh `machine()` and a WAL in its
/// directory, and introduce them to each other.
///
/// # Panics
/// When a node cannot start (a benchmark has nothing to measure then).
pub async fn start_loopback_cluster<S: StateMachine>(
    dirs: &[tempfile::TempDir],
    machine: impl Fn() -> S,
) -> Vec<ReplicaNode<S>> {
    let ids: Vec<NodeId> = (1..=dirs.len())
        .map(|index| NodeId::new(format!("n{index}")).expect("n<number> is a valid id"))
        .collect();
    let mut nodes = Vec::new();
    for (id, dir) in ids.iter().zip(dirs) {
        let settings = NodeSettings {
            replica: ReplicaSettings {
                snapshot_every_entries: 50_000,
                // A deployed node's commit notices (`for_test` sends them at once).
                engine: EngineSettings {
                    commit_notice_delay_ms: COMMIT_NOTICE_DELAY_MS_DEFAULT,
                    ..EngineSettings::for_test(id.clone())
                },
                ..ReplicaSettings::for_test(id.clone())
            },
            transport: TransportSettings::new(
                id.clone(),
                "127.0.0.1:0".parse().expect("a loopback address"),
                "bench",
            ),
            peers: BTreeMap::new(),
            bootstrap: Some(VoterSet::with_voters(ids.clone())),
        };
        let options = WalOptions {
            fsync_policy: FsyncPolicy::Manual,
            ..WalOptions::default()
        };
        let store = WalStore::open(dir.path(), options).expect("open the WAL");
        let node = ReplicaNode::start(settings, machine(), store)
            .await
            .expect("start a node");
        nodes.push(node);
    }
    let addrs: Vec<_> = nodes
        .iter()
        .map(|node| (node.node_id().clone(), node.local_addr()))
        .collect();
    for node in &nodes {
        for (id, addr) in &addrs {
            node.set_peer(id.clone(), Some(*addr), None)
                .await
                .expect("the node is running");
        }
    }
    nodes
}

/// The index of the leader, waiting up to 30 s for one.
///
/// # Panics
/// When no leader is elected in time.
pub async fn wait_for_leader<S: StateMachine>(nodes: &[ReplicaNode<S>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(index) = nodes.iter().position(ReplicaNode::is_leader) {
            return index;
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
