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
    let mut watch = watcher.kv().watch("/jobs/", 0);

    let first = writer
        .kv()
        .put("/jobs/1", "queued", Consistency::Quorum)
        .await
        .expect("put");
    writer
        .kv()
        .put("/elsewhere", "not watched", Consistency::Quorum)
        .await
        .expect("put");
    let second = writer
        .kv()
        .put("/jobs/2", "queued", Consistency::Quorum)
        .await
        .expect("put");
    let update = writer
        .kv()
        .compare_and_swap("/jobs/1", first, "running")
        .await
        .expect("swap");
    let deleted = writer.kv().delete("/jobs/2", None).await.expect("delete");

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
    let mut resumed = watcher.kv().watch("/jobs/", second);
    assert_eq!(next(&mut resumed).await.version, update);
    assert_eq!(next(&mut resumed).await.version, deleted);

    // A later change reaches both.
    let later = writer
        .kv()
        .put("/jobs/3", "queued", Consistency::Quorum)
        .await
        .expect("put");
    assert_eq!(next(&mut watch).await.version, later);
    assert_eq!(next(&mut resumed).await.version, later);

    // A key watch sees only its key.
    let mut key_watch = watcher.kv().watch_key("/jobs/1", 0);
    assert_eq!(next(&mut key_watch).await.version, first);
    assert_eq!(next(&mut key_watch).await.version, update);
    cluster.shutdown().await;
}

/// A lease end deletes every key bound to it in one command, at one version: a watch gets
/// every one of those deletes, and its resume point passes the version only after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_gets_every_key_a_lease_end_deletes() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let writer = cluster.client(cluster.leader().await);
    let watcher = cluster.client(follower);
    let lease = writer
        .leases()
        .grant(Duration::from_secs(30))
        .await
        .expect("grant");
    let mut last_put = 0;
    for key in ["/leased/a", "/leased/b", "/leased/c"] {
        last_put = writer
            .kv()
            .put_with_lease(key, "v", lease.id())
            .await
            .expect("put");
    }
    let mut watch = watcher.kv().watch("/leased/", last_put);
    assert!(
        writer
            .leases()
            .revoke_lease(lease.id())
            .await
            .expect("revoke")
    );
    let mut deleted = Vec::new();
    for _ in 0..3 {
        let change = next(&mut watch).await;
        assert_eq!(change.value, None, "{change:?}");
        deleted.push(change.key.clone());
        if deleted.len() < 3 {
            assert_eq!(
                watch.last_version(),
                last_put,
                "the group is not complete: resuming must get all of it"
            );
        } else {
            assert_eq!(watch.last_version(), change.version);
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["/leased/a", "/leased/b", "/leased/c"]);
    cluster.shutdown().await;
}

/// With the replica's change signal, a watch hears of a change when the replica applies it,
/// not at its next poll: with a poll interval of an hour, a signalled watch (plain and as a
/// `Stream`), already waiting when the writes come, gets each change, while an unsignalled
/// one waiting the same way gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalled_watch_is_woken_by_the_apply_not_by_polling() {
    use futures_util::StreamExt;
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let writer = cluster.client(cluster.leader().await);
    let mut settings = ha_lock::SessionSettings::default();
    settings.watch_poll_interval = Duration::from_secs(3600);
    let signalled = cluster.signalled_client(follower).with_settings(settings);
    let polling = cluster.client(follower).with_settings(settings);
    const WRITES: usize = 3;
    let mut watch = signalled.kv().watch("/pushed/", 0);
    let plain = tokio::spawn(async move {
        let mut versions = Vec::new();
        for _ in 0..WRITES {
            versions.push(watch.next().await.expect("a change").version);
        }
        versions
    });
    let stream = signalled.kv().watch("/pushed/", 0).into_stream();
    let streamed = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut versions = Vec::new();
        for _ in 0..WRITES {
            let change = stream.next().await.expect("the stream goes on");
            versions.push(change.expect("a change").version);
        }
        versions
    });
    let mut unsignalled = polling.kv().watch("/pushed/", 0);
    let mut unsignalled = tokio::spawn(async move { unsignalled.next().await });
    // Every watch has read the empty log once and is waiting when the writes come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut written = Vec::new();
    for round in 0..WRITES {
        written.push(
            writer
                .kv()
                .put(format!("/pushed/{round}"), "v", Consistency::Quorum)
                .await
                .expect("put"),
        );
    }
    for task in [plain, streamed] {
        let versions = tokio::time::timeout(WAIT, task)
            .await
            .expect("woken in time")
            .expect("the task ran");
        assert_eq!(versions, written);
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut unsignalled)
            .await
            .is_err(),
        "a watch without the signal waits for its next poll"
    );
    unsignalled.abort();
    cluster.shutdown().await;
}
