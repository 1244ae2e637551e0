//! Locks through the `Kv`, `Leases` and `Locks` handles on a real 3-node cluster: tokens that only grow across holders,
//! FIFO hand-off, try-acquire, wait timeouts, deadlock refusal, a guard that learns its lease
//! was revoked, and a fenced resource that refuses the stale holder.

mod handles_support;

use std::time::{Duration, Instant};

use ha_lock::{
    FencedResource, FencingToken, LeaseLoss, LockError, LockGuard, Session, SessionId, StaleToken,
};
use handles_support::{Cluster, WAIT, eventually};
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(2);

type Acquiring = JoinHandle<Result<LockGuard<()>, LockError>>;

fn spawn_acquire(client: &Session<()>, name: &'static str, wait: Duration) -> Acquiring {
    let client = client.clone();
    tokio::spawn(async move { client.locks().acquire(name, TTL, wait).await })
}

async fn granted(acquiring: Acquiring) -> LockGuard<()> {
    tokio::time::timeout(WAIT, acquiring)
        .await
        .expect("granted in time")
        .expect("the task ran")
        .expect("granted")
}

/// Wait until lock `name` has exactly these waiting sessions, in order.
async fn wait_for_waiters(client: &Session<()>, name: &str, sessions: &[SessionId]) {
    eventually("the waiters to line up", WAIT, || async {
        client.locks().lock_state(name).await.is_ok_and(|state| {
            state.is_some_and(|state| {
                state
                    .waiters
                    .iter()
                    .map(|(session, _)| *session)
                    .eq(sessions.iter().copied())
            })
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_and_release_give_strictly_increasing_tokens_across_holders() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower().await;
    let clients = [cluster.client(follower), cluster.client(leader)];
    let mut last_token = FencingToken(0);
    let mut latencies = Vec::new();
    for round in 0..20 {
        let client = &clients[round % 2];
        let started = Instant::now();
        let guard = client
            .locks()
            .acquire("counter", TTL, WAIT)
            .await
            .expect("acquire a free lock");
        assert!(
            guard.token() > last_token,
            "token {} after {last_token}",
            guard.token()
        );
        assert!(guard.is_valid());
        let deadline = guard.safe_deadline().expect("alive");
        assert!(deadline > Instant::now() && deadline <= Instant::now() + TTL);
        last_token = guard.token();
        guard.release().await.expect("release");
        latencies.push(started.elapsed());
        assert_eq!(
            client.locks().lock_state("counter").await.expect("read"),
            None
        );
    }
    latencies.sort();
    println!(
        "acquire+release of a free lock (grant, acquire, release, revoke: 4 QUORUM writes) over \
         {} rounds: median {:?}, min {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[0],
        latencies[latencies.len() - 1]
    );

    // Locks under a lease the caller keeps: releasing the lock leaves the lease.
    let client = &clients[0];
    let lease = client.leases().grant(TTL).await.expect("grant");
    let first = client
        .locks()
        .acquire_with_lease("a", &lease, WAIT)
        .await
        .expect("acquire a");
    let second = client
        .locks()
        .acquire_with_lease("b", &lease, WAIT)
        .await
        .expect("acquire b");
    assert!(second.token() > first.token());
    first.release().await.expect("release a");
    assert!(
        lease.is_valid(),
        "the lease outlives a lock released under it"
    );
    assert!(
        client
            .leases()
            .lease_state(lease.id())
            .await
            .expect("read")
            .is_some()
    );
    // Ending the lease releases what is still held under it.
    lease.revoke().await.expect("revoke");
    assert_eq!(client.locks().lock_state("b").await.expect("read"), None);
    assert!(!second.is_valid());
    assert!(matches!(
        second.release().await,
        Err(LockError::NotHolder { .. })
    ));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_granted_in_fifo_order() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let holder = cluster.client(follower);
    let first = cluster.client(follower);
    let second = cluster.client(cluster.leader().await);

    let held = holder
        .locks()
        .acquire("fifo", TTL, WAIT)
        .await
        .expect("acquire");
    let first_waiting = spawn_acquire(&first, "fifo", WAIT);
    wait_for_waiters(&holder, "fifo", &[first.session()]).await;
    let second_waiting = spawn_acquire(&second, "fifo", WAIT);
    wait_for_waiters(&holder, "fifo", &[first.session(), second.session()]).await;

    let held_token = held.token();
    held.release().await.expect("release");
    let first_guard = granted(first_waiting).await;
    assert!(first_guard.token() > held_token);
    let state = holder
        .locks()
        .lock_state("fifo")
        .await
        .expect("read")
        .expect("held");
    assert_eq!(state.holder, first.session(), "the first in line got it");
    assert_eq!(state.token, first_guard.token());
    assert!(!second_waiting.is_finished(), "the second still waits");

    let first_token = first_guard.token();
    first_guard.release().await.expect("release");
    let second_guard = granted(second_waiting).await;
    assert!(second_guard.token() > first_token);
    second_guard.release().await.expect("release");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_acquire_on_a_held_lock_is_busy_and_a_timed_out_wait_leaves_no_waiter() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let holder = cluster.client(follower);
    let other = cluster.client(cluster.leader().await);
    let held = holder
        .locks()
        .acquire("busy", TTL, WAIT)
        .await
        .expect("acquire");

    assert_eq!(
        other.locks().try_acquire("busy", TTL).await.err(),
        Some(LockError::Busy {
            name: "busy".into(),
            holder: holder.session(),
        })
    );

    let wait = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(
        other.locks().acquire("busy", TTL, wait).await.err(),
        Some(LockError::WaitTimedOut {
            name: "busy".into()
        })
    );
    let waited = started.elapsed();
    // Not before its wait ran out; and it did give up (the bound is only "did not hang": how
    // long past its wait the answer took depends on the machine's load).
    assert!(waited >= wait && waited < WAIT, "{waited:?}");
    let state = holder
        .locks()
        .lock_state("busy")
        .await
        .expect("read")
        .expect("held");
    assert_eq!(state.holder, holder.session());
    assert!(state.waiters.is_empty(), "no waiter left: {state:?}");

    // Released with nobody in line, the lock is free, and try_acquire gets it.
    held.release().await.expect("release");
    assert_eq!(holder.locks().lock_state("busy").await.expect("read"), None);
    // A TTL far longer than the wait below, so a lock freed within the wait was freed by the
    // drop's background release, not by expiry, however slow the machine.
    let long_ttl = WAIT * 3;
    let guard = other
        .locks()
        .try_acquire("busy", long_ttl)
        .await
        .expect("free now");

    // A guard dropped without release is released in the background, well before its TTL.
    let dropped_at = Instant::now();
    drop(guard);
    eventually("the dropped guard's lock to be released", WAIT, || async {
        holder
            .locks()
            .lock_state("busy")
            .await
            .is_ok_and(|state| state.is_none())
    })
    .await;
    println!(
        "a dropped guard's lock was free after {:?}",
        dropped_at.elapsed()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_between_two_sessions_is_refused_at_once_with_the_cycle() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let alice = cluster.client(follower);
    let bob = cluster.client(cluster.leader().await);
    let alice_first = alice
        .locks()
        .acquire("first", TTL, WAIT)
        .await
        .expect("acquire");
    let bob_second = bob
        .locks()
        .acquire("second", TTL, WAIT)
        .await
        .expect("acquire");

    // Alice waits for Bob's lock...
    let alice_waiting = spawn_acquire(&alice, "second", WAIT);
    wait_for_waiters(&bob, "second", &[alice.session()]).await;
    // ...so Bob waiting for Alice's would close the cycle: refused at once.
    let started = Instant::now();
    assert_eq!(
        bob.locks().acquire("first", TTL, WAIT).await.err(),
        Some(LockError::Deadlock {
            name: "first".into(),
            cycle: vec![bob.session(), alice.session()],
        })
    );
    // Refused, not waited out: a wait would have lasted WAIT and ended in WaitTimedOut.
    assert!(
        started.elapsed() < WAIT,
        "refused without waiting: {:?}",
        started.elapsed()
    );
    let state = alice
        .locks()
        .lock_state("first")
        .await
        .expect("read")
        .expect("held");
    assert!(state.waiters.is_empty(), "Bob is not in line");

    // Bob backs off; Alice gets his lock.
    bob_second.release().await.expect("release");
    let alice_second = granted(alice_waiting).await;
    alice_second.release().await.expect("release");
    alice_first.release().await.expect("release");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_learns_its_lease_was_revoked_and_a_fenced_resource_refuses_its_token() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let stale = cluster.client(follower);
    let successor = cluster.client(cluster.leader().await);
    let resource = FencedResource::new(Vec::new());

    // Long enough that the holder's next renewal, not its safe deadline, tells it the lease
    // ended (`Ended`, not `DeadlinePassed`), however slowly that renewal gets through.
    let ttl = Duration::from_secs(3);
    let guard = stale
        .locks()
        .acquire("fenced", ttl, WAIT)
        .await
        .expect("acquire");
    resource
        .write(guard.token(), |log| {
            log.push("stale holder, while it held the lock")
        })
        .expect("the holder's token is accepted");
    let lost = guard.lost();

    // The lease is revoked behind the holder's back (as if it paused past its TTL).
    assert!(
        successor
            .leases()
            .revoke_lease(guard.lease_id())
            .await
            .expect("revoke")
    );
    let started = Instant::now();
    let loss = tokio::time::timeout(WAIT, lost).await.expect("lost fires");
    println!(
        "a guard learned that its lease ({ttl:?} TTL) was revoked after {:?}",
        started.elapsed()
    );
    assert_eq!(loss, LeaseLoss::Ended);
    assert!(!guard.is_valid());
    assert_eq!(guard.safe_deadline(), None);

    // The lock moved on with a larger token; the successor writes.
    let next = successor
        .locks()
        .acquire("fenced", ttl, WAIT)
        .await
        .expect("acquire");
    assert!(next.token() > guard.token());
    resource
        .write(next.token(), |log| log.push("successor"))
        .expect("the successor's token is accepted");

    // The old holder writes late with its old token: refused, and the log is unchanged.
    assert_eq!(
        resource.write(guard.token(), |log| log.push("stale write")),
        Err(StaleToken {
            presented: guard.token(),
            highest: next.token(),
        })
    );
    assert_eq!(
        resource.read(|log| log.clone()),
        ["stale holder, while it held the lock", "successor"]
    );
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotHolder { .. })
    ));
    next.release().await.expect("release");
    cluster.shutdown().await;
}

/// Issue 13: a lock taken with a holder key is released only by a release that presents it.
/// The token alone (a log index, easy to guess) or another key is refused on the cluster and
/// the lock stays held; the guard releases itself with its key; a waiter that asked with its
/// own key is handed the lock with that key; after `detach`, `release_with_holder` with the
/// key releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_with_a_holder_key_is_released_only_with_it() {
    // Long enough that the detached lease cannot expire under a loaded machine.
    const LONG_TTL: Duration = Duration::from_secs(30);
    let cluster = Cluster::start().await;
    let owner = cluster.client(cluster.follower().await);
    let other = cluster.client(cluster.leader().await);
    let key = ha_lock::new_holder_key();
    let guard = owner
        .locks()
        .try_acquire_with_holder("keyed", LONG_TTL, key)
        .await
        .expect("a free lock");
    let token = guard.token();
    let refused = [
        other.locks().release("keyed", token).await,
        other
            .locks()
            .release_with_holder("keyed", token, &ha_lock::new_holder_key())
            .await,
        other
            .locks()
            .release_with_holder("keyed", FencingToken(token.0 + 1), &key)
            .await,
    ];
    for answer in refused {
        assert!(
            matches!(answer, Err(LockError::NotHolder { .. })),
            "{answer:?}"
        );
    }
    let state = other.locks().lock_state("keyed").await.expect("read");
    assert_eq!(state.map(|state| state.token), Some(token), "still held");

    let waiter_key = ha_lock::new_holder_key();
    let waiting = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .locks()
                .acquire_with_holder("keyed", LONG_TTL, WAIT, waiter_key)
                .await
        })
    };
    wait_for_waiters(&owner, "keyed", &[other.session()]).await;
    guard
        .release()
        .await
        .expect("the guard releases with its key");
    let second = granted(waiting).await;
    assert!(second.token() > token);
    let (second_token, _lease) = second.detach();
    assert!(matches!(
        owner
            .locks()
            .release_with_holder("keyed", second_token, &key)
            .await,
        Err(LockError::NotHolder { .. })
    ));
    assert!(matches!(
        owner.locks().release("keyed", second_token).await,
        Err(LockError::NotHolder { .. })
    ));
    owner
        .locks()
        .release_with_holder("keyed", second_token, &waiter_key)
        .await
        .expect("released with the waiter's key");
    assert_eq!(owner.locks().lock_state("keyed").await.expect("read"), None);
    cluster.shutdown().await;
}
