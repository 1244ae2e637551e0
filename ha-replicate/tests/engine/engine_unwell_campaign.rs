//! Issue 14's hazard: a node that is not HEALTHY does not campaign on its election timeout,
//! and nodes sharing a host or a disk cross a health threshold together, so a cluster in
//! which every voter is equally unwell had no leader at all. The rule that prevents it: such
//! a voter campaigns once it has heard no leader for the unwell wait
//! (`health.unwell_campaign_after_timeouts` maximum election timeouts: 5 x 300 ms = 1,500 ms
//! with the test settings; twice that for UNHEALTHY), and an unhealthy leader hands over only
//! to a strictly healthier voter. One input, the whole effect list out.

use crate::engine_support;
use crate::engine_support::messages::pre_vote_request;

use engine_support::{engine, engine_with, fire, heartbeat, id, leader, peer, send, send_after};
use ha_core::{HealthStatus, Millis};
use ha_replicate::engine::{
    After, Effect, Engine, Message, PeerInfo, PersistId, Role, TimerKind, TransferError,
};
use ha_replicate::entry::ElectionCause;

/// The unwell wait of the test settings (LAN timing: maximum election timeout 300 ms).
const WAIT_MS: u64 = 1_500;

/// The effects with the election timer's random delay set to 0, so whole lists compare.
fn without_jitter(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .map(|effect| match effect {
            Effect::SetTimer {
                kind: kind @ TimerKind::Election,
                generation,
                ..
            } => Effect::SetTimer {
                kind,
                generation,
                after_ms: 0,
            },
            other => other,
        })
        .collect()
}

fn election_timer(engine: &Engine) -> Effect {
    Effect::SetTimer {
        kind: TimerKind::Election,
        generation: engine.timer_generation(TimerKind::Election),
        after_ms: 0,
    }
}

fn pre_vote() -> Message {
    pre_vote_request(4, 1, 0, 1)
}

/// What node a does when its election timer fires and it may campaign: a new election timer
/// (jitter removed) and a pre-vote to each of b and c.
fn starts_a_pre_vote(engine: &Engine) -> Vec<Effect> {
    vec![
        election_timer(engine),
        send("b", pre_vote()),
        send("c", pre_vote()),
    ]
}

/// Node a of the 3-voter cluster in term 3, with `health`.
fn unwell(health: HealthStatus) -> Engine {
    let mut engine = engine("a", 3, vec![]);
    engine.set_local_health(Millis(0), health);
    engine.drain_effects();
    engine
}

#[test]
fn a_degraded_voter_campaigns_only_once_no_leader_was_heard_for_the_wait() {
    let mut engine = unwell(HealthStatus::Degraded);
    let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(WAIT_MS - 1)));
    assert_eq!(
        effects,
        vec![election_timer(&engine)],
        "too early: only a new timer"
    );
    assert_eq!(engine.role(), Role::Follower);

    let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(WAIT_MS)));
    assert_eq!(effects, starts_a_pre_vote(&engine));
    assert_eq!(engine.role(), Role::PreCandidate);
}

#[test]
fn unhealthy_and_unknown_voters_wait_twice_as_long_as_degraded_ones() {
    for health in [HealthStatus::Unhealthy, HealthStatus::Unknown] {
        let mut engine = unwell(health);
        let effects = without_jitter(fire(
            &mut engine,
            TimerKind::Election,
            Millis(2 * WAIT_MS - 1),
        ));
        assert_eq!(effects, vec![election_timer(&engine)], "{health}");
        let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(2 * WAIT_MS)));
        assert_eq!(effects, starts_a_pre_vote(&engine), "{health}");
    }
}

#[test]
fn hearing_a_leader_starts_the_wait_again() {
    let mut engine = unwell(HealthStatus::Degraded);
    engine.on_message(Millis(1_000), id("b"), heartbeat(1, 0, 1, 0));
    engine.drain_effects();
    assert_eq!(engine.leader(), Some(&id("b")));
    // 2,400 ms after the start but only 1,400 ms after the leader was heard.
    let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(2_400)));
    assert_eq!(effects, vec![election_timer(&engine)]);
    let effects = without_jitter(fire(
        &mut engine,
        TimerKind::Election,
        Millis(1_000 + WAIT_MS),
    ));
    let pre_vote = pre_vote_request(5, 1, 0, 1);
    assert_eq!(
        effects,
        vec![
            election_timer(&engine),
            // The pre-votes wait for the term taken from the heartbeat (write 1) to be durable.
            send_after("b", pre_vote.clone(), After::Durable(PersistId(1))),
            send_after("c", pre_vote, After::Durable(PersistId(1)))
        ]
    );
}

#[test]
fn with_the_wait_turned_off_an_unwell_voter_never_campaigns() {
    let mut engine = engine_with("a", 3, vec![], Millis(0), |settings| {
        settings.unwell_campaign_after_ms = None;
    });
    engine.set_local_health(Millis(0), HealthStatus::Degraded);
    let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(1_000_000)));
    assert_eq!(effects, vec![election_timer(&engine)]);
    assert_eq!(engine.elections_started(), 0);
}

#[test]
fn a_healthy_voter_campaigns_on_its_first_election_timeout() {
    let mut engine = engine("a", 3, vec![]);
    let effects = without_jitter(fire(&mut engine, TimerKind::Election, Millis(300)));
    assert_eq!(effects, starts_a_pre_vote(&engine));
}

/// A voter's priority and health, as gossip reports them.
type Voter = (u32, HealthStatus);

fn with_health(priority: u32, health: HealthStatus) -> PeerInfo {
    PeerInfo {
        health,
        ..peer(priority)
    }
}

/// One line per case: b's and c's health and priority, and whom an unhealthy leader picks.
#[test]
fn an_unhealthy_leader_hands_over_only_to_a_strictly_healthier_voter() {
    use HealthStatus::{Degraded, Healthy, Unhealthy, Unknown};
    let table: [(Voter, Voter, Option<&str>); 6] = [
        ((1, Unhealthy), (1, Unhealthy), None),
        ((1, Unhealthy), (1, Degraded), Some("c")),
        ((1, Unknown), (1, Degraded), Some("c")),
        ((1, Healthy), (9, Degraded), Some("b")),
        ((1, Healthy), (9, Healthy), Some("c")),
        ((0, Healthy), (1, Unhealthy), None),
    ];
    for ((b_priority, b_health), (c_priority, c_health), expected) in table {
        let mut engine = leader();
        // Unhealthy before any peer is known: nothing to hand over to yet.
        engine.set_local_health(Millis(1_002), Unhealthy);
        assert!(!engine.transfer_in_progress());
        engine.set_peer_info(Millis(1_002), id("b"), with_health(b_priority, b_health));
        engine.set_peer_info(Millis(1_002), id("c"), with_health(c_priority, c_health));
        engine.drain_effects();
        let chosen = engine
            .transfer_leadership(Millis(1_003), None, ElectionCause::UnhealthyLeader)
            .map(|target| target.to_string());
        let case = format!("b {b_priority} {b_health}, c {c_priority} {c_health}");
        match expected {
            Some(name) => assert_eq!(chosen, Ok(name.to_string()), "{case}"),
            None => assert_eq!(chosen, Err(TransferError::NoEligibleTarget), "{case}"),
        }
        assert_eq!(
            engine.role(),
            Role::Leader,
            "{case}: it leads until the target wins"
        );
    }
}
