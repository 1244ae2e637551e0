//! What every task of one transport shares: settings, keys, codecs and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ha_core::NodeId;
use ha_core::keyring::Keyring;

use super::counts::{Counters, RejectCause};
use super::frame::FrameCodec;
use super::handshake::{CONNECTION_NONCE_BYTES, HandshakeCodec};
use super::settings::TransportSettings;

/// Shared, read-only state of a running transport (plus its atomic counters).
#[derive(Debug)]
pub(crate) struct TransportContext {
    pub(crate) settings: TransportSettings,
    pub(crate) keyring: Option<Arc<Keyring>>,
    pub(crate) handshake: HandshakeCodec,
    pub(crate) counters: Counters,
}

impl TransportContext {
    pub(crate) fn new(settings: TransportSettings, keyring: Option<Arc<Keyring>>) -> Self {
        let handshake = HandshakeCodec::new(
            &settings.cluster_name,
            settings.node_id.clone(),
            keyring.clone(),
        );
        Self {
            settings,
            keyring,
            handshake,
            counters: Counters::default(),
        }
    }

    pub(crate) fn node_id(&self) -> &NodeId {
        &self.settings.node_id
    }

    /// The codec for frames sent by `sender` to the side that chose `receiver_nonce`.
    pub(crate) fn frame_codec(
        &self,
        sender: &NodeId,
        receiver_nonce: [u8; CONNECTION_NONCE_BYTES],
    ) -> FrameCodec {
        FrameCodec::new(
            &self.settings.cluster_name,
            sender,
            receiver_nonce,
            self.keyring.clone(),
            self.settings.frame_bytes_max,
        )
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.idle_timeout_ms)
    }

    pub(crate) fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.settings.keepalive_interval_ms)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.handshake_timeout_ms)
    }

    /// Count a refusal and log it at WARN with its cause. `peer` is the claimed node id when
    /// the handshake got that far; `detail` adds specifics (sizes, ids), or is empty.
    pub(crate) fn reject(
        &self,
        cause: RejectCause,
        remote: SocketAddr,
        peer: Option<&NodeId>,
        detail: &str,
    ) {
        self.counters.reject(cause);
        let peer = peer.map_or("unknown", NodeId::as_str);
        tracing::warn!(
            cause = cause.as_str(),
            %remote,
            peer,
            detail,
            "replication connection refused and closed: {}",
            cause.describe()
        );
    }
}
