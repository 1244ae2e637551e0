//! Issue 15: a witness is a voter that never leads. It never campaigns by any path (election
//! timeout, the unwell wait, an operator's campaign, a leader's `TimeoutNow`), even with the
//! longest log and a priority that could lead; it still grants votes and acknowledges appends
//! once they are persisted; it keeps only the metadata of client commands. One input, the
//! effect list out.

use crate::engine_support;
use crate::engine_support::messages::{append_request, append_response, vote_request};

use engine_support::effects::{
    adopts_term_and_grants_vote, append, apply, durable, role_changed, set_timer,
};
use engine_support::{
    command, config_entry, engine_with, fire, heartbeat, id, leader, peer, send_after,
};
use ha_core::{HealthStatus, LogIndex, Millis, Term};
use ha_replicate::engine::{Effect, Engine, Message, Role, TimerKind, TransferError};
use ha_replicate::entry::{ElectionCause, Entry, Payload};

/// Node `name` of the 3-voter cluster {a, b, c} as a witness (priority 1: the witness setting
/// alone must keep it from leading), in `term`, with `entries` after the bootstrap entry.
fn witness(name: &str, term: u64, entries: Vec<Entry>) -> Engine {
    engine_with(name, term, entries, Millis(0), |settings| {
        settings.witness = true;
    })
}

/// Whether `effects` is exactly one effect: the next election timer (its current generation,
/// a delay within the election timeout range). Its delay is drawn at random, so it is the one
/// field not compared to a literal.
fn only_the_next_election_timer(engine: &Engine, effects: &[Effect]) -> bool {
    let generation = engine.timer_generation(TimerKind::Election);
    let (min_ms, max_ms) = (
        engine.settings().election_timeout_min_ms,
        engine.settings().election_timeout_max_ms,
    );
    matches!(
        effects,
        [Effect::SetTimer { kind: TimerKind::Election, generation: set, after_ms }]
            if *set == generation && (min_ms..=max_ms).contains(after_ms)
    )
}

#[test]
fn a_witness_with_the_longest_log_never_campaigns_by_any_path() {
    // c holds entries of term 3 that a and b lack: as a data node it would be the only one
    // that can win. As a witness it waits, however long, whatever its health.
    let entries = vec![command(3, 2), command(3, 3), command(3, 4)];
    let mut engine = witness("c", 3, entries);
    engine.set_peer_info(Millis(0), id("a"), peer(1));
    engine.set_peer_info(Millis(0), id("b"), peer(1));
    assert!(engine.is_witness());
    let mut now = Millis(0);
    for health in [
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Unhealthy,
        HealthStatus::Unknown,
    ] {
        engine.set_local_health(now, health);
        engine.drain_effects();
        // Well past the unwell wait (5 maximum election timeouts, twice for UNHEALTHY).
        for _ in 0..40 {
            now = now + 300;
            let effects = fire(&mut engine, TimerKind::Election, now);
            assert!(
                only_the_next_election_timer(&engine, &effects),
                "{health}: no campaign, only the next election timer: {effects:?}"
            );
        }
    }
    // Nor by an operator's command.
    assert!(!engine.campaign(now));
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.elections_started(), 0);
    assert_eq!(engine.role(), Role::Follower);
    assert_eq!(engine.term(), Term(3));
}

#[test]
fn a_witness_ignores_timeout_now_and_counts_it() {
    let mut engine = witness("c", 3, vec![]);
    // Following a, leader of term 4.
    engine.on_message(Millis(10), id("a"), heartbeat(1, 0, 1, 0));
    engine.drain_effects();
    assert_eq!(engine.leader(), Some(&id("a")));
    for cause in [
        ElectionCause::ManualTransfer,
        ElectionCause::Failback,
        ElectionCause::UnhealthyLeader,
        ElectionCause::Shutdown,
    ] {
        engine.on_message(
            Millis(20),
            id("a"),
            Message::TimeoutNow {
                term: Term(4),
                cause,
            },
        );
        assert_eq!(engine.drain_effects(), vec![], "{cause:?}");
    }
    assert_eq!(engine.timeout_now_ignored(), 4);
    assert_eq!(engine.role(), Role::Follower);
    assert_eq!(engine.term(), Term(4));
    assert_eq!(engine.elections_started(), 0);
}

