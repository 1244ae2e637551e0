//! Snapshots written as a stream, so a state of any size is never held twice in memory.

use std::io::{Read, Write};

use crate::error::StateMachineError;

/// A point-in-time copy of a state machine's state, taken in one apply step and written out
/// later, on another thread, while the state machine goes on applying.
///
/// A state machine with a large state makes taking the copy cheap (a persistent map whose
/// clone shares its nodes, `Arc`-held values, a database snapshot handle) and does the
/// encoding in [`write_to`](Self::write_to).
pub trait SnapshotSource: Send + 'static {
    /// Write the snapshot's bytes to `out`. [`StateMachine::restore_from`] reads them back.
    ///
    /// # Errors
    /// [`StateMachineError::SnapshotFailed`] when encoding or writing fails; the node keeps
    /// its log and tries again later.
    ///
    /// [`StateMachine::restore_from`]: crate::StateMachine::restore_from
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> Result<(), StateMachineError>;
}

/// A snapshot already encoded in memory: what the default
/// [`StateMachine::snapshot_source`](crate::StateMachine::snapshot_source) hands out, fine
/// for a small state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BytesSource(pub Vec<u8>);

impl SnapshotSource for BytesSource {
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> Result<(), StateMachineError> {
        out.write_all(&self.0)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }
}

/// Most bytes the default [`StateMachine::restore_from`](crate::StateMachine::restore_from)
/// reads into memory before handing them to `restore`. A host state larger than this
/// implements `restore_from` itself, reading as it goes.
pub const IN_MEMORY_SNAPSHOT_BYTES_MAX: u64 = 1 << 30;

/// Read all of `input` into memory, refusing more than `limit` bytes.
///
/// # Errors
/// [`StateMachineError::Corrupt`] when reading fails or the input is longer than `limit`.
pub fn read_bounded(input: &mut dyn Read, limit: u64) -> Result<Vec<u8>, StateMachineError> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| StateMachineError::Corrupt(format!("snapshot read failed: {error}")))?;
    if bytes.len() as u64 > limit {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot is longer than {limit} bytes; implement StateMachine::restore_from to \
             restore a state this large as it is read"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_the_bound_is_enforced() {
        let mut out = Vec::new();
        Box::new(BytesSource(vec![1, 2, 3]))
            .write_to(&mut out)
            .unwrap();
        assert_eq!(out, vec![1, 2, 3]);
        assert_eq!(read_bounded(&mut &out[..], 3).unwrap(), vec![1, 2, 3]);
        let error = read_bounded(&mut &out[..], 2).unwrap_err();
        assert!(error.to_string().contains("longer than 2 bytes"), "{error}");
    }
}
