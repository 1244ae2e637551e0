//! The deadlock detector: `WaitForGraph` on its own, and through `KvLockTable` commands, where
//! sessions enter the graph by queueing for a held lock and leave it by being granted,
//! cancelling their wait, or losing their lease.

use ha_core::LogIndex;
use ha_lock::{
    FencingToken, KvLockTable, LeaseId, LockCommand, LockQuery, LockQueryResponse, LockResponse,
};

/// Sessions in these cases are plain numbers, so each case reads as the edges it draws; the
/// wrappers below convert at the `ha_lock` boundary, where a session is an
/// [`ha_lock::SessionId`].
type SessionId = u64;

/// [`ha_lock::WaitForGraph`] with numbered sessions.
#[derive(Default)]
struct WaitForGraph(ha_lock::WaitForGraph);

impl WaitForGraph {
    fn add_wait(&mut self, waiter: SessionId, holder: SessionId) {
        self.0
            .add_wait(ha_lock::SessionId(waiter), ha_lock::SessionId(holder));
    }

    fn cycle_if_waits(&self, waiter: SessionId, holder: SessionId) -> Option<Vec<SessionId>> {
        self.0
            .cycle_if_waits(ha_lock::SessionId(waiter), ha_lock::SessionId(holder))
            .map(numbers)
    }
}

/// The sessions of a cycle as numbers.
fn numbers(cycle: Vec<ha_lock::SessionId>) -> Vec<SessionId> {
    cycle.into_iter().map(|session| session.0).collect()
}

/// The table's answer to a wait that closes `cycle`.
fn deadlock(cycle: &[SessionId]) -> LockResponse {
    LockResponse::Deadlock {
        cycle: cycle.iter().copied().map(ha_lock::SessionId).collect(),
    }
}

/// Checks that `cycle` is a cycle of `edges` that starts with `waiter` and then goes to
/// `holder`, lists each session once, and closes back on `waiter`.
fn assert_valid_cycle(
    edges: &[(SessionId, SessionId)],
    waiter: SessionId,
    holder: SessionId,
    cycle: &[SessionId],
) {
    assert_eq!(
        cycle.first(),
        Some(&waiter),
        "the cycle starts with the caller: {cycle:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for session in cycle {
        assert!(
            seen.insert(*session),
            "{session} is listed twice in {cycle:?}"
        );
    }
    if waiter == holder {
        assert_eq!(cycle, [waiter]);
        return;
    }
    assert_eq!(
        cycle.get(1),
        Some(&holder),
        "the caller's new wait comes first: {cycle:?}"
    );
    // Every later step is an existing wait, and the last session waits for the caller.
    for pair in cycle[1..].windows(2) {
        assert!(
            edges.contains(&(pair[0], pair[1])),
            "{} does not wait for {} ({cycle:?})",
            pair[0],
            pair[1]
        );
    }
    let last = *cycle.last().expect("a cycle of two or more");
    assert!(
        edges.contains(&(last, waiter)),
        "{last} does not wait for {waiter} ({cycle:?})"
    );
}

fn graph_of(edges: &[(SessionId, SessionId)]) -> WaitForGraph {
    let mut graph = WaitForGraph::default();
    for (waiter, holder) in edges {
        graph.add_wait(*waiter, *holder);
    }
    graph
}

#[test]
fn two_sessions_waiting_for_each_other_is_a_cycle() {
    let edges = [(1, 2)];
    let cycle = graph_of(&edges)
        .cycle_if_waits(2, 1)
        .expect("2 -> 1 -> 2 is a cycle");
    assert_eq!(cycle, vec![2, 1]);
    assert_valid_cycle(&edges, 2, 1, &cycle);
}

#[test]
fn three_sessions_in_a_ring_is_a_cycle_listed_from_the_caller() {
    // 1 waits for 2, 2 waits for 3; 3 waiting for 1 closes the ring.
    let edges = [(1, 2), (2, 3)];
    let cycle = graph_of(&edges)
        .cycle_if_waits(3, 1)
        .expect("3 -> 1 -> 2 -> 3 is a cycle");
    assert_eq!(cycle, vec![3, 1, 2]);
    assert_valid_cycle(&edges, 3, 1, &cycle);
}

