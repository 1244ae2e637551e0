//! What one queued acquire costs as a lock's line grows (issue 12, bug 2).
//!
//! Every queued acquire used to rebuild the whole wait-for graph (a line of `n` waiters is
//! `n²/2` edges) and search it once per session ahead, so the `n`-th waiter cost about `n²`
//! steps or more. The table now keeps its lines indexed and searches only what the new wait
//! reaches: a session that waits nowhere else reaches only its own line's holder, whatever the
//! line's length. Run on the code before the fix (with `KvLockTable::default()`, whose per-lock
//! limit was then 10,000), it did not finish: killed after 11 minutes in the debug profile.
//! The shipped per-lock limit is now lower (`WAITERS_PER_LOCK_MAX`, set by what waiters cost
//! to poll, not by this), so the table here raises it.
//!
//! It compares times, which a busy machine disturbs: it compares the median of 100 acquires at
//! the front of the line with the median of 100 at the back (a median ignores the few a
//! preemption slowed down), and allows a factor of 8 where the indexed table measures about 1
//! and the old one hundreds.

use std::time::{Duration, Instant};

use ha_core::LogIndex;
use ha_lock::{KvLockTable, LockCommand, LockLimits, LockResponse, SessionId};

/// How many sessions queue.
const WAITERS: u64 = 1_000;
/// How many acquires each median is taken over.
const SAMPLE: usize = 100;
/// How much slower the back of the line may be than its front.
const SLOWDOWN_MAX: u32 = 8;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
fn a_queued_acquire_costs_the_same_at_the_back_of_a_long_line() {
    let mut limits = LockLimits::default();
    limits.waiters_per_lock = WAITERS as usize;
    let mut table = KvLockTable::with_limits(limits);
    let mut index = 0;
    let mut apply = |table: &mut KvLockTable, command: LockCommand| {
        index += 1;
        table.apply(LogIndex(index), command)
    };
    let acquire = |session, lease| LockCommand::Acquire {
        name: "l".into(),
        session,
        lease,
        wait: true,
    };
    // Session 0 holds the lock; sessions 1 to WAITERS queue, each under its own lease (as HTTP
    // clients do).
    let holder_lease = match apply(
        &mut table,
        LockCommand::LeaseGrant {
            ttl_ms: 60_000,
            session: SessionId(0),
        },
    ) {
        LockResponse::LeaseGranted { lease, .. } => lease,
        other => panic!("lease grant: {other:?}"),
    };
    assert!(matches!(
        apply(&mut table, acquire(SessionId(0), holder_lease)),
        LockResponse::Granted { .. }
    ));
    let mut times = Vec::new();
    for session in 1..=WAITERS {
        let lease = match apply(
            &mut table,
            LockCommand::LeaseGrant {
                ttl_ms: 60_000,
                session: SessionId(session),
            },
        ) {
            LockResponse::LeaseGranted { lease, .. } => lease,
            other => panic!("lease grant: {other:?}"),
        };
        let started = Instant::now();
        let answer = apply(&mut table, acquire(SessionId(session), lease));
        times.push(started.elapsed());
        let position = usize::try_from(session - 1).expect("fits");
        assert_eq!(answer, LockResponse::Queued { position });
    }
    let front = median(times[..SAMPLE].to_vec());
    let back = median(times[times.len() - SAMPLE..].to_vec());
    println!(
        "median queued acquire: {front:?} at the front (waiters 1-{SAMPLE}), {back:?} at the \
         back (waiters {}-{WAITERS})",
        WAITERS - SAMPLE as u64 + 1
    );
    assert!(
        back <= front * SLOWDOWN_MAX,
        "an acquire at the back of a line of {WAITERS} took {back:?}, at the front {front:?}: \
         the cost grows with the line"
    );
}
