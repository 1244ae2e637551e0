//! What a TCP transport needs to start, with defaults and validation.

use std::net::SocketAddr;

use ha_core::codec::RPC_FRAME_BYTES_MAX;
use ha_core::keyring::{ClusterKey, KEYRING_KEYS_MAX};
use ha_core::{Config, ConfigError, NodeId};

use crate::tls::TlsIdentity;

/// Default most messages waiting per peer before [`send`](super::TcpTransport::send) drops.
pub const OUTBOUND_QUEUE_MAX_DEFAULT: usize = 4096;
/// Default most received messages waiting for the consumer before readers stop reading (and
/// TCP pushes back on the senders).
pub const INBOUND_QUEUE_MAX_DEFAULT: usize = 4096;
/// Default most peers with an outbound queue.
pub const PEERS_MAX_DEFAULT: usize = 256;
/// Default most inbound connections open at once.
pub const INBOUND_CONNECTIONS_MAX_DEFAULT: usize = 256;
/// Default first reconnect delay.
pub const RECONNECT_BACKOFF_MS_MIN_DEFAULT: u64 = 20;
/// Default longest reconnect delay.
pub const RECONNECT_BACKOFF_MS_MAX_DEFAULT: u64 = 1_000;
/// Default time to connect and exchange handshakes.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// Default time for the TCP connect alone (within the handshake timeout).
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// Default time a batch of frames may take to be written before the connection is closed.
pub const WRITE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default time without writing after which a keepalive frame is sent.
pub const KEEPALIVE_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default time without reading a byte (or completing a write) after which a connection is
/// declared dead and closed.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// The smallest frame limit accepted: room for a handshake and a small message.
pub const FRAME_BYTES_MIN: usize = 1024;

/// Settings of one [`TcpTransport`](super::TcpTransport).
///
/// Every queue, connection count and frame has a limit; every wait has a timeout.
///
/// ```
/// use ha_replicate::transport::TransportSettings;
/// let mut settings = TransportSettings::new(
///     "n1".parse().unwrap(),
///     "127.0.0.1:0".parse().unwrap(),
///     "payments-prod",
/// );
/// settings.outbound_queue_max = 1024;
/// settings.validate().unwrap();
/// settings.reconnect_backoff_ms_max = 1;
/// assert_eq!(settings.validate().unwrap_err().field, "transport.reconnect_backoff_ms_max");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// This node's id: sent in the handshake and, with a key, bound into every sealed frame.
    pub node_id: NodeId,
    /// The TCP address to listen on; port 0 picks a free port (see
    /// [`local_addr`](super::TcpTransport::local_addr)).
    pub bind_addr: SocketAddr,
    /// The cluster's name; connections from another name are refused.
    pub cluster_name: String,
    /// Cluster keys, current first. Empty: frames travel in the clear and peers are identified
    /// by what they claim in the handshake.
    pub cluster_keys: Vec<ClusterKey>,
    /// This node's TLS identity. `Some`: every replication connection, both ways, is mutual
    /// TLS 1.3 with certificates from the cluster CA, each peer's node id is bound to its
    /// certificate, and frames are not sealed with the cluster keys (TLS protects them; the
    /// keys still seal gossip). `None`: TCP, sealed with `cluster_keys` when there are any.
    pub tls: Option<TlsIdentity>,
    /// The largest frame body on the wire, in bytes (sealing overhead included). At most
    /// [`RPC_FRAME_BYTES_MAX`]; a peer announcing more is disconnected.
    pub frame_bytes_max: usize,
    /// Most messages waiting per peer; [`send`](super::TcpTransport::send) drops beyond it.
    pub outbound_queue_max: usize,
    /// Most received messages waiting for the consumer of the inbound channel.
    pub inbound_queue_max: usize,
    /// Most peers this node keeps an outbound connection and queue for.
    pub peers_max: usize,
    /// Most inbound connections open at once; more are closed at accept.
    pub inbound_connections_max: usize,
    /// First delay before reconnecting to a peer, in milliseconds.
    pub reconnect_backoff_ms_min: u64,
    /// Longest delay before reconnecting to a peer, in milliseconds.
    pub reconnect_backoff_ms_max: u64,
    /// Time to connect and exchange handshakes, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time for the TCP connect alone, in milliseconds (capped by `handshake_timeout_ms`). An
    /// attempt given up is retried after the backoff with a fresh SYN: the kernel's own SYN
    /// retransmissions come after 1 s, then 3 s, so a peer that became reachable again would
    /// otherwise wait that long.
    pub connect_timeout_ms: u64,
    /// Time a batch of frames (up to a 16 MiB snapshot) may take to be written on an outbound
    /// connection before it is closed, in milliseconds (the idle timeout when that is longer).
    pub write_timeout_ms: u64,
    /// A side that has written nothing for this long sends a keepalive frame, in milliseconds.
    pub keepalive_interval_ms: u64,
    /// A connection on which nothing arrives for this long is closed, in milliseconds (as is
    /// an inbound connection whose keepalive cannot be written). More than twice
    /// `keepalive_interval_ms`.
    pub idle_timeout_ms: u64,
}