#[test]
fn a_chain_is_not_a_cycle_until_its_end_waits_for_its_start() {
    let edges = [(1, 2), (2, 3)];
    let graph = graph_of(&edges);
    // 4 is outside the chain: waiting for its head only makes the chain longer.
    assert_eq!(graph.cycle_if_waits(4, 1), None);
    // Waiting for a session further down the chain does not close anything either.
    assert_eq!(graph.cycle_if_waits(1, 3), None);
    assert_eq!(graph.cycle_if_waits(4, 3), None);
    // The chain's tail waiting for its head closes it.
    let cycle = graph
        .cycle_if_waits(3, 1)
        .expect("3 -> 1 -> 2 -> 3 is a cycle");
    assert_valid_cycle(&edges, 3, 1, &cycle);
    // The middle waiting for the head closes the shorter ring 2 -> 1 -> 2.
    let cycle = graph.cycle_if_waits(2, 1).expect("2 -> 1 -> 2 is a cycle");
    assert_eq!(cycle, vec![2, 1]);
}

#[test]
fn waiting_for_oneself_is_a_cycle_of_one() {
    assert_eq!(WaitForGraph::default().cycle_if_waits(7, 7), Some(vec![7]));
    assert_eq!(graph_of(&[(7, 8)]).cycle_if_waits(7, 7), Some(vec![7]));
}

#[test]
fn the_empty_graph_has_no_cycle_between_distinct_sessions() {
    assert_eq!(WaitForGraph::default().cycle_if_waits(1, 2), None);
}

#[test]
fn a_diamond_reaches_its_bottom_by_two_paths_without_a_cycle() {
    // 1 waits for 2 and 3 (two locks), both of which wait for 4.
    let edges = [(1, 2), (1, 3), (2, 4), (3, 4)];
    let graph = graph_of(&edges);
    // Reaching 4 twice during the search is not a cycle.
    assert_eq!(graph.cycle_if_waits(5, 1), None);
    assert_eq!(graph.cycle_if_waits(4, 5), None);
    assert_eq!(graph.cycle_if_waits(1, 4), None);
    // The bottom waiting for the top closes a cycle through one of the two sides.
    let cycle = graph
        .cycle_if_waits(4, 1)
        .expect("4 -> 1 -> 2 or 3 -> 4 is a cycle");
    assert_eq!(cycle.len(), 3);
    assert_valid_cycle(&edges, 4, 1, &cycle);
    // A side waiting for the top closes a cycle through that side only.
    let cycle = graph.cycle_if_waits(3, 1).expect("3 -> 1 -> 3 is a cycle");
    assert_eq!(cycle, vec![3, 1]);
}

#[test]
fn a_cycle_behind_a_dead_end_branch_is_still_found() {
    // 1 waits for 2 and 5; the branch through 2 is a dead end (2 -> 3 -> 4), the branch
    // through 5 leads back to 6. The search must backtrack out of the dead end and report a
    // path without the sessions it visited there.
    let edges = [(1, 2), (2, 3), (3, 4), (1, 5), (5, 6)];
    let graph = graph_of(&edges);
    let cycle = graph
        .cycle_if_waits(6, 1)
        .expect("6 -> 1 -> 5 -> 6 is a cycle");
    assert_eq!(cycle, vec![6, 1, 5]);
    assert_valid_cycle(&edges, 6, 1, &cycle);
}

#[test]
fn a_cycle_not_through_the_caller_is_not_the_callers_deadlock() {
    // 2 and 3 already wait for each other (the table should never let this happen, but see
    // `a_hand_off_never_closes_a_cycle`, and the search must not loop forever on it); 1 waiting
    // for 2 does not close a cycle through 1.
    let graph = graph_of(&[(2, 3), (3, 2)]);
    assert_eq!(graph.cycle_if_waits(1, 2), None);
}

#[test]
fn a_long_chain_closed_by_its_tail_reports_every_session_once() {
    // A ring of 64 sessions: the reported cycle has all of them, in order from the caller.
    let edges: Vec<(SessionId, SessionId)> =
        (1..64).map(|session| (session, session + 1)).collect();
    let graph = graph_of(&edges);
    let cycle = graph
        .cycle_if_waits(64, 1)
        .expect("64 -> 1 -> ... -> 64 is a cycle");
    let expected: Vec<SessionId> = std::iter::once(64).chain(1..64).collect();
    assert_eq!(cycle, expected);
    assert_eq!(graph.cycle_if_waits(65, 1), None);
}

/// The search recurses once per session on the path. A chain as long as the number of
/// sessions a cluster might have must not overflow the stack of the thread that applies the
/// command, or every replica would abort on the same entry. 100_000 sessions each holding one
/// lock and waiting for the next is an unusual but valid state (nothing bounds the number of
/// locks or sessions). The test runs on a 2 MiB thread, tokio's default worker stack.
#[test]
fn a_very_long_chain_does_not_overflow_the_stack() {
    let sessions: SessionId = 100_000;
    let worker = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let mut graph = WaitForGraph::default();
            for session in 1..sessions {
                graph.add_wait(session, session + 1);
            }
            (
                graph.cycle_if_waits(sessions + 1, 1),
                graph.cycle_if_waits(sessions, 1).map(|cycle| cycle.len()),
            )
        })
        .expect("spawn the worker");
    let (outside, ring) = worker.join().expect("the detector did not crash");
    assert_eq!(outside, None);
    assert_eq!(ring, Some(usize::try_from(sessions).expect("fits")));
}

