//! Watches on a real 3-node cluster: a watch on a follower sees puts and deletes under its
//! prefix in version order, and a new watch resumes after a given version.

mod handles_support;

use std::time::Duration;

use ha_core::Consistency;
use ha_lock::Change;
use handles_support::{Cluster, WAIT};

async fn next(watch: &mut ha_lock::Watch<()>) -> Change {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a change in time")
        .expect("a change")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_puts_and_deletes_in_order_and_resumes_from_a_version() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let writer = cluster.client(cluster.leader().await);
    let watcher = cluster.client(follower);
    let mut watch = watcher.watch("/jobs/", 0);

    let first = writer
        .put("/jobs/1", "queued", Consistency::Quorum)
        .await
        .expect("put");
    writer
        .put("/elsewhere", "not watched", Consistency::Quorum)
        .await
        .expect("put");
    let second = writer
        .put("/jobs/2", "queued", Consistency::Quorum)
        .await
        .expect("put");
    let update = writer
        .compare_and_swap("/jobs/1", first, "running")
        .await
        .expect("swap");
    let deleted = writer.delete("/jobs/2", None).await.expect("delete");

    let expected = [
        (first, "/jobs/1", Some(&b"queued"[..])),
        (second, "/jobs/2", Some(&b"queued"[..])),
        (update, "/jobs/1", Some(&b"running"[..])),
        (deleted, "/jobs/2", None),
    ];
    for (version, key, value) in expected {
        let change = next(&mut watch).await;
        assert_eq!(
            (change.version, change.key.as_str(), change.value.as_deref()),
            (version, key, value)
        );
    }
    assert_eq!(watch.last_version(), deleted);
    // Nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err()
    );

    // A watcher that processed up to `second` resumes there and sees the rest, in order.
    let mut resumed = watcher.watch("/jobs/", second);
    assert_eq!(next(&mut resumed).await.version, update);
    assert_eq!(next(&mut resumed).await.version, deleted);

    // A later change reaches both.
    let later = writer
        .put("/jobs/3", "queued", Consistency::Quorum)
        .await
        .expect("put");
    assert_eq!(next(&mut watch).await.version, later);
    assert_eq!(next(&mut resumed).await.version, later);

    // A key watch sees only its key.
    let mut key_watch = watcher.watch_key("/jobs/1", 0);
    assert_eq!(next(&mut key_watch).await.version, first);
    assert_eq!(next(&mut key_watch).await.version, update);
    cluster.shutdown().await;
}
