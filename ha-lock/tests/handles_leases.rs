//! Leases on a real 3-node cluster: a renewed lease outlives many TTLs and revoking it
//! deletes its keys; a lease nobody renews is expired by the leader's `LeaseKeeper` and its
//! key disappears. A TTL under the minimum is refused.

mod handles_support;

use std::time::{Duration, Instant};

use ha_core::Consistency;
use ha_lock::{LEASE_TTL_MIN, LeaseLoss, LeaseStatus, LockClient, LockError};
use handles_support::{Cluster, WAIT, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_outlives_several_ttls_and_revoking_it_deletes_its_keys() {
    let cluster = Cluster::start().await;
    // One session for everything: renewals queue with the other writes of the session.
    let client = LockClient::new(cluster.node(cluster.follower().await).client());
    assert!(matches!(
        client.grant(LEASE_TTL_MIN / 2).await,
        Err(LockError::Invalid { .. })
    ));
    let ttl = Duration::from_millis(400);
    let lease = client.grant(ttl).await.expect("grant");
    client
        .put_with_lease("/eph/worker", "alive", lease.id())
        .await
        .expect("put bound to the lease");
    let mut status = lease.watch();

    // Meanwhile another task of the same session writes as fast as it can: the renewals
    // must interleave with those writes (one at a time on one session) and not be lost.
    let busy_writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut writes = 0_u64;
            let until = Instant::now() + ttl * 5;
            while Instant::now() < until {
                client
                    .put("/busy", writes.to_string(), Consistency::Quorum)
                    .await
                    .expect("a write on the shared session");
                writes += 1;
            }
            writes
        })
    };

    // Five TTLs: without renewals the leader would have expired it four times over.
    let started = Instant::now();
    let mut renewals_seen = 0;
    while started.elapsed() < ttl * 5 {
        if tokio::time::timeout(ttl, status.changed()).await.is_ok() {
            renewals_seen += 1;
        }
        assert!(lease.is_valid(), "the lease stays valid while renewed");
    }
    assert!(
        renewals_seen >= 10,
        "renewed every third of the TTL: {renewals_seen}"
    );
    let writes = busy_writer.await.expect("the writer ran");
    assert!(writes > 100, "the other writes went on too: {writes}");
    let state = client
        .lease_state(lease.id())
        .await
        .expect("read")
        .expect("alive on the cluster");
    assert!(state.renewals >= 10, "renewals applied: {}", state.renewals);
    assert!(
        client
            .get("/eph/worker", Consistency::Quorum)
            .await
            .expect("read")
            .is_some(),
        "the bound key is still there"
    );

    let id = lease.id();
    let watch = lease.watch();
    lease.revoke().await.expect("revoke");
    assert_eq!(*watch.borrow(), LeaseStatus::Lost(LeaseLoss::Revoked));
    assert_eq!(
        client
            .get("/eph/worker", Consistency::Quorum)
            .await
            .expect("read"),
        None
    );
    assert_eq!(client.lease_state(id).await.expect("read"), None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_lease_is_expired_by_the_leader_and_its_key_disappears() {
    let cluster = Cluster::start().await;
    let client = cluster.client(cluster.follower().await);
    let ttl = Duration::from_millis(300);
    let lease = client.grant(ttl).await.expect("grant");
    let id = lease.id();
    client
        .put_with_lease("/eph/crashed", "soon gone", id)
        .await
        .expect("put bound to the lease");
    // Renew a few times, then stop renewing as a crashed holder would.
    tokio::time::sleep(ttl).await;
    let renewals = client
        .lease_state(id)
        .await
        .expect("read")
        .expect("alive")
        .renewals;
    assert!(renewals >= 1, "renewed before abandoning: {renewals}");
    let abandoned_at = Instant::now();
    lease.abandon();

    eventually("the abandoned lease to expire", WAIT, || async {
        client
            .lease_state(id)
            .await
            .is_ok_and(|state| state.is_none())
    })
    .await;
    let expired_after = abandoned_at.elapsed();
    println!(
        "an abandoned lease with a {ttl:?} TTL expired {expired_after:?} after its last renewal stopped"
    );
    assert!(
        expired_after >= ttl - Duration::from_millis(ttl.as_millis() as u64 / 3 + 20),
        "not before a TTL after its last renewal: {expired_after:?}"
    );
    assert_eq!(
        client
            .get("/eph/crashed", Consistency::Quorum)
            .await
            .expect("read"),
        None,
        "the bound key went with the lease"
    );
    // Binding a key to the ended lease is refused.
    assert_eq!(
        client.put_with_lease("/eph/late", "x", id).await,
        Err(LockError::LeaseLost { lease: id })
    );
    cluster.shutdown().await;
}
