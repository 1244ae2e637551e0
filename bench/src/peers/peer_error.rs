//! Errors of the process-cluster helpers.

use std::time::Duration;

/// What went wrong starting, probing or stopping a cluster of processes. The processes
/// already started are killed by their guards when the cluster is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// An executable is missing: build or install it (the message says how).
    #[error("{0}")]
    Missing(String),
    /// Spawning, signalling or reaping a process, or a file operation, failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// An HTTP client could not be built or a response could not be read.
    #[error("http: {0}")]
    Http(String),
    /// No leader was found in time: the cluster may be misconfigured; see its logs.
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    /// A member index out of range or a member in the wrong state (not running, running).
    #[error("member {index}: {reason}")]
    Member {
        /// The member's index.
        index: usize,
        /// Why the operation was refused.
        reason: &'static str,
    },
    /// A /proc file did not have the expected shape.
    #[error("/proc: {0}")]
    Proc(String),
    /// A helper command (`bot certs init`, `bot keygen`) failed: the message has its stderr;
    /// check that the `bot` binary is recent enough to have it.
    #[error("command: {0}")]
    Command(String),
    /// Certificates could not be made (rcgen's error).
    #[error("certificates: {0}")]
    Certificates(String),
}
