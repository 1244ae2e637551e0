//! Founding a cluster through `bootstrap_expect`.
//!
//! In the simulator, under many seeds: gossip and replication side by side on every node
//! ([`ha_tests::founding`]), every member event through `ReplicaCore::on_member_event` (the
//! step the tokio driver takes), starts staggered, messages lost, duplicated and reordered,
//! members seen up before their metadata, non-voters among them, a voter that arrives once
//! the cluster runs, or a founding voter that crashes (losing unsynced writes) and restarts. Invariant: at most one cluster is founded (every founding uses the
//! same voters), one leader per term; and the cluster does form.
//!
//! On loopback, once: three nodes found a cluster once they have met by gossip, elect a leader
//! and commit writes; a fourth node that joins later does not found a cluster of its own, it is
//! added as a learner and promoted. Every wait polls with a deadline; every node is stopped at
//! the end.
//!
//! Replay a simulated failure with the command it prints; a longer sweep:
//! `HA_SIM_SEEDS=2000 cargo test -p ha-tests --profile sim --test gossip_bootstrap founding`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{Config, Consistency, Millis, NodeId, NodeMetadata, Priority, Timing};
use ha_gossip::{GossipNode, GossipSettings};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::transport::TransportSettings;
use ha_tests::founding::{
    FoundingNode, FoundingNodeOptions, FoundingOptions, check_one_cluster_founded,
    check_one_leader_per_term_founding, founding_simulator, foundings,
};
use ha_tests::register::{RegisterCommand, RegisterMachine};
use ha_tests::replica::replica_id;
use ha_tests::sim::{NetworkConfig, Simulator};
use ha_tests::with_seeds;
use rand::{RngExt, SeedableRng};

/// Seeds of each founding scenario in the default run (CI).
const FOUNDING_SEEDS: u64 = 60;

/// The nodes that lead now, among running ones.
fn leaders(sim: &Simulator<FoundingNode>) -> Vec<usize> {
    sim.running_nodes()
        .into_iter()
        .filter(|node| {
            sim.actor(*node)
                .is_some_and(|actor| actor.core().engine().is_leader())
        })
        .collect()
}

/// Whether `voters` all run, one of them leads, and all of them have the leader's
/// configuration with exactly `voters` as voters and have applied past the founding entry.
fn cluster_formed(sim: &Simulator<FoundingNode>, voters: &BTreeSet<NodeId>) -> bool {
    let nodes: Vec<usize> = (0..sim.node_count())
        .filter(|node| voters.contains(&replica_id(*node)))
        .collect();
    leaders(sim).len() == 1
        && nodes.iter().all(|node| {
            sim.actor(*node).is_some_and(|actor| {
                let engine = actor.core().engine();
                let members: BTreeSet<NodeId> = engine.membership().voters.clone();
                members == *voters && engine.commit_index().0 >= 2
            })
        })
}

/// What a founding scenario adds to staggered starts on a lossy network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twist {
    /// Nothing.
    None,
    /// A further voter, also given `bootstrap_expect`, starts once the cluster has formed.
    Latecomer,
    /// A founding voter crashes while the cluster is being founded (losing its unsynced
    /// writes) and restarts.
    CrashWhileFounding,
}

