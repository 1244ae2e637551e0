//! HTTPS for the admin API: a TLS listener for `axum::serve` that never lets one client hold
//! up another.
//!
//! A background task accepts TCP connections and runs each TLS handshake in its own task,
//! bounded in time ([`HTTPS_HANDSHAKE_TIMEOUT`]); only finished TLS streams reach
//! [`Listener::accept`](axum::serve::Listener::accept), through a bounded channel. A client that stalls its handshake or sends
//! garbage costs one task, one socket and a TLS buffer until its timeout or its error, and
//! the clients behind it are served meanwhile.
//!
//! Both numbers are capped ([`HttpsLimits`]), so a flood costs bounded memory. At the
//! handshake cap a new connection evicts the oldest handshake in progress (closed and
//! counted): a flood of stalled handshakes cannot lock honest clients out, whose handshakes
//! take milliseconds, unless it opens a cap's worth of connections within those
//! milliseconds. At the connection cap a finished handshake is closed and counted. An
//! established connection that neither reads nor writes for [`HTTPS_IDLE_TIMEOUT`] is closed,
//! so idle connections cannot hold the cap forever.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
pub const HTTPS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; a new one evicts the oldest.
pub const HTTPS_HANDSHAKES_MAX: usize = 64;
/// Most established connections at once.
pub const HTTPS_CONNECTIONS_MAX: usize = 256;
/// How long an established connection may neither read nor write before it is closed (twice
/// the longest lock wait an HTTP client may ask for).
pub const HTTPS_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 16;

/// The bounds of an [`HttpsListener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsLimits {
    /// How long a client has to finish its handshake.
    pub handshake_timeout: Duration,
    /// Most handshakes in progress at once; a new connection evicts the oldest.
    pub handshakes_max: usize,
    /// Most established connections at once; a handshake finished beyond it is closed.
    pub connections_max: usize,
    /// How long an established connection may stay without traffic.
    pub idle_timeout: Duration,
}

impl Default for HttpsLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: HTTPS_HANDSHAKE_TIMEOUT,
            handshakes_max: HTTPS_HANDSHAKES_MAX,
            connections_max: HTTPS_CONNECTIONS_MAX,
            idle_timeout: HTTPS_IDLE_TIMEOUT,
        }
    }
}

/// What an [`HttpsListener`] has done, counted since it started.
#[derive(Debug, Default)]
pub struct HttpsCounters {
    /// Handshakes that finished; their connections went to the server.
    pub handshakes_done: AtomicU64,
    /// Handshakes that failed: garbage, truncated records, a client that closed.
    pub handshakes_failed: AtomicU64,
    /// Handshakes that did not finish within the handshake timeout.
    pub handshakes_timed_out: AtomicU64,
    /// Handshakes closed unfinished to make room for a newer one (the handshake cap).
    pub handshakes_evicted: AtomicU64,
    /// Connections closed after their handshake because the connection cap was reached.
    pub refused_over_cap: AtomicU64,
    /// Established connections closed for being idle.
    pub idle_closed: AtomicU64,
}

impl HttpsCounters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A TLS listener for [`axum::serve()`]; see the module docs. Dropping it stops accepting and
/// drops the handshakes in progress.
pub struct HttpsListener {
    ready: mpsc::Receiver<(HttpsConnection, SocketAddr)>,
    local_addr: SocketAddr,
    counters: Arc<HttpsCounters>,
    acceptor: JoinHandle<()>,
}

impl HttpsListener {
    /// Serve TLS with `config` on `listener` within `limits`. Spawns the accept task, so it
    /// must be called within a Tokio runtime.
    ///
    /// # Errors
    /// The listener's own error when its local address cannot be read.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        limits: HttpsLimits,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let counters = Arc::new(HttpsCounters::default());
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            limits,
            sender,
            Arc::clone(&counters),
        ));
        Ok(Self {
            ready,
            local_addr,
            counters,
            acceptor,
        })
    }

    /// What this listener has counted.
    pub fn counters(&self) -> Arc<HttpsCounters> {
        Arc::clone(&self.counters)
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = HttpsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (its listener failed for good): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: HttpsLimits,
    ready: mpsc::Sender<(HttpsConnection, SocketAddr)>,
    counters: Arc<HttpsCounters>,
) {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let mut handshakes = JoinSet::new();
    // The handshakes in progress, oldest first.
    let mut in_progress: VecDeque<AbortHandle> = VecDeque::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors or a connection reset before accept: wait a
                        // little rather than spin.
                        tracing::debug!(%error, "admin HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                in_progress.retain(|task| !task.is_finished());
                while in_progress.len() >= limits.handshakes_max.max(1) {
                    if let Some(oldest) = in_progress.pop_front() {
                        oldest.abort();
                        HttpsCounters::add(&counters.handshakes_evicted);
                        tracing::debug!("admin HTTPS handshake evicted at the handshake cap");
                    }
                }
                in_progress.push_back(handshakes.spawn(handshake(
                    acceptor.clone(),
                    tcp,
                    peer,
                    Arc::clone(&connections),
                    limits,
                    ready.clone(),
                    Arc::clone(&counters),
                )));
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    connections: Arc<Semaphore>,
    limits: HttpsLimits,
    ready: mpsc::Sender<(HttpsConnection, SocketAddr)>,
    counters: Arc<HttpsCounters>,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + limits.handshake_timeout;
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            HttpsCounters::add(&counters.handshakes_done);
            let Ok(permit) = connections.try_acquire_owned() else {
                HttpsCounters::add(&counters.refused_over_cap);
                tracing::debug!(%peer, "admin HTTPS connection over the cap closed");
                return;
            };
            let connection = HttpsConnection {
                stream,
                idle_timeout: limits.idle_timeout,
                idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                counters: Arc::clone(&counters),
                _permit: permit,
            };
            // The server takes connections as fast as they come; the deadline only bounds a
            // server that has stopped.
            let _ = tokio::time::timeout_at(deadline, ready.send((connection, peer))).await;
        }
        Ok(Err(error)) => {
            HttpsCounters::add(&counters.handshakes_failed);
            tracing::debug!(%peer, %error, "admin HTTPS handshake refused");
        }
        Err(_) => {
            HttpsCounters::add(&counters.handshakes_timed_out);
            tracing::debug!(%peer, "admin HTTPS handshake timed out");
        }
    }
}

/// One established TLS connection of an [`HttpsListener`]. Holds its place under the
/// connection cap until dropped; fails with `TimedOut` after the idle timeout without traffic.
pub struct HttpsConnection {
    stream: TlsStream<TcpStream>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    counters: Arc<HttpsCounters>,
    _permit: OwnedSemaphorePermit,
}

impl HttpsConnection {
    fn active(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(next);
    }

    /// After an operation stayed pending: the idle error once the timer has run out, else
    /// pending (the timer wakes the task when it runs out).
    fn pending_or_idle<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.idle.as_mut().poll(context) {
            Poll::Ready(()) => {
                HttpsCounters::add(&self.counters.idle_closed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "admin HTTPS connection idle",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for HttpsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(context, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.pending_or_idle(context),
        }
    }
}

impl AsyncWrite for HttpsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(context, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(written) if written > 0) {
                    this.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.pending_or_idle(context),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(context) {
            Poll::Pending => this.pending_or_idle(context),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
