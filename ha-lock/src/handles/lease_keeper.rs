//! The task that expires leases: on whichever node leads, it feeds the applied leases to a
//! [`LeaseExpiryTracker`] and proposes the expiries it returns.

use std::time::Duration;

use ha_core::{Clock, Consistency, MonotonicClock, StateMachine};
use ha_replicate::driver::{ReplicaNode, RoleView};
use ha_replicate::engine::Role;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::table_session::TableSession;
use crate::command::{LeaseState, LockQuery, LockResponse};
use crate::lease_expiry::{
    EXPIRY_PROPOSAL_TIMEOUT, LEASE_TICK_INTERVAL_DEFAULT, LeaseExpiryTracker,
};
use crate::with_locks::WithLocks;

/// How long the local read of the leases may take.
const LEASES_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Expires leases whose holders stopped renewing them. Run one on every node: only the
/// node that leads acts, and a node that starts leading (or leads a new term) starts every
/// lease's TTL afresh, so a leader change never expires a live holder early. The decisions
/// are [`LeaseExpiryTracker`]'s; this task only reads the leases, gives it the time and the
/// term, and proposes what it returns.
///
/// It stops when dropped.
///
/// ```no_run
/// # fn example(node: &ha_replicate::driver::ReplicaNode<ha_lock::WithLocks<()>>) {
/// let keeper = ha_lock::LeaseKeeper::start(node);
/// // ... the node runs ...
/// drop(keeper);
/// # }
/// ```
pub struct LeaseKeeper {
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Start expiring leases for `node`, looking every [`LEASE_TICK_INTERVAL_DEFAULT`].
    pub fn start<H: StateMachine>(node: &ReplicaNode<WithLocks<H>>) -> Self {
        Self::with_tick_interval(node, LEASE_TICK_INTERVAL_DEFAULT)
    }

    /// Start expiring leases for `node`, looking every `tick_interval`.
    pub fn with_tick_interval<H: StateMachine>(
        node: &ReplicaNode<WithLocks<H>>,
        tick_interval: Duration,
    ) -> Self {
        let task = tokio::spawn(run(
            TableSession::new(node.client()),
            node.watch_role(),
            tick_interval,
        ));
        Self { task }
    }

    /// Stop now.
    pub fn stop(self) {
        // Drop aborts the task.
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<H: StateMachine>(
    client: TableSession<H>,
    roles: watch::Receiver<RoleView>,
    tick_interval: Duration,
) {
    let clock = MonotonicClock::new();
    let mut tracker = LeaseExpiryTracker::default();
    let mut ticks = tokio::time::interval(tick_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let view = roles.borrow().clone();
        let Some(term) = (view.role == Role::Leader).then_some(view.term) else {
            // The tracker forgets everything when not leading (and when leading a new term).
            tracker.on_tick(clock.now(), None, &[]);
            continue;
        };
        let leases = match client
            .read::<Vec<LeaseState>>(
                LockQuery::Leases,
                Consistency::Eventual,
                LEASES_READ_TIMEOUT,
            )
            .await
        {
            Ok(leases) => leases,
            // An answer of another kind is an error here too (ResponseUndecodable).
            Err(error) => {
                tracing::warn!(%error, "reading the leases failed");
                continue;
            }
        };
        // `now` is taken after the read: a renewal applied before the read returned was sent
        // before this instant, so its TTL counted from here ends after its holder's own.
        let expiries = tracker.on_tick(clock.now(), Some(term), &leases);
        for expiry in expiries {
            if roles.borrow().role != Role::Leader {
                // Not leading any more: the next tick forgets, and the new leader decides.
                break;
            }
            // Any answer is logged: an expiry that lost a race with a renewal is no error.
            match client
                .write::<LockResponse>(expiry.clone(), Consistency::Quorum, EXPIRY_PROPOSAL_TIMEOUT)
                .await
            {
                Ok((_, answer)) => match answer {
                    Some(LockResponse::LeaseEnded {
                        lease,
                        released_locks,
                        deleted_keys,
                    }) => tracing::info!(
                        lease = lease.0,
                        ?released_locks,
                        deleted_keys,
                        "lease expired"
                    ),
                    other => tracing::debug!(?expiry, ?other, "expiry not applied"),
                },
                Err(error) => tracing::warn!(?expiry, %error, "proposing a lease expiry failed"),
            }
        }
    }
}
