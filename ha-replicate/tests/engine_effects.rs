//! Engine unit tests: one input, the exact effects out. Each test names the rule it checks.

mod engine_support;

use std::collections::BTreeSet;

use engine_support::{command, config_entry, elect, engine, fire, id};
use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Term};
use ha_replicate::engine::{
    Effect, Engine, EngineSettings, EngineStart, Message, PeerInfo, Persist, PersistId,
    ProposeError, Role, TimerKind,
};
use ha_replicate::entry::Payload;
use ha_replicate::hard_state::HardState;

fn sends(effects: &[Effect]) -> Vec<(String, Message)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { to, message, .. } => Some((to.to_string(), message.clone())),
            _ => None,
        })
        .collect()
}

fn position(effects: &[Effect], predicate: impl Fn(&Effect) -> bool) -> usize {
    effects
        .iter()
        .position(predicate)
        .unwrap_or_else(|| panic!("effect not found in {effects:#?}"))
}

#[test]
fn election_timeout_starts_a_pre_vote_without_raising_the_term() {
    let mut engine = engine("a", 3, vec![command(3, 2)]);
    let effects = fire(&mut engine, TimerKind::Election, Millis(1000));
    assert_eq!(engine.role(), Role::PreCandidate);
    assert_eq!(engine.term(), Term(3), "pre-vote must not change the term");
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::Persist { .. })),
        "pre-vote persists nothing: {effects:#?}"
    );
    let expected = Message::PreVoteRequest {
        term: Term(4),
        last_log_index: LogIndex(2),
        last_log_term: Term(3),
        priority: Priority(1),
    };
    assert_eq!(
        sends(&effects),
        vec![
            ("b".to_string(), expected.clone()),
            ("c".to_string(), expected)
        ]
    );
}

#[test]
fn a_granted_vote_is_persisted_before_the_answer_leaves() {
    let mut engine = engine("b", 3, vec![command(3, 2)]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(2),
            last_log_term: Term(3),
            priority: Priority(1),
            transfer: false,
        },
    );
    let effects = engine.drain_effects();
    let persisted = position(
        &effects,
        |effect| matches!(effect, Effect::Persist { persist: Persist::HardState(HardState { term: Term(4), voted_for: Some(voted) }), .. } if voted.as_str() == "a"),
    );
    let answered = position(&effects, |effect| {
        matches!(
            effect,
            Effect::Send {
                message: Message::VoteResponse {
                    term: Term(4),
                    granted: true
                },
                ..
            }
        )
    });
    assert!(
        persisted < answered,
        "vote must be durable before it is sent: {effects:#?}"
    );
}

#[test]
fn no_vote_for_a_less_up_to_date_log() {
    let mut engine = engine("b", 3, vec![command(3, 2), command(3, 3)]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(2),
            last_log_term: Term(3),
            priority: Priority(1),
            transfer: false,
        },
    );
    let effects = engine.drain_effects();
    assert!(sends(&effects).contains(&(
        "a".to_string(),
        Message::VoteResponse {
            term: Term(4),
            granted: false
        }
    )));
    assert!(
        !effects.iter().any(|effect| matches!(
            effect,
            Effect::Persist {
                id: PersistId(0),
                persist: Persist::HardState(HardState {
                    voted_for: Some(_),
                    ..
                })
            }
        )),
        "no vote recorded: {effects:#?}"
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
    let effects = engine.drain_effects();
    assert_eq!(
        sends(&effects),
        vec![(
            "b".to_string(),
            Message::VoteResponse {
                term: Term(4),
                granted: false
            }
        )]
    );
}

