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
    CloseReason, Connection, FrameReader, FrameWriter, ReadError, ReadStream, close_on_read_error,
    read_opened,
};
use super::context::TransportContext;
use super::counts::{RejectCause, SendDropCause};
use super::frame::{FrameCodec, FrameKind};
use super::handshake::HANDSHAKE_BYTES_MAX;
use super::secure::{self, ConnectFailure};

/// Most messages written in one batch (one write and flush).
const BATCH_MESSAGES_MAX: usize = 256;
/// Most bytes gathered in one batch before it is written; one message may exceed it.
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Shortest time between two log lines about the same kind of dropped message to one peer.
/// The protocol retries what was dropped (a heartbeat or a retry timer every few hundred
/// milliseconds), so a message that can never be sent would otherwise write a line per retry.
pub(crate) const DROP_LOG_INTERVAL_MS: u64 = 60_000;

/// Decides when a drop that repeats is logged: the first at once, then at most one line per
/// interval, reporting how many drops happened since the previous line. Sans-IO: the caller
/// gives the time, so the rule is tested with a fake clock.
#[derive(Debug)]
pub(crate) struct DropLogLimiter {
    interval_ms: u64,
    /// When the last line was written (`None`: never).
    last_line_at_ms: Option<u64>,
    /// Drops since the last line, the current one included once counted.
    unlogged: u64,
}

impl DropLogLimiter {
    pub(crate) fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            last_line_at_ms: None,
            unlogged: 0,
        }
    }

    /// Count one drop at `now_ms`. `Some(drops)` when a line is due now: `drops` is how many
    /// drops it reports (this one and those not logged since the previous line); `None` when
    /// the drop is only counted.
    pub(crate) fn on_drop(&mut self, now_ms: u64) -> Option<u64> {
        self.unlogged = self.unlogged.saturating_add(1);
        let due = self
            .last_line_at_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= self.interval_ms);
        if !due {
            return None;
        }
        self.last_line_at_ms = Some(now_ms);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The log limiters of one peer's outbound task, one per kind of drop.
#[derive(Debug)]
pub(crate) struct DropLogs {
    /// Since when this peer's task runs: the origin of the limiters' clock.
    origin: Instant,
    too_large: DropLogLimiter,
    unencodable: DropLogLimiter,
}

impl DropLogs {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            too_large: DropLogLimiter::new(DROP_LOG_INTERVAL_MS),
            unencodable: DropLogLimiter::new(DROP_LOG_INTERVAL_MS),
        }
    }

    /// Milliseconds since the task started, for the limiters.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// What became of one message given to [`append_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Framed at the end of the batch.
    Framed,
    /// Dropped and counted; `logged` holds the drops the log line reported, or `None` when
    /// no line was written (one was written less than the log interval ago).
    Dropped {
        /// Why.
        cause: SendDropCause,
        /// The drops the line reported, if a line was written.
        logged: Option<u64>,
    },
}

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
    /// Rate limits for the lines about messages that could not be framed.
    drop_logs: DropLogs,
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
            drop_logs: DropLogs::new(),
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
                     name, key, certificate or protocol version (see its log); will retry"
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
                    let now_ms = self.drop_logs.now_ms();
                    let logs = &mut self.drop_logs;
                    append_message(&context, &peer, &mut outgoing, message, &mut batch, logs, now_ms);
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
                        let logs = &mut self.drop_logs;
                        append_message(
                            &context,
                            &peer,
                            &mut outgoing,
                            message,
                            &mut batch,
                            logs,
                            now_ms,
                        );
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

