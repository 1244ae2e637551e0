//! Why a transport could not start.

use std::net::SocketAddr;

use ha_core::ConfigError;

/// Why [`TcpTransport::start`](super::TcpTransport::start) failed. Nothing was started: no
/// socket is bound and no task runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The settings are invalid (including the keyring). Fix the named field and start again.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be bound or read back. Check that the address is local
    /// and free, then start again.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}
