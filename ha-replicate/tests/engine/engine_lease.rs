//! The two conditions the leader lease rests on (a lease read is served without a round trip
//! because no other node can have won an election since a majority last answered):
//! - a voter refuses votes for `election_timeout_min` after it last heard the leader, and also
//!   after it (re)starts, since a restart forgets when it last heard the leader;
//! - a leader that has sent `TimeoutNow` in a term never trusts its lease again in that term:
//!   the target may still win with that transfer, whatever became of the transfer here.
//!
//! Each test feeds one input and asserts the whole effect list.

use crate::engine_support;
use crate::engine_support::messages::{pre_vote_response, timeout_now, vote_response};

use engine_support::{
    acknowledge, command, elect, engine_with, fire, heartbeat, id, peer, send, send_after,
};
use ha_core::{LogIndex, Millis, Priority, Term};
use ha_replicate::engine::{After, Effect, Engine, Message, Persist, PersistId, Role, TimerKind};
use ha_replicate::entry::ElectionCause;
use ha_replicate::hard_state::HardState;

fn pre_vote(term: u64) -> Message {
    Message::PreVoteRequest {
        term: Term(term),
        last_log_index: LogIndex(2),
        last_log_term: Term(3),
        priority: Priority(1),
    }
}

fn vote(term: u64, transfer: bool) -> Message {
    Message::VoteRequest {
        term: Term(term),
        last_log_index: LogIndex(2),
        last_log_term: Term(3),
        priority: Priority(1),
        transfer,
    }
}

/// The election timers an effect list sets, in order.
fn election_timers(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|effect| matches!(effect, Effect::SetTimer { .. }))
        .cloned()
        .collect()
}

/// The whole effect list of b adopting c's term 4 and granting c its vote: each hard state
/// persisted before the timer reset and the answer that follow it.
#[track_caller]
fn assert_adopts_term_4_and_grants_c(effects: Vec<Effect>) {
    let timers = election_timers(&effects);
    assert_eq!(timers.len(), 2, "{effects:#?}");
    assert_eq!(
        effects,
        vec![
            Effect::Persist {
                id: PersistId(1),
                persist: Persist::HardState(HardState {
                    term: Term(4),
                    voted_for: None,
                })
            },
            timers[0].clone(),
            Effect::RoleChanged {
                role: Role::Follower,
                term: Term(4),
                leader: None,
            },
            Effect::Persist {
                id: PersistId(2),
                persist: Persist::HardState(HardState {
                    term: Term(4),
                    voted_for: Some(id("c")),
                })
            },
            timers[1].clone(),
            send_after("c", vote_response(4, true), After::Durable(PersistId(2))),
        ]
    );
}

/// b restarts at 50 s (term 3, an entry of term 3 at index 2).
fn restarted_voter() -> Engine {
    engine_with("b", 3, vec![command(3, 2)], Millis(50_000), |_| {})
}

#[test]
fn a_restarted_voter_refuses_pre_votes_and_votes_for_the_minimum_election_timeout() {
    let mut engine = restarted_voter();
    engine.on_message(Millis(50_010), id("c"), pre_vote(4));
    engine.on_message(Millis(50_010), id("c"), vote(4, false));
    assert_eq!(
        engine.drain_effects(),
        vec![
            send("c", pre_vote_response(4, false, 3)),
            send("c", vote_response(3, false)),
        ]
    );
    assert_eq!(
        engine.term(),
        Term(3),
        "the candidate's term is not adopted"
    );
    // 149 ms after the start it still refuses; at 150 ms (election_timeout_min) it votes.
    engine.on_message(Millis(50_149), id("c"), vote(4, false));
    assert_eq!(
        engine.drain_effects(),
        vec![send("c", vote_response(3, false))]
    );
    engine.on_message(Millis(50_150), id("c"), vote(4, false));
    assert_adopts_term_4_and_grants_c(engine.drain_effects());
}

#[test]
fn a_restarted_voter_grants_a_leadership_transfer_vote_at_once() {
    let mut engine = restarted_voter();
    engine.on_message(Millis(50_010), id("c"), vote(4, true));
    assert_adopts_term_4_and_grants_c(engine.drain_effects());
}

/// Node a with lease reads on, leader of term 4 with its LeaderStart (index 2) committed.
fn lease_leader() -> Engine {
    let mut engine = elect(engine_with("a", 3, vec![], Millis(0), |settings| {
        settings.lease_reads = true;
    }));
    engine.drain_effects();
    acknowledge(&mut engine, Millis(1003), 2, 0);
    assert_eq!(engine.commit_index(), LogIndex(2));
    engine
}

#[test]
fn a_lease_confirmed_by_a_majority_serves_a_read_at_once() {
    let mut engine = lease_leader();
    fire(&mut engine, TimerKind::Heartbeat, Millis(1051));
    acknowledge(&mut engine, Millis(1052), 2, 1);
    engine.read_index(Millis(1053), 9).unwrap();
    assert_eq!(
        engine.drain_effects(),
        vec![Effect::ReadReady {
            read_id: 9,
            index: LogIndex(2),
        }]
    );
}

#[test]
fn an_abandoned_transfer_leaves_no_lease_for_the_rest_of_the_term() {
    let mut engine = lease_leader();
    engine.set_peer_info(Millis(1004), id("b"), peer(1));
    engine
        .transfer_leadership(Millis(1004), Some(id("b")), ElectionCause::ManualTransfer)
        .unwrap();
    // b has every entry: TimeoutNow leaves at once (b may act on it whenever it arrives).
    assert_eq!(
        engine.drain_effects(),
        vec![
            send("b", timeout_now(4, ElectionCause::ManualTransfer)),
            send("b", heartbeat(2, 4, 2, 0)),
        ]
    );
    // The transfer times out (600 ms) and is abandoned on the next heartbeat tick; b then
    // acknowledges that tick's round, which would renew a lease.
    fire(&mut engine, TimerKind::Heartbeat, Millis(1700));
    assert!(!engine.transfer_in_progress());
    acknowledge(&mut engine, Millis(1701), 2, 1);
    engine.read_index(Millis(1702), 9).unwrap();
    // No lease: the read waits for a round of its own (round 2).
    assert_eq!(
        engine.drain_effects(),
        vec![
            send("b", heartbeat(2, 4, 2, 2)),
            send("c", heartbeat(0, 0, 2, 2)),
        ]
    );
    assert_eq!(engine.role(), Role::Leader);
}
