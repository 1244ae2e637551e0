//! Issue 17: once the commit index advances, a leader tells followers that have every entry
//! (a commit notice: an empty append) after `EngineSettings::commit_notice_delay_ms`, unless an
//! append carries the commit index to them first; at once with a delay of 0, or when the
//! replica asks (`Engine::send_commit_notices`, for a STRONG write).

use crate::engine_support;

use engine_support::effects::set_timer;
use engine_support::messages::append_response;
use engine_support::{fire, heartbeat, id, leader_after_commit_with, send};
use ha_core::{LogIndex, Millis};
use ha_replicate::engine::{Effect, Engine, TimerKind};

/// Leader a of term 4 with commit notices delayed by `delay_ms`, its own log durable; b then
/// acknowledges its LeaderStart (index 3), which commits. The effects of that answer. Only b
/// has every entry (c has not answered its first append: it is still being probed), so only
/// b is owed a notice.
fn committed_by_b(delay_ms: u64) -> (Engine, Vec<Effect>) {
    let mut engine = leader_after_commit_with(|settings| {
        settings.commit_notice_delay_ms = delay_ms;
    });
    engine.on_persisted(Millis(1002), engine.persist_issued());
    engine.drain_effects();
    engine.on_message(Millis(1003), id("b"), append_response(4, true, 3, 0, 0));
    let effects = engine.drain_effects();
    assert_eq!(engine.commit_index(), LogIndex(3));
    (engine, effects)
}

/// The entry the commit hands out: the leader's LeaderStart at index 3.
fn applied(effects: &[Effect]) -> Effect {
    effects
        .iter()
        .find(|effect| matches!(effect, Effect::Apply(_)))
        .cloned()
        .expect("the commit hands the entry out")
}

#[test]
fn with_no_delay_the_notice_goes_with_the_commit() {
    let (_, effects) = committed_by_b(0);
    assert_eq!(
        effects,
        vec![applied(&effects), send("b", heartbeat(3, 4, 3, 0)),]
    );
}

#[test]
fn a_delayed_notice_goes_when_its_timer_fires() {
    let (mut engine, effects) = committed_by_b(2);
    assert_eq!(
        effects,
        vec![applied(&effects), set_timer(TimerKind::CommitNotice, 1, 2)],
        "no message yet"
    );
    assert_eq!(
        fire(&mut engine, TimerKind::CommitNotice, Millis(1005)),
        vec![send("b", heartbeat(3, 4, 3, 0)),]
    );
    // Told once: a second firing (or a later commit check) sends nothing.
    assert!(engine.drain_effects().is_empty());
}

#[test]
fn an_append_before_the_timer_carries_the_commit_and_the_notice_is_not_sent() {
    let (mut engine, _) = committed_by_b(2);
    engine.propose(Millis(1004), b"x".to_vec()).expect("leader");
    let appends: Vec<(String, LogIndex)> = engine
        .drain_effects()
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                to,
                message:
                    ha_replicate::engine::Message::AppendRequest {
                        entries,
                        leader_commit,
                        ..
                    },
                ..
            } if !entries.is_empty() => Some((to.to_string(), leader_commit)),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![("b".to_string(), LogIndex(3))]);
    assert!(fire(&mut engine, TimerKind::CommitNotice, Millis(1006)).is_empty());
}

#[test]
fn the_replica_can_have_the_notice_sent_at_once() {
    let (mut engine, _) = committed_by_b(1_000);
    let timer = engine.timer_generation(TimerKind::CommitNotice);
    engine.send_commit_notices();
    assert_eq!(
        engine.drain_effects(),
        vec![send("b", heartbeat(3, 4, 3, 0)),]
    );
    // The timer set for it is cancelled.
    engine.on_timer(Millis(2_003), TimerKind::CommitNotice, timer);
    assert!(engine.drain_effects().is_empty());
}