/// Encode `message` into a frame at the end of `batch`, or drop and count it. A drop is
/// logged at ERROR (it is a bug: the sender must split what it sends) at most once per
/// [`DROP_LOG_INTERVAL_MS`] for this peer, with the number of drops since the last line: the
/// protocol retries the message every few hundred milliseconds, forever if it never fits.
fn append_message<M: Serialize>(
    context: &TransportContext,
    peer: &NodeId,
    outgoing: &mut FrameCodec,
    message: M,
    batch: &mut Vec<u8>,
    logs: &mut DropLogs,
    now_ms: u64,
) -> Appended {
    let limit_bytes = outgoing.payload_bytes_max();
    let payload = match ha_core::codec::encode("replication message", &message, limit_bytes) {
        Ok(payload) => payload,
        Err(ha_core::CodecError::TooLarge {
            size_bytes,
            limit_bytes,
            ..
        }) => {
            context.counters.send_drop(SendDropCause::TooLarge);
            let logged = logs.too_large.on_drop(now_ms);
            if let Some(dropped) = logged {
                tracing::error!(
                    %peer,
                    size_bytes,
                    limit_bytes,
                    dropped,
                    interval_ms = DROP_LOG_INTERVAL_MS,
                    "message larger than a frame dropped (`dropped` since the last such line, \
                     which is written at most once per interval); the sender must split it"
                );
            }
            return Appended::Dropped {
                cause: SendDropCause::TooLarge,
                logged,
            };
        }
        Err(error) => {
            context.counters.send_drop(SendDropCause::Unencodable);
            let logged = logs.unencodable.on_drop(now_ms);
            if let Some(dropped) = logged {
                tracing::error!(
                    %peer,
                    %error,
                    dropped,
                    interval_ms = DROP_LOG_INTERVAL_MS,
                    "message cannot be encoded; dropped (`dropped` since the last such line)"
                );
            }
            return Appended::Dropped {
                cause: SendDropCause::Unencodable,
                logged,
            };
        }
    };
    match outgoing.encode(FrameKind::Message, &payload, rand::random(), batch) {
        Ok(()) => Appended::Framed,
        Err(error) => {
            context.counters.send_drop(SendDropCause::TooLarge);
            let logged = logs.too_large.on_drop(now_ms);
            if let Some(dropped) = logged {
                tracing::error!(
                    %peer,
                    %error,
                    dropped,
                    interval_ms = DROP_LOG_INTERVAL_MS,
                    "message larger than a frame dropped (`dropped` since the last such line)"
                );
            }
            Appended::Dropped {
                cause: SendDropCause::TooLarge,
                logged,
            }
        }
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
    let (read_half, write_half) = match &context.settings.tls {
        None => ReadStream::split_plain(stream),
        Some(identity) => match secure::connect(context, identity, stream, addr, expected).await {
            Ok(session) => ReadStream::split_tls(session),
            Err(ConnectFailure::Rejected(cause)) => return Err(OpenFailure::Rejected(cause)),
            Err(ConnectFailure::PeerClosed) => return Err(OpenFailure::ClosedDuringHandshake),
            Err(ConnectFailure::Io(error)) => return Err(OpenFailure::Io(error)),
        },
    };
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
        // In TLS 1.3 the accepting side checks our certificate after our side of the
        // handshake is done: its refusal arrives as an alert instead of its hello.
        Err(ReadError::Io(error))
            if matches!(
                secure::tls_error(&error),
                Some(rustls::Error::AlertReceived(_))
            ) || secure::is_closed(&error) =>
        {
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
        // With TLS the certificate names `expected`: a hello claiming another node is a
        // certificate used for a node it does not name.
        let cause = if context.settings.tls.is_some() {
            RejectCause::IdentityMismatch
        } else {
            RejectCause::UnexpectedPeer
        };
        context.reject(cause, addr, Some(expected), &detail);
        return Err(OpenFailure::Rejected(cause));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportSettings;

    /// A message retried every 300 ms, as a heartbeat retries a dropped append: the first
    /// drop is logged at once, then one line a minute reporting the drops in between.
    #[test]
    fn a_repeated_drop_is_logged_first_then_once_per_interval_with_the_count() {
        let mut limiter = DropLogLimiter::new(60_000);
        let lines: Vec<(u64, u64)> = (0..1_000u64)
            .map(|retry| retry * 300)
            .filter_map(|now_ms| limiter.on_drop(now_ms).map(|dropped| (now_ms, dropped)))
            .collect();
        // 1,000 drops over 299.7 s: a line at 0, then at 60, 120, 180 and 240 s, each
        // reporting the 200 drops since the previous one; the last 199 wait for the next.
        assert_eq!(
            lines,
            vec![
                (0, 1),
                (60_000, 200),
                (120_000, 200),
                (180_000, 200),
                (240_000, 200)
            ]
        );
    }

    #[test]
    fn a_drop_after_a_quiet_interval_is_logged_at_once_and_time_going_back_does_not_log() {
        let mut limiter = DropLogLimiter::new(1_000);
        assert_eq!(limiter.on_drop(5_000), Some(1));
        assert_eq!(
            limiter.on_drop(4_000),
            None,
            "an earlier time is not a new interval"
        );
        assert_eq!(limiter.on_drop(5_999), None);
        assert_eq!(
            limiter.on_drop(6_000),
            Some(3),
            "the drops at 4,000 and 5,999 ms too"
        );
        assert_eq!(limiter.on_drop(100_000), Some(1));
    }

    /// The whole path a message takes into a batch: 1,000 oversize messages at 300 ms
    /// intervals are all counted, none reaches the batch, and 5 lines are written, while a
    /// message that fits is still framed.
    #[test]
    fn repeated_oversize_messages_are_counted_each_and_logged_once_a_minute() {
        let address = "127.0.0.1:0".parse().expect("literal address");
        let node = NodeId::new("n1").expect("literal id");
        let mut settings = TransportSettings::new(node.clone(), address, "c");
        settings.frame_bytes_max = 1024;
        let context = TransportContext::new(settings, None);
        let peer = NodeId::new("n2").expect("literal id");
        let mut outgoing = context.frame_codec(&node, [0; 16]);
        let mut logs = DropLogs::new();
        let mut batch = Vec::new();
        let mut lines = Vec::new();
        for retry in 0..1_000u64 {
            let now_ms = retry * 300;
            let oversize = vec![7u8; 4096];
            let appended = append_message(
                &context,
                &peer,
                &mut outgoing,
                oversize,
                &mut batch,
                &mut logs,
                now_ms,
            );
            match appended {
                Appended::Dropped {
                    cause: SendDropCause::TooLarge,
                    logged,
                } => lines.extend(logged),
                other => panic!("an oversize message was {other:?}"),
            }
        }
        assert!(batch.is_empty(), "nothing oversize is framed");
        assert_eq!(
            context
                .counters
                .send_drop_counts()
                .get(SendDropCause::TooLarge),
            1_000
        );
        assert_eq!(lines, vec![1, 200, 200, 200, 200]);
        let fits = append_message(
            &context,
            &peer,
            &mut outgoing,
            vec![8u8; 16],
            &mut batch,
            &mut logs,
            300_000,
        );
        assert_eq!(fits, Appended::Framed);
        assert!(!batch.is_empty());
    }
}
