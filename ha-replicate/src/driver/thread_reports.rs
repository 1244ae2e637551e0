//! Reports of the driver's threads (apply, storage) to the event loop, which wake the loop
//! only when it waits for them (issue 17, item 4: fewer wake-ups per write).
//!
//! Every task the apply thread runs ends in an [`ApplyDone`](crate::replica::ApplyDone) for
//! the replica core, and every sync of the storage thread in a
//! [`StorageReport`](crate::driver::storage_thread::StorageReport). Many of them, on a busy
//! node, change nothing the loop must act on at once:
//! - a follower's applied entries (its appends are acknowledged on durability, and it reports
//!   the index it handed out while its queue is shallow, `engine/apply_lag.rs`), or a
//!   leader's batch whose writes the apply thread answered itself (`replica/reply_route.rs`);
//! - a leader's own sync while no follower has acknowledged the entries it covers (the
//!   commit waits for a follower's answer anyway, which wakes the loop, and the loop reads
//!   the sync's report first: `Engine::waits_for_own_durability`).
//!
//! Waking the loop for each of them cost a futex wake and a turn of the loop per batch. Here
//! such a report waits in the queue until the loop wakes for something else (the next append,
//! an answer from a peer, a timer), and the loop reads every waiting report at the start of
//! each turn, in order.
//!
//! A report wakes the loop when [`Wake::Prompt`] says it must (for the apply thread: an
//! answer to a query, a copy, a restore, a digest, a changed failover history, an answer the
//! thread could not deliver; for the storage thread: a failure), or when the loop said it
//! waits for every report ([`ReportReceiver::set_waiting`]). That flag is set at the end of
//! each turn; a report queued before it was set is still in the queue, and the loop's next
//! wait looks at the queue before it sleeps, so no report it waits for is left behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Whether a report must wake the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The loop acts on it at once (see the module documentation).
    Prompt,
    /// It may wait until the loop wakes for something else, unless the loop waits for it.
    Lazy,
}

/// What the two ends share.
struct Shared<T> {
    /// Each report with the time the thread queued it.
    queue: Mutex<VecDeque<(T, Instant)>>,
    wake: Notify,
    /// The loop waits for every report.
    waiting: AtomicBool,
    /// The sender is gone (the apply thread ended).
    closed: AtomicBool,
}

/// A queue of reports from a thread to the loop; see the module documentation. The loop
/// starts out waiting for every report.
pub(crate) fn thread_reports<T>() -> (ReportSender<T>, ReportReceiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        waiting: AtomicBool::new(true),
        closed: AtomicBool::new(false),
    });
    (
        ReportSender {
            shared: Arc::clone(&shared),
        },
        ReportReceiver { shared },
    )
}

/// The thread's end. Dropping it wakes the loop, which then sees the queue closed.
pub(crate) struct ReportSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> ReportSender<T> {
    /// Queue `report`, waking the loop if `wake` is prompt or the loop waits for reports.
    pub(crate) fn send(&self, report: T, wake: Wake) {
        self.shared.queue.lock().push_back((report, Instant::now()));
        // After the push: a loop that sets `waiting` and then looks at the queue sees this
        // report, and one that set it before sees the flag here.
        if wake == Wake::Prompt || self.shared.waiting.load(Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
    }
}

impl<T> Drop for ReportSender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

/// The loop's end.
pub(crate) struct ReportReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> ReportReceiver<T> {
    /// The oldest report waiting, if any, with when it was queued (what the loop's latency
    /// figures count from: a report that waited for the loop did not take longer to apply).
    pub(crate) fn try_recv(&self) -> Option<(T, Instant)> {
        self.shared.queue.lock().pop_front()
    }

    /// The oldest report: at once when one waits, else once one wakes the loop (see
    /// [`ReportSender::send`]). `None` when the apply thread ended and nothing is left.
    pub(crate) async fn recv(&self) -> Option<(T, Instant)> {
        loop {
            // Registered before the queue is looked at: a wake between the two is kept.
            let woken = self.shared.wake.notified();
            if let Some(done) = self.try_recv() {
                return Some(done);
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                // The sender's last reports were queued before it closed.
                return self.try_recv();
            }
            woken.await;
        }
    }

    /// Whether the loop waits for every report (see the module documentation). Call it at
    /// the end of each turn, before waiting again.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        self.shared.waiting.store(waiting, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ApplyDone;
    use ha_core::LogIndex;
    use std::time::Duration;

    fn applied(last: u64) -> ApplyDone {
        ApplyDone::applied_through(LogIndex(last))
    }

    fn last_of(done: &ApplyDone) -> u64 {
        done.applied_last().expect("only applied reports here").0
    }

    /// What the receiver yields within `within` (`None` if nothing woke it).
    async fn woken(receiver: &ReportReceiver<ApplyDone>, within: Duration) -> Option<u64> {
        tokio::time::timeout(within, receiver.recv())
            .await
            .ok()
            .flatten()
            .map(|(done, _)| last_of(&done))
    }

    /// Long enough for any wake on a loaded machine; a missing wake waits it out.
    const WAKE: Duration = Duration::from_secs(5);
    /// How long a report that must not wake the loop is given to do so anyway.
    const NO_WAKE: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_lazy_report_waits_for_the_next_wake_and_keeps_its_order() {
        let (sender, receiver) = thread_reports();
        receiver.set_waiting(false);
        let asleep = tokio::spawn(async move {
            let got = woken(&receiver, NO_WAKE).await;
            (receiver, got)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        sender.send(applied(1), Wake::Lazy);
        let (receiver, got) = asleep.await.unwrap();
        assert_eq!(got, None, "a lazy report woke a sleeping loop");
        // Behind it a prompt one wakes the loop; the lazy one comes first.
        sender.send(applied(2), Wake::Prompt);
        assert_eq!(woken(&receiver, WAKE).await, Some(1));
        assert_eq!(receiver.try_recv().map(|(done, _)| last_of(&done)), Some(2));
        assert!(receiver.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_loop_is_woken_by_every_report() {
        let (sender, receiver) = thread_reports();
        receiver.set_waiting(false);
        receiver.set_waiting(true);
        let listener = tokio::spawn(async move { woken(&receiver, WAKE).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        sender.send(applied(7), Wake::Lazy);
        assert_eq!(listener.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn the_end_of_the_thread_is_seen_after_its_last_reports() {
        let (sender, receiver) = thread_reports();
        receiver.set_waiting(false);
        sender.send(applied(4), Wake::Lazy);
        drop(sender);
        assert_eq!(woken(&receiver, WAKE).await, Some(4));
        assert!(receiver.recv().await.is_none(), "closed");
    }
}
