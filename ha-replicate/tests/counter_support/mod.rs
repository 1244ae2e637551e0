//! The counter state machine several ha-replicate integration tests share: the smallest
//! state machine with writes and reads. Its snapshot is the total as 8 little-endian bytes,
//! the encoding `upgrade_fixture.rs`'s committed fixture was written with.

use ha_core::{LogIndex, StateMachine, StateMachineError};

/// Adds each command to a total.
#[derive(Default)]
pub struct Counter(pub u64);

impl StateMachine for Counter {
    type Command = u64;
    type Response = u64;
    type Query = ();
    type QueryResponse = u64;
    fn apply(&mut self, _index: LogIndex, add: u64) -> u64 {
        self.0 += add;
        self.0
    }
    fn query(&self, _query: &()) -> u64 {
        self.0
    }
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(self.0.to_le_bytes().to_vec())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| StateMachineError::Corrupt("not 8 bytes".to_string()))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}
