//! Leases on a real 3-node cluster: a renewed lease outlives several TTLs and revoking it
//! deletes its keys; a lease nobody renews is expired by the leader's `LeaseKeeper` and its
//! key disappears. A TTL under the minimum is refused.
//!
//! The assertions are the safety rules, not timings, so a busy machine cannot fail them:
//! renewals only move the safe deadline on, never further than a TTL past their sending, and
//! the lease is not lost while they reach the cluster; the cluster never ends a lease before
//! its holder's safe deadline (checked by QUORUM reads through another node while the holder
//! still trusts it, and at expiry); the renewal counts the cluster applied match what the
//! holder saw. TTLs are generous (seconds) so that renewals, which have a whole TTL to commit,
//! keep up on a loaded 2-core machine; how long things took is printed.

mod handles_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ha_core::Consistency;
use ha_lock::{LEASE_TTL_MIN, LeaseLoss, LeaseStatus, LockError, Session};
use handles_support::{Cluster, WAIT, eventually};

/// The renewed lease's TTL: renewals every third of it, each with most of a TTL to commit.
const RENEWED_TTL: Duration = Duration::from_secs(2);
/// Renewals the holder must see before the first test stops (about four TTLs of renewing).
const RENEWALS_WANTED: u64 = 6;
/// The longest the first test waits for those renewals.
const RENEWING_MAX: Duration = Duration::from_secs(60);
/// The most writes the busy writer makes (a bound on its loop).
const BUSY_WRITES_MAX: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_outlives_several_ttls_and_revoking_it_deletes_its_keys() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    // One session for everything: renewals queue with the other writes of the session.
    let client = Session::new(cluster.node(follower).client());
    // The cluster as another node sees it, through its own sessions.
    let observer = cluster.client((follower + 1) % handles_support::NODES);
    assert!(matches!(
        client.leases().grant(LEASE_TTL_MIN / 2).await,
        Err(LockError::Invalid { .. })
    ));
    let ttl = RENEWED_TTL;
    let lease = client.leases().grant(ttl).await.expect("grant");
    let id = lease.id();
    client
        .kv()
        .put_with_lease("/eph/worker", "alive", id)
        .await
        .expect("put bound to the lease");
    let mut status = lease.watch();

    // Meanwhile another task of the same session writes as fast as it can: the renewals
    // run beside those writes (pipelined on the one session) and not be lost.
    let stop = Arc::new(AtomicBool::new(false));
    let busy_writer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0_u64;
            while !stop.load(Ordering::Relaxed) && writes < BUSY_WRITES_MAX {
                client
                    .kv()
                    .put("/busy", writes.to_string(), Consistency::Quorum)
                    .await
                    .expect("a write on the shared session");
                writes += 1;
            }
            writes
        })
    };

    let started = Instant::now();
    let mut deadline = lease.safe_deadline().expect("alive after the grant");
    let mut renewals_seen = 0_u64;
    let mut cluster_checks = 0_u64;
    while renewals_seen < RENEWALS_WANTED || started.elapsed() < ttl * 2 {
        assert!(
            started.elapsed() < RENEWING_MAX,
            "only {renewals_seen} renewals in {RENEWING_MAX:?} with a {ttl:?} TTL"
        );
        if tokio::time::timeout(ttl / 4, status.changed())
            .await
            .is_ok()
        {
            let now = Instant::now();
            match status.borrow_and_update().clone() {
                LeaseStatus::Alive { safe_deadline } => {
                    // Renewals only move the deadline on, and never past a TTL from now: the
                    // renewal that set it was sent before now (the watch may have folded
                    // several renewals into one change, so only these bounds are exact).
                    assert!(
                        safe_deadline > deadline && safe_deadline <= now + ttl,
                        "a renewal moves the safe deadline on, by at most a TTL from its \
                         send time: {deadline:?} -> {safe_deadline:?} at {now:?}"
                    );
                    deadline = safe_deadline;
                    renewals_seen += 1;
                }
                LeaseStatus::Lost(loss) => panic!(
                    "the lease was lost after {:?} and {renewals_seen} renewals, with renewals \
                     sent every {:?} and a {ttl:?} TTL: {loss:?}",
                    started.elapsed(),
                    ttl / 3
                ),
            }
        }
        // The cluster never ends a lease its holder may still act on: a QUORUM read answered
        // before the holder's safe deadline (as it stood before the read was sent) finds it.
        let trusted_until = lease.safe_deadline().expect("alive while renewed");
        let state = observer.leases().lease_state(id).await;
        if Instant::now() < trusted_until {
            cluster_checks += 1;
            let state = state.expect("a QUORUM read through another node");
            assert!(
                state.is_some(),
                "the cluster ended lease {id} while its holder could still trust it"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = busy_writer.await.expect("the writer ran");
    println!(
        "a {ttl:?} lease: {renewals_seen} renewals in {:?} next to {writes} writes on the same \
         session; {cluster_checks} reads through another node found it alive",
        started.elapsed()
    );
    assert!(writes > 0, "the other writes of the session went on too");
    assert!(cluster_checks > 0, "the cluster's view was checked");
    let state = client
        .leases()
        .lease_state(id)
        .await
        .expect("read")
        .expect("alive on the cluster");
    assert!(
        state.renewals >= renewals_seen,
        "every renewal the holder saw was applied: {} < {renewals_seen}",
        state.renewals
    );
    assert!(
        client
            .kv()
            .get("/eph/worker", Consistency::Quorum)
            .await
            .expect("read")
            .is_some(),
        "the bound key is still there"
    );

    let watch = lease.watch();
    lease.revoke().await.expect("revoke");
    assert_eq!(*watch.borrow(), LeaseStatus::Lost(LeaseLoss::Revoked));
    assert_eq!(
        client
            .kv()
            .get("/eph/worker", Consistency::Quorum)
            .await
            .expect("read"),
        None
    );
    assert_eq!(client.leases().lease_state(id).await.expect("read"), None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_lease_is_expired_by_the_leader_and_its_key_disappears() {
    let cluster = Cluster::start().await;
    let client = cluster.client(cluster.follower().await);
    let ttl = Duration::from_secs(1);
    let lease = client.leases().grant(ttl).await.expect("grant");
    let id = lease.id();
    client
        .kv()
        .put_with_lease("/eph/crashed", "soon gone", id)
        .await
        .expect("put bound to the lease");
    // Renewed a few times, then no more, as a crashed holder would.
    eventually("two renewals applied", WAIT, || async {
        client
            .leases()
            .lease_state(id)
            .await
            .is_ok_and(|state| state.is_some_and(|state| state.renewals >= 2))
    })
    .await;
    let trusted_until = lease.safe_deadline().expect("alive while renewed");
    let abandoned_at = Instant::now();
    lease.abandon();

    // Expired, and never before the holder's safe deadline: a QUORUM read that finds it gone
    // was answered after the expiry was applied, so it must come after that deadline.
    let gone_at = loop {
        if client
            .leases()
            .lease_state(id)
            .await
            .is_ok_and(|state| state.is_none())
        {
            break Instant::now();
        }
        assert!(
            abandoned_at.elapsed() < WAIT,
            "the abandoned lease did not expire within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "an abandoned lease with a {ttl:?} TTL was seen expired {:?} after the renewals stopped",
        gone_at - abandoned_at
    );
    assert!(
        gone_at >= trusted_until,
        "the cluster ended the lease {:?} before its holder's safe deadline",
        trusted_until - gone_at
    );
    assert_eq!(
        client
            .kv()
            .get("/eph/crashed", Consistency::Quorum)
            .await
            .expect("read"),
        None,
        "the bound key went with the lease"
    );
    // Binding a key to the ended lease is refused.
    assert_eq!(
        client.kv().put_with_lease("/eph/late", "x", id).await,
        Err(LockError::LeaseLost { lease: id })
    );
    cluster.shutdown().await;
}
