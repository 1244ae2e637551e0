//! A cluster of real [`ReplicaNode`]s over TCP on 127.0.0.1, as the driver tests set it up:
//! settings for node `n<index>` of a founding set `n1..=n<voters>`, introducing the nodes to
//! each other, and waiting for the one leader they all know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha_core::{NodeId, StateMachine};

use crate::driver::{NodeSettings, ReplicaNode};
use crate::membership::VoterSet;
use crate::replica::ReplicaSettings;
use crate::transport::TransportSettings;

/// How often [`leader_of`] looks.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The id of node `index`: `n<index>`.
///
/// # Panics
/// Never: every such name is a valid id.
pub fn node_id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).expect("n<index> is a valid id")
}

/// Settings of node `n<index>` of a cluster founded by `n1..=n<voters>`:
/// [`ReplicaSettings::for_test`] (test timing, batched syncs, a 10 ms housekeeping tick, no
/// consistency monitor, snapshots every 10,000 entries), the transport on an ephemeral port of
/// 127.0.0.1 in cluster `test`. Change fields before starting the node for anything else.
///
/// # Panics
/// Never: the loopback address parses.
pub fn loopback_settings(index: usize, voters: usize) -> NodeSettings {
    let replica = ReplicaSettings {
        ..ReplicaSettings::for_test(node_id(index))
    };
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("a loopback address");
    NodeSettings {
        replica,
        transport: TransportSettings::new(node_id(index), bind, "test"),
        peers: BTreeMap::new(),
        bootstrap: Some(VoterSet::with_voters((1..=voters).map(node_id))),
    }
}

/// Tell every node every node's transport address (its own included).
///
/// # Panics
/// When a node has stopped.
pub async fn introduce<S: StateMachine>(nodes: &[ReplicaNode<S>]) {
    let addrs: Vec<(NodeId, SocketAddr)> = nodes
        .iter()
        .map(|node| (node.node_id().clone(), node.local_addr()))
        .collect();
    for node in nodes {
        for (peer, addr) in &addrs {
            node.set_peer(peer.clone(), Some(*addr), None)
                .await
                .expect("the node is running");
        }
    }
}

/// The position in `nodes` of the one leader that every node knows, polled every 10 ms.
///
/// # Panics
/// When there is none within `wait`.
pub async fn leader_of<S: StateMachine>(nodes: &[ReplicaNode<S>], wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    loop {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|index| nodes[*index].is_leader())
            .collect();
        if let [leader] = leaders[..]
            && nodes
                .iter()
                .all(|node| node.role().leader.as_ref() == Some(nodes[leader].node_id()))
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader known to every node within {wait:?}: leaders {leaders:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
