//! What the failover history and the status say about a leadership change: how long the
//! cluster was leaderless, and when each peer was last heard, across terms.

use crate::engine_support;
use crate::engine_support::messages::append_request;

use engine_support::{elect, engine, id};
use ha_core::{LogIndex, Millis, Term};
use ha_replicate::engine::{Engine, Message, Role, TimerKind};
use ha_replicate::entry::{LeaderStart, Payload};

/// The `LeaderStart` this engine appended when it won (its last entry).
fn leader_start(engine: &Engine) -> LeaderStart {
    match engine
        .entry(engine.last_index())
        .map(|entry| &entry.payload)
    {
        Some(Payload::LeaderStart(start)) => start.clone(),
        other => panic!("the last entry is not a LeaderStart: {other:?}"),
    }
}

/// Fire check-quorum with nobody answering until the leader steps down; returns when.
fn lose_quorum(engine: &mut Engine, from: Millis) -> Millis {
    let mut now = from;
    for _ in 0..8 {
        now = Millis(now.0 + 1_000);
        let generation = engine.timer_generation(TimerKind::CheckQuorum);
        engine.on_timer(now, TimerKind::CheckQuorum, generation);
        engine.drain_effects();
        if engine.role() != Role::Leader {
            return now;
        }
    }
    panic!("the leader kept leading with nobody answering");
}

/// b grants a's vote in `term` at `now`.
fn win(engine: &mut Engine, now: Millis, term: u64) {
    engine.campaign(now);
    engine.drain_effects();
    engine.on_message(
        Millis(now.0 + 1),
        id("b"),
        Message::VoteResponse {
            term: Term(term),
            granted: true,
        },
    );
    engine.drain_effects();
    assert_eq!(engine.role(), Role::Leader);
}

#[test]
fn a_leader_that_steps_down_and_wins_again_counts_leaderless_time_from_its_step_down() {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    let down_at = lose_quorum(&mut engine, Millis(1001));
    assert_eq!(engine.leader(), None);

    win(&mut engine, Millis(down_at.0 + 400), 5);
    let start = leader_start(&engine);
    assert_eq!(
        start.previous,
        Some(id("a")),
        "it replaces its own lost term"
    );
    // Before the fix this counted from the engine's start (0), so every later
    // re-election reported a longer leaderless time than the one before.
    assert_eq!(start.leaderless_ms, 401);

    let down_again = lose_quorum(&mut engine, Millis(down_at.0 + 401));
    win(&mut engine, Millis(down_again.0 + 250), 6);
    assert_eq!(leader_start(&engine).leaderless_ms, 251);
}

#[test]
fn a_follower_whose_leader_is_replaced_by_a_higher_term_counts_from_the_leader_last_heard() {
    let mut engine = engine("a", 3, vec![]);
    engine.on_message(Millis(500), id("b"), append_request(3, 1, 0, vec![], 1, 0));
    engine.drain_effects();
    assert_eq!(engine.leader(), Some(&id("b")));
    // c asks for votes in term 4: a follows nobody from here.
    engine.on_message(
        Millis(2_000),
        id("c"),
        Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            priority: ha_core::Priority(1),
            transfer: false,
        },
    );
    engine.drain_effects();
    assert_eq!(engine.leader(), None);
    win(&mut engine, Millis(3_000), 5);
    // b was last heard at 500.
    assert_eq!(leader_start(&engine).leaderless_ms, 2_501);
}

#[test]
fn last_contact_with_a_silent_peer_is_kept_across_terms() {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    // b answered in term 4 at 1001 (its vote); c never spoke.
    assert_eq!(engine.heard_from_at(&id("b")), Some(Millis(1001)));
    assert_eq!(engine.heard_from_at(&id("c")), None);
    let down_at = lose_quorum(&mut engine, Millis(1001));
    win(&mut engine, Millis(down_at.0 + 100), 5);
    // The new term's check-quorum grace counts c as answering now; last contact does not.
    assert!(engine.progress()[&id("c")].last_ack_at.is_some());
    assert_eq!(engine.heard_from_at(&id("c")), None);
    assert_eq!(
        engine.heard_from_at(&id("b")),
        Some(Millis(down_at.0 + 101))
    );
}
