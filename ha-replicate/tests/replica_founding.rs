//! Issue 17: the `bootstrap_expect` founding rule runs inside the replica core. Member events
//! go in through `ReplicaCore::on_member_event`, the settle wait ends on the core's own
//! housekeeping tick, and a founding comes out as `ReplicaEffect::Founded`: the driver and
//! the simulator feed the same inputs and cannot found on their own.

use std::net::SocketAddr;

use ha_core::{
    HealthStatus, LogIndex, MemberEvent, MemberInfo, Millis, NodeId, NodeMetadata, NodeState,
    Priority, Term,
};
use ha_replicate::membership::VoterSet;
use ha_replicate::membership_feed::FOUNDING_SETTLE_ELECTION_TIMEOUTS;
use ha_replicate::replica::{ReplicaCore, ReplicaEffect, ReplicaSettings, ReplicaTimer};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Node n1, empty, founding with `bootstrap_expect`.
fn core(bootstrap_expect: Option<usize>) -> ReplicaCore<(), MemoryStore> {
    let settings = ReplicaSettings {
        bootstrap_expect,
        ..ReplicaSettings::for_test(id("n1"))
    };
    let store = MemoryStore::open(MemoryDisk::new());
    let mut core = ReplicaCore::new(settings, (), store, Millis(0), 7).unwrap();
    core.drain_effects();
    core
}

/// How long the founding set must stay the same: five longest election timeouts.
fn settle_ms(core: &ReplicaCore<(), MemoryStore>) -> u64 {
    core.engine().settings().election_timeout_max_ms * FOUNDING_SETTLE_ELECTION_TIMEOUTS
}

/// Voter `name` is up, ACTIVE, with its RPC address at `port`.
fn up(name: &str, port: u16) -> MemberEvent {
    let rpc_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut metadata = NodeMetadata::new(Priority(1), rpc_addr);
    metadata.state = NodeState::Active;
    metadata.health = HealthStatus::Healthy;
    metadata.voter = true;
    MemberEvent::Up(MemberInfo {
        id: id(name),
        gossip_addr: ([127, 0, 0, 1], port + 1000).into(),
        incarnation: 1,
        metadata: Some(metadata),
        reachable: true,
    })
}

fn founded(effects: &[ReplicaEffect]) -> Vec<VoterSet> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            ReplicaEffect::Founded { voters } => Some(voters.clone()),
            _ => None,
        })
        .collect()
}

fn three() -> VoterSet {
    VoterSet::with_voters([id("n1"), id("n2"), id("n3")])
}

#[test]
fn the_core_founds_on_its_housekeeping_tick_once_the_set_has_settled() {
    let mut core = core(Some(3));
    let settle = settle_ms(&core);
    let peer = core.on_member_event(Millis(0), &up("n2", 7002)).unwrap();
    assert_eq!(peer.node, id("n2"));
    assert_eq!(peer.rpc_addr, Some(([127, 0, 0, 1], 7002).into()));
    assert!(
        core.engine().peers().contains_key(&id("n2")),
        "peer facts reach the engine"
    );
    core.on_member_event(Millis(10), &up("n3", 7003)).unwrap();
    assert!(
        core.on_member_event(Millis(10), &MemberEvent::SelfActive)
            .is_none()
    );
    assert_eq!(founded(&core.drain_effects()), vec![]);

    // The set {n1, n2, n3} has been the answer since 10: not yet settled one tick before.
    core.on_timer(Millis(10 + settle - 1), ReplicaTimer::Housekeeping);
    assert_eq!(founded(&core.drain_effects()), vec![]);
    assert_eq!(core.engine().last_index(), LogIndex(0));
    core.on_timer(Millis(10 + settle), ReplicaTimer::Housekeeping);
    assert_eq!(founded(&core.drain_effects()), vec![three()]);
    assert_eq!(core.engine().last_index(), LogIndex(1));
    assert_eq!(core.engine().membership(), &three());

    // A cluster that exists never re-founds.
    core.on_timer(Millis(20 + settle), ReplicaTimer::Housekeeping);
    assert_eq!(founded(&core.drain_effects()), vec![]);
    assert!(!core.on_bootstrap(Millis(30 + settle), three()));
}

#[test]
fn a_member_event_after_the_settle_time_founds_at_once() {
    let mut core = core(Some(3));
    let settle = settle_ms(&core);
    core.on_member_event(Millis(0), &up("n2", 7002));
    core.on_member_event(Millis(0), &up("n3", 7003));
    // An update that changes nothing, after the wait: the event itself founds.
    core.on_member_event(Millis(settle), &up("n3", 7003));
    assert_eq!(founded(&core.drain_effects()), vec![three()]);
}

#[test]
fn without_bootstrap_expect_the_core_never_founds() {
    let mut core = core(None);
    core.on_member_event(Millis(0), &up("n2", 7002));
    core.on_member_event(Millis(0), &up("n3", 7003));
    for tick in 1..=400 {
        core.on_timer(Millis(tick * 10), ReplicaTimer::Housekeeping);
    }
    assert_eq!(founded(&core.drain_effects()), vec![]);
    assert_eq!(core.engine().last_index(), LogIndex(0));
    assert_eq!(core.engine().term(), Term(0));
}

#[test]
fn a_voter_more_than_expected_joins_instead_of_founding() {
    let mut core = core(Some(3));
    core.on_member_event(Millis(0), &up("n2", 7002));
    core.on_member_event(Millis(0), &up("n3", 7003));
    core.on_member_event(Millis(0), &up("n4", 7004));
    for tick in 1..=400 {
        core.on_timer(Millis(tick * 10), ReplicaTimer::Housekeeping);
    }
    assert_eq!(founded(&core.drain_effects()), vec![]);
    assert_eq!(core.engine().last_index(), LogIndex(0));
}

#[test]
fn an_explicit_bootstrap_is_reported_like_a_founding() {
    let mut core = core(None);
    assert!(core.on_bootstrap(Millis(0), three()));
    assert_eq!(founded(&core.drain_effects()), vec![three()]);
    assert_eq!(core.engine().last_index(), LogIndex(1));
}
