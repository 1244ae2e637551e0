//! One TCP connection after the handshake, and the timed frame IO both sides use.
//!
//! Reads take a timeout per read call (the idle timeout), not per frame, so a large frame on
//! a slow but live link is not cut, while a silent peer is. A frame body is read in chunks into
//! a buffer that grows with the bytes that actually arrived, so a peer that announces a large
//! frame and then stalls costs at most what it sent.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ha_core::NodeId;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf, ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsStream;

use super::context::TransportContext;
use super::counts::RejectCause;
use super::frame::{FrameCodec, FrameKind, LENGTH_PREFIX_BYTES, body_length};

/// How much a reader asks the socket for at once, and the most it allocates ahead of the
/// bytes received.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The reading half of a connection: a plain TCP half, or a TLS stream's.
///
/// An enum rather than a boxed trait object, so the plaintext path stays a direct call.
#[derive(Debug)]
pub(crate) enum ReadStream {
    /// Plaintext (or sealed with the cluster key) over TCP.
    Plain(OwnedReadHalf),
    /// Inside TLS.
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a connection, matching [`ReadStream`].
#[derive(Debug)]
pub(crate) enum WriteStream {
    /// Plaintext (or sealed with the cluster key) over TCP.
    Plain(OwnedWriteHalf),
    /// Inside TLS.
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl ReadStream {
    /// Split a stream into the two halves a connection uses.
    pub(crate) fn split_plain(stream: TcpStream) -> (ReadStream, WriteStream) {
        let (read, write) = stream.into_split();
        (ReadStream::Plain(read), WriteStream::Plain(write))
    }

    /// Split a TLS stream into the two halves a connection uses.
    pub(crate) fn split_tls(stream: TlsStream<TcpStream>) -> (ReadStream, WriteStream) {
        let (read, write) = tokio::io::split(stream);
        (ReadStream::Tls(read), WriteStream::Tls(write))
    }
}

impl AsyncRead for ReadStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadStream::Plain(inner) => Pin::new(inner).poll_read(context, buffer),
            ReadStream::Tls(inner) => Pin::new(inner).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for WriteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteStream::Plain(inner) => Pin::new(inner).poll_write(context, buffer),
            WriteStream::Tls(inner) => Pin::new(inner).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteStream::Plain(inner) => Pin::new(inner).poll_flush(context),
            WriteStream::Tls(inner) => Pin::new(inner).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteStream::Plain(inner) => Pin::new(inner).poll_shutdown(context),
            WriteStream::Tls(inner) => Pin::new(inner).poll_shutdown(context),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteStream::Plain(inner) => Pin::new(inner).poll_write_vectored(context, buffers),
            WriteStream::Tls(inner) => Pin::new(inner).poll_write_vectored(context, buffers),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteStream::Plain(inner) => inner.is_write_vectored(),
            WriteStream::Tls(inner) => inner.is_write_vectored(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The prefix announces more than the limit; nothing was allocated for it.
    Oversized {
        length_bytes: u32,
        limit_bytes: usize,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The socket failed.
    Io(io::Error),
}

/// Reads length-prefixed frames with an idle timeout.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    inner: BufReader<R>,
    idle: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(inner: R, idle: Duration) -> Self {
        Self {
            inner: BufReader::with_capacity(READ_CHUNK_BYTES, inner),
            idle,
        }
    }

    /// The next frame body, or `None` when the stream ended cleanly between frames.
    ///
    /// # Cancel safety
    /// Not cancel safe: a frame half read is lost. Callers poll it from one long-lived future.
    pub(crate) async fn read_frame(
        &mut self,
        limit_bytes: usize,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
        let mut filled = 0;
        while filled < LENGTH_PREFIX_BYTES {
            let count = self.read_some(&mut prefix[filled..]).await?;
            if count == 0 {
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
            filled += count;
        }
        let length = body_length(prefix, limit_bytes).map_err(|_| ReadError::Oversized {
            length_bytes: u32::from_be_bytes(prefix),
            limit_bytes,
        })?;
        let mut body = Vec::with_capacity(length.min(READ_CHUNK_BYTES));
        while body.len() < length {
            let start = body.len();
            let wanted = (length - start).min(READ_CHUNK_BYTES);
            body.resize(start + wanted, 0);
            let count = self.read_some(&mut body[start..]).await?;
            body.truncate(start + count);
            if count == 0 {
                return Err(ReadError::Truncated);
            }
        }
        Ok(Some(body))
    }

    async fn read_some(&mut self, buffer: &mut [u8]) -> Result<usize, ReadError> {
        match tokio::time::timeout(self.idle, self.inner.read(buffer)).await {
            Err(_) => Err(ReadError::Idle),
            Ok(Err(error)) => Err(ReadError::Io(error)),
            Ok(Ok(count)) => Ok(count),
        }
    }
}

/// Writes prepared frames with a timeout, so a peer that stops reading cannot hold a task.
#[derive(Debug)]
pub(crate) struct FrameWriter<W> {
    inner: W,
    idle: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub(crate) fn new(inner: W, idle: Duration) -> Self {
        Self { inner, idle }
    }

    /// Write `bytes` (whole frames) and flush.
    ///
    /// # Cancel safety
    /// Not cancel safe: part of a frame may have been written.
    pub(crate) async fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = async {
            self.inner.write_all(bytes).await?;
            self.inner.flush().await
        };
        match tokio::time::timeout(self.idle, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer has not read for the idle timeout",
            )),
        }
    }
}

