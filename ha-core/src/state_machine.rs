//! The host's replicated state machine.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateMachineError;
use crate::ids::LogIndex;
use crate::snapshot_source::{
    BytesSource, IN_MEMORY_SNAPSHOT_BYTES_MAX, SnapshotSource, read_bounded,
};

/// The state a host service replicates. Every node applies the same committed commands in the
/// same order, so every node reaches the same state.
///
/// # Correctness requirements
///
/// The replication layer can only keep replicas identical if the implementation is a pure
/// function of the commands it is given:
///
/// 1. **Deterministic.** `apply` must depend only on the current state, the index and the
///    command: no clocks, no randomness, no environment, no `HashMap` iteration order leaking
///    into results, no IO whose outcome can differ between nodes. Put timestamps or random
///    values into the command before proposing it.
/// 2. **Total.** `apply` must not fail or panic for a command that was committed: a command
///    that is invalid for the current state is still applied, and returns a `Response` that
///    says it was rejected. (A panic stops the node; it never skips an entry.)
/// 3. **In order, once.** The framework calls `apply` with strictly increasing indexes with no
///    gap, once each (it deduplicates client retries itself). `apply` need not be idempotent.
/// 4. **Snapshots are complete.** `snapshot` returns everything needed to rebuild the state as
///    of the last applied index; `restore` replaces the whole state with a snapshot's. After
///    `restore(snapshot())` the state machine answers every query as before.
/// 5. **Snapshots are portable.** The bytes may be sent to another node and restored there, or
///    read back after an upgrade: encode them with a versioned format.
/// 6. **Queries do not change state.** `query` takes `&self`.
///
/// # Large states
///
/// `snapshot` and `restore` hold the whole encoded state in memory, and `snapshot` runs on
/// the apply thread, holding up writes (not heartbeats) while it encodes. For a state of more
/// than a few megabytes, implement [`snapshot_source`](Self::snapshot_source) (take a cheap
/// point-in-time copy; it is written out on another thread) and
/// [`restore_from`](Self::restore_from) (rebuild the state as the bytes are read). The
/// framework only calls those two; their defaults call `snapshot` and `restore`.
///
/// Where it runs: a node calls every method of its state machine on a thread of its own (the
/// apply thread), never on the async runtime, so a slow `apply` (a blocking database write, a
/// remote call) delays answers and later entries but not heartbeats, votes or replication:
/// it does not cause elections. Queries wait behind the entries handed out before them.
///
/// # Example
///
/// ```
/// use ha_core::{LogIndex, StateMachine, StateMachineError};
///
/// #[derive(Default)]
/// struct Counter { value: i64 }
///
/// impl StateMachine for Counter {
///     type Command = i64;        // add this much
///     type Response = i64;       // the new value
///     type Query = ();           // read the value
///     type QueryResponse = i64;
///
///     fn apply(&mut self, _index: LogIndex, command: i64) -> i64 {
///         self.value = self.value.saturating_add(command);
///         self.value
///     }
///     fn query(&self, _query: &()) -> i64 { self.value }
///     fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
///         Ok(self.value.to_le_bytes().to_vec())
///     }
///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
///         let bytes: [u8; 8] = snapshot.try_into()
///             .map_err(|_| StateMachineError::Corrupt("counter snapshot is not 8 bytes".into()))?;
///         self.value = i64::from_le_bytes(bytes);
///         Ok(())
///     }
/// }
///
/// let mut counter = Counter::default();
/// assert_eq!(counter.apply(LogIndex(1), 5), 5);
/// let snapshot = counter.snapshot().unwrap();
/// let mut copy = Counter::default();
/// copy.restore(&snapshot).unwrap();
/// assert_eq!(copy.query(&()), 5);
/// ```
pub trait StateMachine: Send + 'static {
    /// A change to the state, proposed by a client and stored in the log.
    type Command: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;
    /// What `apply` returns to the client that proposed the command.
    type Response: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;
    /// A read of the state.
    type Query: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;
    /// What a query returns.
    type QueryResponse: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;

    /// Apply a committed command at `index`. See the correctness requirements.
    fn apply(&mut self, index: LogIndex, command: Self::Command) -> Self::Response;

    /// Answer a query from the current state.
    fn query(&self, query: &Self::Query) -> Self::QueryResponse;

    /// Serialise the whole state.
    ///
    /// # Errors
    /// [`StateMachineError`] when the state cannot be encoded; the node keeps its log and
    /// tries again later.
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError>;

    /// Replace the whole state with a snapshot's.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`] when the bytes are not a valid snapshot; the state must
    /// then be left as it was before the call.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError>;

    /// A point-in-time copy of the state, taken in one apply step, that writes the snapshot's
    /// bytes later on another thread. The default encodes with [`snapshot`](Self::snapshot)
    /// at once; override it for a large state.
    ///
    /// # Errors
    /// [`StateMachineError`] when the copy cannot be taken; the node tries again later.
    fn snapshot_source(&self) -> Result<Box<dyn SnapshotSource>, StateMachineError> {
        Ok(Box::new(BytesSource(self.snapshot()?)))
    }

    /// Replace the whole state with the snapshot `input` yields (written by
    /// [`snapshot_source`](Self::snapshot_source)), reading it as a stream. The default reads
    /// at most [`IN_MEMORY_SNAPSHOT_BYTES_MAX`] bytes into memory and calls
    /// [`restore`](Self::restore); override it for a large state.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`] when the bytes are not a valid snapshot; the state must
    /// then be left as it was before the call.
    fn restore_from(&mut self, input: &mut dyn std::io::Read) -> Result<(), StateMachineError> {
        let bytes = read_bounded(input, IN_MEMORY_SNAPSHOT_BYTES_MAX)?;
        self.restore(&bytes)
    }

    /// A 32-byte digest of the whole state, for the replica consistency monitor, when the
    /// host keeps one cheaply (an incremental hash updated by `apply`). `None`, the default,
    /// makes the monitor hash the bytes [`snapshot_source`](Self::snapshot_source) writes
    /// instead, on a blocking thread, at every checkpoint.
    ///
    /// It is called in the apply step at each checkpoint index, so it must be cheap. Two
    /// replicas whose states are equal must return equal digests, and a replica whose state
    /// differs should return a different one (a collision hides a divergence). It must depend
    /// on the state only, like `apply`: a digest that depends on anything else makes the
    /// monitor see a divergence where there is none.
    fn digest(&self) -> Option<[u8; 32]> {
        None
    }
}

/// The unit type as a state machine with no state, for a service that only uses what the
/// framework replicates itself (the KV store and locks).
impl StateMachine for () {
    type Command = ();
    type Response = ();
    type Query = ();
    type QueryResponse = ();

    fn apply(&mut self, _index: LogIndex, _command: ()) {}

    fn query(&self, _query: &()) {}

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(Vec::new())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        // Its snapshot is empty: bytes here are another machine's, or damage.
        if !snapshot.is_empty() {
            return Err(StateMachineError::Corrupt(format!(
                "the unit state machine's snapshot is empty, not {} bytes",
                snapshot.len()
            )));
        }
        Ok(())
    }
}
