//! Failover on a real 3-node cluster: a client on a follower holds a lock whose lease it
//! renews; the log's leader is killed (no handover). After a new leader is elected, the
//! lease is still alive (the new leader started its TTL afresh and the renewals reached it),
//! the guard never reported a loss, and the lock is held with the same fencing token.

mod handles_support;

use std::time::{Duration, Instant};

use ha_core::Consistency;
use ha_lock::{LeaseState, LockError};
use handles_support::{Cluster, WAIT, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_survives_the_kill_of_the_log_leader() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower().await;
    let client = cluster.client(follower);
    // Generous: renewals every 2 s, each with most of 6 s to get through the election.
    let ttl = Duration::from_secs(6);
    let guard = client
        .locks()
        .acquire("singleton", ttl, Duration::from_secs(5))
        .await
        .expect("acquire");
    client
        .kv()
        .put_with_lease("/singleton/owner", "follower's client", guard.lease_id())
        .await
        .expect("put bound to the lease");
    let token = guard.token();
    let lease = guard.lease_id();
    let lost = guard.lost();
    let renewals = |state: Result<Option<LeaseState>, LockError>| {
        state.ok().flatten().map_or(0, |state| state.renewals)
    };
    eventually("a renewal before the kill", WAIT, || async {
        renewals(client.leases().lease_state(lease).await) >= 1
    })
    .await;
    let renewals_before = renewals(client.leases().lease_state(lease).await);

    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    println!(
        "new log leader {} elected {:?} after the kill",
        cluster.node(new_leader).node_id(),
        killed_at.elapsed()
    );

    // Watch until two more renewals reached the new leader: the guard stays valid, and the
    // lock stays its holder's on the cluster (an early expiry by the new leader would show).
    let watch_started = Instant::now();
    let mut lowest_margin = ttl;
    while renewals(client.leases().lease_state(lease).await) < renewals_before + 2 {
        assert!(
            watch_started.elapsed() < WAIT,
            "renewals did not reach the new leader within {WAIT:?}"
        );
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
        .locks()
        .lock_state("singleton")
        .await
        .expect("read")
        .expect("still held");
    assert_eq!(
        (state.holder, state.lease, state.token),
        (client.session(), lease, token)
    );
    let lease_state = client
        .leases()
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
            .kv()
            .get("/singleton/owner", Consistency::Quorum)
            .await
            .expect("read")
            .is_some(),
        "the lease-bound key survived"
    );
    guard.release().await.expect("release");
    assert_eq!(
        client.locks().lock_state("singleton").await.expect("read"),
        None
    );
    cluster.shutdown().await;
}
