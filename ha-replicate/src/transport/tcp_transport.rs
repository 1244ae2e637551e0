//! [`TcpTransport`]: the handle the replication driver sends and receives through.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;

use ha_core::NodeId;
use ha_core::keyring::Keyring;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::context::TransportContext;
use super::counts::{RejectCounts, SendDropCause, SendDropCounts};
use super::error::TransportError;
use super::inbound::Listener;
use super::outbound::OutboundPeer;
use super::settings::TransportSettings;

/// A message received from a peer (or sent to this node itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound<M> {
    /// Who sent it: the node id the sender's certificate names (with TLS), proved in the
    /// handshake (with a cluster key) or claimed (with neither).
    pub from: NodeId,
    /// The message.
    pub message: M,
}

/// This node's side of the link to one peer.
struct PeerLink<M> {
    queue: mpsc::Sender<M>,
    addr: watch::Sender<SocketAddr>,
    task: JoinHandle<()>,
    /// Whether the queue was full on the last send; the first drop of a streak is logged at
    /// WARN, the rest only counted.
    dropping: bool,
}

/// A TCP transport between the nodes of one cluster, generic over the message type `M`.
///
/// - **Outbound**: one task per peer owns that peer's connection and a bounded queue
///   ([`TransportSettings::outbound_queue_max`]). [`send`](Self::send) never blocks: when the
///   queue is full the message is dropped and counted, and the protocol above retries. The
///   task reconnects with exponential backoff and jitter, and reconnects at once to a new
///   address when `send` is given one.
/// - **Inbound**: an accept loop serves each connection in its own task and delivers messages
///   into one bounded channel (returned by [`start`](Self::start)); when the consumer is
///   behind, readers stop reading and TCP pushes back on the senders, whose queues then fill
///   and drop. A consumer that stalls for longer than the idle timeout makes the senders'
///   writes time out: they reconnect, and the batch in flight is lost.
/// - **Order**: messages to one peer are delivered in the order `send` was called, for as
///   long as a connection lasts. Across a reconnect there is no promise: messages queued or
///   in flight when a connection fails may be lost, and a message sent on the new connection
///   may be delivered before the last ones of the old.
/// - **Liveness**: a side that has written nothing for the keepalive interval sends a
///   keepalive frame; a connection on which nothing arrives (or a write does not complete)
///   for the idle timeout is closed.
/// - **Security**: with a TLS identity ([`TransportSettings::tls`]), every connection is
///   mutual TLS 1.3 and each peer's node id is bound to its certificate (see
///   [`crate::tls`]). Otherwise, with cluster keys, the handshake and every frame are sealed
///   and bound to the cluster, the sender and the connection (see [`frame`](super::frame));
///   any holder of a key can then claim any node id. Every refusal is logged at WARN and
///   counted ([`reject_counts`](Self::reject_counts)).
/// - Messages to this node itself go straight into the inbound channel, without a socket.
///
/// Dropping the transport aborts every task; [`shutdown`](Self::shutdown) also waits until
/// every socket is closed.
///
/// ```
/// use ha_replicate::transport::{TcpTransport, TransportSettings};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = |name: &str| {
///     TransportSettings::new(name.parse().unwrap(), "127.0.0.1:0".parse().unwrap(), "demo")
/// };
/// let (first, _first_inbox) = TcpTransport::<String>::start(settings("n1")).await?;
/// let (second, mut second_inbox) = TcpTransport::<String>::start(settings("n2")).await?;
/// first.send(&"n2".parse()?, second.local_addr(), "hello".to_string());
/// let received = second_inbox.recv().await.expect("the transport is running");
/// assert_eq!((received.from.as_str(), received.message.as_str()), ("n1", "hello"));
/// first.shutdown().await;
/// second.shutdown().await;
/// # Ok(()) }
/// ```
pub struct TcpTransport<M> {
    context: Arc<TransportContext>,
    local_addr: SocketAddr,
    peers: Mutex<BTreeMap<NodeId, PeerLink<M>>>,
    /// For messages to this node itself.
    inbound: mpsc::Sender<Inbound<M>>,
    runtime: tokio::runtime::Handle,
    stop: watch::Sender<bool>,
    listener_task: Option<JoinHandle<()>>,
}

