//! Why a replica could not start.

use crate::storage::StorageError;
use crate::transport::TransportError;

/// A replica failed to start; nothing keeps running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The store could not be recovered: see the storage error for what to do.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The transport could not start (bad settings, or the address is taken).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The thread that runs the host's state machine could not start (the OS refused a
    /// thread: too many threads or too little memory). Nothing was started; retry once the
    /// host has room.
    #[error("could not start the apply thread: {0}")]
    ApplyThread(std::io::Error),
    /// The node's own event-loop thread could not start (the OS refused a thread, or its
    /// tokio runtime could not be built). Nothing was started; retry once the host has room,
    /// or set `HA_REPLICA_THREAD=shared` to run the node on the caller's runtime.
    #[error("could not start the replica thread: {0}")]
    ReplicaThread(std::io::Error),
}
