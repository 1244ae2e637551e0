//! Issue 17, item 2: the host's state machine runs off the heartbeat path. A real 3-node
//! cluster over TCP on 127.0.0.1, with on-disk WALs and every node's `apply` sleeping 200 ms
//! per entry, all three nodes on ONE current-thread runtime (so an `apply` run on the event
//! loop would stop every node's heartbeats and votes for 200 ms, past the election timeout):
//! 24 writes at every consistency level, linearizable and EVENTUAL reads through a follower,
//! a snapshot of the node's own and an export; no election is started and no read is stale.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ha_core::{Consistency, LogIndex, NodeId, StateMachine, StateMachineError};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::EngineSettings;
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{Applier, ReplicaSettings, SyncPolicy};
use ha_replicate::storage::wal::{WalOptions, WalStore};
use ha_replicate::transport::TransportSettings;
use serde::{Deserialize, Serialize};

/// How long the host takes to apply one entry.
const APPLY_MS: u64 = 200;
/// Writes made in the test (at least 20 entries, as the issue asks).
const WRITES: usize = 24;
const WAIT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(20);

/// A key/value map whose `apply` is slow.
#[derive(Default)]
struct SlowKv(BTreeMap<String, String>);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Put(String, String);

impl StateMachine for SlowKv {
    type Command = Put;
    type Response = Option<String>;
    type Query = String;
    type QueryResponse = Option<String>;
    fn apply(&mut self, _index: LogIndex, Put(key, value): Put) -> Option<String> {
        // A host doing real work per entry (a database write, a remote call).
        std::thread::sleep(Duration::from_millis(APPLY_MS));
        self.0.insert(key, value)
    }
    fn query(&self, key: &String) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        postcard::to_allocvec(&self.0)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        self.0 = postcard::from_bytes(bytes)
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        Ok(())
    }
}

fn id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).unwrap()
}

async fn start(index: usize, dir: &Path) -> ReplicaNode<SlowKv> {
    let mut engine = EngineSettings::for_test(id(index));
    engine.priority = ha_core::Priority(1);
    // Election timeouts below one `apply`: a node whose event loop applied would miss them.
    engine.heartbeat_interval_ms = 50;
    engine.election_timeout_min_ms = 150;
    engine.election_timeout_max_ms = 300;
    let replica = ReplicaSettings {
        engine,
        sync_policy: SyncPolicy::Batch,
        // A few snapshots of the node's own during the run, taken through the apply thread.
        snapshot_every_entries: 8,
        snapshot_log_bytes: ha_replicate::replica::SNAPSHOT_LOG_BYTES_DEFAULT,
        transfer: Default::default(),
        housekeeping_interval_ms: 10,
        consistency: ha_replicate::replica::ConsistencySettings::off(),
        witness: false,
        bootstrap_expect: None,
    };
    let settings = NodeSettings {
        replica,
        transport: TransportSettings::new(id(index), "127.0.0.1:0".parse().unwrap(), "test"),
        peers: BTreeMap::new(),
        bootstrap: Some(VoterSet::with_voters((1..=3).map(id))),
    };
    let store = WalStore::open(dir, WalOptions::default()).unwrap();
    ReplicaNode::start(settings, SlowKv::default(), store)
        .await
        .unwrap()
}

async fn wait_for_leader(nodes: &[ReplicaNode<SlowKv>]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|index| nodes[*index].is_leader())
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Elections started on every node, and every node's term.
async fn elections(nodes: &[ReplicaNode<SlowKv>]) -> (u64, Vec<u64>) {
    let mut started = 0;
    let mut terms = Vec::new();
    for node in nodes {
        let status = node.status().await.unwrap();
        started += status.elections_started;
        terms.push(status.term.0);
    }
    (started, terms)
}

#[tokio::test(flavor = "current_thread")]
async fn an_apply_of_200_ms_per_entry_starts_no_election() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(start(index + 1, dir.path()).await);
    }
    let addrs: Vec<(NodeId, SocketAddr)> = nodes
        .iter()
        .map(|node| (node.node_id().clone(), node.local_addr()))
        .collect();
    for node in &nodes {
        for (peer, addr) in &addrs {
            node.set_peer(peer.clone(), Some(*addr), None)
                .await
                .unwrap();
        }
    }
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    let before = elections(&nodes).await;
    let started = Instant::now();

    // Writes through a follower (forwarded), each followed by linearizable reads that must see
    // it, although the follower's own state machine is far behind.
    let writer = nodes[follower].client();
    let reader = nodes[(leader + 2) % 3].client();
    for round in 0..WRITES {
        let consistency = match round % 4 {
            0 => Consistency::Strong,
            1 => Consistency::Eventual,
            _ => Consistency::Quorum,
        };
        let key = format!("k{}", round % 5);
        let value = format!("v{round}");
        let written = writer
            .write(Put(key.clone(), value.clone()), consistency, TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("write {round} ({consistency}) failed: {error}"));
        assert!(written.index > LogIndex(0));
        for level in [Consistency::Quorum, Consistency::Strong] {
            let read = reader
                .read(key.clone(), level, TIMEOUT)
                .await
                .unwrap_or_else(|error| panic!("{level} read after write {round}: {error}"));
            // An EVENTUAL write may still be on its way when the read's index is taken; every
            // other write was acknowledged after it was applied on the leader.
            if consistency != Consistency::Eventual {
                assert_eq!(read.as_deref(), Some(value.as_str()), "stale {level} read");
            }
        }
    }
    // An EVENTUAL read answers at once from whatever the node applied.
    let _ = reader
        .read("k0".to_string(), Consistency::Eventual, TIMEOUT)
        .await
        .unwrap();

    // An export of a state holding every acknowledged write, taken on the apply thread.
    let index = writer
        .linearizable_index("k0".to_string(), TIMEOUT)
        .await
        .unwrap();
    let exported = tokio::time::timeout(TIMEOUT, nodes[follower].export_snapshot(index))
        .await
        .expect("export in time")
        .expect("exports");
    let exported_at = exported.last_index();
    assert!(exported_at >= index);
    let mut bytes = Vec::new();
    exported.write_to(&mut bytes).unwrap();
    let mut copy = Applier::new(SlowKv::default());
    copy.restore(&bytes).unwrap();
    assert_eq!(copy.applied_index(), exported_at);
    let last_value = |key: usize| {
        (0..WRITES)
            .rev()
            .find(|round| round % 5 == key)
            .map(|round| format!("v{round}"))
    };
    for key in 0..5 {
        assert_eq!(
            copy.machine().0.get(&format!("k{key}")),
            last_value(key).as_ref(),
            "the export holds every write"
        );
    }

    let after = elections(&nodes).await;
    let elapsed = started.elapsed();
    println!(
        "{WRITES} writes and {} reads with a {APPLY_MS} ms apply in {elapsed:?}: elections \
         started {} -> {}, terms {:?} -> {:?}",
        WRITES * 2 + 2,
        before.0,
        after.0,
        before.1,
        after.1
    );
    assert_eq!(after, before, "an election was started");
    // Snapshots were taken through the apply thread.
    let status = nodes[leader].status().await.unwrap();
    assert!(status.snapshot_transfer.taken > 0, "{status:?}");
    for node in nodes {
        node.shutdown(Duration::from_millis(0)).await;
    }
}
