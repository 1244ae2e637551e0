//! Membership changes an operator asks for (`Engine::request_member_change`, the admin API's
//! `POST /v1/members` and `DELETE /v1/members/<id>`): what the leader appends, and each
//! refusal with its reason. Each test feeds one input and asserts the whole effect list.

use crate::engine_support;
use crate::engine_support::messages::{append_request, timeout_now};

use engine_support::{
    acknowledge, fire, id, leader_after_commit, leader_after_commit_with, membership_entry, peer,
    send,
};
use ha_core::{HealthStatus, LogIndex, Millis, Priority, Term};
use ha_replicate::engine::{
    Engine, EngineSettings, EngineStart, MemberChangeError, MemberChangeStep, MemberRequest,
    MembershipRefusal, Message, PeerInfo, Role, TimerKind,
};
use ha_replicate::entry::{ElectionCause, Entry, Payload};
use ha_replicate::membership::VoterSet;

fn add(name: &str, voter: bool) -> MemberRequest {
    MemberRequest::Add {
        node: id(name),
        addr: Some("127.0.0.1:7999".parse().unwrap()),
        voter,
    }
}

fn remove(name: &str) -> MemberRequest {
    MemberRequest::Remove { node: id(name) }
}

fn refused(refusal: MembershipRefusal) -> Result<MemberChangeStep, MemberChangeError> {
    Err(MemberChangeError::Refused(refusal))
}

/// A running peer that does not want a vote (started with `voter = false`).
fn quiet_peer() -> PeerInfo {
    PeerInfo {
        priority: Priority(1),
        health: HealthStatus::Healthy,
        reachable: true,
        wants_vote: false,
        unreachable_since: None,
    }
}

/// Node a leading term 4 with its LeaderStart (index 3) committed; effects drained.
fn settled_leader() -> Engine {
    let mut engine = leader_after_commit();
    acknowledge(&mut engine, Millis(1003), 3, 0);
    assert_eq!(engine.commit_index(), LogIndex(3));
    engine
}

fn append_of(entry: &Entry, prev_index: u64, commit: u64) -> Message {
    Message::AppendRequest {
        term: Term(4),
        prev_log_index: LogIndex(prev_index),
        prev_log_term: Term(4),
        entries: vec![entry.clone()],
        leader_commit: LogIndex(commit),
        read_round: 0,
    }
}

/// d acknowledges everything up to `index`.
fn acknowledge_from(engine: &mut Engine, name: &str, now: Millis, index: u64) {
    engine.on_message(
        now,
        id(name),
        Message::AppendResponse {
            term: Term(4),
            success: true,
            index: LogIndex(index),
            applied_index: LogIndex(0),
            read_round: 0,
        },
    );
    engine.drain_effects();
}

#[test]
fn adding_a_node_appends_it_as_a_learner_and_sends_it_the_entry() {
    let mut engine = settled_leader();
    let step = engine.request_member_change(Millis(1004), &add("d", true));
    assert_eq!(step, Ok(MemberChangeStep::Proposed(LogIndex(4))));
    let mut next = VoterSet::with_voters([id("a"), id("b"), id("c")]);
    next.learners.insert(id("d"));
    let entry = membership_entry(4, 4, next.clone());
    let append = append_of(&entry, 3, 3);
    // c still has an append in flight (probing), so only b and the new learner d get it.
    assert_eq!(
        engine.drain_effects(),
        vec![
            engine_support::effects::append(3, vec![entry]),
            send("b", append.clone()),
            send("d", append),
        ]
    );
    assert_eq!(engine.membership(), &next);
}

#[test]
fn a_second_change_is_refused_while_the_first_is_pending() {
    let mut engine = settled_leader();
    engine
        .request_member_change(Millis(1004), &add("d", true))
        .unwrap();
    engine.drain_effects();
    assert_eq!(
        engine.request_member_change(Millis(1005), &remove("c")),
        refused(MembershipRefusal::ChangePending { index: LogIndex(4) })
    );
    assert_eq!(engine.drain_effects(), vec![]);
    // Adding the same learner again is idempotent: it answers the pending entry's index.
    assert_eq!(
        engine.request_member_change(Millis(1005), &add("d", true)),
        Ok(MemberChangeStep::AlreadyDone(LogIndex(4)))
    );
    assert_eq!(engine.drain_effects(), vec![]);
}

