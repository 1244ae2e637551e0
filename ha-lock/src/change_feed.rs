//! Wakes watchers on this replica when the lock table applies a change to keys.

use std::sync::Arc;

use tokio::sync::watch;

/// A signal from a replica's lock table to the [`Watch`](crate::Watch)es reading it: the
/// version of the newest change applied (or restored) here. A watch waits on it instead of
/// polling, so a change reaches a watcher as soon as this replica applies it.
///
/// Give one to [`WithLocks::feed_changes`](crate::WithLocks::feed_changes) and the same to
/// [`Session::with_change_feed`](crate::Session::with_change_feed) on the node that runs
/// that state machine (the `ha` facade does both). Cloning shares the signal. Sending never
/// blocks the apply path: it replaces one value and wakes whoever waits.
///
/// ```
/// let feed = ha_lock::ChangeFeed::new();
/// let mut seen = feed.subscribe();
/// assert_eq!(*seen.borrow_and_update(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct ChangeFeed {
    sender: Arc<watch::Sender<u64>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeFeed {
    /// A feed at version 0 with no watcher yet.
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A receiver that sees each new version (and only the newest when several came).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// The newest change version published.
    pub fn version(&self) -> u64 {
        *self.sender.borrow()
    }

    /// Publish `version` when it differs from the last one (a restore may move it back).
    pub(crate) fn publish(&self, version: u64) {
        self.sender.send_if_modified(|current| {
            let changed = *current != version;
            *current = version;
            changed
        });
    }
}
