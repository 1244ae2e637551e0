//! Engine unit tests: one input, the exact effects out. Each test names the rule it checks,
//! and asserts the whole effect list the input produced, in order, with each message's
//! barrier (`After::Now`, or `After::Durable(n)`: once storage writes through the `n`-th are
//! durable), as openraft's engine tests do: nothing an input did goes unchecked.

use crate::engine_support;
use crate::engine_support::messages::{
    append_request, append_response, pre_vote_request, pre_vote_response, timeout_now,
    vote_request, vote_response,
};

use engine_support::effects::{
    adopts_term_and_grants_vote, append, apply, durable, leader_start, role_changed,
    save_hard_state, set_timer, truncate_from,
};
use engine_support::{command, config_entry, elect, engine, fire, id, send, send_after};
use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Term};
use ha_replicate::engine::{
    Engine, EngineSettings, EngineStart, Message, PeerInfo, ProposeError, Role, TimerKind,
};
use ha_replicate::entry::{ElectionCause, Entry, Payload};
use ha_replicate::hard_state::HardState;

/// The `AppendRequest` leader a of term 4 sends right after winning: its `LeaderStart`
/// (index 2) after the bootstrap configuration.
fn leader_start_append() -> Message {
    append_request(4, 1, 0, vec![leader_start(4, 2, "a", 1001)], 0, 0)
}

/// Everything node a does on winning term 4 (see `elect`): announce, append its
/// `LeaderStart` (write 2; write 1 was its candidacy's vote for itself), start its timers and
/// replicate. The appends leave at once (`After::Now`), before its own write is durable: both
/// disks write in parallel (Raft thesis 10.2.1), and the leader counts its own log towards a
/// commit only once durable.
fn winning_effects() -> Vec<ha_replicate::engine::Effect> {
    vec![
        role_changed(Role::Leader, 4, Some("a")),
        append(2, vec![leader_start(4, 2, "a", 1001)]),
        set_timer(TimerKind::Heartbeat, 1, 50),
        set_timer(TimerKind::CheckQuorum, 1, 300),
        send("b", leader_start_append()),
        send("c", leader_start_append()),
    ]
}

#[test]
fn election_timeout_starts_a_pre_vote_without_raising_the_term() {
    let mut engine = engine("a", 3, vec![command(3, 2)]);
    let effects = fire(&mut engine, TimerKind::Election, Millis(1000));
    assert_eq!(engine.role(), Role::PreCandidate);
    assert_eq!(engine.term(), Term(3), "pre-vote must not change the term");
    let ask = pre_vote_request(4, 2, 3, 1);
    // Pre-vote persists nothing, and its requests promise nothing: they leave at once.
    assert_eq!(
        effects,
        vec![
            set_timer(TimerKind::Election, 2, 196),
            send("b", ask.clone()),
            send("c", ask),
        ]
    );
}

#[test]
fn a_granted_vote_is_persisted_before_the_answer_leaves() {
    let mut engine = engine("b", 3, vec![command(3, 2)]);
    engine.on_message(Millis(1000), id("a"), vote_request(4, 2, 3, 1, false));
    assert_eq!(
        engine.drain_effects(),
        adopts_term_and_grants_vote(4, "a", [(2, 196), (3, 171)])
    );
}

#[test]
fn no_vote_for_a_less_up_to_date_log() {
    let mut engine = engine("b", 3, vec![command(3, 2), command(3, 3)]);
    engine.on_message(Millis(1000), id("a"), vote_request(4, 2, 3, 1, false));
    // No vote recorded: only the new term is saved, and the refusal, which carries that term,
    // waits for it.
    assert_eq!(
        engine.drain_effects(),
        vec![
            save_hard_state(1, 4, None),
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 4, None),
            send_after("a", vote_response(4, false), durable(1)),
        ]
    );
}

#[test]
fn one_vote_per_term() {
    let mut engine = engine("c", 3, vec![]);
    let request = |term| Message::VoteRequest {
        term: Term(term),
        last_log_index: LogIndex(1),
        last_log_term: Term(0),
        priority: Priority(1),
        transfer: false,
    };
    engine.on_message(Millis(1000), id("a"), request(4));
    engine.drain_effects();
    engine.on_message(Millis(1001), id("b"), request(4));
    // Nothing is written; the refusal still waits for the vote for a (write 2) it rests on.
    assert_eq!(
        engine.drain_effects(),
        vec![send_after("b", vote_response(4, false), durable(2))]
    );
}