#[test]
fn a_learner_added_as_voter_is_promoted_once_caught_up_without_gossip() {
    let mut engine = settled_leader();
    engine
        .request_member_change(Millis(1004), &add("d", true))
        .unwrap();
    engine.drain_effects();
    acknowledge(&mut engine, Millis(1005), 4, 0);
    assert_eq!(engine.commit_index(), LogIndex(4));
    // d has not caught up: the next heartbeat promotes nobody.
    fire(&mut engine, TimerKind::Heartbeat, Millis(1051));
    assert!(!engine.membership().is_voter(&id("d")));
    // d catches up; gossip knows nothing of it, the operator's intent suffices.
    acknowledge_from(&mut engine, "d", Millis(1060), 4);
    fire(&mut engine, TimerKind::Heartbeat, Millis(1101));
    let mut voters = VoterSet::with_voters([id("a"), id("b"), id("c"), id("d")]);
    voters.learners.clear();
    assert_eq!(engine.membership(), &voters);
}

#[test]
fn a_learner_added_without_voter_stays_a_learner() {
    let mut engine = settled_leader();
    engine
        .request_member_change(Millis(1004), &add("d", false))
        .unwrap();
    engine.drain_effects();
    engine.set_peer_info(Millis(1004), id("d"), quiet_peer());
    acknowledge(&mut engine, Millis(1005), 4, 0);
    acknowledge_from(&mut engine, "d", Millis(1006), 4);
    fire(&mut engine, TimerKind::Heartbeat, Millis(1051));
    fire(&mut engine, TimerKind::Heartbeat, Millis(1101));
    assert!(engine.membership().learners.contains(&id("d")));
    assert!(!engine.membership().is_voter(&id("d")));
}

#[test]
fn a_voter_cannot_be_added_as_a_learner() {
    let mut engine = settled_leader();
    assert_eq!(
        engine.request_member_change(Millis(1004), &add("b", false)),
        refused(MembershipRefusal::AlreadyVoter { node: id("b") })
    );
    assert_eq!(
        engine.request_member_change(Millis(1004), &add("b", true)),
        Ok(MemberChangeStep::AlreadyDone(LogIndex(1)))
    );
    assert_eq!(engine.drain_effects(), vec![]);
}

#[test]
fn removing_a_voter_that_leaves_no_reachable_quorum_is_refused() {
    let mut engine = settled_leader();
    // b answered at 1003, c last at the election (1001). Just past the longest election
    // timeout after 1001, only b counts as reachable.
    let now = Millis(1002 + engine.settings().election_timeout_max_ms);
    assert_eq!(
        engine.request_member_change(now, &remove("b")),
        refused(MembershipRefusal::QuorumUnreachable {
            node: id("b"),
            reachable: 1,
            voters: 2,
            quorum: 2,
        })
    );
    assert_eq!(engine.drain_effects(), vec![]);
    // Removing the silent c leaves a and b, both reachable: allowed.
    let step = engine.request_member_change(now, &remove("c"));
    assert_eq!(step, Ok(MemberChangeStep::Proposed(LogIndex(4))));
    let entry = membership_entry(4, 4, VoterSet::with_voters([id("a"), id("b")]));
    assert_eq!(
        engine.drain_effects(),
        vec![
            engine_support::effects::append(3, vec![entry.clone()]),
            send("b", append_of(&entry, 3, 3)),
        ]
    );
}

#[test]
fn removing_a_running_node_that_wants_to_vote_is_refused() {
    let mut engine = settled_leader();
    engine.set_peer_info(Millis(1003), id("c"), peer(1));
    assert_eq!(
        engine.request_member_change(Millis(1004), &remove("c")),
        refused(MembershipRefusal::WouldRejoin { node: id("c") })
    );
    assert_eq!(engine.drain_effects(), vec![]);
    // Started with voter = false, it would not be added back: removed.
    engine.set_peer_info(Millis(1004), id("c"), quiet_peer());
    assert_eq!(
        engine.request_member_change(Millis(1004), &remove("c")),
        Ok(MemberChangeStep::Proposed(LogIndex(4)))
    );
    assert_eq!(
        engine.membership(),
        &VoterSet::with_voters([id("a"), id("b")])
    );
}