/// A lock table driven one command at a time at increasing log indexes.
struct Table {
    table: KvLockTable,
    index: u64,
}

impl Table {
    fn new() -> Self {
        Self {
            table: KvLockTable::default(),
            index: 0,
        }
    }

    fn apply(&mut self, command: LockCommand) -> LockResponse {
        self.index += 1;
        self.table.apply(LogIndex(self.index), command)
    }

    /// A lease for `session`; its id is returned.
    fn lease(&mut self, session: SessionId) -> LeaseId {
        match self.apply(LockCommand::LeaseGrant {
            ttl_ms: 10_000,
            session: ha_lock::SessionId(session),
        }) {
            LockResponse::LeaseGranted { lease, .. } => lease,
            other => panic!("lease grant answered {other:?}"),
        }
    }

    fn acquire(&mut self, name: &str, session: SessionId, lease: LeaseId) -> LockResponse {
        self.apply(LockCommand::Acquire {
            name: name.into(),
            session: ha_lock::SessionId(session),
            lease,
            wait: true,
        })
    }

    /// Acquire a free lock; its token is returned.
    fn hold(&mut self, name: &str, session: SessionId, lease: LeaseId) -> FencingToken {
        match self.acquire(name, session, lease) {
            LockResponse::Granted { token } => token,
            other => panic!("{session} acquiring free lock {name} got {other:?}"),
        }
    }

    /// A cycle in the wait-for graph of the whole table (each waiter waits for its lock's
    /// holder), found from the table's observable state, by following waits from every session.
    fn cycle(&self) -> Option<Vec<SessionId>> {
        let mut edges: std::collections::BTreeMap<SessionId, Vec<SessionId>> = Default::default();
        for name in ["a", "b", "c"] {
            if let LockQueryResponse::Lock(Some(state)) =
                self.table.query(&LockQuery::Lock { name: name.into() })
            {
                for (waiter, _) in state.waiters {
                    edges.entry(waiter.0).or_default().push(state.holder.0);
                }
            }
        }
        let mut graph = WaitForGraph::default();
        for (waiter, holders) in &edges {
            for holder in holders {
                graph.add_wait(*waiter, *holder);
            }
        }
        // A cycle through an existing edge w -> h is what w waiting for h again would close.
        edges.iter().find_map(|(waiter, holders)| {
            holders
                .iter()
                .find_map(|holder| graph.cycle_if_waits(*waiter, *holder))
        })
    }

    fn holder(&self, name: &str) -> Option<SessionId> {
        match self.table.query(&LockQuery::Lock { name: name.into() }) {
            LockQueryResponse::Lock(state) => state.map(|state| state.holder.0),
            other => panic!("lock query answered {other:?}"),
        }
    }
}

