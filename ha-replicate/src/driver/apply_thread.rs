//! The thread the host's state machine runs on (issue 17, item 2): the driver hands it the
//! replica's [`ApplyTask`]s through a bounded queue and gets each [`ApplyDone`] back as an
//! input, so an `apply` (or a query, or a snapshot copy) that takes 200 ms never delays a
//! heartbeat, a vote or an append on the event loop.
//!
//! A task of entries comes with the answer channels of the writes routed to it
//! ([`ApplyTask::reply_routes`]): the thread answers those callers itself right after running
//! the task, before reporting to the loop, so a write's answer does not wait for the loop to
//! wake up (issue 17, sequential write latency; `replica/reply_route.rs`).

use std::collections::BTreeMap;
use std::sync::mpsc::TrySendError;

use ha_core::StateMachine;

use crate::driver::lazy_queue::{LazyReceiver, LazySender, lazy_queue};
use crate::driver::reply_slot::ReplySlot;
use crate::driver::thread_reports::{ReportSender, Wake};
use crate::replica::{
    APPLY_AHEAD_ENTRIES_MAX, APPLY_QUERIES_MAX, ApplyDone, ApplyTask, ApplyWorker,
};

/// Room in the queue to the apply thread, in tasks. The replica core bounds what it hands
/// out: [`APPLY_AHEAD_ENTRIES_MAX`] entries (one task holds at least one), queries refused
/// past [`APPLY_QUERIES_MAX`] tasks in flight, one copy for its own snapshot, the exports the
/// driver lets wait, and a restore per snapshot installed; so the queue never fills, and if
/// it ever did the driver would wait for room rather than drop a task. The queue's memory
/// grows with what it holds (`driver/lazy_queue.rs`): an idle node does not pay for this
/// bound.
pub const APPLY_QUEUE_TASKS_MAX: usize =
    APPLY_AHEAD_ENTRIES_MAX as usize + APPLY_QUERIES_MAX + 1_024;

/// A task and the answer channels of its routed writes, by request id.
pub(crate) struct QueuedTask {
    /// The task.
    pub(crate) task: ApplyTask,
    /// The callers of the writes the task answers ([`ApplyTask::reply_routes`]) the driver
    /// still had waiting.
    pub(crate) replies: BTreeMap<u64, ReplySlot>,
}

/// The sending side of the apply thread. Dropping it ends the thread once it has run what is
/// queued.
pub(crate) struct ApplyThread {
    tasks: LazySender<QueuedTask>,
}

impl ApplyThread {
    /// Start a thread named after `node` that runs `worker` on every task sent to it, in
    /// order, and reports what each produced to `done` (waking the loop only for what it
    /// must see at once: `driver/thread_reports.rs`). The thread ends when this handle is
    /// dropped; `done` closes (the receiver sees `None`) when it ends, for instance after
    /// the host's state machine panicked.
    ///
    /// # Errors
    /// The OS refused to start the thread.
    pub(crate) fn start<S: StateMachine>(
        node: &str,
        worker: ApplyWorker<S>,
        done: ReportSender<ApplyDone>,
    ) -> std::io::Result<Self> {
        let (tasks, queue) = lazy_queue(APPLY_QUEUE_TASKS_MAX);
        std::thread::Builder::new()
            .name(format!("ha-apply-{node}"))
            .spawn(move || run(worker, &queue, done))?;
        Ok(Self { tasks })
    }

    /// Queue `task`. Returns false when the thread has ended (its tasks are lost: the
    /// replica must stop).
    pub(crate) fn send(&self, task: QueuedTask) -> bool {
        match self.tasks.try_send(task) {
            Ok(()) => true,
            Err(TrySendError::Full(task)) => {
                tracing::error!(
                    queued = APPLY_QUEUE_TASKS_MAX,
                    "apply queue full (the replica's bounds should prevent this); waiting"
                );
                self.tasks.send(task).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn run<S: StateMachine>(
    mut worker: ApplyWorker<S>,
    queue: &LazyReceiver<QueuedTask>,
    done: ReportSender<ApplyDone>,
) {
    while let Ok(QueuedTask { task, replies }) = queue.recv() {
        let Some(mut result) = worker.run(&task) else {
            continue;
        };
        // The answers leave before the report: the caller need not wait for the loop. Taken
        // out of the result, so the core knows they were delivered.
        for routed in result.routed_replies_mut() {
            if let Some(slot) = replies.get(&routed.route.request_id)
                && let Some(reply) = routed.reply.take()
            {
                slot.send(reply);
            }
        }
        let report = if result.needs_prompt_report() {
            Wake::Prompt
        } else {
            Wake::Lazy
        };
        done.send(result, report);
    }
}
