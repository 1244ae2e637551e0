//! A point-in-time copy of the applied state handed to a caller outside the replica: a
//! backup (`GET /v1/snapshot`, scheduled backups) or anything else that needs the whole state
//! at one log index without stopping the node.
//!
//! The copy is taken in one apply step with the same capture that
//! [`maybe_snapshot`](crate::replica::ReplicaCore) uses for the node's own snapshots
//! ([`Applier::snapshot_source`](crate::replica::Applier::snapshot_source)): the sessions and
//! failover history are cloned (they are bounded), the host hands a
//! [`SnapshotSource`](ha_core::SnapshotSource) whose bytes are written later. Writing is the
//! caller's business and happens off the apply loop; the node's store and log are not touched,
//! so an export never delays or replaces the node's own snapshots.

use std::io::Write;

use ha_core::{LogIndex, SnapshotSource, StateMachine, StateMachineError};

use crate::engine::Engine;
use crate::replica::applier::AppliedSnapshot;
use crate::replica::replica_core::ReplicaCore;
use crate::snapshot_meta::SnapshotMeta;
use crate::storage::LogStore;

/// A point-in-time copy of everything applied (host state, KV and locks when composed, client
/// sessions, failover history) with the log position it ends at. Its bytes, written with
/// [`write_to`](Self::write_to), are the replica's snapshot stream (format 2) that
/// [`Applier::restore_from`](crate::replica::Applier::restore_from) reads back.
pub struct ExportedSnapshot {
    meta: SnapshotMeta,
    source: AppliedSnapshot,
}

/// Why no copy was exported. Nothing changed on the node in any case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The node has applied nothing yet (a cluster that has not formed): there is no state to
    /// copy. Retry once the node has a leader and has applied its first entry.
    #[error("nothing is applied yet: no state to export")]
    NothingApplied,
    /// The log position of the applied index is not known to the engine (the engine and the
    /// applier disagree for a moment, while a snapshot from the leader is being installed).
    /// Retry shortly.
    #[error("the applied index {applied} has no known term yet; retry shortly")]
    NotAvailable {
        /// The applier's index.
        applied: LogIndex,
    },
    /// The host's state machine could not take its copy. Its error says why; retry later.
    #[error("the state machine could not copy its state: {0}")]
    StateMachine(String),
    /// Too many exports are already waiting for the node to apply up to their index. Retry
    /// later.
    #[error("too many snapshot exports are waiting ({waiting}); retry later")]
    Busy {
        /// The exports waiting.
        waiting: usize,
    },
    /// The replica has stopped (shutdown or a storage failure).
    #[error("the replica has stopped")]
    Stopped,
    /// This node is a witness: it holds no state to export. Export from a data node.
    #[error("this node is a witness: it holds no state")]
    Witness,
}

impl ExportedSnapshot {
    /// Copy `core`'s applied state now, in this apply step, while the core holds its apply
    /// worker (a driver that detached it asks with
    /// [`ReplicaCore::request_export`](crate::replica::ReplicaCore::request_export)).
    ///
    /// # Errors
    /// [`ExportError::NothingApplied`], [`ExportError::NotAvailable`],
    /// [`ExportError::StateMachine`]; nothing changed.
    pub fn capture<S: StateMachine, L: LogStore>(
        core: &ReplicaCore<S, L>,
    ) -> Result<Self, ExportError> {
        if core.engine().is_witness() {
            return Err(ExportError::Witness);
        }
        let applied = core.applier().applied_index();
        if applied == LogIndex(0) {
            return Err(ExportError::NothingApplied);
        }
        let meta = Self::meta_at(core.engine(), applied)?;
        let source = core
            .applier()
            .snapshot_source()
            .map_err(|error| ExportError::StateMachine(error.to_string()))?;
        debug_assert_eq!(source.applied_index(), meta.last_index);
        Ok(Self { meta, source })
    }

