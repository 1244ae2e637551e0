//! Issue 19, item 3: a replica whose store fails in a way it cannot survive (a corrupt
//! record: not an IO error, which would stall it) answers `ClientError::Fatal` carrying the
//! failure's kind and path, to a write forwarded by a follower (the answer crosses the wire in
//! a forwarded reply) and to a local write; the node keeps the store's own error for its host.
//! The real driver, three nodes over TCP on 127.0.0.1, in-memory stores with an injected fault.

mod counter_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use counter_support::Counter;
use ha_core::{Consistency, NodeId};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::EngineSettings;
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{ClientError, ReplicaSettings, SyncPolicy, WriteFate};
use ha_replicate::storage::StorageError;
use ha_replicate::storage::StorageFailure;
use ha_replicate::storage::memory::{CORRUPT_FAULT_PATH, DiskFault, MemoryDisk, MemoryStore};
use ha_replicate::transport::TransportSettings;

/// How long to wait for a leader, at most.
const WAIT: Duration = Duration::from_secs(20);
/// Each write's deadline.
const TIMEOUT: Duration = Duration::from_secs(5);

fn id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).expect("valid id")
}

async fn start(index: usize, disk: &MemoryDisk) -> ReplicaNode<Counter> {
    let replica = ReplicaSettings {
        engine: EngineSettings::for_test(id(index)),
        sync_policy: SyncPolicy::Batch,
        snapshot_every_entries: 10_000,
        snapshot_log_bytes: ha_replicate::replica::SNAPSHOT_LOG_BYTES_DEFAULT,
        transfer: Default::default(),
        housekeeping_interval_ms: 10,
        consistency: ha_replicate::replica::ConsistencySettings::off(),
        witness: false,
        bootstrap_expect: None,
    };
    let settings = NodeSettings {
        replica,
        transport: TransportSettings::new(id(index), "127.0.0.1:0".parse().expect("ip"), "test"),
        peers: BTreeMap::new(),
        bootstrap: Some(VoterSet::with_voters((1..=3).map(id))),
    };
    ReplicaNode::start(
        settings,
        Counter::default(),
        MemoryStore::open(disk.clone()),
    )
    .await
    .expect("start")
}

/// The index of the one leader every node knows, polled every 10 ms for at most [`WAIT`].
async fn leader_of(nodes: &[ReplicaNode<Counter>]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|index| nodes[*index].is_leader())
            .collect();
        if let [leader] = leaders[..]
            && nodes
                .iter()
                .all(|node| node.role().leader.as_ref() == Some(nodes[leader].node_id()))
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "no single known leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_answers_fatal_with_its_kind_and_path_locally_and_through_a_forward() {
    let disks: Vec<MemoryDisk> = (0..3).map(|_| MemoryDisk::new()).collect();
    let mut nodes = Vec::new();
    for (index, disk) in disks.iter().enumerate() {
        nodes.push(start(index + 1, disk).await);
    }
    let addrs: Vec<(NodeId, SocketAddr)> = nodes
        .iter()
        .map(|node| (node.node_id().clone(), node.local_addr()))
        .collect();
    for node in &nodes {
        for (peer, addr) in &addrs {
            node.set_peer(peer.clone(), Some(*addr), None)
                .await
                .expect("running");
        }
    }
    let leader = leader_of(&nodes).await;
    let follower = (leader + 1) % 3;
    let forwarding = nodes[follower].client();
    forwarding
        .write(1, Consistency::Quorum, TIMEOUT)
        .await
        .expect("a forwarded write before the fault");
    assert!(nodes[leader].fatal_error().is_none());

    disks[leader].set_fault(Some(DiskFault::Corrupt));
    let expected = StorageFailure::Corrupt {
        path: CORRUPT_FAULT_PATH.to_string(),
        offset: 0,
        reason: "injected corruption".to_string(),
    };
    // The leader's append of the forwarded write fails: the follower's client hears why.
    let forwarded = forwarding.write(2, Consistency::Quorum, TIMEOUT).await;
    let error = forwarded.expect_err("the leader's store is corrupt");
    assert_eq!(error, ClientError::Fatal(expected.clone()));
    assert_eq!(error.fate(), WriteFate::Unknown);
    assert!(!error.is_retryable());
    match &error {
        ClientError::Fatal(failure) => {
            assert_eq!(failure.class(), "corrupt");
            assert_eq!(failure.path(), Some(CORRUPT_FAULT_PATH));
        }
        other => panic!("not fatal: {other:?}"),
    }

    // A local write on the stopped leader, and its status, say the same.
    let local = nodes[leader]
        .client()
        .write(3, Consistency::Quorum, TIMEOUT)
        .await;
    assert_eq!(
        local.expect_err("stopped"),
        ClientError::Fatal(expected.clone())
    );
    assert_eq!(
        nodes[leader].status().await.expect_err("stopped"),
        ClientError::Fatal(expected)
    );
    let kept = nodes[leader]
        .fatal_error()
        .expect("the store's error is kept");
    assert!(
        matches!(&*kept, StorageError::Corrupt { path, offset: 0, .. }
            if path.to_str() == Some(CORRUPT_FAULT_PATH)),
        "{kept:?}"
    );
    for node in nodes {
        node.shutdown(Duration::from_millis(100)).await;
    }
}