#[test]
fn the_table_refuses_the_wait_that_closes_a_two_session_cycle() {
    let mut table = Table::new();
    let (lease_1, lease_2) = (table.lease(1), table.lease(2));
    table.hold("a", 1, lease_1);
    table.hold("b", 2, lease_2);
    assert_eq!(
        table.acquire("b", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(table.acquire("a", 2, lease_2), deadlock(&[2, 1]));
    // The refused wait was not queued: 1 still waits for b, and nobody waits for a.
    match table.table.query(&LockQuery::Lock { name: "a".into() }) {
        LockQueryResponse::Lock(Some(state)) => assert!(state.waiters.is_empty()),
        other => panic!("lock a: {other:?}"),
    }
}

#[test]
fn the_table_refuses_the_wait_that_closes_a_three_session_cycle() {
    let mut table = Table::new();
    let leases: Vec<LeaseId> = (1..=3).map(|session| table.lease(session)).collect();
    table.hold("a", 1, leases[0]);
    table.hold("b", 2, leases[1]);
    table.hold("c", 3, leases[2]);
    // 1 waits for 2, 2 waits for 3.
    assert_eq!(
        table.acquire("b", 1, leases[0]),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        table.acquire("c", 2, leases[1]),
        LockResponse::Queued { position: 0 }
    );
    // 3 waiting for 1 closes the ring; 4 waiting for 1 does not.
    assert_eq!(table.acquire("a", 3, leases[2]), deadlock(&[3, 1, 2]));
    let lease_4 = table.lease(4);
    assert_eq!(
        table.acquire("a", 4, lease_4),
        LockResponse::Queued { position: 0 }
    );
}

#[test]
fn the_table_refuses_a_session_waiting_for_a_lock_it_holds_under_another_lease() {
    let mut table = Table::new();
    let first = table.lease(1);
    let second = table.lease(1);
    table.hold("a", 1, first);
    // The same session and lease is a retry and gets the same grant; another lease of the
    // same session would wait for itself forever.
    assert_eq!(table.acquire("a", 1, second), deadlock(&[1]));
}

#[test]
fn no_deadlock_after_the_waiter_cancels() {
    let mut table = Table::new();
    let (lease_1, lease_2) = (table.lease(1), table.lease(2));
    table.hold("a", 1, lease_1);
    table.hold("b", 2, lease_2);
    assert_eq!(
        table.acquire("a", 2, lease_2),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        table.apply(LockCommand::CancelWait {
            name: "a".into(),
            session: ha_lock::SessionId(2)
        }),
        LockResponse::Cancelled
    );
    // 2 no longer waits for 1, so 1 may wait for 2.
    assert_eq!(
        table.acquire("b", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
}

#[test]
fn no_deadlock_after_the_waiter_is_granted() {
    let mut table = Table::new();
    let (lease_1, lease_2) = (table.lease(1), table.lease(2));
    let token_a = table.hold("a", 1, lease_1);
    table.hold("b", 2, lease_2);
    assert_eq!(
        table.acquire("a", 2, lease_2),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        table.apply(LockCommand::Release {
            name: "a".into(),
            token: token_a
        }),
        LockResponse::Released
    );
    assert_eq!(table.holder("a"), Some(2));
    // 2 holds both locks and waits for nobody: 1 waiting for it is no cycle.
    assert_eq!(
        table.acquire("b", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        table.acquire("a", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
}

#[test]
fn no_deadlock_after_the_waiters_lease_ends() {
    let mut table = Table::new();
    let lease_1 = table.lease(1);
    // Session 2 holds b under one lease and waits for a under another.
    let holding_lease = table.lease(2);
    let waiting_lease = table.lease(2);
    table.hold("a", 1, lease_1);
    table.hold("b", 2, holding_lease);
    assert_eq!(
        table.acquire("a", 2, waiting_lease),
        LockResponse::Queued { position: 0 }
    );
    assert!(matches!(
        table.apply(LockCommand::LeaseRevoke {
            lease: waiting_lease
        }),
        LockResponse::LeaseEnded { .. }
    ));
    // The wait ended with its lease while b is still held: 1 may wait for 2.
    assert_eq!(table.holder("b"), Some(2));
    assert_eq!(
        table.acquire("b", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
}

#[test]
fn no_deadlock_after_the_holders_lease_expires() {
    let mut table = Table::new();
    let (lease_1, lease_2) = (table.lease(1), table.lease(2));
    table.hold("a", 1, lease_1);
    table.hold("b", 2, lease_2);
    assert_eq!(
        table.acquire("b", 1, lease_1),
        LockResponse::Queued { position: 0 }
    );
    // 2's lease expires: b passes to 1, and 2 waits for nobody.
    assert!(matches!(
        table.apply(LockCommand::LeaseExpire {
            lease: lease_2,
            renewals: 0
        }),
        LockResponse::LeaseEnded { .. }
    ));
    assert_eq!(table.holder("b"), Some(1));
    let lease_2_again = table.lease(2);
    assert_eq!(
        table.acquire("a", 2, lease_2_again),
        LockResponse::Queued { position: 0 }
    );
}

/// FIFO hand-off can close a cycle that no acquire was refused for: a waiter queued behind
/// another waiter will wait for *that* session once it is granted, but the graph only has
/// edges from waiters to the current holder.
///
/// Session 3 holds a. Session 1 queues for a. Session 2 holds b and queues for a behind 1.
/// Session 1 queues for b (edge 1 -> 2): the graph has 1 -> 3, 2 -> 3, 1 -> 2, no cycle, so it
/// is accepted. Session 3 releases a; it passes to 1. Now 1 holds a and waits for b, 2 holds b
/// and waits for a: a deadlock the detector was meant to refuse.
#[test]
fn a_hand_off_never_closes_a_cycle() {
    let mut table = Table::new();
    let leases: Vec<LeaseId> = (1..=3).map(|session| table.lease(session)).collect();
    let token_a = table.hold("a", 3, leases[2]);
    assert_eq!(
        table.acquire("a", 1, leases[0]),
        LockResponse::Queued { position: 0 }
    );
    table.hold("b", 2, leases[1]);
    assert_eq!(
        table.acquire("a", 2, leases[1]),
        LockResponse::Queued { position: 1 }
    );
    // This is the wait that makes the deadlock inevitable: 2 is behind 1 for a. The detector
    // may refuse it here, or the hand-off below must not create the cycle; either way the
    // table must end without one.
    let closing = table.acquire("b", 1, leases[0]);
    assert_eq!(
        table.apply(LockCommand::Release {
            name: "a".into(),
            token: token_a
        }),
        LockResponse::Released
    );
    let cycle = table.cycle();
    assert_eq!(
        cycle, None,
        "1 queued for b with {closing:?}; after a passed to 1 the sessions wait for each other"
    );
}

/// A session in two lines waits, in each, only for those ahead of it: whether a wait closes a
/// cycle through such a session depends on its place in the line. The table's index follows a
/// session that waits in several lines from each of its places (issue 12), and must bound the
/// search at that place, not take the whole line.
#[test]
fn a_session_in_two_lines_waits_only_for_those_ahead_of_it_in_each() {
    for two_is_ahead_of_three in [true, false] {
        let mut table = Table::new();
        let leases: Vec<LeaseId> = (1..=3).map(|session| table.lease(session)).collect();
        table.hold("a", 1, leases[0]);
        table.hold("b", 3, leases[2]);
        let (first, second) = if two_is_ahead_of_three {
            (2, 3)
        } else {
            (3, 2)
        };
        let lease_of = |session: SessionId| leases[session as usize - 1];
        assert_eq!(
            table.acquire("a", first, lease_of(first)),
            LockResponse::Queued { position: 0 }
        );
        assert_eq!(
            table.acquire("a", second, lease_of(second)),
            LockResponse::Queued { position: 1 }
        );
        // 2 asks for b, which 3 holds. 3 waits for a: for 1, and for 2 only if 2 is ahead.
        let answer = table.acquire("b", 2, leases[1]);
        if two_is_ahead_of_three {
            assert_eq!(answer, deadlock(&[2, 3]));
        } else {
            assert_eq!(answer, LockResponse::Queued { position: 0 });
        }
        assert_eq!(table.cycle(), None);
    }
}

/// A cycle through a waiter that waits in two lines, found from the line it shares: 4 asks
/// for a (held by 1, with 2 and 3 in line); 3 also waits for c, which 4 holds.
#[test]
fn a_cycle_through_a_waiter_in_two_lines_is_found() {
    let mut table = Table::new();
    let leases: Vec<LeaseId> = (1..=4).map(|session| table.lease(session)).collect();
    table.hold("a", 1, leases[0]);
    table.hold("c", 4, leases[3]);
    for (session, position) in [(2, 0), (3, 1)] {
        assert_eq!(
            table.acquire("a", session, leases[session as usize - 1]),
            LockResponse::Queued { position }
        );
    }
    assert_eq!(
        table.acquire("c", 3, leases[2]),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(table.acquire("a", 4, leases[3]), deadlock(&[4, 3]));
    // Once 3 stops waiting for c, 4 may queue for a.
    assert_eq!(
        table.apply(LockCommand::CancelWait {
            name: "c".into(),
            session: ha_lock::SessionId(3)
        }),
        LockResponse::Cancelled
    );
    assert_eq!(
        table.acquire("a", 4, leases[3]),
        LockResponse::Queued { position: 2 }
    );
}

/// A chain of holders each waiting for the next lock, as long as the table allows waits: the
/// search walks it (one step per session) and finds the cycle its end would close.
#[test]
fn a_long_chain_of_holders_through_the_table_is_walked_to_its_end() {
    let mut table = Table::new();
    let sessions: SessionId = 2_000;
    let leases: Vec<LeaseId> = (1..=sessions).map(|session| table.lease(session)).collect();
    for session in 1..=sessions {
        table.hold(
            &format!("l{session}"),
            session,
            leases[session as usize - 1],
        );
    }
    // Session i waits for lock i + 1.
    for session in 1..sessions {
        assert_eq!(
            table.acquire(
                &format!("l{}", session + 1),
                session,
                leases[session as usize - 1]
            ),
            LockResponse::Queued { position: 0 }
        );
    }
    match table.acquire("l1", sessions, leases[sessions as usize - 1]) {
        LockResponse::Deadlock { cycle } => {
            let expected: Vec<SessionId> = std::iter::once(sessions).chain(1..sessions).collect();
            assert_eq!(numbers(cycle), expected);
        }
        other => panic!("the chain's end waiting for its start answered {other:?}"),
    }
}