impl<M> TcpTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Bind the listening socket and start accepting. Returns the transport and the channel
    /// on which every received message arrives.
    ///
    /// Must be called within a tokio runtime; the tasks run on it, and
    /// [`send`](Self::send) may then be called from any thread.
    ///
    /// # Errors
    /// [`TransportError::Config`] for invalid settings or keys; [`TransportError::Bind`] when
    /// the address cannot be bound. Nothing is started on error.
    pub async fn start(
        settings: TransportSettings,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), TransportError> {
        settings.validate()?;
        // With TLS the keys are not used here: TLS protects every frame.
        let keyring = if settings.cluster_keys.is_empty() || settings.tls.is_some() {
            None
        } else {
            Some(Arc::new(Keyring::new(settings.cluster_keys.clone())?))
        };
        let bind_addr = settings.bind_addr;
        let listener =
            TcpListener::bind(bind_addr)
                .await
                .map_err(|source| TransportError::Bind {
                    addr: bind_addr,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: bind_addr,
                source,
            })?;
        let (inbound, inbound_receiver) = mpsc::channel(settings.inbound_queue_max);
        let context = Arc::new(TransportContext::new(settings, keyring));
        let (stop, stop_receiver) = watch::channel(false);
        let runtime = tokio::runtime::Handle::current();
        let span =
            tracing::debug_span!("replication_listener", node = %context.node_id(), %local_addr);
        let listener = Listener {
            context: Arc::clone(&context),
            listener,
            inbound: inbound.clone(),
            stop: stop_receiver,
        };
        let listener_task = runtime.spawn(listener.run().instrument(span));
        tracing::debug!(node = %context.node_id(), %local_addr, "replication transport listening");
        let transport = Self {
            context,
            local_addr,
            peers: Mutex::new(BTreeMap::new()),
            inbound,
            runtime,
            stop,
            listener_task: Some(listener_task),
        };
        Ok((transport, inbound_receiver))
    }

    /// Queue `message` for `to` at `addr`, without waiting.
    ///
    /// The first message to a peer starts its connection task; a different `addr` than last
    /// time makes the task reconnect to the new address. When the peer's queue is full, or
    /// the transport already serves [`TransportSettings::peers_max`] peers, the message is
    /// dropped and counted in [`send_drop_counts`](Self::send_drop_counts): the protocol above
    /// retries. A message to this node's own id is put straight into the inbound channel
    /// (dropped and counted when that is full).
    pub fn send(&self, to: &NodeId, addr: SocketAddr, message: M) {
        if to == self.context.node_id() {
            self.send_to_self(message);
            return;
        }
        let mut peers = self.peers.lock();
        if !peers.contains_key(to) && peers.len() >= self.context.settings.peers_max {
            self.context.counters.send_drop(SendDropCause::PeerLimit);
            tracing::warn!(
                peer = %to,
                peers_max = self.context.settings.peers_max,
                "too many peers; message dropped (forget peers that left)"
            );
            return;
        }
        let link = match peers.entry(to.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(self.spawn_peer(to, addr)),
        };
        if *link.addr.borrow() != addr {
            link.addr.send_replace(addr);
        }
        let message = match link.queue.try_send(message) {
            Ok(()) => {
                link.dropping = false;
                return;
            }
            Err(TrySendError::Full(_)) => {
                self.context.counters.send_drop(SendDropCause::QueueFull);
                if !link.dropping {
                    link.dropping = true;
                    tracing::warn!(
                        peer = %to,
                        outbound_queue_max = self.context.settings.outbound_queue_max,
                        "outbound queue full; dropping messages to this peer until it drains"
                    );
                }
                return;
            }
            Err(TrySendError::Closed(message)) => message,
        };
        // The peer's task ended, which only a panic does: start a fresh one.
        tracing::error!(peer = %to, "outbound task for peer had stopped; restarting it");
        let link = self.spawn_peer(to, addr);
        if link.queue.try_send(message).is_err() {
            self.context.counters.send_drop(SendDropCause::Stopped);
        }
        peers.insert(to.clone(), link);
    }

    /// Stop the connection to `to` and drop its queued messages (for a node that left the
    /// cluster). A later [`send`](Self::send) to it starts afresh.
    pub fn forget(&self, to: &NodeId) {
        if let Some(link) = self.peers.lock().remove(to) {
            link.task.abort();
            tracing::debug!(peer = %to, "peer forgotten");
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.context.node_id()
    }

    /// The bound listening address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections and frames refused so far, by cause.
    pub fn reject_counts(&self) -> RejectCounts {
        self.context.counters.reject_counts()
    }

    /// Messages dropped before reaching a socket so far, by cause.
    pub fn send_drop_counts(&self) -> SendDropCounts {
        self.context.counters.send_drop_counts()
    }

    /// Stop accepting, close every connection and stop every task; returns once all of them
    /// have stopped and their sockets are closed. Queued messages are dropped.
    ///
    /// # Cancel safety
    /// If the returned future is dropped early, the remaining tasks are still aborted (as on
    /// drop), but their sockets may close a moment later.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        let peers = std::mem::take(&mut *self.peers.lock());
        for link in peers.values() {
            link.task.abort();
        }
        for (_, link) in peers {
            // An aborted task reports cancellation once its future has been dropped.
            let _ = link.task.await;
        }
        if let Some(listener_task) = self.listener_task.take() {
            let _ = listener_task.await;
        }
        tracing::debug!(node = %self.context.node_id(), "replication transport stopped");
    }

    fn send_to_self(&self, message: M) {
        let delivery = Inbound {
            from: self.context.node_id().clone(),
            message,
        };
        match self.inbound.try_send(delivery) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.context
                    .counters
                    .send_drop(SendDropCause::InboundQueueFull);
                tracing::debug!("inbound queue full; message to self dropped");
            }
            Err(TrySendError::Closed(_)) => {
                self.context.counters.send_drop(SendDropCause::Stopped);
            }
        }
    }

    fn spawn_peer(&self, to: &NodeId, addr: SocketAddr) -> PeerLink<M> {
        let (queue, queue_receiver) = mpsc::channel(self.context.settings.outbound_queue_max);
        let (addr_sender, addr_receiver) = watch::channel(addr);
        let peer = OutboundPeer::new(
            Arc::clone(&self.context),
            to.clone(),
            queue_receiver,
            addr_receiver,
        );
        let span = tracing::debug_span!(
            "replication_outbound",
            node = %self.context.node_id(),
            peer = %to
        );
        let task = self.runtime.spawn(peer.run().instrument(span));
        PeerLink {
            queue,
            addr: addr_sender,
            task,
            dropping: false,
        }
    }
}

impl<M> Drop for TcpTransport<M> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for link in self.peers.get_mut().values() {
            link.task.abort();
        }
        // Aborting the listener drops its set of connection tasks, which aborts them too.
        if let Some(listener_task) = &self.listener_task {
            listener_task.abort();
        }
    }
}

impl<M> std::fmt::Debug for TcpTransport<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TcpTransport")
            .field("node_id", self.context.node_id())
            .field("local_addr", &self.local_addr)
            .field("peers", &self.peers.lock().len())
            .finish()
    }
}
