//! KV through the `Kv`, `Leases` and `Locks` handles on a real 3-node cluster: put and get at every consistency level,
//! compare-and-swap, create-only, delete with and without a version, and range.

mod handles_support;

use ha_core::Consistency;
use ha_lock::LockError;
use handles_support::{Cluster, WAIT, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_compare_and_swap_create_delete_and_range_through_a_follower() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let client = cluster.client(follower);

    // Put and get at every level. The follower forwards writes to the leader.
    let first = client
        .kv()
        .put("/kv/a", "1", Consistency::Quorum)
        .await
        .expect("quorum put");
    let strong = client
        .kv()
        .put("/kv/b", "2", Consistency::Strong)
        .await
        .expect("strong put");
    assert!(strong > first, "versions are log indexes and grow");
    let eventual = client
        .kv()
        .put("/kv/c", "3", Consistency::Eventual)
        .await
        .expect("eventual put");
    for consistency in [Consistency::Strong, Consistency::Quorum] {
        let value = client
            .kv()
            .get("/kv/a", consistency)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(value.value, b"1");
        assert_eq!(value.version, first);
    }
    // A STRONG write is applied everywhere when it returns: the local replica has it.
    let local = client
        .kv()
        .get("/kv/b", Consistency::Eventual)
        .await
        .expect("local read");
    assert_eq!(local.map(|value| value.value), Some(b"2".to_vec()));
    // An EVENTUAL put gets the version it announced once applied.
    eventually("the eventual put to be applied", WAIT, || async {
        client
            .kv()
            .get("/kv/c", Consistency::Quorum)
            .await
            .ok()
            .flatten()
            .is_some_and(|value| value.version == eventual)
    })
    .await;

    // Compare-and-swap: the right version wins, a stale one is told the current version.
    let swapped = client
        .kv()
        .compare_and_swap("/kv/a", first, "1b")
        .await
        .expect("swap with the current version");
    assert_eq!(
        client.kv().compare_and_swap("/kv/a", first, "lost").await,
        Err(LockError::VersionMismatch {
            key: "/kv/a".into(),
            expected: first,
            current: swapped,
        })
    );
    assert_eq!(
        client.kv().compare_and_swap("/kv/none", 7, "x").await,
        Err(LockError::VersionMismatch {
            key: "/kv/none".into(),
            expected: 7,
            current: 0,
        })
    );

    // Create-only.
    let created = client
        .kv()
        .create("/kv/new", "fresh")
        .await
        .expect("create");
    assert_eq!(
        client.kv().create("/kv/new", "again").await,
        Err(LockError::AlreadyExists {
            key: "/kv/new".into(),
            version: created,
        })
    );

    // Range: keys under the prefix in order, nothing else.
    client
        .kv()
        .put("/other/z", "outside", Consistency::Quorum)
        .await
        .expect("put");
    let keys: Vec<String> = client
        .kv()
        .range("/kv/")
        .await
        .expect("range")
        .into_iter()
        .map(|value| value.key)
        .collect();
    assert_eq!(keys, ["/kv/a", "/kv/b", "/kv/c", "/kv/new"]);

    // Delete: a wrong version changes nothing; the right one and an unconditional one work.
    assert_eq!(
        client.kv().delete("/kv/new", Some(created + 1000)).await,
        Err(LockError::VersionMismatch {
            key: "/kv/new".into(),
            expected: created + 1000,
            current: created,
        })
    );
    let deleted_at = client
        .kv()
        .delete("/kv/new", Some(created))
        .await
        .expect("delete with the version");
    assert!(deleted_at > created);
    client.kv().delete("/kv/b", None).await.expect("delete");
    assert_eq!(
        client.kv().delete("/kv/b", None).await,
        Err(LockError::NotFound {
            key: "/kv/b".into()
        })
    );
    assert_eq!(
        client
            .kv()
            .get("/kv/new", Consistency::Quorum)
            .await
            .expect("read"),
        None
    );
    let keys: Vec<String> = client
        .kv()
        .range("/kv/")
        .await
        .expect("range")
        .into_iter()
        .map(|value| value.key)
        .collect();
    assert_eq!(keys, ["/kv/a", "/kv/c"]);

    // Bad input is refused with a reason, and nothing changes.
    assert!(matches!(
        client.kv().put("", "empty key", Consistency::Quorum).await,
        Err(LockError::Invalid { .. })
    ));
    cluster.shutdown().await;
}
