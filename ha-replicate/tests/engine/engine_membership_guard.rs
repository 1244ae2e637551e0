//! A leader proposes no membership change until an entry of its own term has committed
//! (the Raft dissertation's errata to single-server changes, raft-dev 2015). Without it a new
//! leader could add its change next to a different one an earlier leader left on a minority,
//! and the two configurations need not share a majority. Each test feeds one input and
//! asserts the whole effect list.

use crate::engine_support;
use crate::engine_support::messages::append_request;

use engine_support::{
    acknowledge, fire, id, leader_after_commit, membership_entry, peer, send, three,
};
use ha_core::{LogIndex, Millis};
use ha_replicate::engine::{Effect, ProposeError, TimerKind};

#[test]
fn a_manual_change_waits_for_the_leaders_own_entry_to_commit() {
    let mut engine = leader_after_commit();
    let mut next = three();
    next.learners.insert(id("d"));
    // The previous configuration is committed (index 1, below the commit index 2), but the
    // LeaderStart entry (index 3) is not: refused, nothing happens.
    assert_eq!(
        engine.propose_membership(Millis(1002), next.clone()),
        Err(ProposeError::LeaderTermUncommitted)
    );
    assert_eq!(engine.drain_effects(), vec![]);
    // b acknowledges it and the leader's copy is durable: it commits.
    acknowledge(&mut engine, Millis(1003), 3, 0);
    assert_eq!(engine.commit_index(), LogIndex(3));
    assert_eq!(
        engine.propose_membership(Millis(1004), next.clone()),
        Ok(LogIndex(4))
    );
    let entry = membership_entry(4, 4, next);
    let append = append_request(4, 3, 4, vec![entry.clone()], 3, 0);
    // c still has an append in flight (probing), so only b and the new learner d get it.
    assert_eq!(
        engine.drain_effects(),
        vec![
            engine_support::effects::append(3, vec![entry]),
            send("b", append.clone()),
            send("d", append),
        ]
    );
}

#[test]
fn the_first_heartbeat_of_a_new_leader_adds_no_learner() {
    let mut engine = leader_after_commit();
    // d wants to vote and gossip reaches it: the automatic path would add it as a learner.
    engine.set_peer_info(Millis(1002), id("d"), peer(1));
    let effects = fire(&mut engine, TimerKind::Heartbeat, Millis(1051));
    let leader_start = engine.entry(LogIndex(3)).cloned().unwrap();
    let append = append_request(4, 2, 3, vec![leader_start], 2, 1);
    assert_eq!(
        effects,
        vec![
            Effect::SetTimer {
                kind: TimerKind::Heartbeat,
                generation: engine.timer_generation(TimerKind::Heartbeat),
                after_ms: 50,
            },
            send("b", append.clone()),
            send("c", append),
        ]
    );
    assert_eq!(engine.membership(), &three());
    // Once the LeaderStart commits, the next heartbeat adds d as a learner.
    acknowledge(&mut engine, Millis(1060), 3, 1);
    fire(&mut engine, TimerKind::Heartbeat, Millis(1101));
    let mut expected = three();
    expected.learners.insert(id("d"));
    assert_eq!(engine.membership(), &expected);
}
