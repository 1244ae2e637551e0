//! A stopped node says so (issue 19): a leadership transfer asked of it is refused with
//! `TransferError::Stopped`, not `NotLeader` (which sends the caller looking for a leader that
//! this node will never name), and a write through its client is `ClientError::Stopped`.

mod handles_support;

use std::time::Duration;

use ha_core::Consistency;
use ha_lock::LockError;
use ha_replicate::engine::TransferError;
use ha_replicate::replica::{ClientError, WriteFate};
use handles_support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_answers_stopped_to_transfers_and_writes() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let client = cluster.client(follower);
    let node = cluster.node(follower);
    node.stop(Duration::from_millis(500)).await;
    assert_eq!(
        node.transfer_leadership(None).await,
        Err(TransferError::Stopped)
    );
    match client.kv().put("k", "v", Consistency::Quorum).await {
        Err(LockError::Replication(error @ ClientError::Stopped(_))) => {
            assert_eq!(error.fate(), WriteFate::Unknown);
        }
        other => panic!("a write on a stopped node answered {other:?}"),
    }
    cluster.shutdown().await;
}
