//! Real UDP clusters on 127.0.0.1: join, crash detection, graceful leave, restart, encryption.
//!
//! Every wait polls a condition with a deadline (no fixed sleeps), and every node is stopped by
//! dropping it at the end of its test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha_core::keyring::ClusterKey;
use ha_core::{Config, MemberEvent, NodeId, NodeMetadata, NodeState, Priority};
use ha_gossip::{DropCause, GossipNode, GossipSettings};
use tokio::sync::broadcast;

/// Long enough for LAN timing (probe 500 ms, suspicion 1.5 s) on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);

struct Options {
    cluster_name: &'static str,
    keys: Vec<ClusterKey>,
    incarnation: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cluster_name: "test",
            keys: Vec::new(),
            incarnation: 1,
        }
    }
}

async fn start(
    id: &str,
    bind: SocketAddr,
    seeds: Vec<SocketAddr>,
    options: &Options,
) -> GossipNode {
    let mut config = Config::single(NodeId::new(id).unwrap(), bind);
    config.seeds = seeds;
    config.cluster.name = options.cluster_name.to_string();
    config.security.cluster_keys = options.keys.clone();
    let metadata = NodeMetadata::new(Priority(1), bind);
    let settings = GossipSettings::from_config(&config, options.incarnation, metadata);
    // A port just freed by an aborted node may take a moment to be released.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match GossipNode::start(settings.clone(), bind).await {
            Ok(node) => return node,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "bind retry");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("cannot start {id} on {bind}: {error}"),
        }
    }
}

