//! The outbound side: one task per peer that connects, handshakes, and writes that peer's
//! queue in order, reconnecting with backoff when the connection fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ha_core::NodeId;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::connection::{
    CloseReason, Connection, FrameReader, FrameWriter, ReadError, close_on_read_error, read_opened,
};
use super::context::TransportContext;
use super::counts::{RejectCause, SendDropCause};
use super::frame::{FrameCodec, FrameKind};
use super::handshake::HANDSHAKE_BYTES_MAX;

/// Most messages written in one batch (one write and flush).
const BATCH_MESSAGES_MAX: usize = 256;
/// Most bytes gathered in one batch before it is written; one message may exceed it.
const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Why a connection attempt failed.
enum OpenFailure {
    /// The address changed while connecting; try the new one at once.
    AddressChanged,
    /// The peer entry is gone (forgotten or the transport stopped).
    Stopped,
    /// The TCP connect failed or timed out (the peer is down or unreachable): normal.
    Connect(std::io::Error),
    /// The peer closed the connection during the handshake: it probably refused our hello.
    ClosedDuringHandshake,
    /// The socket failed during the handshake.
    Io(std::io::Error),
    /// The peer's answer was refused (counted and logged already).
    Rejected(RejectCause),
}

/// How an established connection ended.
enum Ended {
    /// The connection failed; reconnect after a backoff delay.
    Failed(CloseReason),
    /// A new address was given; connect to it at once.
    AddressChanged,
    /// Stop the task.
    Stopped,
}

/// The task that owns the connection to one peer.
pub(crate) struct OutboundPeer<M> {
    context: Arc<TransportContext>,
    peer: NodeId,
    queue: mpsc::Receiver<M>,
    addr: watch::Receiver<SocketAddr>,
    backoff: Backoff,
    /// Set after a failure was logged at WARN; later failures in the same streak go to DEBUG,
    /// so a peer refusing us does not flood the log once per backoff delay.
    warned: bool,
}

