//! Issue 17: a leader sends a follower no entry past the follower's reported applied index
//! plus `EngineSettings::follower_backlog_entries_max`, and still sends it heartbeats.

use crate::engine_support;

use engine_support::{elect, engine_with, id};
use ha_core::{LogIndex, Millis, Term};
use ha_replicate::engine::{Effect, Engine, Message, TimerKind};
use ha_replicate::entry::Entry;

/// What leader a sent b in `effects`: each append's entries (empty for a heartbeat).
fn appends_to_b(effects: &[Effect]) -> Vec<Vec<LogIndex>> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                to,
                message: Message::AppendRequest { entries, .. },
                ..
            } if *to == id("b") => Some(entries.iter().map(|entry: &Entry| entry.index).collect()),
            _ => None,
        })
        .collect()
}

/// b answers: it holds everything through `index` and has handed out through `applied`.
fn b_answers(engine: &mut Engine, now: Millis, index: u64, applied: u64) -> Vec<Effect> {
    engine.on_message(
        now,
        id("b"),
        Message::AppendResponse {
            term: Term(4),
            success: true,
            index: LogIndex(index),
            applied_index: LogIndex(applied),
            read_round: 0,
        },
    );
    engine.drain_effects()
}

#[test]
fn a_follower_is_sent_nothing_past_its_backlog_window_but_still_heartbeats() {
    // Leader a of term 4, its LeaderStart at index 2; b may hold 2 entries past what it
    // handed to its state machine.
    let mut engine = elect(engine_with("a", 3, vec![], Millis(0), |settings| {
        settings.follower_backlog_entries_max = 2;
    }));
    engine.drain_effects();
    // b holds index 2 and has handed out nothing: its window ends at 0 + 2 = 2.
    assert_eq!(
        appends_to_b(&b_answers(&mut engine, Millis(1002), 2, 0)),
        Vec::<Vec<LogIndex>>::new()
    );
    let index = engine
        .propose(Millis(1003), vec![3])
        .expect("the leader takes it");
    assert_eq!(index, LogIndex(3));
    let effects = engine.drain_effects();
    assert_eq!(
        appends_to_b(&effects),
        Vec::<Vec<LogIndex>>::new(),
        "index 3 is past b's window: {effects:?}"
    );
    // A heartbeat still goes to b, empty.
    let effects = engine_support::fire(&mut engine, TimerKind::Heartbeat, Millis(1060));
    assert_eq!(
        appends_to_b(&effects),
        vec![Vec::<LogIndex>::new()],
        "{effects:?}"
    );
    // b reports index 1 handed out: the window moves to 3, and index 3 goes (4 does not).
    engine
        .propose(Millis(1061), vec![4])
        .expect("the leader takes it");
    engine.drain_effects();
    let effects = b_answers(&mut engine, Millis(1062), 2, 1);
    assert_eq!(
        appends_to_b(&effects),
        vec![vec![LogIndex(3)]],
        "{effects:?}"
    );
    // With a window past the log's end, everything left goes at once.
    let effects = b_answers(&mut engine, Millis(1063), 3, 3);
    assert_eq!(
        appends_to_b(&effects),
        vec![vec![LogIndex(4)]],
        "{effects:?}"
    );
}
