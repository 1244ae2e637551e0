//! The tokio driver: [`ReplicaNode`] runs a [`ReplicaCore`](crate::replica::ReplicaCore) over
//! the TCP transport and a [`LogStore`](crate::storage::LogStore), with group commit;
//! [`ReplicaClient`] is its typed, retrying client.

mod apply_thread;
mod client;
mod error;
mod latency_tracker;
mod lazy_queue;
mod member_commands;
mod node_runtime;
mod replica_metrics;
mod replica_node;
mod reply_slot;
mod request_traces;
mod session_window;
mod status;
mod stop_reason;
mod storage_thread;
mod thread_reports;

pub use apply_thread::APPLY_QUEUE_TASKS_MAX;
pub use client::{ReplicaClient, WriteResult};
pub use error::DriverError;
pub use latency_tracker::{PENDING_BATCHES_MAX, PENDING_REQUESTS_MAX};
pub use node_runtime::REPLICA_THREAD_ENV;
pub use replica_metrics::ReplicaMetrics;
pub use replica_node::{EXPORTS_WAITING_MAX, NodeSettings, ReplicaNode};
pub use request_traces::TRACED_REQUESTS_MAX;
pub use session_window::SESSION_WRITES_IN_FLIGHT_MAX;
pub use status::{CatchUp, PeerStatus, ReplicaStatus, RoleView, SnapshotTransferStats};
pub use storage_thread::{
    STORAGE_OPS_PER_SYNC_MAX, STORAGE_OPS_QUEUED_MAX, StorageReport, ThreadedStore,
};