#[test]
fn removing_an_unknown_node_is_refused() {
    let mut engine = settled_leader();
    assert_eq!(
        engine.request_member_change(Millis(1004), &remove("z")),
        refused(MembershipRefusal::NotAMember { node: id("z") })
    );
    assert_eq!(engine.drain_effects(), vec![]);
}

#[test]
fn removing_a_leader_configured_to_vote_is_refused_without_a_transfer() {
    let mut engine = settled_leader();
    engine.set_peer_info(Millis(1003), id("b"), quiet_peer());
    assert!(engine.settings().wants_vote);
    assert_eq!(
        engine.request_member_change(Millis(1004), &remove("a")),
        refused(MembershipRefusal::WouldRejoin { node: id("a") })
    );
    assert_eq!(engine.drain_effects(), vec![]);
    assert!(engine.is_leader());
}

#[test]
fn removing_the_leader_hands_leadership_over_first() {
    let mut engine = leader_after_commit_with(|settings| settings.wants_vote = false);
    acknowledge(&mut engine, Millis(1003), 3, 0);
    engine.set_peer_info(Millis(1003), id("b"), quiet_peer());
    let step = engine.request_member_change(Millis(1004), &remove("a"));
    assert_eq!(step, Ok(MemberChangeStep::TransferStarted(id("b"))));
    // b has the whole log (it acknowledged index 3): it is told to campaign at once, and
    // gets a heartbeat; the membership is unchanged.
    assert_eq!(
        engine.drain_effects(),
        vec![
            send("b", timeout_now(4, ElectionCause::ManualTransfer)),
            send("b", append_request(4, 3, 4, vec![], 3, 0)),
        ]
    );
    assert_eq!(
        engine.membership(),
        &VoterSet::with_voters([id("a"), id("b"), id("c")])
    );
    // Further changes wait for the transfer.
    assert!(matches!(
        engine.request_member_change(Millis(1005), &add("d", true)),
        Err(MemberChangeError::Propose(_))
    ));
}

#[test]
fn a_new_leader_refuses_until_its_first_entry_commits() {
    let mut engine = leader_after_commit();
    assert_eq!(
        engine.request_member_change(Millis(1002), &add("d", true)),
        refused(MembershipRefusal::LeaderTermUncommitted)
    );
    assert_eq!(engine.drain_effects(), vec![]);
}

#[test]
fn the_last_voter_is_never_removed() {
    let settings = EngineSettings::for_test(id("a"));
    let start = EngineStart {
        entries: vec![Entry {
            term: Term(0),
            index: LogIndex(1),
            payload: Payload::Membership(VoterSet::with_voters([id("a")])),
        }],
        ..EngineStart::default()
    };
    let mut engine = Engine::new(settings, start, Millis(0), 7);
    engine.campaign(Millis(1000));
    engine.on_persisted(Millis(1000), engine.persist_issued());
    engine.drain_effects();
    assert_eq!(engine.role(), Role::Leader);
    assert_eq!(engine.commit_index(), engine.last_index());
    assert_eq!(
        engine.request_member_change(Millis(1001), &remove("a")),
        refused(MembershipRefusal::LastVoter { node: id("a") })
    );
    assert_eq!(engine.drain_effects(), vec![]);
}

#[test]
fn refusal_codes_are_stable() {
    let codes = [
        MembershipRefusal::ChangePending { index: LogIndex(1) }.code(),
        MembershipRefusal::LeaderTermUncommitted.code(),
        MembershipRefusal::LastVoter { node: id("a") }.code(),
        MembershipRefusal::WouldRejoin { node: id("a") }.code(),
        MembershipRefusal::NotAMember { node: id("a") }.code(),
        MembershipRefusal::AlreadyVoter { node: id("a") }.code(),
        MembershipRefusal::NoTransferTarget { node: id("a") }.code(),
    ];
    assert_eq!(
        codes,
        [
            "change_pending",
            "leader_term_uncommitted",
            "last_voter",
            "would_rejoin",
            "not_a_member",
            "already_voter",
            "no_transfer_target",
        ]
    );
}