impl TransportSettings {
    /// Settings with every limit and timeout at its default, no key.
    pub fn new(node_id: NodeId, bind_addr: SocketAddr, cluster_name: impl Into<String>) -> Self {
        Self {
            node_id,
            bind_addr,
            cluster_name: cluster_name.into(),
            cluster_keys: Vec::new(),
            tls: None,
            frame_bytes_max: RPC_FRAME_BYTES_MAX,
            outbound_queue_max: OUTBOUND_QUEUE_MAX_DEFAULT,
            inbound_queue_max: INBOUND_QUEUE_MAX_DEFAULT,
            peers_max: PEERS_MAX_DEFAULT,
            inbound_connections_max: INBOUND_CONNECTIONS_MAX_DEFAULT,
            reconnect_backoff_ms_min: RECONNECT_BACKOFF_MS_MIN_DEFAULT,
            reconnect_backoff_ms_max: RECONNECT_BACKOFF_MS_MAX_DEFAULT,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            write_timeout_ms: WRITE_TIMEOUT_MS_DEFAULT,
            keepalive_interval_ms: KEEPALIVE_INTERVAL_MS_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
        }
    }

    /// Settings from a node config: its id, bind address (TCP, the same port number as
    /// gossip's UDP), cluster name and keys, liveness timed from its election timing; defaults
    /// for the rest.
    ///
    /// A partition must not outlast itself in the transport (issue 12, item 11): a deposed
    /// leader took 1.2-2.1 s to serve again after a heal, because its connections, kept
    /// through the partition (idle timeout 5 s), held unacknowledged frames whose TCP
    /// retransmissions had backed off to seconds, and connections that had closed retried
    /// with 2 s connects (one kernel SYN retransmission, at 1 s) and up to 1 s of backoff. So
    /// a connection that carried nothing for two election timeouts (keepalives every
    /// heartbeat) is closed and redialled, and while a peer is unreachable a fresh SYN leaves
    /// at least every four heartbeats (connect attempts and backoff of two heartbeats each):
    /// 200 ms with LAN timing, well within one election timeout.
    pub fn from_config(config: &Config) -> Self {
        let mut settings = Self::new(
            config.node_id.clone(),
            config.bind_addr,
            config.cluster.name.clone(),
        );
        settings.cluster_keys = config.security.cluster_keys.clone();
        let timing = &config.timing;
        let heartbeat_ms = timing.heartbeat_interval_ms.max(1);
        settings.keepalive_interval_ms = heartbeat_ms;
        settings.idle_timeout_ms = timing
            .election_timeout_max_ms
            .saturating_mul(2)
            .max(heartbeat_ms.saturating_mul(2) + 1);
        settings.connect_timeout_ms = heartbeat_ms.saturating_mul(2);
        settings.reconnect_backoff_ms_max = heartbeat_ms
            .saturating_mul(2)
            .max(settings.reconnect_backoff_ms_min);
        settings
    }

    /// The same settings sealing with `keys` (current first).
    pub fn with_cluster_keys(mut self, keys: Vec<ClusterKey>) -> Self {
        self.cluster_keys = keys;
        self
    }