impl<M: Serialize + Send + 'static> OutboundPeer<M> {
    pub(crate) fn new(
        context: Arc<TransportContext>,
        peer: NodeId,
        queue: mpsc::Receiver<M>,
        addr: watch::Receiver<SocketAddr>,
    ) -> Self {
        let backoff = Backoff::new(
            context.settings.reconnect_backoff_ms_min,
            context.settings.reconnect_backoff_ms_max,
        );
        Self {
            context,
            peer,
            queue,
            addr,
            backoff,
            warned: false,
        }
    }

    /// Connect, write, reconnect, until the peer entry is dropped or the task aborted.
    pub(crate) async fn run(mut self) {
        loop {
            let addr = *self.addr.borrow_and_update();
            let failure = match self.open(addr).await {
                Ok(connection) => {
                    tracing::debug!(peer = %self.peer, %addr, "replication connection established");
                    self.backoff.reset();
                    self.warned = false;
                    match self.pump(connection).await {
                        Ended::Stopped => return,
                        Ended::AddressChanged => continue,
                        Ended::Failed(reason) => {
                            tracing::debug!(
                                peer = %self.peer,
                                %addr,
                                %reason,
                                "replication connection lost; reconnecting"
                            );
                            None
                        }
                    }
                }
                Err(OpenFailure::Stopped) => return,
                Err(OpenFailure::AddressChanged) => {
                    self.backoff.reset();
                    continue;
                }
                Err(failure) => Some(failure),
            };
            if let Some(failure) = failure {
                self.log_failure(addr, &failure);
            }
            let delay_ms = self.backoff.next_delay_ms(rand::random());
            let resume_at = Instant::now() + Duration::from_millis(delay_ms);
            tokio::select! {
                () = tokio::time::sleep_until(resume_at) => {}
                changed = self.addr.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.backoff.reset();
                }
            }
        }
    }

    fn log_failure(&mut self, addr: SocketAddr, failure: &OpenFailure) {
        let peer = &self.peer;
        match failure {
            OpenFailure::Connect(error) => {
                tracing::debug!(%peer, %addr, %error, "cannot connect to peer; will retry");
            }
            OpenFailure::Io(error) => {
                tracing::debug!(%peer, %addr, %error, "handshake failed; will retry");
            }
            OpenFailure::ClosedDuringHandshake if !self.warned => {
                self.warned = true;
                tracing::warn!(
                    %peer,
                    %addr,
                    "peer closed the connection during the handshake: it may refuse our cluster \
                     name, key or protocol version (see its log); will retry"
                );
            }
            OpenFailure::ClosedDuringHandshake => {
                tracing::debug!(%peer, %addr, "peer closed the connection during the handshake");
            }
            // Already counted and logged at WARN where it was refused.
            OpenFailure::Rejected(cause) => {
                tracing::debug!(%peer, %addr, cause = cause.as_str(), "handshake refused; will retry");
            }
            OpenFailure::AddressChanged | OpenFailure::Stopped => {}
        }
    }

    /// Connect to `addr` and exchange hellos, within the handshake timeout, giving up early
    /// when the address changes.
    async fn open(&mut self, addr: SocketAddr) -> Result<Connection, OpenFailure> {
        let context = Arc::clone(&self.context);
        let deadline = Instant::now() + context.handshake_timeout();
        let peer = self.peer.clone();
        let attempt = async {
            // The connect alone gets its own, shorter bound: see `connect_timeout_ms`.
            let connect_timeout = Duration::from_millis(context.settings.connect_timeout_ms);
            let connect_deadline = deadline.min(Instant::now() + connect_timeout);
            let connect = TcpStream::connect(addr);
            let stream = match tokio::time::timeout_at(connect_deadline, connect).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(OpenFailure::Connect(error)),
                Err(_) => {
                    return Err(OpenFailure::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )));
                }
            };
            match tokio::time::timeout_at(deadline, handshake(&context, stream, addr, &peer)).await
            {
                Ok(result) => result,
                Err(_) => {
                    context.reject(RejectCause::HandshakeTimeout, addr, Some(&peer), "");
                    Err(OpenFailure::Rejected(RejectCause::HandshakeTimeout))
                }
            }
        };
        tokio::select! {
            result = attempt => result,
            changed = self.addr.changed() => match changed {
                Ok(()) => Err(OpenFailure::AddressChanged),
                Err(_) => Err(OpenFailure::Stopped),
            },
        }
    }

    /// Write the queue to an established connection until it fails or must be replaced.
    async fn pump(&mut self, connection: Connection) -> Ended {
        let Connection {
            peer,
            remote,
            mut reader,
            mut writer,
            mut incoming,
            mut outgoing,
        } = connection;
        let context = Arc::clone(&self.context);
        // The accepting side sends only keepalives; reading them proves the connection is
        // alive and notices at once when the peer closes it (for example on restart).
        let watch_peer = async {
            loop {
                match read_opened(&context, &mut reader, &mut incoming, remote, &peer).await {
                    Ok((FrameKind::Keepalive, _)) => {}
                    Ok((FrameKind::Message, _)) => {
                        let detail = "the accepting side sent a message";
                        context.reject(RejectCause::Malformed, remote, Some(&peer), detail);
                        return CloseReason::Rejected(RejectCause::Malformed);
                    }
                    Err(reason) => return reason,
                }
            }
        };
        tokio::pin!(watch_peer);
        let keepalive_interval = context.keepalive_interval();
        let mut keepalive_at = Instant::now() + keepalive_interval;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                reason = &mut watch_peer => return Ended::Failed(reason),
                changed = self.addr.changed() => match changed {
                    Err(_) => return Ended::Stopped,
                    Ok(()) if *self.addr.borrow() != remote => {
                        tracing::debug!(
                            %peer,
                            old = %remote,
                            new = %*self.addr.borrow(),
                            "peer address changed; reconnecting"
                        );
                        return Ended::AddressChanged;
                    }
                    Ok(()) => {}
                },
                message = self.queue.recv() => {
                    let Some(message) = message else {
                        return Ended::Stopped;
                    };
                    batch.clear();
                    append_message(&context, &peer, &mut outgoing, message, &mut batch);
                    let mut count = 1;
                    while count < BATCH_MESSAGES_MAX && batch.len() < BATCH_BYTES_MAX {
                        // Messages given with a new address go to the new connection (except
                        // for a race of a few microseconds around the change).
                        if self.addr.has_changed().unwrap_or(true) {
                            break;
                        }
                        let Ok(message) = self.queue.try_recv() else {
                            break;
                        };
                        append_message(&context, &peer, &mut outgoing, message, &mut batch);
                        count += 1;
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    // While a write waits (a full send buffer towards a peer that went
                    // silent), the peer's keepalives are still watched: a dead connection is
                    // closed after the idle timeout, not after the longer write timeout.
                    let written = tokio::select! {
                        biased;
                        reason = &mut watch_peer => return Ended::Failed(reason),
                        written = writer.write_frames(&batch) => written,
                    };
                    if let Err(error) = written {
                        return Ended::Failed(CloseReason::Io(error));
                    }
                    tracing::trace!(%peer, messages = count, bytes = batch.len(), "batch written");
                    keepalive_at = Instant::now() + keepalive_interval;
                }
                () = tokio::time::sleep_until(keepalive_at) => {
                    batch.clear();
                    if let Err(error) =
                        outgoing.encode(FrameKind::Keepalive, &[], rand::random(), &mut batch)
                    {
                        return Ended::Failed(CloseReason::Io(std::io::Error::other(error)));
                    }
                    let written = tokio::select! {
                        biased;
                        reason = &mut watch_peer => return Ended::Failed(reason),
                        written = writer.write_frames(&batch) => written,
                    };
                    if let Err(error) = written {
                        return Ended::Failed(CloseReason::Io(error));
                    }
                    keepalive_at = Instant::now() + keepalive_interval;
                }
            }
        }
    }
}