#[test]
fn a_follower_that_heard_from_its_leader_recently_ignores_candidates() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(Millis(1000), id("a"), append_request(3, 1, 0, vec![], 1, 0));
    engine.drain_effects();
    // 10 ms later a disruptive candidate asks, both pre-vote and vote.
    engine.on_message(Millis(1010), id("c"), pre_vote_request(4, 9, 3, 9));
    engine.on_message(Millis(1010), id("c"), vote_request(4, 9, 3, 9, false));
    assert_eq!(engine.term(), Term(3), "the term is not adopted");
    assert_eq!(engine.leader().map(NodeId::as_str), Some("a"));
    // Both refused, with nothing written (so nothing to wait for).
    assert_eq!(
        engine.drain_effects(),
        vec![
            send("c", pre_vote_response(4, false, 3)),
            send("c", vote_response(3, false)),
        ]
    );
    // A transfer (TimeoutNow from the leader) is the exception.
    engine.on_message(Millis(1011), id("c"), vote_request(4, 9, 3, 9, true));
    assert_eq!(
        engine.drain_effects(),
        adopts_term_and_grants_vote(4, "c", [(3, 171), (4, 231)])
    );
}

#[test]
fn a_higher_priority_voter_declines_an_equal_candidates_pre_vote() {
    let mut settings = EngineSettings::for_test(id("b"));
    settings.priority = Priority(10);
    let start = EngineStart {
        hard_state: HardState::default(),
        snapshot: None,
        entries: vec![config_entry()],
    };
    let mut engine = Engine::new(settings, start, Millis(0), 1);
    engine.drain_effects();
    let ask = |priority, last_index| Message::PreVoteRequest {
        term: Term(1),
        last_log_index: LogIndex(last_index),
        last_log_term: Term(0),
        priority: Priority(priority),
    };
    engine.on_message(Millis(1000), id("a"), ask(5, 1));
    engine.on_message(Millis(1000), id("c"), ask(50, 1));
    let answer = |granted| Message::PreVoteResponse {
        term: Term(1),
        granted,
        current_term: Term(0),
    };
    assert_eq!(
        engine.drain_effects(),
        vec![send("a", answer(false)), send("c", answer(true))],
        "decline the lower-priority equal candidate, grant the higher one"
    );
}

#[test]
fn priority_zero_and_unhealthy_nodes_never_campaign() {
    let mut settings = EngineSettings::for_test(id("a"));
    settings.priority = Priority(0);
    let start = EngineStart {
        hard_state: HardState::default(),
        snapshot: None,
        entries: vec![config_entry()],
    };
    let mut zero = Engine::new(settings, start.clone(), Millis(0), 1);
    zero.drain_effects();
    let effects = fire(&mut zero, TimerKind::Election, Millis(10_000));
    // No pre-vote: only the next election timer.
    assert_eq!(effects, vec![set_timer(TimerKind::Election, 2, 253)]);
    assert_eq!(zero.elections_started(), 0);

    let mut sick = Engine::new(EngineSettings::for_test(id("a")), start, Millis(0), 1);
    sick.set_local_health(Millis(0), HealthStatus::Unhealthy);
    sick.drain_effects();
    // Not on its election timeout; only after the unwell wait (issue 14, 2 x 5 x 300 ms with
    // these settings), which engine_unwell_campaign.rs tests.
    let effects = fire(&mut sick, TimerKind::Election, Millis(2_000));
    assert_eq!(sick.role(), Role::Follower);
    assert_eq!(effects, vec![set_timer(TimerKind::Election, 2, 253)]);
}

#[test]
fn appended_entries_are_persisted_before_the_acknowledgement() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        append_request(3, 1, 0, vec![command(3, 2), command(3, 3)], 2, 5),
    );
    // Commit follows the leader's commit, bounded by what was just received: entries a
    // majority holds may be applied before this node's copy is durable, but the
    // acknowledgement leaves only once it is.
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 3, Some("a")),
            append(1, vec![command(3, 2), command(3, 3)]),
            apply(vec![config_entry(), command(3, 2)]),
            send_after("a", append_response(3, true, 3, 2, 5), durable(1)),
        ]
    );
    assert_eq!(engine.commit_index(), LogIndex(2));
}