/// One founding scenario: `expect` voters (each given `bootstrap_expect = expect`) start at
/// staggered times with up to two non-voters (given none, as the `ha` facade gives them),
/// on a lossy network, with `twist`. Exactly one cluster must be founded, by the expected
/// voters, and it must form.
fn founding_scenario(seed: u64, twist: Twist) {
    let latecomer = twist == Twist::Latecomer;
    let mut sim_rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xf0_0d);
    let expect = if sim_rng.random_bool(0.5) { 3 } else { 5 };
    let non_voters = sim_rng.random_range(0..=2usize);
    let voter = FoundingNodeOptions {
        voter: true,
        bootstrap_expect: Some(expect),
    };
    let mut nodes = vec![voter.clone(); expect];
    nodes.extend(std::iter::repeat_n(
        FoundingNodeOptions {
            voter: false,
            bootstrap_expect: None,
        },
        non_voters,
    ));
    if latecomer {
        nodes.push(voter.clone());
    }
    let mut network = NetworkConfig::lan().with_drop_probability(0.05);
    network.duplicate_probability = 0.02;
    network.latency_ms_max = 8;
    let options = FoundingOptions {
        nodes,
        seed_node_count: 2,
        network,
        timing: Timing::lan(),
    };
    let mut sim = founding_simulator(seed, &options);
    // Staggered starts: the first seed at once, everyone else within 1.5 s.
    sim.start(0);
    for node in 1..expect + non_voters {
        let at = Millis(sim.rng().random_range(0..=1_500));
        sim.start_at(node, at);
    }
    if twist == Twist::CrashWhileFounding {
        let victim = sim.rng().random_range(0..expect);
        let crash_at = Millis(sim.rng().random_range(1_000..=3_000));
        let restart_at = crash_at + sim.rng().random_range(100..=1_000);
        sim.run_until(crash_at);
        sim.crash(victim);
        sim.run_until(restart_at);
        sim.start(victim);
    }
    let founders: BTreeSet<NodeId> = (0..expect).map(replica_id).collect();
    let formed = sim.run_until_condition(Millis(30_000), 10, |sim| cluster_formed(sim, &founders));
    let founded = check_one_cluster_founded(&sim).unwrap_or_else(|error| panic!("{error}"));
    assert!(
        formed.is_some(),
        "no cluster of {expect} formed within 30 s; foundings: {:?}",
        foundings(&sim)
    );
    let founded = founded.expect("a formed cluster was founded");
    assert_eq!(founded.voters, founders, "founded by other voters");
    let mut latecomer_joined_at = None;
    if latecomer {
        let late = expect + non_voters;
        let at = sim.now() + sim.rng().random_range(0..=500);
        sim.start_at(late, at);
        let mut with_latecomer = founders.clone();
        with_latecomer.insert(replica_id(late));
        latecomer_joined_at = sim.run_until_condition(sim.now() + 30_000, 10, |sim| {
            cluster_formed(sim, &with_latecomer)
        });
    }
    sim.run_for(2_000);
    check_one_cluster_founded(&sim).unwrap_or_else(|error| panic!("{error}"));
    let terms = check_one_leader_per_term_founding(&sim).unwrap_or_else(|error| panic!("{error}"));
    if latecomer {
        assert!(
            latecomer_joined_at.is_some(),
            "the latecomer was not promoted to voter within 30 s"
        );
    }
    println!(
        "seed {seed}: {expect} voters, {non_voters} non-voters, {} foundings, formed at {}, \
         {terms} terms with a leader{}; {} messages lost",
        foundings(&sim).len(),
        formed.map_or_else(|| "-".to_string(), |at| at.to_string()),
        latecomer_joined_at.map_or_else(String::new, |at| format!(", latecomer a voter at {at}")),
        sim.counters().dropped_loss,
    );
}

#[test]
fn founding_through_gossip_makes_one_cluster() {
    with_seeds(
        "founding_through_gossip_makes_one_cluster",
        FOUNDING_SEEDS,
        |seed| founding_scenario(seed, Twist::None),
    );
}

#[test]
fn founding_with_a_latecomer_voter_makes_one_cluster() {
    with_seeds(
        "founding_with_a_latecomer_voter_makes_one_cluster",
        FOUNDING_SEEDS,
        |seed| founding_scenario(seed, Twist::Latecomer),
    );
}

#[test]
fn founding_with_a_crash_while_founding_makes_one_cluster() {
    with_seeds(
        "founding_with_a_crash_while_founding_makes_one_cluster",
        FOUNDING_SEEDS,
        |seed| founding_scenario(seed, Twist::CrashWhileFounding),
    );
}

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
        replica: ReplicaSettings {
            bootstrap_expect: Some(3),
            ..ReplicaSettings::from_config(&config)
        },
        transport: TransportSettings::new(id.clone(), "127.0.0.1:0".parse().unwrap(), "ha"),
        peers: Default::default(),
        bootstrap: None,
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
