//! A leader whose log payloads were evicted (applied and durable, past `log_cache_bytes`)
//! sends them to a lagging follower through `Effect::SendStored`, with exactly the accounting
//! and the message an in-memory send would have.

use crate::engine_support;
use crate::engine_support::messages::append_request;

use engine_support::{command, config_entry, elect, engine_with, id};
use ha_core::{LogIndex, Millis, Term};
use ha_replicate::engine::{After, Effect, Engine, Message};
use ha_replicate::entry::Entry;

/// Node a after following b in term 3 with commands 2..=11 committed and applied, then
/// elected for term 4 (LeaderStart at 12). `budget`: its log cache.
fn leader_with_budget(budget: usize) -> Engine {
    let commands: Vec<Entry> = (2..=11).map(|index| command(3, index)).collect();
    let mut engine = engine_with("a", 3, commands, Millis(0), |settings| {
        settings.log_cache_bytes = budget;
        settings.append_entries_max = 3;
    });
    engine.on_message(
        Millis(500),
        id("b"),
        append_request(3, 11, 3, vec![], 11, 0),
    );
    assert_eq!(engine.commit_index(), LogIndex(11));
    engine.drain_effects();
    engine.on_applied(Millis(500), LogIndex(11));
    let mut engine = elect(engine);
    engine.drain_effects();
    engine
}

/// `effects` with each `SendStored` replaced by the `Send` it asks for, its entries taken
/// from `log` (what the store holds), leaving at once like the leader's other appends; and how
/// many were replaced.
fn materialized(effects: Vec<Effect>, log: &[Entry]) -> (Vec<Effect>, usize) {
    let mut stored = 0;
    let effects = effects
        .into_iter()
        .map(|effect| match effect {
            Effect::SendStored {
                to,
                term,
                prev_log_index,
                prev_log_term,
                from,
                count,
                bytes_max: _,
                leader_commit,
                read_round,
            } => {
                stored += 1;
                let entries = log
                    .iter()
                    .filter(|entry| entry.index >= from)
                    .take(count)
                    .cloned()
                    .collect();
                Effect::Send {
                    to,
                    message: Message::AppendRequest {
                        term,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        read_round,
                    },
                    after: After::Now,
                }
            }
            other => other,
        })
        .collect();
    (effects, stored)
}

fn answer(engine: &mut Engine, now: u64, success: bool, index: u64) -> Vec<Effect> {
    engine.on_message(
        Millis(now),
        id("c"),
        Message::AppendResponse {
            term: Term(4),
            success,
            index: LogIndex(index),
            applied_index: LogIndex(0),
            read_round: 0,
        },
    );
    engine.drain_effects()
}

#[test]
fn a_follower_behind_evicted_entries_is_sent_them_from_the_store_like_from_memory() {
    let mut evicting = leader_with_budget(0);
    let mut holding = leader_with_budget(usize::MAX);
    // Everything applied and durable was evicted; terms and the configuration stay.
    assert_eq!(evicting.entry(LogIndex(5)), None);
    assert_eq!(evicting.term_at(LogIndex(5)), Some(Term(3)));
    assert!(
        evicting.entry(LogIndex(12)).is_some(),
        "the unapplied LeaderStart stays"
    );
    assert!(evicting.membership().is_voter(&id("c")));
    assert!(holding.entry(LogIndex(5)).is_some());
    let mut log = vec![config_entry()];
    log.extend((2..=12).map(|index| holding.entry(LogIndex(index)).unwrap().clone()));

    // c rejects: it holds nothing after index 2. Then acknowledges each batch. (A batch from
    // the store ends at the first entry held in memory; here the batches of 3 line up with
    // the evicted range, 3..=11, so the two leaders send the very same messages.)
    let steps = [
        (1100, false, 3),
        (1110, true, 5),
        (1120, true, 8),
        (1130, true, 11),
    ];
    let mut stored_sends = 0;
    for (now, success, index) in steps {
        let from_store = answer(&mut evicting, now, success, index);
        let from_memory = answer(&mut holding, now, success, index);
        // The whole effect lists agree once each read from the store is carried out.
        let (from_store, stored) = materialized(from_store, &log);
        assert_eq!(
            from_store, from_memory,
            "after c answered {success} at {index}"
        );
        assert!(
            from_memory.iter().any(|effect| matches!(
                effect,
                Effect::Send { to, message: Message::AppendRequest { .. }, .. } if *to == id("c")
            )),
            "an append to c: {from_memory:?}"
        );
        stored_sends += stored;
        // `Progress` has no `PartialEq`; its debug form shows every field.
        assert_eq!(
            format!("{:?}", evicting.progress().get(&id("c"))),
            format!("{:?}", holding.progress().get(&id("c"))),
            "progress after c answered {success} at {index}"
        );
    }
    // Batches 3..=5, 6..=8 and 9..=11 came from the store; 12 from memory.
    assert_eq!(stored_sends, 3);
    let progress = evicting.progress().get(&id("c")).unwrap();
    assert_eq!(progress.match_index, LogIndex(11));
    assert_eq!(progress.next_index, LogIndex(13));
}

#[test]
fn nothing_unapplied_or_undurable_is_evicted() {
    let commands: Vec<Entry> = (2..=10).map(|index| command(3, index)).collect();
    let mut engine = engine_with("a", 3, commands, Millis(0), |settings| {
        settings.log_cache_bytes = 0;
    });
    engine.on_message(
        Millis(500),
        id("b"),
        append_request(3, 10, 3, vec![command(3, 11), command(3, 12)], 12, 0),
    );
    engine.drain_effects();
    // Applied through 12 but synced only through 10 (11 and 12 were just received).
    engine.on_applied(Millis(501), LogIndex(12));
    assert_eq!(engine.entry(LogIndex(10)), None);
    assert!(engine.entry(LogIndex(11)).is_some());
    engine.on_persisted(Millis(502), engine.persist_issued());
    assert_eq!(engine.entry(LogIndex(12)), None);
    assert_eq!(engine.log_held_bytes(), 0);
    assert_eq!(engine.term_at(LogIndex(12)), Some(Term(3)));
}
