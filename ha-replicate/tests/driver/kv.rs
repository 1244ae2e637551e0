//! The key/value state machine of `tcp_cluster` and `slow_apply`: one type, so this binary
//! monomorphises the driver for it once (they had one each when they were separate binaries),
//! and how both start a node of their 3-node cluster with it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ha_core::{LogIndex, NodeId, StateMachine, StateMachineError};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::EngineSettings;
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::wal::{WalOptions, WalStore};
use ha_replicate::transport::TransportSettings;
use serde::{Deserialize, Serialize};

/// The id of node `index` (`n1`, `n2`, ...).
pub fn id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).unwrap()
}

/// Node `n<index>` of the 3-voter cluster n1-n3 (bootstrapped, priority 1 unless `tune`
/// changes it), its WAL in `dir`, its host taking `apply_ms` per entry, a snapshot every
/// `snapshot_every_entries`, listening on 127.0.0.1 at a free port.
pub async fn start_kv_node(
    index: usize,
    dir: &Path,
    apply_ms: u64,
    snapshot_every_entries: u64,
    tune: impl FnOnce(&mut EngineSettings),
) -> ReplicaNode<Kv> {
    let mut engine = EngineSettings::for_test(id(index));
    engine.priority = ha_core::Priority(1);
    tune(&mut engine);
    let replica = ReplicaSettings {
        engine,
        snapshot_every_entries,
        ..ReplicaSettings::for_test(id(index))
    };
    let settings = NodeSettings {
        replica,
        transport: TransportSettings::new(id(index), "127.0.0.1:0".parse().unwrap(), "test"),
        peers: BTreeMap::new(),
        bootstrap: Some(VoterSet::with_voters((1..=3).map(id))),
    };
    let store = WalStore::open(dir, WalOptions::default()).unwrap();
    ReplicaNode::start(settings, Kv(BTreeMap::new(), apply_ms), store)
        .await
        .unwrap()
}

/// A key/value map whose `apply` takes `.1` ms per entry (0: at once).
#[derive(Default)]
pub struct Kv(pub BTreeMap<String, String>, pub u64);

/// Set a key to a value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Put(pub String, pub String);

impl StateMachine for Kv {
    type Command = Put;
    type Response = Option<String>;
    type Query = String;
    type QueryResponse = Option<String>;
    fn apply(&mut self, _index: LogIndex, Put(key, value): Put) -> Option<String> {
        if self.1 > 0 {
            // A host doing real work per entry (a database write, a remote call).
            std::thread::sleep(Duration::from_millis(self.1));
        }
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
