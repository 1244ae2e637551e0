//! One `Session`'s `Kv`, `Leases` and `Locks` handles are one lock-table session on a real
//! 3-node cluster: the lease the `Leases` handle grants belongs to the session, the lock the
//! `Locks` handle takes under it is held by the session, the key the `Kv` handle binds to it
//! goes with it, and a second `Session` is another holder (it is refused the held lock).

mod handles_support;

use std::time::Duration;

use ha_core::Consistency;
use ha_lock::LockError;
use handles_support::Cluster;

const TTL: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handles_of_one_session_are_one_holder_and_another_session_is_not() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let session = cluster.client(follower);
    let (kv, leases, locks) = (session.kv(), session.leases(), session.locks());
    assert_eq!(kv.session(), session.session());
    assert_eq!(leases.session(), session.session());
    assert_eq!(locks.session(), session.session());

    let lease = leases.grant(TTL).await.expect("grant");
    let state = leases
        .lease_state(lease.id())
        .await
        .expect("read the lease")
        .expect("the lease exists");
    assert_eq!(
        state.session,
        session.session(),
        "the lease is the session's"
    );

    let guard = locks
        .acquire_with_lease("shared", &lease, Duration::from_secs(5))
        .await
        .expect("acquire under the session's lease");
    kv.put_with_lease("/holders/shared", "me", lease.id())
        .await
        .expect("a key bound to the lease");
    let held = locks
        .lock_state("shared")
        .await
        .expect("read the lock")
        .expect("held");
    assert_eq!(held.holder, session.session(), "the lock is the session's");
    assert_eq!(held.token, guard.token());

    // Another session is another holder: it may not take the lock meanwhile.
    let other = cluster.client(follower);
    assert_ne!(other.session(), session.session());
    match other.locks().try_acquire("shared", TTL).await {
        Err(LockError::Busy { holder, .. }) => assert_eq!(holder, session.session()),
        Err(error) => panic!("refused for another reason: {error}"),
        Ok(guard) => panic!("another session took a held lock (token {})", guard.token()),
    }

    // Ending the lease ends what each handle bound to it.
    let (token, _) = guard.detach();
    assert_eq!(token, held.token);
    lease.revoke().await.expect("revoke");
    assert_eq!(
        kv.get("/holders/shared", Consistency::Quorum)
            .await
            .expect("read"),
        None,
        "the key went with the lease"
    );
    assert_eq!(locks.lock_state("shared").await.expect("read"), None);
    cluster.shutdown().await;
}
