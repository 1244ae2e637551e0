//! The bot's work, done by the leader only: every 100 ms, append the next numbered action to
//! the replicated journal, holding the journal lock and fencing every append with its token.
//!
//! ```text
//!  become leader ─▶ acquire lock "bot/journal" (TTL 1 s, kept alive) ─▶ token T
//!      ─▶ Fence{T}   (from now on the journal refuses any append with a lower token)
//!      ─▶ read the last entry (STRONG) ─▶ next = last.seq + 1
//!      ─▶ every 100 ms: Append{seq: next, token: T}  until leadership, the lock or an
//!         unknown outcome is lost ─▶ release, start again
//! ```
//!
//! Why this gives no gap and no duplicate after any failover: an append whose outcome is
//! unknown (a timeout) is never retried under a new number; the worker starts over under a
//! new token instead. The fence puts the new token into the journal before the last entry is
//! read, so an old append still in flight is either applied before the fence (and seen by the
//! read) or after it (and refused as stale). The demo then checks the journal independently.

use std::time::Duration;

use ha::{Consistency, Node, Role};
use ha_examples::journal::{
    Journal, JournalCommand, JournalQuery, JournalQueryResponse, JournalResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::event::EventKind;
use crate::node::{ACTION_INTERVAL, EventPrinter, unix_ms};

/// The lock that guards the journal.
pub const JOURNAL_LOCK: &str = "bot/journal";
/// The journal lock's lease TTL: after the holder dies, the next leader waits about this long.
pub const JOURNAL_LOCK_TTL: Duration = Duration::from_millis(1000);
/// How long one acquire waits before the worker checks it still leads.
const ACQUIRE_WAIT: Duration = Duration::from_secs(2);
/// How long one append may take before its outcome counts as unknown.
const APPEND_TIMEOUT: Duration = Duration::from_secs(3);

/// The running worker.
pub struct JournalWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl JournalWorker {
    /// Start working whenever `node` leads.
    pub fn start(node: Node<Journal>, printer: EventPrinter) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(node, printer, stopped));
        Self { stop, task }
    }

    /// Stop after the current action, releasing the lock.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the journal worker did not stop in time");
        }
    }
}

async fn run(node: Node<Journal>, printer: EventPrinter, mut stopped: watch::Receiver<bool>) {
    let mut roles = node.watch_role();
    loop {
        // Wait to lead (or to be stopped).
        tokio::select! {
            led = roles.wait_for(|view| view.role == Role::Leader) => if led.is_err() { return },
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        if *stopped.borrow() {
            return;
        }
        let reason = tokio::select! {
            reason = work_while_leading(&node, &printer) => reason,
            _ = stopped.wait_for(|stop| *stop) => "stopping".to_string(),
        };
        tracing::info!(reason, "journal work paused");
        if *stopped.borrow() {
            return;
        }
        // Do not spin when something fails quickly.
        tokio::time::sleep(ACTION_INTERVAL).await;
    }
}

/// Hold the lock and append until something stops it; returns why.
async fn work_while_leading(node: &Node<Journal>, printer: &EventPrinter) -> String {
    let locks = node.locks();
    let guard = match locks
        .acquire(JOURNAL_LOCK, JOURNAL_LOCK_TTL, ACQUIRE_WAIT)
        .await
    {
        Ok(guard) => guard,
        Err(error) => return format!("lock not acquired: {error}"),
    };
    // The journal's own commands carry the token as a number.
    let token = guard.token().0;
    let writer = node.id().clone();
    let fence = JournalCommand::Fence {
        token,
        writer: writer.clone(),
    };
    match node.propose(fence, Consistency::Quorum).await {
        Ok(outcome) if matches!(outcome.response, Some(JournalResponse::Fenced { .. })) => {}
        Ok(outcome) => return format!("fence refused: {:?}", outcome.response),
        Err(error) => return format!("fence failed: {error}"),
    }
    let mut next = match node.read(JournalQuery::Last, Consistency::Strong).await {
        Ok(JournalQueryResponse::Last { last, .. }) => last.map_or(1, |entry| entry.seq + 1),
        Ok(other) => return format!("unexpected answer {other:?}"),
        Err(error) => return format!("reading the journal failed: {error}"),
    };
    let mut line = printer.line(EventKind::JournalStarted);
    line.token = Some(token);
    line.seq = Some(next);
    printer.print(&line);
    let lost = guard.lost();
    tokio::pin!(lost);
    let mut ticks = tokio::time::interval(ACTION_INTERVAL);
    let mut written = 0u64;
    let reason = loop {
        tokio::select! {
            biased;
            loss = &mut lost => break format!("lock lost: {loss:?}"),
            _ = ticks.tick() => {}
        }
        if !node.is_leader() {
            break "no longer the leader".to_string();
        }
        let append = JournalCommand::Append {
            seq: next,
            token,
            writer: writer.clone(),
            unix_ms: unix_ms(),
        };
        match node
            .propose_within(append, Consistency::Quorum, APPEND_TIMEOUT)
            .await
        {
            Ok(outcome) => match outcome.response {
                Some(JournalResponse::Appended { .. }) => {
                    next += 1;
                    written += 1;
                }
                other => break format!("append refused: {other:?}"),
            },
            // Unknown outcome: never renumber; start over under a new token.
            Err(error) => break format!("append outcome unknown: {error}"),
        }
    };
    let mut line = printer.line(EventKind::JournalStopped);
    line.token = Some(token);
    line.seq = next.checked_sub(1);
    line.written = Some(written);
    line.reason = Some(reason.clone());
    printer.print(&line);
    if let Err(error) = guard.release().await {
        tracing::debug!(%error, "journal lock release failed; its lease will expire");
    }
    reason
}
