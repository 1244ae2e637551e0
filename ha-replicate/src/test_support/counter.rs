//! The counter state machine the crate's tests share: the smallest state machine with writes
//! and reads. Its snapshot is the total as 8 little-endian bytes, the encoding
//! `tests/upgrade_fixture.rs`'s committed fixture was written with: do not change it.

use ha_core::{LogIndex, StateMachine, StateMachineError};

/// Adds each command to a total; a query reads the total.
#[derive(Debug, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The upgrade fixture's snapshots depend on this encoding.
    #[test]
    fn the_snapshot_is_the_total_as_8_little_endian_bytes() {
        let mut counter = Counter::default();
        counter.apply(LogIndex(1), 0x0102);
        assert_eq!(
            counter.snapshot().expect("snapshot"),
            [2, 1, 0, 0, 0, 0, 0, 0]
        );
        let mut restored = Counter::default();
        restored
            .restore(&[2, 1, 0, 0, 0, 0, 0, 0])
            .expect("restores");
        assert_eq!(restored.query(&()), 0x0102);
        assert!(restored.restore(&[1, 2, 3]).is_err());
    }
}