    /// The log position a copy taken at `applied` ends at.
    pub(crate) fn meta_at(engine: &Engine, applied: LogIndex) -> Result<SnapshotMeta, ExportError> {
        if applied == LogIndex(0) {
            return Err(ExportError::NothingApplied);
        }
        // At the log's snapshot itself (nothing applied since it) the engine no longer holds
        // that entry, but the snapshot's meta describes exactly this position.
        if engine.snapshot_meta().last_index == applied {
            Ok(engine.snapshot_meta().clone())
        } else {
            engine
                .snapshot_meta_at(applied)
                .ok_or(ExportError::NotAvailable { applied })
        }
    }

    /// A copy the apply worker took at `meta`'s index.
    pub(crate) fn from_parts(meta: SnapshotMeta, source: AppliedSnapshot) -> Self {
        Self { meta, source }
    }

    /// The log position the copy ends at (index, term) and the membership there.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The last index the copy includes.
    pub fn last_index(&self) -> LogIndex {
        self.meta.last_index
    }

    /// Write the copy's bytes (the replica's snapshot stream) to `out`. Takes as long as the
    /// state is large: call it off the async threads (`spawn_blocking`).
    ///
    /// # Errors
    /// [`StateMachineError::SnapshotFailed`] when encoding or writing fails.
    pub fn write_to(self, out: &mut dyn Write) -> Result<(), StateMachineError> {
        Box::new(self.source).write_to(out)
    }
}

impl std::fmt::Debug for ExportedSnapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ExportedSnapshot")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::membership::VoterSet;
    use crate::replica::{Applier, ClientRequest, ReplicaSettings, SyncPolicy, WriteRequest};
    use crate::storage::memory::{MemoryDisk, MemoryStore};
    use crate::test_support::Counter;
    use ha_core::{Consistency, Millis, NodeId, codec};

    fn core() -> ReplicaCore<Counter, MemoryStore> {
        let settings = ReplicaSettings {
            sync_policy: SyncPolicy::EveryInput,
            ..ReplicaSettings::for_test(NodeId::new("n1").expect("valid"))
        };
        let store = MemoryStore::open(MemoryDisk::new());
        ReplicaCore::new(settings, Counter::default(), store, Millis(0), 7).expect("starts")
    }

    fn add(core: &mut ReplicaCore<Counter, MemoryStore>, sequence: u64, amount: u64) {
        let request = ClientRequest::Write(WriteRequest {
            session: ha_core::SessionId(1),
            sequence,
            lowest_unanswered: sequence,
            command: codec::encode("command", &amount, 64).expect("encodes"),
            consistency: Consistency::Quorum,
        });
        core.submit(Millis(10), sequence, request, Millis(10_000));
        core.flush();
        core.drain_effects();
    }

    #[test]
    fn an_empty_replica_has_nothing_to_export() {
        assert_eq!(
            ExportedSnapshot::capture(&core()).unwrap_err(),
            ExportError::NothingApplied
        );
    }

    #[test]
    fn the_copy_is_the_state_at_its_index_and_later_writes_do_not_reach_it() {
        let mut core = core();
        let voters = VoterSet::with_voters([NodeId::new("n1").expect("valid")]);
        assert!(core.on_bootstrap(Millis(0), voters));
        core.on_campaign(Millis(1));
        core.flush();
        core.drain_effects();
        assert!(core.engine().is_leader(), "the single voter leads");
        add(&mut core, 1, 5);
        add(&mut core, 2, 7);
        assert_eq!(core.applier().machine().0, 12);
        let applied = core.applier().applied_index();
        let exported = ExportedSnapshot::capture(&core).expect("exports");
        assert_eq!(exported.last_index(), applied);
        assert_eq!(exported.meta().last_term, core.engine().term());

        // A later write changes the node, not the copy.
        add(&mut core, 3, 100);
        assert_eq!(core.applier().machine().0, 112);

        let mut bytes = Vec::new();
        exported.write_to(&mut bytes).expect("writes");
        let mut restored = Applier::new(Counter::default());
        restored
            .restore_from(&mut bytes.as_slice())
            .expect("restores");
        assert_eq!(restored.machine().0, 12);
        assert_eq!(restored.applied_index(), applied);
    }
}
