//! Received data never panics or corrupts a node: forged or buggy messages are refused
//! without any state change, counted by cause and logged at most once per peer per minute.
//! Each test feeds one message and asserts the whole effect list.

use crate::engine_support;
use crate::engine_support::messages::{append_request, append_response};

use engine_support::{acknowledge, command, engine, fire, heartbeat, id, leader};
use ha_core::{LogIndex, Millis, Priority, Term};
use ha_replicate::engine::{Engine, Message, RefusalCause, Role, TimerKind};
use ha_replicate::entry::Entry;

/// An append of read round 0 (the refusals do not depend on reads).
fn append(
    term: u64,
    prev_log_index: u64,
    prev_log_term: u64,
    entries: Vec<Entry>,
    leader_commit: u64,
) -> Message {
    append_request(
        term,
        prev_log_index,
        prev_log_term,
        entries,
        leader_commit,
        0,
    )
}

/// b follows a in term 3 with entries 2 and 3 (term 3) committed.
fn committed_follower() -> Engine {
    let mut engine = engine("b", 3, vec![command(3, 2), command(3, 3)]);
    engine.on_message(Millis(1000), id("a"), append(3, 3, 3, vec![], 3));
    engine.drain_effects();
    assert_eq!(engine.commit_index(), LogIndex(3));
    engine
}

fn only_refusal(engine: &Engine, cause: RefusalCause) {
    assert_eq!(
        engine.refused_inputs().count(cause),
        1,
        "{:?}",
        engine.refused_inputs()
    );
    assert_eq!(
        engine.refused_inputs().total(),
        1,
        "{:?}",
        engine.refused_inputs()
    );
}

#[test]
fn an_append_overwriting_a_committed_entry_is_refused() {
    let mut engine = committed_follower();
    // Index 2 is committed with term 3; the "leader" sends a different entry there.
    engine.on_message(
        Millis(1001),
        id("a"),
        append(3, 1, 0, vec![command(2, 2)], 3),
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.term_at(LogIndex(2)), Some(Term(3)));
    assert_eq!(engine.last_index(), LogIndex(3));
    only_refusal(&engine, RefusalCause::OverwriteCommitted);
    // The same from a higher term: refused before the term is adopted.
    engine.on_message(
        Millis(1002),
        id("c"),
        append(5, 1, 0, vec![command(5, 2)], 3),
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.term(), Term(3));
    assert_eq!(
        engine
            .refused_inputs()
            .count(RefusalCause::OverwriteCommitted),
        2
    );
}

#[test]
fn an_append_with_a_gap_is_refused() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        append(3, 1, 0, vec![command(3, 2), command(3, 4)], 1),
    );
    assert_eq!(engine.drain_effects(), vec![]);
    engine.on_message(
        Millis(1001),
        id("a"),
        append(3, 1, 0, vec![command(3, 3)], 1),
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.last_index(), LogIndex(1));
    assert_eq!(
        engine
            .refused_inputs()
            .count(RefusalCause::NonContiguousEntries),
        2
    );
}

#[test]
fn entries_from_a_later_term_than_their_message_are_refused() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        append(3, 1, 0, vec![command(9, 2)], 2),
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.last_index(), LogIndex(1));
    only_refusal(&engine, RefusalCause::EntryTermAboveMessage);
}

#[test]
fn a_second_leader_of_the_same_term_is_refused() {
    let mut engine = leader();
    engine.on_message(Millis(1002), id("c"), heartbeat(1, 0, 1, 0));
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.role(), Role::Leader);
    only_refusal(&engine, RefusalCause::SecondLeader);
}

#[test]
fn a_term_near_the_end_of_numbers_is_refused() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::PreVoteRequest {
            term: Term(u64::MAX),
            last_log_index: LogIndex(1),
            last_log_term: Term(0),
            priority: Priority(1),
        },
    );
    engine.on_message(Millis(1000), id("a"), append(u64::MAX, 1, 0, vec![], 1));
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.term(), Term(3));
    assert_eq!(engine.refused_inputs().count(RefusalCause::OutOfRange), 2);
    // Its own next election still counts up normally.
    fire(&mut engine, TimerKind::Election, Millis(2000));
    assert_eq!(engine.role(), Role::PreCandidate);
}

#[test]
fn an_acknowledgement_of_a_round_not_started_confirms_no_read() {
    let mut engine = leader();
    acknowledge(&mut engine, Millis(1003), 2, 0);
    engine.read_index(Millis(1004), 9).unwrap();
    engine.drain_effects();
    // b claims to answer round 99; this leader has started only round 1.
    engine.on_message(Millis(1005), id("b"), append_response(4, true, 2, 2, 99));
    assert_eq!(engine.drain_effects(), vec![]);
    only_refusal(&engine, RefusalCause::RoundFromFuture);
}

#[test]
fn an_acknowledgement_beyond_the_leaders_log_is_refused() {
    let mut engine = leader();
    engine.on_message(
        Millis(1003),
        id("b"),
        Message::AppendResponse {
            term: Term(4),
            success: true,
            index: LogIndex(2),
            applied_index: LogIndex(1_000),
            read_round: 0,
        },
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.progress()[&id("b")].applied_index, LogIndex(0));
    only_refusal(&engine, RefusalCause::AckBeyondLog);
}

#[test]
fn refusals_from_one_peer_are_logged_once_a_minute() {
    let mut engine = engine("b", 3, vec![]);
    let forged = || append(3, 1, 0, vec![command(3, 3)], 1);
    engine.on_message(Millis(1_000), id("a"), forged());
    assert_eq!(engine.refusal_logged_at(&id("a")), Some(Millis(1_000)));
    engine.on_message(Millis(30_000), id("a"), forged());
    assert_eq!(engine.refusal_logged_at(&id("a")), Some(Millis(1_000)));
    engine.on_message(Millis(30_000), id("c"), forged());
    assert_eq!(engine.refusal_logged_at(&id("c")), Some(Millis(30_000)));
    engine.on_message(Millis(61_000), id("a"), forged());
    assert_eq!(engine.refusal_logged_at(&id("a")), Some(Millis(61_000)));
    assert_eq!(
        engine
            .refused_inputs()
            .count(RefusalCause::NonContiguousEntries),
        4
    );
}