#[test]
fn a_follower_that_heard_from_its_leader_recently_ignores_candidates() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(1),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(1),
            read_round: 0,
        },
    );
    engine.drain_effects();
    // 10 ms later a disruptive candidate asks, both pre-vote and vote.
    engine.on_message(
        Millis(1010),
        id("c"),
        Message::PreVoteRequest {
            term: Term(4),
            last_log_index: LogIndex(9),
            last_log_term: Term(3),
            priority: Priority(9),
        },
    );
    engine.on_message(
        Millis(1010),
        id("c"),
        Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(9),
            last_log_term: Term(3),
            priority: Priority(9),
            transfer: false,
        },
    );
    let effects = engine.drain_effects();
    assert_eq!(engine.term(), Term(3), "the term is not adopted");
    assert_eq!(engine.leader().map(NodeId::as_str), Some("a"));
    for (_, message) in sends(&effects) {
        match message {
            Message::PreVoteResponse { granted, .. } | Message::VoteResponse { granted, .. } => {
                assert!(!granted)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A transfer (TimeoutNow from the leader) is the exception.
    engine.on_message(
        Millis(1011),
        id("c"),
        Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(9),
            last_log_term: Term(3),
            priority: Priority(9),
            transfer: true,
        },
    );
    let effects = engine.drain_effects();
    assert!(sends(&effects).contains(&(
        "c".to_string(),
        Message::VoteResponse {
            term: Term(4),
            granted: true
        }
    )));
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
    let effects = engine.drain_effects();
    let answers: Vec<(String, bool)> = sends(&effects)
        .into_iter()
        .map(|(to, message)| match message {
            Message::PreVoteResponse { granted, .. } => (to, granted),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        vec![("a".to_string(), false), ("c".to_string(), true)],
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
    let effects = fire(&mut zero, TimerKind::Election, Millis(10_000));
    assert!(
        !sends(&effects)
            .iter()
            .any(|(_, message)| matches!(message, Message::PreVoteRequest { .. }))
    );
    assert_eq!(zero.elections_started(), 0);

    let mut sick = Engine::new(EngineSettings::for_test(id("a")), start, Millis(0), 1);
    sick.set_local_health(Millis(0), HealthStatus::Unhealthy);
    // Not on its election timeout; only after the unwell wait (issue 14, 2 x 5 x 300 ms with
    // these settings), which engine_unwell_campaign.rs tests.
    let effects = fire(&mut sick, TimerKind::Election, Millis(2_000));
    assert_eq!(sick.role(), Role::Follower);
    assert!(
        !sends(&effects)
            .iter()
            .any(|(_, message)| matches!(message, Message::PreVoteRequest { .. }))
    );
}

#[test]
fn appended_entries_are_persisted_before_the_acknowledgement() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(1),
            prev_log_term: Term(0),
            entries: vec![command(3, 2), command(3, 3)],
            leader_commit: LogIndex(2),
            read_round: 5,
        },
    );
    let effects = engine.drain_effects();
    let persisted = position(
        &effects,
        |effect| matches!(effect, Effect::Persist { persist: Persist::Append(entries), .. } if entries.len() == 2),
    );
    let acknowledged = position(&effects, |effect| {
        matches!(
            effect,
            Effect::Send {
                message: Message::AppendResponse {
                    success: true,
                    index: LogIndex(3),
                    read_round: 5,
                    ..
                },
                ..
            }
        )
    });
    assert!(persisted < acknowledged);
    // Commit follows the leader's commit, bounded by what was just received.
    assert_eq!(engine.commit_index(), LogIndex(2));
    assert!(effects.iter().any(|effect| matches!(effect, Effect::Apply(entries) if entries.last().map(|entry| entry.index) == Some(LogIndex(2)))));
}

#[test]
fn a_conflicting_suffix_is_truncated_and_replaced() {
    let mut engine = engine("b", 3, vec![command(2, 2), command(2, 3)]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(2),
            prev_log_term: Term(2),
            entries: vec![command(3, 3)],
            leader_commit: LogIndex(1),
            read_round: 0,
        },
    );
    let effects = engine.drain_effects();
    let truncated = position(&effects, |effect| {
        matches!(
            effect,
            Effect::Persist {
                persist: Persist::TruncateFrom(LogIndex(3)),
                ..
            }
        )
    });
    let appended = position(
        &effects,
        |effect| matches!(effect, Effect::Persist { persist: Persist::Append(entries), .. } if entries[0].term == Term(3)),
    );
    assert!(truncated < appended);
    assert_eq!(engine.term_at(LogIndex(3)), Some(Term(3)));
}

#[test]
fn a_mismatched_append_is_rejected_with_a_hint() {
    let mut engine = engine("b", 3, vec![command(1, 2), command(1, 3), command(2, 4)]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(4),
            prev_log_term: Term(3),
            entries: vec![],
            leader_commit: LogIndex(1),
            read_round: 0,
        },
    );
    let effects = engine.drain_effects();
    assert!(sends(&effects).contains(&(
        "a".to_string(),
        Message::AppendResponse {
            term: Term(3),
            success: false,
            index: LogIndex(4),
            applied_index: LogIndex(0),
            read_round: 0,
        }
    )));
    assert!(!effects.iter().any(|effect| matches!(
        effect,
        Effect::Persist {
            persist: Persist::Append(_) | Persist::TruncateFrom(_),
            ..
        }
    )));
}

#[test]
fn stale_terms_are_refused() {
    let mut engine = engine("b", 5, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(4),
            prev_log_index: LogIndex(1),
            prev_log_term: Term(0),
            entries: vec![command(4, 2)],
            leader_commit: LogIndex(2),
            read_round: 0,
        },
    );
    let effects = engine.drain_effects();
    assert_eq!(engine.last_index(), LogIndex(1));
    assert!(matches!(
        sends(&effects).as_slice(),
        [(
            _,
            Message::AppendResponse {
                term: Term(5),
                success: false,
                ..
            }
        )]
    ));
}

