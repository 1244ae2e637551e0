//! Multi-key KV calls through the `Kv`, `Leases` and `Locks` handles on a real 3-node cluster, sent to a follower (which
//! forwards them): a transaction's two branches, a prefix delete larger than one command, and
//! paging through more keys than one page holds.

mod handles_support;

use ha_core::Consistency;
use ha_lock::{DELETE_PREFIX_KEYS_MAX, LockError, Txn, TxnOp, VersionCmp};
use handles_support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_prefix_deletes_and_pages_through_a_follower() {
    let cluster = Cluster::start().await;
    let client = cluster.client(cluster.follower().await);

    // A job moves from the queue to a worker only if nobody took it first.
    let queued = client
        .kv()
        .put("/queue/42", "job", Consistency::Quorum)
        .await
        .expect("put");
    let take = || {
        Txn::new()
            .when("/queue/42", VersionCmp::Equal, queued)
            .delete("/queue/42")
            .put("/running/42", "worker-7")
            .otherwise(TxnOp::Put {
                key: "/conflicts/42".into(),
                value: b"worker-7".to_vec(),
                lease: None,
            })
    };
    let taken = client.kv().txn(take()).await.expect("txn");
    assert!(taken.succeeded);
    let running = client
        .kv()
        .get("/running/42", Consistency::Strong)
        .await
        .expect("get")
        .expect("written");
    assert_eq!(running.version, taken.version);
    assert!(
        client
            .kv()
            .get("/queue/42", Consistency::Strong)
            .await
            .expect("get")
            .is_none()
    );
    let again = client.kv().txn(take()).await.expect("txn");
    assert!(!again.succeeded, "the queue entry is gone");
    assert!(
        client
            .kv()
            .get("/conflicts/42", Consistency::Strong)
            .await
            .expect("get")
            .is_some()
    );
    let error = client
        .kv()
        .txn(Txn::new().put("/x", "1").delete("/x"))
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Invalid { .. }), "{error:?}");

    // More keys than one prefix-delete command removes, and than one page holds.
    let total = DELETE_PREFIX_KEYS_MAX + 10;
    for chunk in (0..total).collect::<Vec<_>>().chunks(50) {
        let txn = chunk
            .iter()
            .fold(Txn::new(), |txn, n| txn.put(format!("/bulk/{n:05}"), "v"));
        assert!(client.kv().txn(txn).await.expect("bulk txn").succeeded);
    }
    let page = client
        .kv()
        .range_page("/bulk/", None, 100, Consistency::Quorum)
        .await
        .expect("page");
    assert_eq!(page.values.len(), 100);
    assert!(page.more);
    let next = client
        .kv()
        .range_page(
            "/bulk/",
            Some(page.values[99].key.as_str()),
            100,
            Consistency::Quorum,
        )
        .await
        .expect("page");
    assert_eq!(next.values[0].key, "/bulk/00100");
    let all = client.kv().range_all("/bulk/").await.expect("range all");
    assert_eq!(all.len(), total);
    let deleted = client
        .kv()
        .delete_prefix("/bulk/")
        .await
        .expect("delete prefix");
    assert_eq!(deleted, total as u64);
    assert!(
        client
            .kv()
            .range_all("/bulk/")
            .await
            .expect("range all")
            .is_empty()
    );
    assert!(
        client
            .kv()
            .get("/running/42", Consistency::Strong)
            .await
            .expect("get")
            .is_some(),
        "keys outside the prefix stay"
    );
    cluster.shutdown().await;
}
