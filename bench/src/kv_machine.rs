//! The benchmarks' state machine: a map from `u64` keys to byte values.

use std::collections::BTreeMap;

use ha_core::{LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// A key/value map, replicated.
#[derive(Default)]
pub struct Kv(BTreeMap<u64, Vec<u8>>);

/// Put a value at a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Put(pub u64, pub Vec<u8>);

impl StateMachine for Kv {
    type Command = Put;
    type Response = ();
    type Query = u64;
    type QueryResponse = Option<Vec<u8>>;
    fn apply(&mut self, _index: LogIndex, Put(key, value): Put) {
        self.0.insert(key, value);
    }
    fn query(&self, key: &u64) -> Option<Vec<u8>> {
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
