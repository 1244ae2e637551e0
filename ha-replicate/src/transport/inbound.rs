//! The inbound side: an accept loop and one reader task per accepted connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ha_core::NodeId;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::connection::{
    CloseReason, Connection, FrameReader, FrameWriter, ReadError, ReadStream, close_on_read_error,
    read_opened, send_keepalives,
};
use super::context::TransportContext;
use super::counts::RejectCause;
use super::frame::{FrameKind, append_frame};
use super::handshake::HANDSHAKE_BYTES_MAX;
use super::secure::{self, AcceptFailure};
use super::tcp_transport::Inbound;

/// Pause after a failed accept (for example out of file descriptors), so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections and serves each in its own task until `stop` turns true; then stops
/// every connection task and waits for them, so their sockets are closed when it returns.
pub(crate) struct Listener<M> {
    pub(crate) context: Arc<TransportContext>,
    pub(crate) listener: TcpListener,
    pub(crate) inbound: mpsc::Sender<Inbound<M>>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl<M: DeserializeOwned + Send + 'static> Listener<M> {
    pub(crate) async fn run(mut self) {
        let permits = Arc::new(Semaphore::new(
            self.context.settings.inbound_connections_max,
        ));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        break;
                    }
                }
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = joined
                        && error.is_panic()
                    {
                        tracing::error!(%error, "a replication connection task panicked");
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            let detail = format!(
                                "{} connections open",
                                self.context.settings.inbound_connections_max
                            );
                            self.context.reject(RejectCause::ConnectionLimit, remote, None, &detail);
                            continue;
                        };
                        let span = tracing::debug_span!(
                            "replication_inbound",
                            node = %self.context.node_id(),
                            %remote
                        );
                        let served = serve(
                            Arc::clone(&self.context),
                            stream,
                            remote,
                            self.inbound.clone(),
                            permit,
                        );
                        connections.spawn(served.instrument(span));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accepting a replication connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    }
}

/// Serve one accepted connection: handshake, then deliver its messages in order.
async fn serve<M: DeserializeOwned>(
    context: Arc<TransportContext>,
    stream: TcpStream,
    remote: SocketAddr,
    inbound: mpsc::Sender<Inbound<M>>,
    // Held for the life of the connection; released when this task ends.
    _permit: OwnedSemaphorePermit,
) {
    tracing::debug!("replication connection accepted");
    let connection = match tokio::time::timeout(
        context.handshake_timeout(),
        answer_handshake(&context, stream, remote),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(reason)) => {
            tracing::debug!(%reason, "replication connection closed before the handshake completed");
            return;
        }
        Err(_) => {
            context.reject(RejectCause::HandshakeTimeout, remote, None, "");
            return;
        }
    };
    let Connection {
        peer,
        remote,
        mut reader,
        mut writer,
        mut incoming,
        mut outgoing,
    } = connection;
    tracing::debug!(%peer, "replication connection established");
    let frame_bytes_max = context.settings.frame_bytes_max;
    let deliver = async {
        loop {
            let payload =
                match read_opened(&context, &mut reader, &mut incoming, remote, &peer).await {
                    Ok((FrameKind::Keepalive, _)) => continue,
                    Ok((FrameKind::Message, payload)) => payload,
                    Err(reason) => return reason,
                };
            let message =
                match ha_core::codec::decode::<M>("replication message", &payload, frame_bytes_max)
                {
                    Ok(message) => message,
                    Err(error) => {
                        let detail = error.to_string();
                        context.reject(RejectCause::Malformed, remote, Some(&peer), &detail);
                        return CloseReason::Rejected(RejectCause::Malformed);
                    }
                };
            let delivery = Inbound {
                from: peer.clone(),
                message,
            };
            // Waits while the consumer is behind: the reader stops reading, and TCP pushes
            // back on the sender, whose bounded queue then drops.
            if inbound.send(delivery).await.is_err() {
                return CloseReason::ConsumerGone;
            }
        }
    };
    let keepalives = send_keepalives(&mut writer, &mut outgoing, context.keepalive_interval());
    let reason: CloseReason = tokio::select! {
        reason = deliver => reason,
        error = keepalives => CloseReason::Io(error),
    };
    tracing::debug!(%peer, %reason, "replication connection closed");
}

/// Read the initiator's hello, check it, and answer.
async fn answer_handshake(
    context: &TransportContext,
    stream: TcpStream,
    remote: SocketAddr,
) -> Result<Connection, CloseReason> {
    stream.set_nodelay(true).map_err(CloseReason::Io)?;
    // With TLS: the peer's verified certificate, which must name the node its hello claims.
    let (peer_certificate, (read_half, write_half)) = match &context.settings.tls {
        None => (None, ReadStream::split_plain(stream)),
        Some(identity) => match secure::accept(context, identity, stream, remote).await {
            Ok((session, certificate)) => (Some(certificate), ReadStream::split_tls(session)),
            Err(AcceptFailure::Closed) => return Err(CloseReason::PeerClosed),
            Err(AcceptFailure::Rejected(cause)) => return Err(CloseReason::Rejected(cause)),
            Err(AcceptFailure::Io(error)) => return Err(CloseReason::Io(error)),
        },
    };
    let idle = context.idle_timeout();
    let mut reader = FrameReader::new(read_half, idle);
    let mut writer = FrameWriter::new(write_half, idle);
    let hello = match reader.read_frame(HANDSHAKE_BYTES_MAX).await {
        Ok(Some(hello)) => hello,
        // Connected and left without a word: a port check, not a peer. Nothing to count.
        Ok(None) => return Err(CloseReason::PeerClosed),
        Err(ReadError::Truncated) => {
            context.reject(
                RejectCause::Malformed,
                remote,
                None,
                "stream ended inside the hello",
            );
            return Err(CloseReason::Rejected(RejectCause::Malformed));
        }
        Err(ReadError::Oversized { length_bytes, .. })
            if peer_certificate.is_none() && secure::looks_like_tls(length_bytes) =>
        {
            let detail = "the peer speaks TLS; this node has no TLS configured";
            context.reject(RejectCause::Malformed, remote, None, detail);
            return Err(CloseReason::Rejected(RejectCause::Malformed));
        }
        Err(error) => return Err(close_on_read_error(context, error, remote, None)),
    };
    let hello = context
        .handshake
        .decode_initiator(&hello)
        .map_err(|cause| {
            context.reject(cause, remote, None, "in the handshake");
            CloseReason::Rejected(cause)
        })?;
    if let Some(certificate) = &peer_certificate
        && let Err(detail) = crate::tls::check_names_node(
            certificate,
            &context.settings.cluster_name,
            &hello.node_id,
        )
    {
        let cause = RejectCause::IdentityMismatch;
        context.reject(cause, remote, Some(&hello.node_id), &detail);
        return Err(CloseReason::Rejected(cause));
    }
    let own_nonce = rand::random();
    let answer =
        context
            .handshake
            .encode_responder(own_nonce, hello.connection_nonce, rand::random());
    let mut frame = Vec::with_capacity(answer.len() + 4);
    append_frame(&mut frame, &answer, HANDSHAKE_BYTES_MAX)
        .map_err(|error| CloseReason::Io(std::io::Error::other(error)))?;
    writer.write_frames(&frame).await.map_err(CloseReason::Io)?;
    let peer: NodeId = hello.node_id;
    let incoming = context.frame_codec(&peer, own_nonce);
    let outgoing = context.frame_codec(context.node_id(), hello.connection_nonce);
    Ok(Connection {
        peer,
        remote,
        reader,
        writer,
        incoming,
        outgoing,
    })
}
