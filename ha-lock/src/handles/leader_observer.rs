//! Who leads a host duty, and when that changes.

use ha_core::{Consistency, StateMachine};

use super::error::LockError;
use super::kv::Kv;
use super::leadership::election_key;
use super::watch::Watch;
use crate::command::KeyValue;

/// The published holder of leadership `name` (see [`Leadership`](super::Leadership)), as seen
/// by anyone: [`current`](Self::current) and [`changed`](Self::changed).
///
/// It follows the state, not every event: when leadership moves twice between two polls, it
/// reports the latest holder. For every change in order, use [`changes`](Self::changes).
///
/// ```no_run
/// # async fn example(locks: ha_lock::Locks<()>) -> Result<(), ha_lock::LockError> {
/// let mut observer = locks.observe("scheduler").await?;
/// loop {
///     match observer.current() {
///         Some(leader) => println!("scheduler: {}", String::from_utf8_lossy(&leader.value)),
///         None => println!("no scheduler"),
///     }
///     observer.changed().await?;
/// }
/// # }
/// ```
pub struct LeaderObserver<H: StateMachine> {
    /// The session's keys, where the holder is published.
    kv: Kv<H>,
    name: String,
    key: String,
    current: Option<KeyValue>,
}

impl<H: StateMachine> LeaderObserver<H> {
    pub(crate) async fn start(kv: Kv<H>, name: &str) -> Result<Self, LockError> {
        let key = election_key(name);
        let current = kv.get(&key, Consistency::Quorum).await?;
        Ok(Self {
            kv,
            name: name.to_string(),
            key,
            current,
        })
    }

    /// The leadership observed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The holder's published value and its version, as last read; `None` when nobody leads.
    pub fn current(&self) -> Option<&KeyValue> {
        self.current.as_ref()
    }

    /// Wait until the published holder differs from [`current`](Self::current) (a new value
    /// or version, or nobody), polling QUORUM reads; returns the new holder.
    ///
    /// # Errors
    /// [`LockError::Replication`] when a read got no answer in time; calling again retries.
    ///
    /// # Cancel safety
    /// Cancel safe: [`current`](Self::current) changes only when a change is returned.
    pub async fn changed(&mut self) -> Result<Option<KeyValue>, LockError> {
        loop {
            let latest = self.kv.get(&self.key, Consistency::Quorum).await?;
            if latest != self.current {
                self.current.clone_from(&latest);
                return Ok(latest);
            }
            tokio::time::sleep(self.kv.settings().watch_poll_interval).await;
        }
    }

    /// Every change of the published value after the current one, in order (from the local
    /// replica). With nobody leading now, from the start of the kept change log.
    pub fn changes(&self) -> Watch<H> {
        let after_version = self.current.as_ref().map_or(0, |current| current.version);
        self.kv.watch_key(self.key.clone(), after_version)
    }
}
