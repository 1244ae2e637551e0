//! Gossip events to replication facts: peer info, addresses, and the bootstrap decision.

use std::net::SocketAddr;

use ha_core::{
    HealthStatus, MemberEvent, MemberInfo, Millis, NodeId, NodeMetadata, NodeState, Priority,
};
use ha_replicate::membership_feed::MembershipFeed;

fn member(name: &str, port: u16, state: NodeState, voter: bool) -> MemberInfo {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut metadata = NodeMetadata::new(
        Priority(port as u32 % 10),
        ([127, 0, 0, 1], port + 1000).into(),
    );
    metadata.state = state;
    metadata.voter = voter;
    metadata.health = HealthStatus::Healthy;
    MemberInfo {
        id: NodeId::new(name).unwrap(),
        gossip_addr: addr,
        incarnation: 1,
        metadata: Some(metadata),
        reachable: true,
    }
}

/// Voter `name` (ACTIVE, metadata known) comes up at time 0.
fn up(feed: &mut MembershipFeed, name: &str, port: u16) {
    feed.on_event(
        Millis(0),
        &MemberEvent::Up(member(name, port, NodeState::Active, true)),
    );
}

fn feed(expect: usize) -> MembershipFeed {
    MembershipFeed::new(NodeId::new("n1").unwrap(), true, expect)
}

#[test]
fn founds_only_with_exactly_the_expected_voters() {
    let mut feed = feed(3);
    up(&mut feed, "n2", 7002);
    assert_eq!(feed.bootstrap_voters(), None, "two of three");
    // A non-voter does not count.
    feed.on_event(
        Millis(0),
        &MemberEvent::Up(member("w", 7009, NodeState::Active, false)),
    );
    assert_eq!(feed.bootstrap_voters(), None);
    up(&mut feed, "n3", 7003);
    let voters = feed.bootstrap_voters().expect("three voters met");
    let names: Vec<&str> = voters.voters.iter().map(NodeId::as_str).collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    // A fourth voter means an existing cluster is being joined: never re-found.
    up(&mut feed, "n4", 7004);
    assert_eq!(feed.bootstrap_voters(), None);
}

#[test]
fn a_member_whose_metadata_has_not_arrived_blocks_founding() {
    // Found by the chaos tests: five nodes, bootstrap_expect 3; a node saw two voters with
    // metadata and a third member up without it yet, founded with the two, and another node
    // founded a second cluster with other voters.
    let mut feed = feed(3);
    up(&mut feed, "n2", 7002);
    up(&mut feed, "n3", 7003);
    let mut unknown = member("n4", 7004, NodeState::Active, true);
    unknown.metadata = None;
    feed.on_event(Millis(0), &MemberEvent::Up(unknown));
    assert_eq!(feed.bootstrap_voters(), None, "n4 may be a fourth voter");
    feed.on_event(
        Millis(10),
        &MemberEvent::Updated(member("n4", 7004, NodeState::Active, true)),
    );
    assert_eq!(
        feed.bootstrap_voters(),
        None,
        "four voters: more than expected"
    );
}

#[test]
fn a_member_that_leads_blocks_founding() {
    let mut feed = feed(3);
    feed.on_event(
        Millis(0),
        &MemberEvent::Up(member("n2", 7002, NodeState::Leader, true)),
    );
    up(&mut feed, "n3", 7003);
    assert_eq!(feed.bootstrap_voters(), None);
}

#[test]
fn unreachable_members_do_not_count_and_keep_their_first_unreachable_time() {
    let mut feed = feed(3);
    up(&mut feed, "n2", 7002);
    up(&mut feed, "n3", 7003);
    let mut down = member("n3", 7003, NodeState::Active, true);
    down.reachable = false;
    let first = feed
        .on_event(Millis(100), &MemberEvent::Unreachable(down.clone()))
        .unwrap();
    assert_eq!(first.info.unreachable_since, Some(Millis(100)));
    assert!(!first.info.reachable);
    let again = feed
        .on_event(Millis(900), &MemberEvent::Unreachable(down))
        .unwrap();
    assert_eq!(
        again.info.unreachable_since,
        Some(Millis(100)),
        "the first time is kept"
    );
    assert_eq!(feed.bootstrap_voters(), None);
    let back = feed
        .on_event(
            Millis(1000),
            &MemberEvent::Up(member("n3", 7003, NodeState::Active, true)),
        )
        .unwrap();
    assert_eq!(back.info.unreachable_since, None);
    assert!(feed.bootstrap_voters().is_some());
}

#[test]
fn updates_carry_address_priority_health_and_vote_wish() {
    let mut feed = feed(3);
    let update = feed
        .on_event(
            Millis(0),
            &MemberEvent::Up(member("n2", 7002, NodeState::Active, true)),
        )
        .unwrap();
    assert_eq!(update.rpc_addr, Some(([127, 0, 0, 1], 8002).into()));
    assert_eq!(update.info.priority, Priority(2));
    assert_eq!(update.info.health, HealthStatus::Healthy);
    assert!(update.info.wants_vote && update.info.reachable);
    assert!(feed.on_event(Millis(0), &MemberEvent::SelfActive).is_none());
    let left = feed
        .on_event(
            Millis(5),
            &MemberEvent::Left(member("n2", 7002, NodeState::Leaving, true)),
        )
        .unwrap();
    assert!(!left.info.reachable);
    assert_eq!(feed.peers().len(), 1);
}