    /// The same settings with mutual TLS on every connection (see [`tls`](Self::tls)).
    pub fn with_tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Check every field. [`TcpTransport::start`](super::TcpTransport::start) calls it.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field and how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cluster_name;
        if !ha_core::is_valid_cluster_name(name) {
            return Err(ConfigError::new(
                "transport.cluster_name",
                format!("{name:?} is not 1 to 64 characters of [A-Za-z0-9._-]"),
                "use the cluster name from the node config, the same on every node",
            ));
        }
        if self.cluster_keys.len() > KEYRING_KEYS_MAX {
            return Err(ConfigError::new(
                "transport.cluster_keys",
                format!("{} keys given", self.cluster_keys.len()),
                format!("keep at most {KEYRING_KEYS_MAX}: the current key and old ones"),
            ));
        }
        if let Some(identity) = &self.tls
            && (identity.node_id() != &self.node_id || identity.cluster_name() != name)
        {
            return Err(ConfigError::new(
                "transport.tls",
                format!(
                    "the TLS identity is for node {} of cluster {:?}, not node {} of {name:?}",
                    identity.node_id(),
                    identity.cluster_name(),
                    self.node_id
                ),
                "load the identity with this node's id and cluster name",
            ));
        }
        if !(FRAME_BYTES_MIN..=RPC_FRAME_BYTES_MAX).contains(&self.frame_bytes_max) {
            return Err(ConfigError::new(
                "transport.frame_bytes_max",
                format!("is {}", self.frame_bytes_max),
                format!("give {FRAME_BYTES_MIN} to {RPC_FRAME_BYTES_MAX} bytes"),
            ));
        }
        let counts: [(&'static str, usize); 4] = [
            ("transport.outbound_queue_max", self.outbound_queue_max),
            ("transport.inbound_queue_max", self.inbound_queue_max),
            ("transport.peers_max", self.peers_max),
            (
                "transport.inbound_connections_max",
                self.inbound_connections_max,
            ),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(ConfigError::new(
                    field,
                    "is 0",
                    "give a positive limit, or keep the default",
                ));
            }
        }
        let durations: [(&'static str, u64); 6] = [
            (
                "transport.reconnect_backoff_ms_min",
                self.reconnect_backoff_ms_min,
            ),
            ("transport.handshake_timeout_ms", self.handshake_timeout_ms),
            ("transport.connect_timeout_ms", self.connect_timeout_ms),
            ("transport.write_timeout_ms", self.write_timeout_ms),
            (
                "transport.keepalive_interval_ms",
                self.keepalive_interval_ms,
            ),
            ("transport.idle_timeout_ms", self.idle_timeout_ms),
        ];
        for (field, value) in durations {
            if value == 0 {
                return Err(ConfigError::new(
                    field,
                    "is 0",
                    "give a positive number of milliseconds, or keep the default",
                ));
            }
        }
        if self.reconnect_backoff_ms_max < self.reconnect_backoff_ms_min {
            return Err(ConfigError::new(
                "transport.reconnect_backoff_ms_max",
                format!(
                    "{} is below reconnect_backoff_ms_min {}",
                    self.reconnect_backoff_ms_max, self.reconnect_backoff_ms_min
                ),
                "make the max at least the min (defaults: 20 and 1000)",
            ));
        }
        if self.idle_timeout_ms <= self.keepalive_interval_ms.saturating_mul(2) {
            return Err(ConfigError::new(
                "transport.idle_timeout_ms",
                format!(
                    "{} is not more than twice keepalive_interval_ms {}",
                    self.idle_timeout_ms, self.keepalive_interval_ms
                ),
                "let at least two keepalives fit in the idle timeout (defaults: 1000 and 5000)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ha_core::Timing;

    use super::*;

    /// Issue 12, item 11: after a partition heals, a peer is redialled within one election
    /// timeout, and a silently dead connection is closed within two.
    #[test]
    fn liveness_follows_the_election_timing() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000));
        for timing in [Timing::lan(), Timing::wan()] {
            let mut config = Config::single("n1".parse().expect("valid"), addr);
            config.timing = timing.clone();
            let settings = TransportSettings::from_config(&config);
            settings.validate().expect("valid settings");
            let redial_every_ms = settings.connect_timeout_ms + settings.reconnect_backoff_ms_max;
            assert!(
                redial_every_ms < timing.election_timeout_max_ms,
                "{timing:?}: a fresh SYN every {redial_every_ms} ms"
            );
            assert!(settings.idle_timeout_ms <= 2 * timing.election_timeout_max_ms);
            assert!(settings.keepalive_interval_ms <= timing.heartbeat_interval_ms);
            // Large frames are not held to the short idle timeout.
            assert_eq!(settings.write_timeout_ms, WRITE_TIMEOUT_MS_DEFAULT);
        }
    }
}
