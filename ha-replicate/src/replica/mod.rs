//! A replica: the engine, its store, the host state machine and client requests, as one
//! sans-IO core ([`ReplicaCore`]) shared by the tokio driver and the simulator.

mod applier;
#[cfg(test)]
mod applier_compat_tests;
mod apply_worker;
mod client;
pub mod consistency_monitor;
mod digest_job;
mod durability_gate;
mod failover_record;
mod replica_core;
mod reply_route;
mod rpc;
mod session;
mod session_table;
mod settings;
mod snapshot_job;
mod snapshot_receiver;
mod snapshot_sender;
mod state_export;

pub use applier::{AppliedSnapshot, Applier, FAILOVER_HISTORY_MAX, SNAPSHOT_HEADER_BYTES_MAX};
pub use apply_worker::{ApplyDone, ApplyTask, ApplyWorker, CapturePurpose};
pub use client::{ClientError, ClientReply, ClientRequest, ReadRequest, WriteFate, WriteRequest};
pub use consistency_monitor::{ConsistencySettings, ConsistencyStatus, DigestVerdict};
pub use digest_job::{DigestComputed, DigestJob, StateDigest, digest_prefix};
pub use durability_gate::{DurabilityGate, HELD_EFFECTS_MAX};
pub use failover_record::FailoverRecord;
pub(crate) use replica_core::requested_peer_address;
pub use replica_core::{
    APPLY_AHEAD_ENTRIES_MAX, APPLY_LAG_ENTRIES_MAX, APPLY_QUERIES_MAX, COMMAND_BYTES_MAX,
    RESUME_RETRY_MS_MAX, RESUME_RETRY_MS_MIN, ReplicaCore, ReplicaEffect, ReplicaTimer,
};
pub use reply_route::{ReplyRoute, RoutedReply};
pub use rpc::Rpc;
pub use session::{ApplyOutcome, SESSION_COMMAND_FORMAT, SessionCommand, SessionId};
pub use session_table::{
    SESSION_RESPONSE_BYTES_MAX, SESSION_RESPONSES_MAX, SESSIONS_MAX, SESSIONS_RESPONSE_BYTES_MAX,
    SessionTable,
};
pub use settings::{
    ReplicaSettings, SNAPSHOT_HOLD_BACK_FACTOR_MAX, SNAPSHOT_LOG_BYTES_DEFAULT,
    SNAPSHOT_LOG_PERCENT_OF_LAST_DEFAULT, SyncPolicy,
};
pub use snapshot_job::{SnapshotJob, SnapshotWritten};
pub use snapshot_sender::{
    ChunkPlace, ChunkToSend, SnapshotSender, TransferProgress, TransferSettings,
};
pub use state_export::{ExportError, ExportedSnapshot};
