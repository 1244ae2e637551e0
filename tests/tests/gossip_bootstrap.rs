//! Gossip and replication together on loopback: three nodes found a cluster through
//! `bootstrap_expect` once they have met by gossip, elect a leader and commit writes; a fourth
//! node that joins later does not found a cluster of its own, it is added as a learner and
//! promoted. Every wait polls with a deadline; every node is stopped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Config, Consistency, NodeId, NodeMetadata, Priority};
use ha_gossip::{GossipNode, GossipSettings};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::transport::TransportSettings;
use ha_tests::register::{RegisterCommand, RegisterMachine};

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    replica: Arc<ReplicaNode<RegisterMachine>>,
    gossip: GossipNode,
    forwarder: tokio::task::JoinHandle<()>,
}

async fn start(index: usize, seeds: Vec<std::net::SocketAddr>) -> Node {
    let id = NodeId::new(format!("n{index}")).unwrap();
    let mut config = Config::full_ha(id.clone(), "127.0.0.1:0".parse().unwrap(), seeds.clone());
    if seeds.is_empty() {
        config.seeds = vec!["127.0.0.1:9".parse().unwrap()]; // validated configs need one
    }
    config.priority = Priority(1);
    let settings = NodeSettings {
        replica: ReplicaSettings::from_config(&config),
        transport: TransportSettings::new(id.clone(), "127.0.0.1:0".parse().unwrap(), "ha"),
        peers: Default::default(),
        bootstrap: None,
        bootstrap_expect: Some(3),
    };
    let store = MemoryStore::open(MemoryDisk::new());
    let replica = Arc::new(
        ReplicaNode::start(settings, RegisterMachine::default(), store)
            .await
            .unwrap(),
    );
    let mut metadata = NodeMetadata::new(config.priority, replica.local_addr());
    metadata.voter = true;
    metadata.health = ha_core::HealthStatus::Healthy;
    let mut gossip_settings = GossipSettings::from_config(&config, 1, metadata);
    gossip_settings.seeds = seeds;
    let gossip = GossipNode::start(gossip_settings, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut events = gossip.subscribe();
    let target = Arc::clone(&replica);
    let forwarder = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if target.on_member_event(event).await.is_err() {
                return;
            }
        }
    });
    Node {
        replica,
        gossip,
        forwarder,
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_meet_by_gossip_found_one_cluster_and_a_latecomer_is_promoted() {
    let first = start(1, vec![]).await;
    let seed = first.gossip.local_addr();
    let mut nodes = vec![first];
    for index in 2..=3 {
        nodes.push(start(index, vec![seed]).await);
    }
    wait_until("one leader among the founders", || {
        nodes.iter().filter(|node| node.replica.is_leader()).count() == 1
    })
    .await;
    let client = nodes[1].replica.client();
    let command = RegisterCommand::Write {
        key: "k".into(),
        value: "v".into(),
    };
    client
        .write(command, Consistency::Quorum, Duration::from_secs(5))
        .await
        .unwrap();
    let voters = nodes[0].replica.status().await.unwrap().membership.voters;
    assert_eq!(voters.len(), 3, "{voters:?}");

    // A latecomer sees four voters, so it does not found a cluster; the leader adds it.
    nodes.push(start(4, vec![seed]).await);
    let leader = nodes
        .iter()
        .position(|node| node.replica.is_leader())
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let membership = nodes[leader].replica.status().await.unwrap().membership;
        if membership.voters.len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "n4 not promoted: {membership:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = nodes[3]
        .replica
        .client()
        .read("k".to_string(), Consistency::Quorum, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    let terms: Vec<_> = nodes.iter().map(|node| node.replica.role().term).collect();
    println!("terms after the latecomer joined: {terms:?}");
    for node in nodes {
        node.forwarder.abort();
        drop(node.gossip);
        if let Ok(replica) = Arc::try_unwrap(node.replica) {
            replica.shutdown(Duration::from_millis(500)).await;
        }
    }
}
