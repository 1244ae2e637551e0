//! Node mode: one `ha` node replicating the bot's journal, its events on stdout, the admin
//! HTTP API (plus `/bot/journal`), and a graceful stop on SIGTERM or Ctrl-C. With `--witness`
//! the node only votes: no journal worker, and the journal and KV routes answer 503
//! `witness`.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ha::core::Clock;
use ha::{Config, Node, NodeEvent};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, oneshot};

use crate::cli::NodeArgs;
use crate::error::BotError;
use crate::event::{EventKind, EventLine};
use crate::journal_routes;
use crate::journal_worker::JournalWorker;

/// Run one node until SIGTERM, SIGINT, or (with `--stop-on-stdin-eof`) the end of stdin.
///
/// # Errors
/// [`BotError::Config`] or [`BotError::Node`] for an invalid configuration or a data dir
/// owned by another node (nothing is started); [`BotError::Node`] or [`BotError::Runtime`]
/// when the node cannot start.
pub fn run(args: &NodeArgs, clock: ha::core::MonotonicClock) -> Result<(), BotError> {
    // Validate everything before touching the disk or the network.
    let config = args.to_config()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Two workers unless tokio's own TOKIO_WORKER_THREADS says otherwise (tokio reads it
    // when no count is set): a way to measure the bot with another count (issue 17) without
    // a flag of its own.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(2);
    }
    let runtime = builder.enable_all().build().map_err(BotError::Runtime)?;
    // The node's whole life is this one future (the node's start inlined into it): boxed, it
    // is built in place on the heap instead of being moved by value through `block_on`'s
    // frames, whose stack pages would stay resident for the life of the process.
    runtime.block_on(Box::pin(serve(
        config,
        args.stop_on_stdin_eof,
        clock,
        args.snapshot_every_entries,
    )))
}

async fn serve(
    config: Config,
    stop_on_stdin_eof: bool,
    clock: ha::core::MonotonicClock,
    snapshot_every_entries: Option<u64>,
) -> Result<(), BotError> {
    // Install the handlers first, so a signal that arrives while binding is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(BotError::Runtime)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(BotError::Runtime)?;
    let stdin_eof = stdin_closed(stop_on_stdin_eof);
    tokio::pin!(stdin_eof);

    let http_addr = config.http_addr;
    // The bot mounts the admin API itself, next to its own journal route: the way a host
    // adds the API to its own server.
    let journal = crate::fault_injection::journal_for(config.node_id.as_str());
    let mut builder = Node::builder(config)
        .state_machine(journal)
        .serve_http(false);
    if let Some(entries) = snapshot_every_entries {
        builder = builder.snapshot_every(entries);
    }
    let node = builder.start().await?;
    let mut events = node.events();
    let printer = EventPrinter::new(node.id().as_str(), clock);
    if let Some(addr) = http_addr {
        journal_routes::serve(&node, addr).await?;
    }
    let mut started = printer.line(EventKind::Started);
    started.member = Some(node.id().to_string());
    started.addr = Some(node.gossip_addr());
    started.priority = Some(node.config().priority.0);
    started.http = http_addr;
    printer.print(&started);

    // A witness (--witness) holds no journal and never leads: the bot's scheduled work never
    // runs there, not even the worker waiting for leadership.
    let worker = (!node.is_witness()).then(|| JournalWorker::start(node.clone(), printer.clone()));
    let reason = loop {
        tokio::select! {
            biased;
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = &mut stdin_eof => break "stdin closed",
            received = events.recv() => match received {
                Ok(event) => printer.print_event(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let mut line = printer.line(EventKind::Lagged);
                    line.missed = Some(missed);
                    printer.print(&line);
                }
                Err(broadcast::error::RecvError::Closed) => break "node stopped",
            },
        }
    };
    tracing::info!(reason, "stopping");
    let mut stopping = printer.line(EventKind::Stopping);
    stopping.reason = Some(reason.to_string());
    printer.print(&stopping);
    if let Some(worker) = worker {
        worker.stop().await;
    }
    node.shutdown().await;
    printer.print(&printer.line(EventKind::Stopped));
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
#[derive(Clone)]
pub struct EventPrinter {
    node: String,
    clock: ha::core::MonotonicClock,
}

impl EventPrinter {
    fn new(node: &str, clock: ha::core::MonotonicClock) -> Self {
        Self {
            node: node.to_string(),
            clock,
        }
    }

    /// A line of `kind` stamped now.
    pub fn line(&self, kind: EventKind) -> EventLine {
        EventLine::new(&self.node, kind, self.clock.now().0, unix_ms())
    }

    fn print_event(&self, event: &NodeEvent) {
        let line = match event {
            NodeEvent::Member(event) => {
                EventLine::from_member_event(&self.node, event, self.clock.now().0, unix_ms())
            }
            NodeEvent::RoleChanged { role, term, leader } => {
                let mut line = self.line(EventKind::Role);
                line.role = Some(role.as_str().to_string());
                line.term = Some(term.0);
                line.leader = leader.as_ref().map(ToString::to_string);
                line
            }
            NodeEvent::HealthChanged(health) => {
                let mut line = self.line(EventKind::Health);
                line.state = Some(health.as_str().to_string());
                line
            }
            NodeEvent::ReplicaDiverged { node, index } => {
                let mut line = self.line(EventKind::ReplicaDiverged);
                line.member = Some(node.to_string());
                line.reason = Some(format!("checkpoint {index}"));
                line
            }
            NodeEvent::ReplicaRepaired { node, index } => {
                let mut line = self.line(EventKind::ReplicaRepaired);
                line.member = Some(node.to_string());
                line.reason = Some(format!("checkpoint {index}"));
                line
            }
            _ => return,
        };
        self.print(&line);
    }

    /// Print one line. A reader that went away must not stop the node: it keeps serving.
    pub fn print(&self, line: &EventLine) {
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = writeln!(stdout, "{}", line.to_line()).and_then(|()| stdout.flush()) {
            tracing::debug!(%error, "stdout is gone; EVENT line dropped");
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (for people correlating logs only).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long the journal worker waits between actions.
pub const ACTION_INTERVAL: Duration = Duration::from_millis(100);
