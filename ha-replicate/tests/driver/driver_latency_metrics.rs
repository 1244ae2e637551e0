//! Issue 16: the driver's latency histograms and leader-change counter on a real 3-node
//! cluster over loopback TCP with on-disk WALs. Writes to the leader land in its
//! propose->commit histogram and in every node's commit->apply; writes sent to a follower in
//! that follower's forward round trip; linearizable reads on the leader in its read-index
//! round trip; a leadership transfer in every node's leader-change counter and failover
//! histogram. Every wait polls with a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use ha_core::Consistency;
use ha_replicate::driver::ReplicaNode;
use ha_replicate::storage::wal::{WalOptions, WalStore};
use ha_replicate::test_support::Counter;
use ha_replicate::test_support::loopback_cluster::{introduce, leader_of, loopback_settings};

const WAIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(5);
const WRITES: u64 = 20;
const FORWARDED: u64 = 10;
const READS: u64 = 5;

async fn start(index: usize, dir: &Path) -> ReplicaNode<Counter> {
    let store = WalStore::open(dir, WalOptions::default()).expect("open the WAL");
    ReplicaNode::start(loopback_settings(index, 3), Counter::default(), store)
        .await
        .expect("start")
}

/// Poll `condition` every 10 ms, failing after [`WAIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_histograms_and_the_leader_change_counter_count_what_the_cluster_did() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(start(index + 1, dir.path()).await);
    }
    introduce(&nodes).await;
    let leader = leader_of(&nodes, WAIT).await;
    let follower = (leader + 1) % 3;
    // The first leader a node learns after starting is not a change.
    for node in &nodes {
        assert_eq!(node.metrics().leader_changes(), 0);
    }

    let proposed_before = nodes[leader].metrics().propose_commit.snapshot().count;
    let client = nodes[leader].client();
    for _ in 0..WRITES {
        client
            .write(1, Consistency::Quorum, TIMEOUT)
            .await
            .expect("write");
    }
    let proposed = nodes[leader].metrics().propose_commit.snapshot();
    assert!(
        proposed.count >= proposed_before + WRITES,
        "{proposed:?} after {WRITES} writes"
    );
    // Plausible: every write committed within the client's timeout.
    assert!(proposed.sum_seconds / (proposed.count as f64) < TIMEOUT.as_secs_f64());
    // Followers only time what they propose: nothing.
    assert_eq!(nodes[follower].metrics().propose_commit.snapshot().count, 0);
    // Every node applies every write (followers learn the commit a heartbeat later).
    for node in &nodes {
        wait_until("every node timed applying the writes", || {
            node.metrics().commit_apply.snapshot().count >= WRITES
        })
        .await;
    }

    let forwarding = nodes[follower].client();
    for _ in 0..FORWARDED {
        forwarding
            .write(1, Consistency::Quorum, TIMEOUT)
            .await
            .expect("forwarded write");
    }
    assert_eq!(
        nodes[follower]
            .metrics()
            .forward_round_trip
            .snapshot()
            .count,
        FORWARDED,
        "one observation per forwarded write"
    );
    assert_eq!(
        nodes[leader].metrics().forward_round_trip.snapshot().count,
        0
    );

    for _ in 0..READS {
        client
            .read((), Consistency::Strong, TIMEOUT)
            .await
            .expect("read");
    }
    assert!(
        nodes[leader]
            .metrics()
            .read_index_round_trip
            .snapshot()
            .count
            >= READS
    );
    // EVENTUAL reads take no round.
    let before = nodes[follower].metrics().read_index_round_trip.snapshot();
    forwarding
        .read((), Consistency::Eventual, TIMEOUT)
        .await
        .expect("local read");
    assert_eq!(
        nodes[follower].metrics().read_index_round_trip.snapshot(),
        before
    );

    // A failover: every node sees the leader change, and applies the new leader's failover
    // record (at least: a loaded machine may add an election).
    let failovers_before: Vec<u64> = nodes
        .iter()
        .map(|node| node.metrics().failover_leaderless.snapshot().count)
        .collect();
    let target = nodes[follower].node_id().clone();
    nodes[leader]
        .transfer_leadership(Some(target.clone()))
        .await
        .expect("transfer");
    wait_until("every node follows the transfer's target", || {
        nodes[follower].is_leader()
            && nodes
                .iter()
                .all(|node| node.role().leader.as_ref() == Some(&target))
    })
    .await;
    for (index, node) in nodes.iter().enumerate() {
        wait_until("every node counted the change and the failover", || {
            node.metrics().leader_changes() >= 1
                && node.metrics().failover_leaderless.snapshot().count > failovers_before[index]
        })
        .await;
    }
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
}