#[test]
fn a_conflicting_suffix_is_truncated_and_replaced() {
    let mut engine = engine("b", 3, vec![command(2, 2), command(2, 3)]);
    engine.on_message(
        Millis(1000),
        id("a"),
        append_request(3, 2, 2, vec![command(3, 3)], 1, 0),
    );
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 3, Some("a")),
            truncate_from(1, 3),
            append(2, vec![command(3, 3)]),
            apply(vec![config_entry()]),
            send_after("a", append_response(3, true, 3, 1, 0), durable(2)),
        ]
    );
    assert_eq!(engine.term_at(LogIndex(3)), Some(Term(3)));
}

#[test]
fn a_mismatched_append_is_rejected_with_a_hint() {
    let mut engine = engine("b", 3, vec![command(1, 2), command(1, 3), command(2, 4)]);
    engine.on_message(Millis(1000), id("a"), append_request(3, 4, 3, vec![], 1, 0));
    // Nothing truncated or appended, so the rejection leaves at once.
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            role_changed(Role::Follower, 3, Some("a")),
            send("a", append_response(3, false, 4, 0, 0)),
        ]
    );
}

#[test]
fn stale_terms_are_refused() {
    let mut engine = engine("b", 5, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        append_request(4, 1, 0, vec![command(4, 2)], 2, 0),
    );
    assert_eq!(engine.last_index(), LogIndex(1));
    assert_eq!(
        engine.drain_effects(),
        vec![send("a", append_response(5, false, 2, 0, 0))]
    );
}

#[test]
fn a_new_leader_appends_its_leader_start_entry_and_replicates_it() {
    let mut engine = elect(engine("a", 3, vec![]));
    assert_eq!(engine.drain_effects(), winning_effects());
}

#[test]
fn commit_needs_a_durable_majority_and_an_entry_of_the_current_term() {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    let index = engine.propose(Millis(1002), b"x".to_vec()).unwrap();
    assert_eq!(index, LogIndex(3));
    let proposed = Entry {
        term: Term(4),
        index: LogIndex(3),
        payload: Payload::Command(b"x".to_vec()),
    };
    // Written (write 3); the followers still have the `LeaderStart` append in flight.
    assert_eq!(
        engine.drain_effects(),
        vec![append(3, vec![proposed.clone()])]
    );
    assert_eq!(engine.commit_index(), LogIndex(0));
    engine.on_message(Millis(1003), id("b"), append_response(4, true, 3, 0, 0));
    // A follower has it, but the leader's own copy is not known synced yet: the leader's
    // appends leave before its fsync, so its log counts only once durable. Nothing commits,
    // nothing is applied or sent.
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.commit_index(), LogIndex(0));
    engine.on_persisted(Millis(1004), engine.persist_issued());
    assert_eq!(engine.commit_index(), LogIndex(3));
    assert_eq!(
        engine.drain_effects(),
        vec![
            apply(vec![
                config_entry(),
                leader_start(4, 2, "a", 1001),
                proposed.clone()
            ]),
            // The new commit index reaches b at once.
            send("b", append_request(4, 3, 4, vec![], 3, 0)),
        ]
    );
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(Millis(1000), id("a"), append_request(3, 1, 0, vec![], 1, 0));
    engine.drain_effects();
    assert_eq!(
        engine.propose(Millis(1001), b"x".to_vec()),
        Err(ProposeError::NotLeader {
            leader: Some(id("a"))
        })
    );
    assert_eq!(engine.drain_effects(), vec![], "nothing appended or sent");
}

