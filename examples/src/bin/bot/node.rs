//! Node mode: one gossip member, its events on stdout, a graceful leave on SIGTERM or Ctrl-C.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ha_core::{Clock, Config, MemberInfo, MonotonicClock, NodeMetadata, NodeState};
use ha_gossip::{GossipError, GossipNode, GossipSettings};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, oneshot};

use crate::cli::NodeArgs;
use crate::error::BotError;
use crate::event::{EventKind, EventLine};
use crate::node_file::NodeFile;

/// Longest wait for the gossip task to send its leave messages. They are a handful of UDP
/// datagrams, so anything near this means the task is stuck.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Run one node until SIGTERM, SIGINT, or (with `--stop-on-stdin-eof`) the end of stdin.
///
/// # Errors
/// [`BotError::Config`] for an invalid configuration or a data dir owned by another node
/// (nothing is started); [`BotError::DataDir`], [`BotError::Gossip`] or [`BotError::Runtime`]
/// when the node cannot start or stops unexpectedly.
pub fn run(args: &NodeArgs, clock: MonotonicClock) -> Result<(), BotError> {
    // Validate everything before touching the disk or the network.
    let config = args.to_config()?;
    let data_dir = config
        .data_dir
        .clone()
        .ok_or_else(|| ha_core::ConfigError::new("data_dir", "is missing", "pass --data-dir"))?;
    let node_file = NodeFile::claim(&config, &data_dir, GossipNode::fresh_incarnation())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BotError::Runtime)?;
    runtime.block_on(serve(config, node_file, args.stop_on_stdin_eof, clock))
}

async fn serve(
    config: Config,
    node_file: NodeFile,
    stop_on_stdin_eof: bool,
    clock: MonotonicClock,
) -> Result<(), BotError> {
    // Install the handlers first, so a signal that arrives while binding is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(BotError::Runtime)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(BotError::Runtime)?;
    let stdin_eof = stdin_closed(stop_on_stdin_eof);
    tokio::pin!(stdin_eof);

    let mut metadata = NodeMetadata::new(config.priority, config.advertised_addr());
    metadata.http_addr = config.http_addr;
    metadata.voter = config.voter;
    let settings = GossipSettings::from_config(&config, node_file.incarnation, metadata);
    let node = match GossipNode::start(settings, config.bind_addr).await {
        Ok(node) => node,
        Err(GossipError::Io(source)) => {
            return Err(BotError::Bind {
                addr: config.bind_addr,
                source,
            });
        }
        Err(other) => return Err(other.into()),
    };
    // On this single-threaded runtime the gossip task cannot run before this line (nothing
    // has yielded since it was spawned), so no event is published before we subscribe.
    let mut events = node.subscribe();
    let mut printer = EventPrinter::new(config.node_id.as_str(), clock);

    let identity = node.identity();
    tracing::info!(
        node = %identity.node_id,
        gossip = %node.local_addr(),
        incarnation = identity.incarnation,
        http = %config
            .http_addr
            .map_or_else(|| "none".to_string(), |addr| addr.to_string()),
        "node started; the admin HTTP address is advertised but not served yet"
    );
    let mut started = printer.line(EventKind::Started);
    started.member = Some(identity.node_id.to_string());
    started.addr = Some(identity.addr);
    started.state = Some(node.metadata().state.as_str().to_string());
    started.incarnation = Some(identity.incarnation);
    started.priority = Some(config.priority.0);
    started.http = config.http_addr;
    printer.print(&started);

    let reason = loop {
        tokio::select! {
            biased;
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = &mut stdin_eof => break "stdin closed",
            received = events.recv() => match received {
                Ok(event) => {
                    let line = EventLine::from_member_event(
                        config.node_id.as_str(),
                        &event,
                        printer.at_ms(),
                        unix_ms(),
                    );
                    printer.print(&line);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Events were lost, so replace them with the current view.
                    let mut line = printer.line(EventKind::Lagged);
                    line.missed = Some(missed);
                    printer.print(&line);
                    for member in node.members() {
                        printer.print_member(EventKind::Member, &member);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(BotError::Gossip(GossipError::Stopped));
                }
            },
        }
    };

    tracing::info!(reason, "leaving the cluster");
    let mut stopping = printer.line(EventKind::Stopping);
    stopping.reason = Some(reason.to_string());
    printer.print(&stopping);
    match tokio::time::timeout(LEAVE_TIMEOUT, node.leave()).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(BotError::Runtime(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the gossip task did not finish leaving within {LEAVE_TIMEOUT:?}"),
            )));
        }
    }
    printer.print(&printer.line(EventKind::Stopped));
    tracing::info!("left the cluster");
    Ok(())
}

/// Resolves when stdin reaches end of file, if `enabled`; never otherwise.
///
/// A plain thread does the blocking read: tokio's stdin reads on its blocking pool, and the
/// runtime would then wait at shutdown for a read that never ends. The thread is detached and
/// ends with the process.
fn stdin_closed(enabled: bool) -> impl Future<Output = ()> {
    let receiver = enabled.then(spawn_stdin_reader).flatten();
    async move {
        match receiver {
            // A reader thread that died without seeing the end of stdin says nothing about
            // the parent, so it does not stop the node.
            Some(receiver) => {
                if receiver.await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

fn spawn_stdin_reader() -> Option<oneshot::Receiver<()>> {
    let (closed, receiver) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 256];
            // Anything read is ignored; only the end of the stream matters.
            while matches!(stdin.read(&mut buffer), Ok(length) if length > 0) {}
            let _ = closed.send(());
        });
    match spawned {
        Ok(_) => Some(receiver),
        Err(error) => {
            tracing::warn!(%error, "cannot watch stdin; the node stops only on signals");
            None
        }
    }
}

/// Writes event lines to stdout, flushing each one so a parent sees it at once.
struct EventPrinter {
    node: String,
    clock: MonotonicClock,
    broken: bool,
}

impl EventPrinter {
    fn new(node: &str, clock: MonotonicClock) -> Self {
        Self {
            node: node.to_string(),
            clock,
            broken: false,
        }
    }

    fn at_ms(&self) -> u64 {
        self.clock.now().0
    }

    fn line(&self, kind: EventKind) -> EventLine {
        EventLine::new(&self.node, kind, self.at_ms(), unix_ms())
    }

    fn print_member(&mut self, kind: EventKind, member: &MemberInfo) {
        let state: NodeState = member.state();
        let line = self.line(kind).with_member(member, state);
        self.print(&line);
    }

    fn print(&mut self, line: &EventLine) {
        if self.broken {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let written = writeln!(stdout, "{}", line.to_line()).and_then(|()| stdout.flush());
        if let Err(error) = written {
            // A reader that went away must not stop the node: it keeps serving, and says so
            // once on stderr.
            tracing::warn!(%error, "stdout is gone; no more EVENT lines will be printed");
            self.broken = true;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