#[test]
fn a_witness_grants_votes_persisting_the_vote_first() {
    let mut engine = witness("c", 3, vec![]);
    // Long after start: it no longer refuses votes for having just started.
    let now = Millis(10_000);
    engine.on_message(now, id("a"), vote_request(4, 1, 0, 1, false));
    assert_eq!(
        engine.drain_effects(),
        adopts_term_and_grants_vote(4, "a", [(2, 196), (3, 171)])
    );
}

#[test]
fn a_witness_stores_command_metadata_only_and_acknowledges_after_persisting() {
    let mut engine = witness("c", 4, vec![]);
    let start = Entry {
        term: Term(4),
        index: LogIndex(2),
        payload: Payload::LeaderStart(ha_replicate::entry::LeaderStart {
            leader: id("a"),
            previous: None,
            cause: ElectionCause::Startup,
            leaderless_ms: 0,
            at_unix_ms: 0,
        }),
    };
    let payload = Entry {
        term: Term(4),
        index: LogIndex(3),
        payload: Payload::Command(vec![9; 64]),
    };
    engine.on_message(
        Millis(10),
        id("a"),
        append_request(4, 1, 0, vec![start.clone(), payload], 1, 0),
    );
    let stripped = Entry {
        term: Term(4),
        index: LogIndex(3),
        payload: Payload::Command(Vec::new()),
    };
    // The stripped entries are written, and the acknowledgement waits for them.
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 4, Some("a")),
            append(1, vec![start.clone(), stripped.clone()]),
            apply(vec![config_entry()]),
            send_after("a", append_response(4, true, 3, 1, 0), durable(1)),
        ]
    );
    assert_eq!(engine.entry(LogIndex(3)), Some(&stripped));
    assert!(stripped.is_stripped_command());
    assert_eq!(engine.last_index(), LogIndex(3));
    assert_eq!(engine.term_at(LogIndex(3)), Some(Term(4)));

    // The same entries again (a retransmission) match by term: nothing to write.
    engine.on_message(
        Millis(11),
        id("a"),
        Message::AppendRequest {
            term: Term(4),
            prev_log_index: LogIndex(2),
            prev_log_term: Term(4),
            entries: vec![Entry {
                term: Term(4),
                index: LogIndex(3),
                payload: Payload::Command(vec![9; 64]),
            }],
            leader_commit: LogIndex(3),
            read_round: 0,
        },
    );
    // Nothing is written; committed entries are handed out for applying, stripped.
    // The acknowledgement still waits for write 1, which may not be durable yet.
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 3, 171),
            apply(vec![start, stripped]),
            send_after("a", append_response(4, true, 3, 3, 0), durable(1)),
        ]
    );
}

#[test]
fn a_data_node_keeps_command_payloads() {
    let mut engine = engine_with("c", 4, vec![], Millis(0), |_| {});
    let payload = Entry {
        term: Term(4),
        index: LogIndex(2),
        payload: Payload::Command(vec![9; 64]),
    };
    engine.on_message(
        Millis(10),
        id("a"),
        append_request(4, 1, 0, vec![payload.clone()], 1, 0),
    );
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 4, Some("a")),
            append(1, vec![payload.clone()]),
            apply(vec![config_entry()]),
            send_after("a", append_response(4, true, 2, 1, 0), durable(1)),
        ]
    );
    assert_eq!(engine.entry(LogIndex(2)), Some(&payload));
}

#[test]
fn a_leader_never_picks_a_priority_zero_witness_as_transfer_target() {
    // A witness runs with priority 0 (the node config forces it), which its gossip metadata
    // carries: no automatic transfer, failback or unhealthy hand-over picks it.
    let mut engine = leader();
    engine.set_peer_info(Millis(1002), id("b"), peer(0));
    engine.set_peer_info(Millis(1002), id("c"), peer(0));
    assert_eq!(
        engine.transfer_leadership(Millis(1003), None, ElectionCause::ManualTransfer),
        Err(TransferError::NoEligibleTarget)
    );
    assert_eq!(
        engine.transfer_leadership(Millis(1003), None, ElectionCause::UnhealthyLeader),
        Err(TransferError::NoEligibleTarget)
    );
    assert_eq!(
        engine.transfer_leadership(Millis(1003), Some(id("c")), ElectionCause::ManualTransfer),
        Err(TransferError::IneligibleTarget(id("c")))
    );
}
