//! What can go wrong in the facade, and what the caller can do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

use ha_core::ConfigError;
use ha_gossip::GossipError;
use ha_lock::LockError;
use ha_replicate::driver::DriverError;
use ha_replicate::engine::TransferError;
use ha_replicate::replica::{ClientError, WriteFate};

/// Why a [`Node`](crate::Node) call failed. Each variant says whether anything changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid: nothing was started. Fix the named field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration file could not be read or parsed: nothing was started.
    #[error("config file {path}: {reason}")]
    ConfigFile {
        /// The file (or `environment` for an environment variable).
        path: PathBuf,
        /// What is wrong, with the line or variable name.
        reason: String,
    },
    /// The data directory cannot be used (unreadable, or owned by another node or cluster):
    /// nothing was started.
    #[error("data dir {path}: {reason}")]
    DataDir {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A cluster key, TLS or admin token file could not be used (unreadable, malformed, or a
    /// certificate that does not name this node): nothing was started.
    #[error("security file {path}: {reason}")]
    SecurityFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong and what to do (never a secret).
        reason: String,
    },
    /// The replicated log could not start: its storage could not be recovered, or the RPC
    /// port could not be bound. Nothing else was started.
    #[error("replication: {0}")]
    Replica(#[from] DriverError),
    /// Gossip could not start (the UDP port is taken) or has stopped.
    #[error("gossip: {0}")]
    Gossip(#[from] GossipError),
    /// The admin HTTP address could not be bound. The node was stopped again.
    #[error("admin HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// A write or read failed; [`ClientError::fate`] says whether it may have been applied
    /// (`NoQuorum`, `NotLeader`, `Busy`, `TransferInProgress`: not applied, retry anywhere;
    /// `Timeout`, `LeadershipLost`, `Stopped`: unknown, retry with the same client, which
    /// applies it at most once) and [`ClientError::is_retryable`] whether to retry.
    #[error(transparent)]
    Replication(#[from] ClientError),
    /// A KV or lock call failed; see [`LockError`].
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A leadership transfer was refused: nothing changed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// A leadership transfer was started but this node still leads after the wait: the
    /// target did not catch up or answer in time (it may be restarting or cut off). Nothing
    /// changed; try again, or pick another target.
    #[error("leadership did not move to {target} in time; this node still leads")]
    TransferTimedOut {
        /// The node that was asked to take over.
        target: ha_core::NodeId,
    },
}

impl NodeError {
    /// Whether a write that failed with this error may have been applied: known not applied
    /// for refusals (bad config, invalid request, a lock refusal such as a CAS mismatch, no
    /// quorum), unknown after a timeout or a lost leader, committed for a STRONG write that
    /// is not yet applied everywhere. README, "Client guidance", says how to retry each.
    pub fn fate(&self) -> WriteFate {
        match self {
            NodeError::Replication(error) | NodeError::Lock(LockError::Replication(error)) => {
                error.fate()
            }
            _ => WriteFate::NotApplied,
        }
    }
}
