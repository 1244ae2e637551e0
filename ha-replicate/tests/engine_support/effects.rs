//! Constructors for whole expected effect lists: the `engine_*` tests assert every effect an
//! input produced, in order, barriers included (`assert_eq!(engine.drain_effects(), vec![..])`,
//! as openraft's engine tests do), so a reviewer reads the whole answer to one input.

use ha_core::{LogIndex, Term};
use ha_replicate::engine::{After, Effect, Persist, PersistId, Role, TimerKind};
use ha_replicate::entry::{ElectionCause, Entry, LeaderStart, Payload};
use ha_replicate::hard_state::HardState;

use super::id;
use super::messages::vote_response;

/// Once every write through the `n`-th is durable.
pub fn durable(n: u64) -> After {
    After::Durable(PersistId(n))
}

/// The `n`-th storage write: `persist`.
pub fn persist(n: u64, persist: Persist) -> Effect {
    Effect::Persist {
        id: PersistId(n),
        persist,
    }
}

/// The `n`-th storage write: save `term` and the vote.
pub fn save_hard_state(n: u64, term: u64, voted_for: Option<&str>) -> Effect {
    persist(
        n,
        Persist::HardState(HardState {
            term: Term(term),
            voted_for: voted_for.map(id),
        }),
    )
}

/// The `n`-th storage write: append `entries`.
pub fn append(n: u64, entries: Vec<Entry>) -> Effect {
    persist(n, Persist::Append(entries))
}

/// The `n`-th storage write: drop the log from `index` on.
pub fn truncate_from(n: u64, index: u64) -> Effect {
    persist(n, Persist::TruncateFrom(LogIndex(index)))
}

/// Set timer `kind` (generation `generation`) to fire after `after_ms`.
pub fn set_timer(kind: TimerKind, generation: u64, after_ms: u64) -> Effect {
    Effect::SetTimer {
        kind,
        generation,
        after_ms,
    }
}

/// The role changed to `role` in `term`, under `leader`.
pub fn role_changed(role: Role, term: u64, leader: Option<&str>) -> Effect {
    Effect::RoleChanged {
        role,
        term: Term(term),
        leader: leader.map(id),
    }
}

/// Apply `entries`.
pub fn apply(entries: Vec<Entry>) -> Effect {
    Effect::Apply(entries)
}

/// The `LeaderStart` entry node `leader` appends at `index` on winning `term` by an
/// operator's election (what [`elect`](super::elect) does) after `leaderless_ms` without a
/// leader, at `at_unix_ms` by its wall clock (the tests' wall clock starts at 0).
pub fn leader_start(term: u64, index: u64, leader: &str, leaderless_ms: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::LeaderStart(LeaderStart {
            leader: id(leader),
            previous: None,
            cause: ElectionCause::ManualElection,
            leaderless_ms,
            at_unix_ms: leaderless_ms,
        }),
    }
}

/// Everything a voter does on a vote request for `term`, above its own, from `candidate` that
/// it grants: save the new term (write 1), restart its election timer, become a follower of
/// nobody, save the vote (write 2), restart the timer again, and answer only once write 2 is
/// durable (a vote must survive a crash before the candidate counts it). `timers` are the two
/// (generation, after_ms) of the election timers it sets.
pub fn adopts_term_and_grants_vote(
    term: u64,
    candidate: &str,
    timers: [(u64, u64); 2],
) -> Vec<Effect> {
    let [(first, first_ms), (second, second_ms)] = timers;
    vec![
        save_hard_state(1, term, None),
        set_timer(TimerKind::Election, first, first_ms),
        role_changed(Role::Follower, term, None),
        save_hard_state(2, term, Some(candidate)),
        set_timer(TimerKind::Election, second, second_ms),
        Effect::Send {
            to: id(candidate),
            message: vote_response(term, true),
            after: durable(2),
        },
    ]
}