#[test]
fn a_new_leader_appends_its_leader_start_entry_and_replicates_it() {
    let mut engine = elect(engine("a", 3, vec![]));
    let effects = engine.drain_effects();
    let persisted = position(
        &effects,
        |effect| matches!(effect, Effect::Persist { persist: Persist::Append(entries), .. } if matches!(entries[0].payload, Payload::LeaderStart(_))),
    );
    let sent = position(
        &effects,
        |effect| matches!(effect, Effect::Send { message: Message::AppendRequest { entries, .. }, .. } if !entries.is_empty()),
    );
    assert!(persisted < sent);
    let targets: BTreeSet<String> = sends(&effects)
        .into_iter()
        .filter(|(_, message)| matches!(message, Message::AppendRequest { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(targets, BTreeSet::from(["b".to_string(), "c".to_string()]));
}

#[test]
fn commit_needs_a_durable_majority_and_an_entry_of_the_current_term() {
    let mut engine = elect(engine("a", 3, vec![]));
    engine.drain_effects();
    let index = engine.propose(Millis(1002), b"x".to_vec()).unwrap();
    assert_eq!(index, LogIndex(3));
    engine.drain_effects();
    assert_eq!(engine.commit_index(), LogIndex(0));
    engine.on_message(
        Millis(1003),
        id("b"),
        Message::AppendResponse {
            term: Term(4),
            success: true,
            index: LogIndex(3),
            applied_index: LogIndex(0),
            read_round: 0,
        },
    );
    // A follower has it, but the leader's own copy is not known synced yet: the leader's
    // appends leave before its fsync, so its log counts only once durable.
    engine.drain_effects();
    assert_eq!(engine.commit_index(), LogIndex(0));
    engine.on_persisted(Millis(1004), engine.persist_issued());
    let effects = engine.drain_effects();
    assert_eq!(engine.commit_index(), LogIndex(3));
    let applied: Vec<LogIndex> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Apply(entries) => {
                Some(entries.iter().map(|entry| entry.index).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(applied, vec![LogIndex(1), LogIndex(2), LogIndex(3)]);
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut engine = engine("b", 3, vec![]);
    engine.on_message(
        Millis(1000),
        id("a"),
        Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(1),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(1),
            read_round: 0,
        },
    );
    assert_eq!(
        engine.propose(Millis(1001), b"x".to_vec()),
        Err(ProposeError::NotLeader {
            leader: Some(id("a"))
        })
    );
}

#[test]
fn a_leader_that_hears_no_majority_steps_down() {
    let mut engine = elect(engine("a", 3, vec![]));
    let effects = engine.drain_effects();
    let check = effects
        .iter()
        .find_map(|effect| match effect {
            Effect::SetTimer {
                kind: TimerKind::CheckQuorum,
                generation,
                after_ms,
            } => Some((*generation, *after_ms)),
            _ => None,
        })
        .unwrap();
    // Nobody answers; after two check periods the leader gives up.
    engine.on_timer(Millis(1001 + check.1), TimerKind::CheckQuorum, check.0);
    let effects = engine.drain_effects();
    if engine.role() == Role::Leader {
        let next = effects
            .iter()
            .find_map(|effect| match effect {
                Effect::SetTimer {
                    kind: TimerKind::CheckQuorum,
                    generation,
                    ..
                } => Some(*generation),
                _ => None,
            })
            .unwrap();
        engine.on_timer(Millis(1001 + 3 * check.1), TimerKind::CheckQuorum, next);
    }
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
    assert!(engine.drain_effects().is_empty());
    assert_eq!(engine.role(), Role::Follower);
    // A heartbeat timer on a follower was never set: any generation is stale.
    engine.on_timer(Millis(1000), TimerKind::Heartbeat, 1);
    assert!(engine.drain_effects().is_empty());
    engine.on_timer(Millis(1000), TimerKind::Election, current);
    assert_eq!(engine.role(), Role::PreCandidate);
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
        .transfer_leadership(
            Millis(1002),
            None,
            ha_replicate::entry::ElectionCause::ManualTransfer,
        )
        .unwrap();
    assert_eq!(target.as_str(), "b");
    assert_eq!(
        engine.propose(Millis(1002), b"x".to_vec()),
        Err(ProposeError::TransferInProgress)
    );
    let effects = engine.drain_effects();
    assert!(
        !sends(&effects)
            .iter()
            .any(|(_, message)| matches!(message, Message::TimeoutNow { .. }))
    );
    engine.on_message(
        Millis(1003),
        id("b"),
        Message::AppendResponse {
            term: Term(4),
            success: true,
            index: LogIndex(2),
            applied_index: LogIndex(0),
            read_round: 0,
        },
    );
    let effects = engine.drain_effects();
    assert!(sends(&effects).contains(&(
        "b".to_string(),
        Message::TimeoutNow {
            term: Term(4),
            cause: ha_replicate::entry::ElectionCause::ManualTransfer
        }
    )));
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
    engine.on_message(
        Millis(5_001),
        id("b"),
        Message::AppendResponse {
            term: Term(4),
            success: false,
            index: LogIndex(1),
            applied_index: LogIndex(0),
            read_round: 0,
        },
    );
    let probes: Vec<LogIndex> = sends(&engine.drain_effects())
        .into_iter()
        .filter_map(|(to, message)| match message {
            Message::AppendRequest { prev_log_index, .. } if to == "b" => Some(prev_log_index),
            _ => None,
        })
        .collect();
    assert_eq!(
        probes,
        vec![LogIndex(0)],
        "the next probe starts at the hint"
    );
    assert_eq!(engine.progress()[&id("b")].match_index, LogIndex(0));
}