#[test]
fn a_leader_that_hears_no_majority_steps_down() {
    let mut engine = elect(engine("a", 3, vec![]));
    assert_eq!(engine.drain_effects(), winning_effects());
    // Nobody answers. The first check, one period after winning, gives the majority one more
    // period (a new leader has heard nobody yet); the second steps down.
    engine.on_timer(Millis(1001 + 300), TimerKind::CheckQuorum, 1);
    assert_eq!(
        engine.drain_effects(),
        vec![set_timer(TimerKind::CheckQuorum, 2, 300)]
    );
    engine.on_timer(Millis(1001 + 3 * 300), TimerKind::CheckQuorum, 2);
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::CheckQuorum, 3, 300),
            set_timer(TimerKind::Election, 4, 171),
            role_changed(Role::Follower, 4, None),
        ]
    );
    assert_eq!(engine.role(), Role::Follower);
    assert_eq!(engine.leader(), None);
    assert_eq!(
        engine.propose(Millis(5000), b"x".to_vec()),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn stale_timer_generations_are_ignored() {
    let mut engine = engine("a", 3, vec![]);
    let current = engine.timer_generation(TimerKind::Election);
    engine.on_timer(Millis(1000), TimerKind::Election, current - 1);
    assert_eq!(engine.drain_effects(), vec![]);
    assert_eq!(engine.role(), Role::Follower);
    // A heartbeat timer on a follower was never set: any generation is stale.
    engine.on_timer(Millis(1000), TimerKind::Heartbeat, 1);
    assert_eq!(engine.drain_effects(), vec![]);
    engine.on_timer(Millis(1000), TimerKind::Election, current);
    assert_eq!(engine.role(), Role::PreCandidate);
    let ask = pre_vote_request(4, 1, 0, 1);
    assert_eq!(
        engine.drain_effects(),
        vec![
            set_timer(TimerKind::Election, 2, 196),
            send("b", ask.clone()),
            send("c", ask),
        ]
    );
}

#[test]
fn transfer_sends_timeout_now_once_the_target_is_caught_up() {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    engine.set_peer_info(
        Millis(1002),
        id("b"),
        PeerInfo {
            priority: Priority(5),
            health: HealthStatus::Healthy,
            reachable: true,
            wants_vote: true,
            unreachable_since: None,
        },
    );
    let target = engine
        .transfer_leadership(Millis(1002), None, ElectionCause::ManualTransfer)
        .unwrap();
    assert_eq!(target.as_str(), "b");
    assert_eq!(
        engine.propose(Millis(1002), b"x".to_vec()),
        Err(ProposeError::TransferInProgress)
    );
    // b is not known caught up: no TimeoutNow yet, only an append to bring it up to date.
    assert_eq!(
        engine.drain_effects(),
        vec![send("b", append_request(4, 0, 0, vec![], 0, 0))]
    );
    engine.on_message(Millis(1003), id("b"), append_response(4, true, 2, 0, 0));
    assert_eq!(
        engine.drain_effects(),
        vec![send_after(
            "b",
            timeout_now(4, ElectionCause::ManualTransfer),
            durable(2),
        )]
    );
}

/// A follower whose disk was wiped answers the leader's probe (sent from the last index it
/// acknowledged) with a rejection hinting index 1. The leader must probe from there; before,
/// a rejection at or below the acknowledged index while probing was taken for a stale answer,
/// and the same probe was sent again forever: a replaced disk never rejoined.
#[test]
fn a_probe_rejected_below_the_acknowledged_index_moves_back_to_the_hint() {
    use ha_replicate::engine::ReplicationState;
    let mut engine = engine_support::leader_after_commit();
    engine_support::acknowledge(&mut engine, Millis(1002), 3, 0);
    assert_eq!(engine.progress()[&id("b")].match_index, LogIndex(3));
    engine.propose(Millis(1003), b"x".to_vec()).expect("leader");
    engine.drain_effects();
    // b goes silent (it is being wiped): the leader falls back to probing from match + 1.
    fire(&mut engine, TimerKind::Heartbeat, Millis(5_000));
    assert_eq!(engine.progress()[&id("b")].state, ReplicationState::Probe);
    engine.on_message(Millis(5_001), id("b"), append_response(4, false, 1, 0, 0));
    // The next probe starts at the hint.
    assert_eq!(
        engine.drain_effects(),
        vec![send(
            "b",
            Message::AppendRequest {
                term: Term(4),
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![
                    config_entry(),
                    command(3, 2),
                    Entry {
                        term: Term(4),
                        index: LogIndex(3),
                        payload: Payload::LeaderStart(ha_replicate::entry::LeaderStart {
                            leader: id("a"),
                            previous: Some(id("b")),
                            cause: ElectionCause::ManualElection,
                            leaderless_ms: 1,
                            at_unix_ms: 1001,
                        }),
                    },
                    Entry {
                        term: Term(4),
                        index: LogIndex(4),
                        payload: Payload::Command(b"x".to_vec()),
                    },
                ],
                leader_commit: LogIndex(3),
                read_round: 1,
            },
        )]
    );
    assert_eq!(engine.progress()[&id("b")].match_index, LogIndex(0));
}
