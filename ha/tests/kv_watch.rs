//! The facade's KV clients are given the node's change signal: a watch from `node.kv()` is
//! woken when the node applies a change, even with a poll interval of an hour.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use ha::Consistency;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_watch_from_the_node_is_woken_by_the_apply() {
    let node = support::one_node().await;
    let mut settings = ha_lock::SessionSettings::default();
    settings.watch_poll_interval = Duration::from_secs(3600);
    let watcher = node.lock_session().with_settings(settings).kv();
    let stream = watcher.watch("/facade/", 0).into_stream();
    let waiting = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        stream
            .next()
            .await
            .expect("the stream goes on")
            .expect("a change")
    });
    // The watch has read the empty log and waits when the write comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let version = node
        .kv()
        .put("/facade/a", "1", Consistency::Quorum)
        .await
        .expect("put");
    let change = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the apply, not by a poll an hour away")
        .expect("the task ran");
    assert_eq!(
        (change.key.as_str(), change.version),
        ("/facade/a", version)
    );
    node.shutdown().await;
}
