//! Helpers shared by the `engine_*` safety test files: a 3-voter cluster's nodes built from a
//! given log, a leader driven through an election, and timer firing.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod effects;
pub mod messages;

use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Term};
use ha_replicate::engine::{
    After, Effect, Engine, EngineSettings, EngineStart, Message, PeerInfo, Role, TimerKind,
};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::hard_state::HardState;
use ha_replicate::membership::VoterSet;

pub fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Voters a, b and c.
pub fn three() -> VoterSet {
    VoterSet::with_voters([id("a"), id("b"), id("c")])
}

pub fn command(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::Command(vec![index as u8]),
    }
}

/// A membership entry making `voters` the configuration, at `index` of `term`.
pub fn membership_entry(term: u64, index: u64, voters: VoterSet) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::Membership(voters),
    }
}

pub fn config_entry() -> Entry {
    Entry {
        term: Term(0),
        index: LogIndex(1),
        payload: Payload::Membership(three()),
    }
}

/// Node `name` of the 3-voter cluster, started at `now` with the bootstrap entry plus
/// `entries` in its log, in `term`, with `settings` changed by `adjust`.
pub fn engine_with(
    name: &str,
    term: u64,
    entries: Vec<Entry>,
    now: Millis,
    adjust: impl FnOnce(&mut EngineSettings),
) -> Engine {
    let mut log = vec![config_entry()];
    log.extend(entries);
    let start = EngineStart {
        hard_state: HardState {
            term: Term(term),
            voted_for: None,
        },
        snapshot: None,
        entries: log,
    };
    let mut settings = EngineSettings::for_test(id(name));
    adjust(&mut settings);
    let mut engine = Engine::new(settings, start, now, 7);
    engine.drain_effects();
    engine
}

/// Node `name` started at time 0.
pub fn engine(name: &str, term: u64, entries: Vec<Entry>) -> Engine {
    engine_with(name, term, entries, Millis(0), |_| {})
}

/// Drive `engine` (node a, term 3, started long ago) to leadership of term 4 with b's vote
/// at 1001. Effects are left undrained.
pub fn elect(mut engine: Engine) -> Engine {
    engine.campaign(Millis(1000));
    engine.drain_effects();
    engine.on_message(
        Millis(1001),
        id("b"),
        Message::VoteResponse {
            term: Term(4),
            granted: true,
        },
    );
    assert_eq!(engine.role(), Role::Leader);
    engine
}

/// Node a, leader of term 4 (its LeaderStart at index 2, not committed), effects drained.
pub fn leader() -> Engine {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    engine
}

/// b acknowledges everything up to `index` (read round `round`), and the leader's own copy
/// is durable: entries of the leader's term up to `index` commit. Effects drained.
pub fn acknowledge(engine: &mut Engine, now: Millis, index: u64, round: u64) {
    engine.on_message(
        now,
        id("b"),
        Message::AppendResponse {
            term: engine.term(),
            success: true,
            index: LogIndex(index),
            applied_index: LogIndex(0),
            read_round: round,
        },
    );
    let _ = index;
    engine.on_persisted(now, engine.persist_issued());
    engine.drain_effects();
}

/// Fire the current timer of `kind` at `now` and return the effects.
pub fn fire(engine: &mut Engine, kind: TimerKind, now: Millis) -> Vec<Effect> {
    let generation = engine.timer_generation(kind);
    engine.on_timer(now, kind, generation);
    engine.drain_effects()
}

pub fn peer(priority: u32) -> PeerInfo {
    PeerInfo {
        priority: Priority(priority),
        health: HealthStatus::Healthy,
        reachable: true,
        wants_vote: true,
        unreachable_since: None,
    }
}

/// A message that leaves at once ([`After::Now`]).
pub fn send(to: &str, message: Message) -> Effect {
    send_after(to, message, After::Now)
}

/// A message that leaves once `after` holds.
pub fn send_after(to: &str, message: Message, after: After) -> Effect {
    Effect::Send {
        to: id(to),
        message,
        after,
    }
}

/// An empty append (heartbeat) of term 4 from the leader.
pub fn heartbeat(
    prev_log_index: u64,
    prev_log_term: u64,
    leader_commit: u64,
    read_round: u64,
) -> Message {
    Message::AppendRequest {
        term: Term(4),
        prev_log_index: LogIndex(prev_log_index),
        prev_log_term: Term(prev_log_term),
        entries: vec![],
        leader_commit: LogIndex(leader_commit),
        read_round,
    }
}

/// Node a, leader of term 4 after following b in term 3: the bootstrap configuration and a
/// command of term 3 (index 2) are committed, its LeaderStart (index 3) is not. Effects
/// drained.
pub fn leader_after_commit() -> Engine {
    leader_after_commit_with(|_| {})
}

/// [`leader_after_commit`] with node a's settings changed by `adjust`.
pub fn leader_after_commit_with(adjust: impl FnOnce(&mut EngineSettings)) -> Engine {
    let mut engine = engine_with("a", 3, vec![command(3, 2)], Millis(0), adjust);
    engine.on_message(
        Millis(500),
        id("b"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(2),
            prev_log_term: Term(3),
            entries: vec![],
            leader_commit: LogIndex(2),
            read_round: 0,
        },
    );
    assert_eq!(engine.commit_index(), LogIndex(2));
    let mut engine = elect(engine);
    engine.drain_effects();
    engine
}
