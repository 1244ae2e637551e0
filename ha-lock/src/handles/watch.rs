//! A resumable stream of changes to keys under a prefix.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use ha_core::{Consistency, StateMachine};
use tokio::sync::watch;

use super::error::LockError;
use super::session_core::SessionCore;
use super::table_answer::ChangesAnswer;
use crate::command::{Change, LockQuery};

/// Most changes fetched by one poll.
const CHANGES_PER_POLL_MAX: usize = 1_000;

/// With a [`ChangeFeed`](crate::ChangeFeed), how long at least a watch waits for a signal
/// before it reads the change log anyway (or the poll interval, when longer): a safety net,
/// not the way changes arrive.
const SIGNALLED_REREAD_AFTER: Duration = Duration::from_secs(1);

/// Changes to keys starting with a prefix, in version order, from the local replica's change
/// log. A session given the replica's [`ChangeFeed`](crate::ChangeFeed)
/// ([`Session::with_change_feed`](super::Session::with_change_feed); the `ha` facade's
/// sessions have it) is woken as the
/// replica applies each change; otherwise the log is polled every
/// [`watch_poll_interval`](super::SessionSettings::watch_poll_interval).
/// [`into_stream`](Self::into_stream) makes it a [`Stream`].
///
/// Every change after the starting version is delivered once, in order, even across a
/// restart of the watcher: keep [`last_version`](Self::last_version) and start a new watch
/// from it. One command can change several keys at one version (a lease end deletes every
/// key bound to it); all of them are delivered, and `last_version` passes that version only
/// once the last of them is returned, so a watcher resumed in the middle of such a group gets
/// the whole group again rather than losing part of it. The change log keeps the latest [`CHANGES_MAX`](crate::CHANGES_MAX) changes; a
/// watcher that fell further behind gets [`LockError::Compacted`] and must re-read the keys,
/// then watch again for changes after the version it names.
///
/// The local replica may lag the leader (a follower's watch sees a change a little later),
/// but never shows changes out of order.
///
/// ```no_run
/// # async fn example(kv: ha_lock::Kv<()>) -> Result<(), ha_lock::LockError> {
/// let mut watch = kv.watch("/config/", 0);
/// loop {
///     match watch.next().await {
///         Ok(change) => println!("{} -> {:?} at {}", change.key, change.value, change.version),
///         Err(ha_lock::LockError::Compacted { oldest_available }) => {
///             let _current = kv.range("/config/").await?; // re-read, then resume
///             watch = kv.watch("/config/", oldest_available);
///         }
///         Err(error) => return Err(error),
///     }
/// }
/// # }
/// ```
pub struct Watch<H: StateMachine> {
    /// The session reading the change log.
    core: Arc<SessionCore<H>>,
    prefix: String,
    /// Only this key, when set (a prefix also matches longer keys).
    exact_key: Option<String>,
    /// The version of the last change handed out.
    last_version: u64,
    /// The version after which the next poll asks.
    fetched_through: u64,
    buffered: VecDeque<Change>,
    /// The local replica's change signal, if the client has one.
    signal: Option<watch::Receiver<u64>>,
}

impl<H: StateMachine> Watch<H> {
    pub(crate) fn new(core: Arc<SessionCore<H>>, prefix: String, after_version: u64) -> Self {
        Self {
            signal: core.change_signal(),
            core,
            prefix,
            exact_key: None,
            last_version: after_version,
            fetched_through: after_version,
            buffered: VecDeque::new(),
        }
    }

    /// Changes to `key` only.
    pub(crate) fn for_key(core: Arc<SessionCore<H>>, key: String, after_version: u64) -> Self {
        let mut watch = Self::new(core, key.clone(), after_version);
        watch.exact_key = Some(key);
        watch
    }

    /// The prefix watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The version of the last change returned by [`next`](Self::next) (or the starting
    /// version): where to resume.
    pub fn last_version(&self) -> u64 {
        self.last_version
    }