/// Why an established connection ended (for the log).
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The peer closed it between frames.
    PeerClosed,
    /// The peer closed it inside a frame.
    Truncated,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The socket failed.
    Io(io::Error),
    /// A frame was refused (counted and logged already).
    Rejected(RejectCause),
    /// Nobody consumes inbound messages any more.
    ConsumerGone,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => formatter.write_str("closed by the peer"),
            CloseReason::Truncated => formatter.write_str("closed by the peer inside a frame"),
            CloseReason::Idle => formatter.write_str("idle for longer than the idle timeout"),
            CloseReason::Io(error) => write!(formatter, "socket error: {error}"),
            CloseReason::Rejected(cause) => write!(formatter, "refused: {cause}"),
            CloseReason::ConsumerGone => formatter.write_str("the inbound receiver was dropped"),
        }
    }
}

/// An established connection: the other side's checked identity and a codec each way.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The other side's node id.
    pub(crate) peer: NodeId,
    /// The other side's socket address.
    pub(crate) remote: SocketAddr,
    pub(crate) reader: FrameReader<ReadStream>,
    pub(crate) writer: FrameWriter<WriteStream>,
    /// Opens frames the peer sends.
    pub(crate) incoming: FrameCodec,
    /// Seals frames this side sends.
    pub(crate) outgoing: FrameCodec,
}

/// Read the next frame of an established connection and open it.
///
/// Refusals are counted and logged here; the caller only has to close.
pub(crate) async fn read_opened(
    context: &TransportContext,
    reader: &mut FrameReader<ReadStream>,
    incoming: &mut FrameCodec,
    remote: SocketAddr,
    peer: &NodeId,
) -> Result<(FrameKind, Vec<u8>), CloseReason> {
    let limit_bytes = context.settings.frame_bytes_max;
    let body = match reader.read_frame(limit_bytes).await {
        Ok(Some(body)) => body,
        Ok(None) => return Err(CloseReason::PeerClosed),
        Err(error) => return Err(close_on_read_error(context, error, remote, Some(peer))),
    };
    incoming.decode(&body).map_err(|cause| {
        context.reject(cause, remote, Some(peer), "");
        CloseReason::Rejected(cause)
    })
}

/// Turn a read error into a close reason, counting and logging an oversized frame.
pub(crate) fn close_on_read_error(
    context: &TransportContext,
    error: ReadError,
    remote: SocketAddr,
    peer: Option<&NodeId>,
) -> CloseReason {
    match error {
        ReadError::Oversized {
            length_bytes,
            limit_bytes,
        } => {
            let detail = format!("announced {length_bytes} bytes; the limit is {limit_bytes}");
            context.reject(RejectCause::Oversized, remote, peer, &detail);
            CloseReason::Rejected(RejectCause::Oversized)
        }
        ReadError::Truncated => CloseReason::Truncated,
        ReadError::Idle => CloseReason::Idle,
        ReadError::Io(error) => CloseReason::Io(error),
    }
}

/// Send a keepalive frame every `interval` until a write fails; returns that failure.
///
/// This is for the accepting side, which writes nothing else.
pub(crate) async fn send_keepalives(
    writer: &mut FrameWriter<WriteStream>,
    outgoing: &mut FrameCodec,
    interval: Duration,
) -> io::Error {
    let mut frame = Vec::new();
    loop {
        tokio::time::sleep(interval).await;
        frame.clear();
        if let Err(error) = outgoing.encode(FrameKind::Keepalive, &[], rand::random(), &mut frame) {
            return io::Error::other(error);
        }
        if let Err(error) = writer.write_frames(&frame).await {
            return error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn huge_prefixes_fail_before_allocation_and_short_streams_are_truncated() {
        let idle = Duration::from_secs(5);
        let bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut reader = FrameReader::new(bytes, idle);
        assert!(matches!(
            reader.read_frame(1024).await,
            Err(ReadError::Oversized {
                length_bytes: u32::MAX,
                limit_bytes: 1024
            })
        ));
        let bytes: &[u8] = &[0, 0, 0, 9, 1, 2];
        let mut reader = FrameReader::new(bytes, idle);
        assert!(matches!(
            reader.read_frame(1024).await,
            Err(ReadError::Truncated)
        ));
        let bytes: &[u8] = &[0, 0];
        let mut reader = FrameReader::new(bytes, idle);
        assert!(matches!(
            reader.read_frame(1024).await,
            Err(ReadError::Truncated)
        ));
        let bytes: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0];
        let mut reader = FrameReader::new(bytes, idle);
        assert_eq!(reader.read_frame(1024).await.ok(), Some(Some(vec![7, 8])));
        assert_eq!(reader.read_frame(1024).await.ok(), Some(Some(Vec::new())));
        assert_eq!(reader.read_frame(1024).await.ok(), Some(None));
    }

    #[tokio::test]
    async fn a_large_frame_arrives_whole_across_many_reads() {
        let body: Vec<u8> = (0..300_000u32).map(|value| value as u8).collect();
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        let mut reader = FrameReader::new(wire.as_slice(), Duration::from_secs(5));
        assert_eq!(reader.read_frame(1 << 20).await.ok(), Some(Some(body)));
    }
}
