//! Failover on a real 3-node cluster: a client on a follower holds a lock whose lease it
//! renews; the log's leader is killed (no handover). After a new leader is elected, the
//! lease is still alive (the new leader started its TTL afresh and the renewals reached it),
//! the guard never reported a loss, and the lock is held with the same fencing token.

mod handles_support;

use std::time::{Duration, Instant};

use ha_core::Consistency;
use handles_support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_survives_the_kill_of_the_log_leader() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower().await;
    let client = cluster.client(follower);
    let ttl = Duration::from_secs(2);
    let guard = client
        .acquire("singleton", ttl, Duration::from_secs(5))
        .await
        .expect("acquire");
    client
        .put_with_lease("/singleton/owner", "follower's client", guard.lease_id())
        .await
        .expect("put bound to the lease");
    let token = guard.token();
    let lease = guard.lease_id();
    let lost = guard.lost();
    tokio::time::sleep(ttl / 2).await;
    let renewals_before = client
        .lease_state(lease)
        .await
        .expect("read")
        .expect("alive")
        .renewals;

    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    println!(
        "new log leader {} elected {:?} after the kill",
        cluster.node(new_leader).node_id(),
        killed_at.elapsed()
    );

    // Watch for two TTLs after the election: an early expiry would show within one.
    let watch_until = Instant::now() + ttl * 2;
    let mut lowest_margin = ttl;
    while Instant::now() < watch_until {
        assert!(
            guard.is_valid(),
            "the guard stays valid through the failover"
        );
        let margin = guard
            .safe_deadline()
            .expect("alive")
            .saturating_duration_since(Instant::now());
        lowest_margin = lowest_margin.min(margin);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the holder's least time left before its safe deadline during the failover: {lowest_margin:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1), lost)
            .await
            .is_err(),
        "lost() never fired"
    );

    let state = client
        .lock_state("singleton")
        .await
        .expect("read")
        .expect("still held");
    assert_eq!(
        (state.holder, state.lease, state.token),
        (client.session(), lease, token)
    );
    let lease_state = client
        .lease_state(lease)
        .await
        .expect("read")
        .expect("the lease was not expired");
    assert!(
        lease_state.renewals > renewals_before,
        "renewals reached the new leader: {} then {}",
        renewals_before,
        lease_state.renewals
    );
    assert!(
        client
            .get("/singleton/owner", Consistency::Quorum)
            .await
            .expect("read")
            .is_some(),
        "the lease-bound key survived"
    );
    guard.release().await.expect("release");
    assert_eq!(client.lock_state("singleton").await.expect("read"), None);
    cluster.shutdown().await;
}
