//! Why `bot demo` failed.

use std::path::PathBuf;
use std::time::Duration;

/// A failed or timed-out step of the demo. Every child has been killed by the time the user
/// sees one; the data dirs and node logs are kept for inspection.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step did not complete in time. `state` says what each node reported by then.
    #[error("{step} timed out after {} s; by then {state}", timeout.as_secs())]
    Timeout {
        /// The step that was waited for.
        step: String,
        /// How long it was waited for.
        timeout: Duration,
        /// What the nodes reported.
        state: String,
    },
    /// A node that should have been running exited. Its log says why.
    #[error("{node} exited unexpectedly ({status}); see its log {}", log.display())]
    ChildExited {
        /// The node.
        node: String,
        /// Its exit status, as far as known.
        status: String,
        /// Its stderr log.
        log: PathBuf,
    },
    /// A node asked to leave with SIGTERM did not exit with code 0.
    #[error("{node} did not leave cleanly after SIGTERM ({status}); see its log {}", log.display())]
    UncleanExit {
        /// The node.
        node: String,
        /// Its exit status, or that it is still running.
        status: String,
        /// Its stderr log.
        log: PathBuf,
    },
    /// A check of the demo failed: the journal has a gap or a duplicate, two nodes led one
    /// term, or the cluster answered something unexpected.
    #[error("check failed: {0}")]
    Check(String),
    /// The demo itself could not do something (create its directory, start a process, ...).
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl DemoError {
    /// An [`Io`](Self::Io) error while doing `action`.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}