/// Encode `message` into a frame at the end of `batch`, or drop and count it.
fn append_message<M: Serialize>(
    context: &TransportContext,
    peer: &NodeId,
    outgoing: &mut FrameCodec,
    message: M,
    batch: &mut Vec<u8>,
) {
    let limit_bytes = outgoing.payload_bytes_max();
    let payload = match ha_core::codec::encode("replication message", &message, limit_bytes) {
        Ok(payload) => payload,
        Err(ha_core::CodecError::TooLarge {
            size_bytes,
            limit_bytes,
            ..
        }) => {
            context.counters.send_drop(SendDropCause::TooLarge);
            tracing::error!(
                %peer,
                size_bytes,
                limit_bytes,
                "message larger than a frame dropped; send smaller batches"
            );
            return;
        }
        Err(error) => {
            context.counters.send_drop(SendDropCause::Unencodable);
            tracing::error!(%peer, %error, "message cannot be encoded; dropped");
            return;
        }
    };
    if let Err(error) = outgoing.encode(FrameKind::Message, &payload, rand::random(), batch) {
        context.counters.send_drop(SendDropCause::TooLarge);
        tracing::error!(%peer, %error, "message larger than a frame dropped");
    }
}

/// Exchange hellos on a fresh outbound stream and check the answer comes from `expected`.
async fn handshake(
    context: &TransportContext,
    stream: TcpStream,
    addr: SocketAddr,
    expected: &NodeId,
) -> Result<Connection, OpenFailure> {
    stream.set_nodelay(true).map_err(OpenFailure::Io)?;
    let (read_half, write_half) = stream.into_split();
    let idle = context.idle_timeout();
    let mut reader = FrameReader::new(read_half, idle);
    // Writes get their own bound, never below the idle timeout: a large frame (a snapshot)
    // may take longer than an idle timeout kept short to notice a dead connection quickly.
    let write_timeout = idle.max(Duration::from_millis(context.settings.write_timeout_ms));
    let mut writer = FrameWriter::new(write_half, write_timeout);
    let own_nonce = rand::random();
    let hello = context
        .handshake
        .encode_initiator(own_nonce, rand::random());
    let mut frame = Vec::with_capacity(hello.len() + 4);
    super::frame::append_frame(&mut frame, &hello, HANDSHAKE_BYTES_MAX)
        .map_err(|error| OpenFailure::Io(std::io::Error::other(error)))?;
    writer.write_frames(&frame).await.map_err(OpenFailure::Io)?;
    let answer = match reader.read_frame(HANDSHAKE_BYTES_MAX).await {
        Ok(Some(answer)) => answer,
        Ok(None) | Err(ReadError::Truncated) => return Err(OpenFailure::ClosedDuringHandshake),
        // A reset right after our hello is how a refusing peer often looks, too.
        Err(ReadError::Io(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(OpenFailure::ClosedDuringHandshake);
        }
        Err(error) => {
            return match close_on_read_error(context, error, addr, Some(expected)) {
                CloseReason::Rejected(cause) => Err(OpenFailure::Rejected(cause)),
                CloseReason::Io(error) => Err(OpenFailure::Io(error)),
                other => Err(OpenFailure::Io(std::io::Error::other(other.to_string()))),
            };
        }
    };
    let hello = context
        .handshake
        .decode_responder(&answer, own_nonce)
        .map_err(|cause| {
            context.reject(
                cause,
                addr,
                Some(expected),
                "in the peer's handshake answer",
            );
            OpenFailure::Rejected(cause)
        })?;
    if &hello.node_id != expected {
        let detail = format!("expected {expected}, found {}", hello.node_id);
        context.reject(RejectCause::UnexpectedPeer, addr, Some(expected), &detail);
        return Err(OpenFailure::Rejected(RejectCause::UnexpectedPeer));
    }
    let incoming = context.frame_codec(expected, own_nonce);
    let outgoing = context.frame_codec(context.node_id(), hello.connection_nonce);
    Ok(Connection {
        peer: expected.clone(),
        remote: addr,
        reader,
        writer,
        incoming,
        outgoing,
    })
}
