//! Issue 17, item 4: a leader's own sync wakes its event loop only when a commit waits for it
//! (`Engine::waits_for_own_durability`, read by the driver's storage reports in
//! `driver/thread_reports.rs`). Anything but a leader always waits: its acknowledgements and
//! votes leave only once its writes are durable.

use crate::engine_support;

use engine_support::messages::append_response;
use engine_support::{engine, id, leader, membership_entry};
use ha_core::{LogIndex, Millis, Term};
use ha_replicate::engine::{Engine, EngineSettings, EngineStart, Message, Role};
use ha_replicate::hard_state::HardState;
use ha_replicate::membership::VoterSet;

/// b's acknowledgement of everything through `index` in term 4.
fn acknowledged_through(index: u64) -> Message {
    append_response(4, true, index, 0, 0)
}

#[test]
fn a_leader_waits_for_its_own_sync_only_once_a_follower_has_acknowledged() {
    let mut engine = leader();
    let committed = engine.commit_index();
    assert!(
        engine.durable_index() < engine.last_index(),
        "its LeaderStart is not synced"
    );
    assert!(
        !engine.waits_for_own_durability(),
        "no follower has the LeaderStart: its own sync alone commits nothing"
    );
    // b has it: the commit now waits only for the leader's own copy.
    engine.on_message(Millis(1002), id("b"), acknowledged_through(2));
    assert_eq!(engine.commit_index(), committed, "not durable here yet");
    assert!(engine.waits_for_own_durability());
    engine.on_persisted(Millis(1003), engine.persist_issued());
    assert_eq!(engine.commit_index(), LogIndex(2));
    assert!(!engine.waits_for_own_durability(), "synced and committed");
    // A new entry: no wait until a follower has it too.
    engine.propose(Millis(1004), b"x".to_vec()).expect("leads");
    assert!(!engine.waits_for_own_durability());
    engine.on_message(Millis(1005), id("b"), acknowledged_through(3));
    assert!(engine.waits_for_own_durability());
}

#[test]
fn a_sole_voter_always_waits_for_its_own_sync() {
    let start = EngineStart {
        hard_state: HardState {
            term: Term(0),
            voted_for: None,
        },
        snapshot: None,
        entries: vec![membership_entry(0, 1, VoterSet::with_voters([id("a")]))],
    };
    let mut engine = Engine::new(EngineSettings::for_test(id("a")), start, Millis(0), 7);
    engine.campaign(Millis(1000));
    assert_eq!(engine.role(), Role::Leader, "it is the whole quorum");
    assert!(
        engine.waits_for_own_durability(),
        "its own copy is all a commit waits for"
    );
    engine.on_persisted(Millis(1001), engine.persist_issued());
    assert!(!engine.waits_for_own_durability(), "committed");
}

#[test]
fn a_follower_and_a_candidate_always_wait() {
    let mut engine = engine("b", 3, vec![]);
    assert!(engine.waits_for_own_durability(), "follower");
    engine.campaign(Millis(1000));
    assert!(engine.waits_for_own_durability(), "candidate");
}
