//! The key/value state machine of `tcp_cluster` and `slow_apply`: one type, so this binary
//! monomorphises the driver for it once (they had one each when they were separate binaries).

use std::collections::BTreeMap;
use std::time::Duration;

use ha_core::{LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

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
