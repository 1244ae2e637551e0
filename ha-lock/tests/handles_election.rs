//! The leadership recipe on a real 3-node cluster: two clients campaign, the first leads,
//! observers see it; it resigns and the second takes over; the second's lease is lost and
//! observers see nobody.

mod handles_support;

use std::time::Duration;

use ha_lock::{LockError, election_key};
use handles_support::{Cluster, WAIT};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_resign_and_observe_move_leadership_between_two_clients() {
    let cluster = Cluster::start().await;
    let follower = cluster.follower().await;
    let first = cluster.client(follower);
    let second = cluster.client(cluster.leader().await);
    let observer_client = cluster.client((follower + 1) % 3);

    let mut observer = observer_client
        .locks()
        .observe("scheduler")
        .await
        .expect("observe");
    assert_eq!(observer.current(), None, "nobody leads yet");

    let first_term = first
        .locks()
        .campaign("scheduler", "first", TTL, WAIT)
        .await
        .expect("the first campaign wins at once");
    assert!(first_term.is_valid());
    let seen = tokio::time::timeout(WAIT, observer.changed())
        .await
        .expect("a change in time")
        .expect("read")
        .expect("a leader");
    assert_eq!(seen.value, b"first");
    assert_eq!(seen.key, election_key("scheduler"));
    assert_eq!(seen.lease, Some(first_term.lease_id()));
    let mut changes = observer.changes();

    // The second campaign waits in line.
    let campaigning = {
        let second = second.clone();
        tokio::spawn(async move {
            second
                .locks()
                .campaign("scheduler", "second", TTL, WAIT)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!campaigning.is_finished(), "one leader at a time");

    let first_token = first_term.token();
    first_term.resign().await.expect("resign");
    let second_term = tokio::time::timeout(WAIT, campaigning)
        .await
        .expect("in time")
        .expect("the task ran")
        .expect("the second campaign wins once the first resigns");
    assert!(second_term.token() > first_token);
    let seen = tokio::time::timeout(WAIT, observer.changed())
        .await
        .expect("a change in time")
        .expect("read")
        .expect("a leader");
    assert_eq!(seen.value, b"second");

    // The change log shows the hand-over in order: the first's key deleted with its lease,
    // then the second's value.
    let deleted = tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("in time")
        .expect("a change");
    assert_eq!(deleted.value, None);
    let published = tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("in time")
        .expect("a change");
    assert_eq!(published.value.as_deref(), Some(&b"second"[..]));

    // The second leader's lease is revoked behind its back: observers see nobody, and it
    // learns it lost the leadership.
    let lost = second_term.lost();
    first
        .leases()
        .revoke_lease(seen.lease.expect("bound to a lease"))
        .await
        .expect("revoke");
    tokio::time::timeout(WAIT, lost).await.expect("lost fires");
    assert!(!second_term.is_valid());
    let seen = tokio::time::timeout(WAIT, observer.changed())
        .await
        .expect("a change in time")
        .expect("read");
    assert_eq!(seen, None);
    assert!(matches!(
        second_term.resign().await,
        Ok(()) | Err(LockError::NotHolder { .. })
    ));
    cluster.shutdown().await;
}
