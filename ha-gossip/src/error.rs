//! Errors of the gossip layer.

use ha_core::ConfigError;

/// Why a gossip node could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The settings are invalid; nothing was started. Fix the named field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The UDP socket could not be bound or used; nothing was started. Check the address is
    /// free and local.
    #[error("gossip socket: {0}")]
    Io(#[from] std::io::Error),
    /// The shared map's log could not be opened or read back (issue 15); nothing was started.
    /// The message names the file and what to do.
    #[error(transparent)]
    SharedState(#[from] crate::shared_state::StateError),
    /// The node has stopped; start a new one.
    #[error("gossip node has stopped")]
    Stopped,
}
