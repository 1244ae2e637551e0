//! A real 3-node cluster over TCP on loopback running `WithLocks<()>` on in-memory stores,
//! with a `LeaseKeeper` on every node, shared by the `handles_*` tests. Every wait polls a
//! condition with a deadline.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha_core::{NodeId, Priority};
use ha_lock::{ChangeFeed, LeaseKeeper, Session, WithLocks};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::EngineSettings;
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::transport::TransportSettings;

/// The replicated state machine: the lock table with no host state.
pub type Machine = WithLocks<()>;

/// The longest any test waits for the cluster to reach a state.
pub const WAIT: Duration = Duration::from_secs(20);

/// Nodes in the cluster.
pub const NODES: usize = 3;

fn id(index: usize) -> NodeId {
    NodeId::new(format!("n{}", index + 1)).expect("a valid node id")
}

/// Three nodes, each with its lease keeper; `None` once killed.
pub struct Cluster {
    nodes: Vec<Option<ReplicaNode<Machine>>>,
    keepers: Vec<Option<LeaseKeeper>>,
    /// Each node's change signal (its `WithLocks` publishes to it).
    feeds: Vec<ChangeFeed>,
}

impl Cluster {
    /// Start three nodes, tell each the others' addresses and wait for a leader.
    pub async fn start() -> Cluster {
        let mut nodes = Vec::new();
        let mut keepers = Vec::new();
        let feeds: Vec<ChangeFeed> = (0..NODES).map(|_| ChangeFeed::new()).collect();
        for (index, feed) in feeds.iter().enumerate() {
            let node = start_node(index, feed.clone()).await;
            keepers.push(Some(LeaseKeeper::start(&node)));
            nodes.push(Some(node));
        }
        let addrs: Vec<(NodeId, SocketAddr)> = nodes
            .iter()
            .flatten()
            .map(|node| (node.node_id().clone(), node.local_addr()))
            .collect();
        for node in nodes.iter().flatten() {
            for (peer, addr) in &addrs {
                node.set_peer(peer.clone(), Some(*addr), None)
                    .await
                    .expect("the node runs");
            }
        }
        let cluster = Cluster {
            nodes,
            keepers,
            feeds,
        };
        cluster.leader().await;
        cluster
    }

    /// The index of the single leader, waiting for one.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<usize> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| node.as_ref().is_some_and(|node| node.is_leader()))
                .map(|(index, _)| index)
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A running node that does not lead right now.
    pub async fn follower(&self) -> usize {
        let leader = self.leader().await;
        (0..NODES)
            .find(|index| *index != leader && self.nodes[*index].is_some())
            .expect("a running follower")
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &ReplicaNode<Machine> {
        self.nodes[index].as_ref().expect("the node runs")
    }

    /// A fresh lock-table session on node `index` (its `kv()`, `leases()` and `locks()`
    /// handles share it).
    pub fn client(&self, index: usize) -> Session<()> {
        Session::from_node(self.node(index))
    }

    /// A session on node `index` whose watches are woken by the node's change signal
    /// instead of polling.
    pub fn signalled_client(&self, index: usize) -> Session<()> {
        self.client(index)
            .with_change_feed(self.feeds[index].clone())
    }

    /// Kill node `index` and its lease keeper at once (no handover, like a crash).
    pub fn kill(&mut self, index: usize) {
        self.keepers[index] = None;
        self.nodes[index] = None;
    }

    /// Stop every node.
    pub async fn shutdown(mut self) {
        self.keepers.clear();
        for node in self.nodes.drain(..).flatten() {
            node.shutdown(Duration::from_secs(1)).await;
        }
    }
}

async fn start_node(index: usize, feed: ChangeFeed) -> ReplicaNode<Machine> {
    let mut engine = EngineSettings::for_test(id(index));
    engine.priority = Priority(1);
    let replica = ReplicaSettings {
        engine,
        ..ReplicaSettings::for_test(id(index))
    };
    let settings = NodeSettings {
        replica,
        transport: TransportSettings::new(
            id(index),
            "127.0.0.1:0".parse().expect("an address"),
            "handles",
        ),
        peers: BTreeMap::new(),
        bootstrap: Some(VoterSet::with_voters((0..NODES).map(id))),
    };
    ReplicaNode::start(
        settings,
        WithLocks::new(()).feed_changes(feed),
        MemoryStore::open(MemoryDisk::new()),
    )
    .await
    .expect("the node starts")
}

/// Poll `condition` every 10 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