    /// The next change, waiting (polling) until there is one.
    ///
    /// # Errors
    /// [`LockError::Compacted`] when changes after [`last_version`](Self::last_version) are
    /// gone: re-read the keys, then watch again for changes after `oldest_available`.
    /// [`LockError::Replication`] when the local replica did not answer (it stopped); calling
    /// again retries.
    ///
    /// # Cancel safety
    /// Cancel safe: a change is consumed only when returned, so dropping the future and
    /// calling again loses nothing.
    pub async fn next(&mut self) -> Result<Change, LockError> {
        loop {
            if let Some(change) = self.buffered.pop_front() {
                // The table never splits one version's changes across answers, so the group
                // is complete once the buffer holds no more of it.
                let group_done = self
                    .buffered
                    .front()
                    .is_none_or(|next| next.version != change.version);
                if group_done {
                    self.last_version = change.version;
                }
                return Ok(change);
            }
            // Mark the signal seen before reading, so a change applied after the read wakes
            // the wait below (none is missed between the two).
            if let Some(signal) = &mut self.signal {
                signal.borrow_and_update();
            }
            self.poll().await?;
            if self.buffered.is_empty() {
                self.wait_for_a_change().await;
            }
        }
    }

    /// Until the replica signals a change (or, without a signal, one poll interval).
    async fn wait_for_a_change(&mut self) {
        let poll_interval = self.core.settings().watch_poll_interval;
        match &mut self.signal {
            Some(signal) => {
                let reread_after = SIGNALLED_REREAD_AFTER.max(poll_interval);
                match tokio::time::timeout(reread_after, signal.changed()).await {
                    Ok(Ok(())) | Err(_) => {}
                    // The replica's state machine is gone (the node stopped): poll from now.
                    Ok(Err(_)) => {
                        self.signal = None;
                        tokio::time::sleep(poll_interval).await;
                    }
                }
            }
            None => tokio::time::sleep(poll_interval).await,
        }
    }

    /// The watch as a [`Stream`] of changes (each `next` as [`next`](Self::next)). After a
    /// [`LockError::Compacted`] the stream ends (re-read the keys, then watch again from the
    /// version it names); after another error it carries on from where it was.
    ///
    /// ```no_run
    /// # async fn example(kv: ha_lock::Kv<()>) {
    /// use futures_util::StreamExt;
    /// let mut changes = std::pin::pin!(kv.watch("/config/", 0).into_stream());
    /// while let Some(Ok(change)) = changes.next().await {
    ///     println!("{} changed at {}", change.key, change.version);
    /// }
    /// # }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<Change, LockError>> + Send + 'static
    where
        H: 'static,
    {
        futures_util::stream::unfold(Some(self), |watch| async move {
            let mut watch = watch?;
            let next = watch.next().await;
            let compacted = matches!(next, Err(LockError::Compacted { .. }));
            Some((next, (!compacted).then_some(watch)))
        })
    }

    /// One read of the change log; buffers what it finds.
    async fn poll(&mut self) -> Result<(), LockError> {
        let query = LockQuery::Changes {
            prefix: self.prefix.clone(),
            after_version: self.fetched_through,
            limit: CHANGES_PER_POLL_MAX,
        };
        match self
            .core
            .query::<ChangesAnswer>(query, Consistency::Eventual)
            .await?
        {
            ChangesAnswer::Changes(changes) => {
                // Several changes can share a version (one command's), so compare with
                // where this answer starts, not with the previous change.
                let after = self.fetched_through;
                for change in changes {
                    // The table answers in version order; this guards the promise anyway.
                    if change.version <= after || change.version < self.fetched_through {
                        continue;
                    }
                    self.fetched_through = change.version;
                    if self.exact_key.as_ref().is_none_or(|key| *key == change.key) {
                        self.buffered.push_back(change);
                    }
                }
                Ok(())
            }
            ChangesAnswer::Compacted { oldest_available } => {
                Err(LockError::Compacted { oldest_available })
            }
        }
    }
}