async fn start_cluster(count: usize, options: &Options) -> Vec<GossipNode> {
    let first = start("n1", "127.0.0.1:0".parse().unwrap(), vec![], options).await;
    let seed = first.local_addr();
    let mut nodes = vec![first];
    for index in 2..=count {
        let node = start(
            &format!("n{index}"),
            "127.0.0.1:0".parse().unwrap(),
            vec![seed],
            options,
        )
        .await;
        nodes.push(node);
    }
    nodes
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reachable_ids(node: &GossipNode) -> Vec<String> {
    let mut ids: Vec<String> = node
        .members()
        .iter()
        .filter(|member| member.reachable)
        .map(|member| member.id.to_string())
        .collect();
    ids.sort();
    ids
}

fn sees_all_active(node: &GossipNode, expected: usize) -> bool {
    let members = node.members();
    members.len() == expected
        && members
            .iter()
            .all(|member| member.reachable && member.state() == NodeState::Active)
}

/// Collect events until `done` says the sequence is complete, or time runs out.
async fn events_until(
    receiver: &mut broadcast::Receiver<MemberEvent>,
    mut done: impl FnMut(&[MemberEvent]) -> bool,
) -> Vec<MemberEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Ok(event)) => seen.push(event),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(error)) => panic!("event stream closed: {error}; saw {seen:?}"),
            Err(_) => panic!("timed out; events so far: {seen:?}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_see_each_other_and_all_survivors_detect_a_crash() {
    let mut nodes = start_cluster(5, &Options::default()).await;
    wait_until("every node to see 4 active members", || {
        nodes.iter().all(|node| sees_all_active(node, 4))
    })
    .await;
    for node in &nodes {
        let metadata = node.members()[0].metadata.clone().unwrap();
        assert_eq!(metadata.priority, Priority(1));
        assert!(metadata.voter);
    }

    let mut receivers: Vec<_> = nodes[..4].iter().map(GossipNode::subscribe).collect();
    let crashed = nodes.pop().unwrap();
    let crashed_addr = crashed.local_addr();
    let crash_time = Instant::now();
    drop(crashed); // aborts the task: no leave message

    for receiver in &mut receivers {
        let events = events_until(receiver, |seen| {
            seen.iter().any(|event| {
                matches!(event, MemberEvent::Unreachable(member) if member.gossip_addr == crashed_addr)
            })
        })
        .await;
        assert!(
            !events
                .iter()
                .any(|event| matches!(event, MemberEvent::Left(_))),
            "a crash must not look like a graceful leave: {events:?}"
        );
    }
    println!(
        "all 4 survivors reported the crash after {:?}",
        crash_time.elapsed()
    );
    for node in &nodes {
        let member = node
            .members()
            .into_iter()
            .find(|member| member.gossip_addr == crashed_addr)
            .expect("the crashed member stays listed as unreachable");
        assert_eq!(member.state(), NodeState::Unreachable);
        assert_eq!(reachable_ids(node).len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_reported_leaving_then_gone() {
    let mut nodes = start_cluster(5, &Options::default()).await;
    wait_until("every node to see 4 active members", || {
        nodes.iter().all(|node| sees_all_active(node, 4))
    })
    .await;
    let mut receivers: Vec<_> = nodes[..4].iter().map(GossipNode::subscribe).collect();
    let leaving = nodes.pop().unwrap();
    let leaving_addr = leaving.local_addr();
    leaving.leave().await.unwrap();

    for receiver in &mut receivers {
        let events = events_until(receiver, |seen| {
            seen.iter().any(|event| {
                matches!(event, MemberEvent::Left(member) if member.gossip_addr == leaving_addr)
            })
        })
        .await;
        let about_leaver: Vec<&MemberEvent> = events
            .iter()
            .filter(|event| match event {
                MemberEvent::Updated(member)
                | MemberEvent::Left(member)
                | MemberEvent::Unreachable(member) => member.gossip_addr == leaving_addr,
                _ => false,
            })
            .collect();
        assert!(
            !about_leaver
                .iter()
                .any(|event| matches!(event, MemberEvent::Unreachable(_))),
            "a graceful leave must not be reported as a failure: {about_leaver:?}"
        );
        // LEAVING is visible before the member is gone: either as an update, or carried by the
        // Left event itself when the leave's SWIM message arrived first.
        let leaving_seen = about_leaver.iter().any(|event| match event {
            MemberEvent::Updated(member) | MemberEvent::Left(member) => {
                member.metadata.as_ref().map(|metadata| metadata.state) == Some(NodeState::Leaving)
            }
            _ => false,
        });
        assert!(leaving_seen, "LEAVING never shown: {about_leaver:?}");
    }
    for node in &nodes {
        assert!(
            node.members()
                .iter()
                .all(|member| member.gossip_addr != leaving_addr),
            "a member that left is gone from the table"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_rejoins_under_a_new_incarnation() {
    let mut nodes = start_cluster(4, &Options::default()).await;
    wait_until("every node to see 3 active members", || {
        nodes.iter().all(|node| sees_all_active(node, 3))
    })
    .await;
    let crashed = nodes.pop().unwrap();
    let addr = crashed.local_addr();
    drop(crashed);
    wait_until("survivors to see the crash", || {
        nodes.iter().all(|node| reachable_ids(node).len() == 2)
    })
    .await;

    let options = Options {
        incarnation: 2,
        ..Options::default()
    };
    let restarted = start("n4", addr, vec![nodes[0].local_addr()], &options).await;
    wait_until("every survivor to see n4 again under incarnation 2", || {
        nodes.iter().all(|node| {
            node.members().iter().any(|member| {
                member.gossip_addr == addr && member.reachable && member.incarnation == 2
            })
        })
    })
    .await;
    wait_until("the restarted node to see everyone", || {
        sees_all_active(&restarted, 3)
    })
    .await;

    // A restart faster than failure detection is recognised by the higher incarnation too.
    drop(restarted);
    let options = Options {
        incarnation: 3,
        ..Options::default()
    };
    let fast = start("n4", addr, vec![nodes[0].local_addr()], &options).await;
    wait_until("every survivor to see incarnation 3", || {
        nodes.iter().all(|node| {
            node.members().iter().any(|member| {
                member.gossip_addr == addr && member.reachable && member.incarnation == 3
            })
        })
    })
    .await;
    drop(fast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_cluster_works_and_outsiders_cannot_join() {
    let key = ClusterKey::from_bytes([7; 32]);
    let keyed = Options {
        keys: vec![key.clone()],
        ..Options::default()
    };
    let nodes = start_cluster(3, &keyed).await;
    wait_until("the encrypted cluster to form", || {
        nodes.iter().all(|node| sees_all_active(node, 2))
    })
    .await;
    let seed = nodes[0].local_addr();

    // Wrong key, no key, and the right key but another cluster name.
    let wrong_key = Options {
        keys: vec![ClusterKey::from_bytes([8; 32])],
        ..Options::default()
    };
    let outsiders = [
        start(
            "wrong-key",
            "127.0.0.1:0".parse().unwrap(),
            vec![seed],
            &wrong_key,
        )
        .await,
        start(
            "no-key",
            "127.0.0.1:0".parse().unwrap(),
            vec![seed],
            &Options::default(),
        )
        .await,
        start(
            "other-cluster",
            "127.0.0.1:0".parse().unwrap(),
            vec![seed],
            &Options {
                cluster_name: "other",
                ..keyed
            },
        )
        .await,
    ];
    wait_until("the seed to drop the outsiders' packets by cause", || {
        let drops = nodes[0].drop_counts();
        drops.get(DropCause::WrongKey) >= 2 && drops.get(DropCause::WrongCluster) >= 1
    })
    .await;
    // They keep re-announcing; give them a few rounds to (fail to) get in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for outsider in &outsiders {
        assert!(outsider.members().is_empty(), "an outsider learned members");
    }
    for node in &nodes {
        assert_eq!(reachable_ids(node), {
            let mut ids: Vec<String> = nodes
                .iter()
                .filter(|other| other.local_addr() != node.local_addr())
                .map(|other| other.identity().node_id.to_string())
                .collect();
            ids.sort();
            ids
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_the_cluster_together() {
    let old = ClusterKey::from_bytes([1; 32]);
    let new = ClusterKey::from_bytes([2; 32]);
    // Mid-rotation: some nodes already seal with the new key, all accept both.
    let old_first = Options {
        keys: vec![old.clone(), new.clone()],
        ..Options::default()
    };
    let new_first = Options {
        keys: vec![new, old],
        ..Options::default()
    };
    let first = start("n1", "127.0.0.1:0".parse().unwrap(), vec![], &old_first).await;
    let seed = first.local_addr();
    let second = start("n2", "127.0.0.1:0".parse().unwrap(), vec![seed], &new_first).await;
    let third = start("n3", "127.0.0.1:0".parse().unwrap(), vec![seed], &old_first).await;
    let nodes = [first, second, third];
    wait_until("a cluster with mixed sealing keys to form", || {
        nodes.iter().all(|node| sees_all_active(node, 2))
    })
    .await;
    assert!(nodes.iter().all(|node| node.drop_counts().total() == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_changes_reach_every_member() {
    let nodes = start_cluster(3, &Options::default()).await;
    wait_until("cluster", || {
        nodes.iter().all(|node| sees_all_active(node, 2))
    })
    .await;
    nodes[0]
        .update_metadata(|metadata| {
            metadata.priority = Priority(42);
            metadata.health = ha_core::HealthStatus::Degraded;
            metadata.state = NodeState::Degraded;
        })
        .await
        .unwrap();
    let changed = nodes[0].local_addr();
    wait_until("the new metadata everywhere", || {
        nodes[1..].iter().all(|node| {
            node.members().iter().any(|member| {
                member.gossip_addr == changed
                    && member.state() == NodeState::Degraded
                    && member.metadata.as_ref().map(|m| m.priority) == Some(Priority(42))
            })
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_leaves_a_node_healthy() {
    let nodes = start_cluster(3, &Options::default()).await;
    wait_until("cluster", || {
        nodes.iter().all(|node| sees_all_active(node, 2))
    })
    .await;
    let target = nodes[0].local_addr();
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..5_000u32 {
        // xorshift: cheap deterministic garbage of every length up to 2 KiB.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let length = (state % 2048) as usize;
        let mut packet: Vec<u8> = (0..length).map(|i| (state >> (i % 56)) as u8).collect();
        if round % 3 == 0 && packet.len() > 8 {
            // Some with a valid magic and version, to get past the first check.
            packet[0] = 0xA7;
            packet[1] = 1;
            packet[2] = 0;
        }
        let _ = attacker.send_to(&packet, target).await;
        if round % 100 == 99 {
            // Paced batches: an unpaced burst overflows the socket's receive buffer when the
            // machine is busy (the full suite failed here with fewer than 1,000 counted, while
            // the test alone passed), and packets the kernel drops never reach the node.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    wait_until("the garbage to be counted", || {
        let drops = nodes[0].drop_counts();
        drops.get(DropCause::Malformed)
            + drops.get(DropCause::Oversized)
            + drops.get(DropCause::WrongCluster)
            >= 1_000
    })
    .await;
    // Still a healthy member: it keeps seeing the others, and they keep seeing it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(nodes.iter().all(|node| sees_all_active(node, 2)));
    println!("drops after flood: {:?}", nodes[0].drop_counts());
}
