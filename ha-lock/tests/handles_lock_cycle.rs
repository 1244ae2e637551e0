//! Issue 17, item 5, on a real 3-node cluster over TCP: a lock cycle through the `Kv`, `Leases` and `Locks` handles is two
//! replicated writes, counted as entries appended to the leader's log. Acquire under a new
//! lease is one (`GrantAndAcquire`), release of a guard that owns its lease is one
//! (`ReleaseAndRevoke`), and so is each step of the admin HTTP API's path (acquire with a
//! holder key, detach, release ending the lease). A refused try-acquire appends one entry and
//! leaves no lease; a queued acquire is granted by the holder's release without a write of its
//! own; a dropped guard releases in one write.

mod handles_support;

use std::time::Duration;

use ha_core::Consistency;
use ha_lock::{FencingToken, LeaseId, LockError, Session, new_holder_key};
use handles_support::{Cluster, WAIT, eventually};

/// Far above the test's length: no renewal (a write) happens while entries are counted (the
/// first comes after a third of it).
const TTL: Duration = Duration::from_secs(90);

/// The leader's last log index.
async fn last_index(cluster: &Cluster, leader: usize) -> u64 {
    cluster
        .node(leader)
        .status()
        .await
        .expect("the leader answers")
        .last_index
        .0
}

/// Live leases, from the leader's applied state.
async fn live_leases(client: &Session<()>) -> u64 {
    client
        .kv()
        .stats(Consistency::Quorum)
        .await
        .expect("stats answer")
        .leases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_cycle_appends_two_entries() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let client = cluster.client(leader);
    // Let the new term's first entry commit before counting.
    client
        .kv()
        .stats(Consistency::Quorum)
        .await
        .expect("a read");
    let mut entries = Vec::new();
    for _ in 0..5 {
        let before = last_index(&cluster, leader).await;
        let guard = client
            .locks()
            .acquire("cycle", TTL, WAIT)
            .await
            .expect("acquire a free lock");
        let acquired = last_index(&cluster, leader).await;
        assert_eq!(
            guard.token(),
            FencingToken(acquired),
            "the token is the entry's index"
        );
        assert_eq!(guard.lease_id(), LeaseId(acquired), "so is the lease");
        guard.release().await.expect("release");
        let released = last_index(&cluster, leader).await;
        entries.push((acquired - before, released - acquired));
    }
    assert_eq!(entries, vec![(1, 1); 5], "entries per (acquire, release)");
    assert_eq!(live_leases(&client).await, 0, "the release ended the lease");
    assert_eq!(
        client.locks().lock_state("cycle").await.expect("a read"),
        None
    );

    // The admin HTTP API's path: a holder key, a detached guard, a release that ends the
    // lease.
    let key = new_holder_key();
    let before = last_index(&cluster, leader).await;
    let guard = client
        .locks()
        .try_acquire_with_holder("http", TTL, key)
        .await
        .expect("acquire a free lock");
    let (token, _lease) = guard.detach();
    let acquired = last_index(&cluster, leader).await;
    let plain = client
        .locks()
        .release_ending_lease("http", token, None)
        .await;
    assert!(
        matches!(plain, Err(LockError::NotHolder { .. })),
        "no key, no release: {plain:?}"
    );
    let refused = last_index(&cluster, leader).await;
    client
        .locks()
        .release_ending_lease("http", token, Some(&key))
        .await
        .expect("release with the key");
    let released = last_index(&cluster, leader).await;
    assert_eq!(
        (acquired - before, refused - acquired, released - refused),
        (1, 1, 1)
    );
    assert_eq!(live_leases(&client).await, 0);

    // A refused try-acquire: one entry, and no lease left behind to revoke.
    let holder = client
        .locks()
        .acquire("busy", TTL, WAIT)
        .await
        .expect("acquire");
    let other = cluster.client(cluster.follower().await);
    let before = last_index(&cluster, leader).await;
    let busy = other.locks().try_acquire("busy", TTL).await.err();
    assert!(matches!(busy, Some(LockError::Busy { .. })), "{busy:?}");
    assert_eq!(last_index(&cluster, leader).await - before, 1);
    assert_eq!(live_leases(&client).await, 1, "only the holder's lease");
    holder.release().await.expect("release");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_acquire_and_a_dropped_guard_take_one_write_each() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let first = cluster.client(leader);
    let second = cluster.client(cluster.follower().await);
    first.kv().stats(Consistency::Quorum).await.expect("a read");
    let before = last_index(&cluster, leader).await;
    let holding = first
        .locks()
        .acquire("line", TTL, WAIT)
        .await
        .expect("acquire");
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move { second.locks().acquire("line", TTL, WAIT).await })
    };
    eventually("the second client to wait in line", WAIT, || async {
        first
            .locks()
            .lock_state("line")
            .await
            .is_ok_and(|state| state.is_some_and(|state| state.waiters.len() == 1))
    })
    .await;
    holding.release().await.expect("release");
    let next = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("granted in time")
        .expect("the task ran")
        .expect("granted");
    let handed_on = last_index(&cluster, leader).await;
    assert_eq!(
        handed_on - before,
        3,
        "acquire, queued acquire, release: the hand-off is part of the release"
    );
    assert_eq!(
        next.token(),
        FencingToken(handed_on),
        "the release's index is the new token"
    );
    drop(next);
    eventually(
        "the dropped guard to release its lock and lease",
        WAIT,
        || async {
            first
                .locks()
                .lock_state("line")
                .await
                .is_ok_and(|state| state.is_none())
                && live_leases(&first).await == 0
        },
    )
    .await;
    assert_eq!(last_index(&cluster, leader).await - handed_on, 1);
    cluster.shutdown().await;
}
