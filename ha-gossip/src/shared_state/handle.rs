//! [`SharedState`]: the application's handle on this node's replica of the shared map.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ha_core::{Clock, Millis, MonotonicClock, NodeId, SharedStateFsync};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::counter_writer::counter_writer;
use super::entry::Delta;
use super::error::StateError;
use super::map::{MapStats, SharedMap, StateValue};
use super::replicator::{ReplicatorStats, StateEffect, StateReplicator};
use super::stamp::Stamp;
use super::state_settings::SharedStateSettings;
use super::store::{StateStore, StoreSync};

/// A handle on this node's replica of the multi-master shared map. Cheap to clone; clones
/// share the replica.
///
/// Every call is answered locally, with no leader and no quorum: a node on the minority side
/// of a partition keeps accepting writes, and the sides converge once they can talk again
/// (registers: last writer wins by hybrid logical clock, ties by node id; counters: every
/// increment counts). Reads and writes take a short lock on the map and never wait for the
/// gossip driver; a write waits for the disk only with `fsync = "always"` (the default),
/// and then only for its own record, shared with concurrent writers (group commit).
///
/// ```
/// use ha_core::NodeId;
/// use ha_gossip::shared_state::{SharedState, SharedStateSettings, StateData};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // In memory (no directory); a GossipNode opens its own from its settings.
/// let state = SharedState::open(NodeId::new("n1")?, SharedStateSettings::default(), 7)?;
/// let stamp = state.put("greeting", "hello").await?;
/// let read = state.get("greeting").expect("just written");
/// assert_eq!(read.data, StateData::Bytes(b"hello".to_vec()));
/// assert_eq!(read.stamp, stamp);
/// assert_eq!(state.increment("visits", 2).await?, 2);
/// assert_eq!(state.increment("visits", -1).await?, 1);
/// assert!(state.delete("greeting").await?.is_some());
/// assert!(state.get("greeting").is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    core: Mutex<Core>,
    sync: StoreSync,
    fsync: SharedStateFsync,
    fsync_interval_ms: u64,
    /// Wakes the driver after a local write, so it can schedule the push.
    wake: Notify,
    clock: MonotonicClock,
    /// Records read back at start that the map refused (for example over a lowered limit).
    replay_refused: u64,
    /// Remote deltas merged into the map but not appended to the log (the store failed).
    persist_failed: AtomicU64,
}

struct Core {
    replicator: StateReplicator,
    store: StateStore,
    /// The sequence number of the last record of a local write: nothing may leave the node
    /// before it is durable (unless `fsync = "never"`), so a stamp a peer has seen is never
    /// issued again after a crash.
    local_sequence: u64,
}

/// What the driver sends after one input, and what must be durable before it does.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// Payloads for [`GossipCore::send_state`](crate::GossipCore::send_state).
    pub(crate) sends: Vec<(SocketAddr, Vec<u8>)>,
    /// Sync the store through this sequence number before sending (0: nothing to wait for).
    pub(crate) durable_through: u64,
}

/// Counters and sizes of one node's shared map, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedStateStats {
    /// Keys, tombstones, counters, bytes.
    pub map: MapStats,
    /// Packets, bytes, merged deltas, anti-entropy rounds.
    pub replicator: ReplicatorStats,
    /// The log file's size in bytes (0 in memory).
    pub log_bytes: u64,
    /// Whether the map is stored on disk.
    pub durable: bool,
    /// Why local writes are refused, once the store failed (until restart).
    pub storage_problem: Option<String>,
    /// Records read back at start that the map refused.
    pub replay_refused: u64,
    /// Remote deltas merged but not stored because the store failed.
    pub persist_failed: u64,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SharedState")
            .field("node", &self.inner.node)
            .field("fsync", &self.inner.fsync)
            .finish_non_exhaustive()
    }
}

/// Wall-clock milliseconds since the Unix epoch, for the hybrid logical clock (never for
/// timers: those use the monotonic clock).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl SharedState {
    /// Open the map: read the log in `settings.dir` back (or start empty in memory), and
    /// advance the clock past every stored stamp so that new writes win over old ones.
    /// `seed` seeds the replicator's choice of peers.
    ///
    /// # Errors
    /// [`StateError::Storage`] when the log cannot be opened or is corrupt (see
    /// [`StateStore::open`]).
    pub fn open(
        node: NodeId,
        settings: SharedStateSettings,
        seed: u64,
    ) -> Result<Self, StateError> {
        let (store, records) = match &settings.dir {
            Some(dir) => {
                let (store, recovered) = StateStore::open::<Delta>(dir)?;
                (store, recovered.records)
            }
            None => (StateStore::memory(), Vec::new()),
        };
        let mut map = SharedMap::new(node.clone(), settings.limits.clone());
        map.set_counter_writer(counter_writer(
            &node,
            settings.dir.as_deref(),
            settings.fsync,
            seed,
        )?);
        let mut replay_refused = 0u64;
        let stored = records.len();
        for delta in records {
            // Our own records: no drift check (the wall clock may have been set back since
            // they were written), and the clock moves past every stored stamp, so a write
            // after the restart is newer than every write before it.
            if let Err(error) = map.restore(delta) {
                replay_refused += 1;
                if replay_refused == 1 {
                    tracing::warn!(%error, "a stored shared state record was refused");
                }
            }
        }
        if stored > 0 {
            tracing::info!(
                records = stored,
                refused = replay_refused,
                live = map.stats().live,
                "shared state read back"
            );
        }
        let sync = store.sync_handle();
        let replicator = StateReplicator::new(map, settings.replicator.clone(), seed);
        Ok(Self {
            inner: Arc::new(Inner {
                node,
                core: Mutex::new(Core {
                    replicator,
                    store,
                    local_sequence: 0,
                }),
                sync,
                fsync: settings.fsync,
                fsync_interval_ms: settings.fsync_interval_ms,
                wake: Notify::new(),
                clock: MonotonicClock::new(),
                replay_refused,
                persist_failed: AtomicU64::new(0),
            }),
        })
    }

    /// This node's id: the `node` of the stamps it writes.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// Set `key` to `value`. Returns the write's stamp once it is stored (synced with
    /// `fsync = "always"`).
    ///
    /// # Errors
    /// [`StateError::InvalidKey`], [`StateError::ValueTooLarge`], [`StateError::TooManyKeys`]:
    /// nothing changed. [`StateError::Storage`]: refused before anything changed when the
    /// store had already failed; when the write itself failed to reach the disk, the value is
    /// in this node's memory (and may spread) but was not acknowledged.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits for the disk leaves the write applied in memory,
    /// possibly not durable: treat it as an unknown outcome.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<Stamp, StateError> {
        let value = value.into();
        let (stamp, sequence) = self.write(|replicator, now, wall| {
            let delta = replicator.put(now, wall, key, value)?;
            Ok((delta.entry.stamp.clone(), Some(delta)))
        })?;
        self.durable(sequence).await?;
        Ok(stamp)
    }

    /// Delete `key` (a tombstone that wins over every older write). Returns the tombstone's
    /// stamp, or `None` when the key held nothing.
    ///
    /// # Errors
    /// As [`put`](Self::put), with [`StateError::TooManyTombstones`] at the tombstone limit.
    ///
    /// # Cancel safety
    /// As [`put`](Self::put).
    pub async fn delete(&self, key: &str) -> Result<Option<Stamp>, StateError> {
        let (stamp, sequence) = self.write(|replicator, now, wall| {
            let delta = replicator.delete(now, wall, key)?;
            Ok((delta.as_ref().map(|delta| delta.entry.stamp.clone()), delta))
        })?;
        self.durable(sequence).await?;
        Ok(stamp)
    }

    /// Add `by` (may be negative) to the counter `key`, creating it at 0. Returns the
    /// counter's value on this node after the increment.
    ///
    /// # Errors
    /// [`StateError::NotACounter`] when `key` holds a value; [`StateError::CounterOverflow`];
    /// otherwise as [`put`](Self::put).
    ///
    /// # Cancel safety
    /// As [`put`](Self::put).
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, StateError> {
        let (value, sequence) = self.write(|replicator, now, wall| {
            let (value, delta) = replicator.increment(now, wall, key, by)?;
            Ok((value, Some(delta)))
        })?;
        self.durable(sequence).await?;
        Ok(value)
    }

    /// The value of `key` on this node, with the stamp of its last write; `None` when absent
    /// or deleted.
    pub fn get(&self, key: &str) -> Option<StateValue> {
        self.inner.core.lock().replicator.map().get(key)
    }

    /// Up to `limit` live keys starting with `prefix`, in key order, and whether more matched.
    pub fn list(&self, prefix: &str, limit: usize) -> (Vec<(String, StateValue)>, bool) {
        self.inner.core.lock().replicator.map().list(prefix, limit)
    }

    /// Sizes and counters, for metrics.
    pub fn stats(&self) -> SharedStateStats {
        let core = self.inner.core.lock();
        SharedStateStats {
            map: core.replicator.map().stats(),
            replicator: core.replicator.stats(),
            log_bytes: core.store.file_bytes(),
            durable: core.store.is_durable(),
            storage_problem: self.inner.sync.poisoned(),
            replay_refused: self.inner.replay_refused,
            persist_failed: self.inner.persist_failed.load(Ordering::Relaxed),
        }
    }

    /// Run one local write under the lock, append its delta to the log, wake the driver.
    /// Returns the result and the sequence number that must be durable before answering.
    fn write<R>(
        &self,
        operation: impl FnOnce(
            &mut StateReplicator,
            Millis,
            u64,
        ) -> Result<(R, Option<Delta>), StateError>,
    ) -> Result<(R, u64), StateError> {
        let now = self.inner.clock.now();
        let wall = wall_ms();
        let mut core = self.inner.core.lock();
        // A failed store refuses before the map changes: nothing applied.
        core.store.check_writable()?;
        let (result, delta) = operation(&mut core.replicator, now, wall)?;
        let Some(delta) = delta else {
            return Ok((result, 0));
        };
        let sequence = core.store.append([&delta])?;
        core.local_sequence = sequence;
        drop(core);
        self.inner.wake.notify_one();
        Ok((result, sequence))
    }

    /// With `fsync = "always"`, wait until record `sequence` is durable.
    async fn durable(&self, sequence: u64) -> Result<(), StateError> {
        if self.inner.fsync != SharedStateFsync::Always || sequence == 0 {
            return Ok(());
        }
        let sync = self.inner.sync.clone();
        if sync.is_synced_through(sequence) {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || sync.sync_through(sequence))
            .await
            .map_err(|error| StateError::Storage(format!("the sync task failed: {error}")))?
    }

    // ---- for the gossip driver ----

    /// The monotonic clock the replicator's timers run on.
    pub(crate) fn clock(&self) -> MonotonicClock {
        self.inner.clock
    }

    /// Wait until a local write asks the driver to look at the replicator's timer again.
    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// With `fsync = "batched"`, how often the driver syncs the log.
    pub(crate) fn batched_sync_interval_ms(&self) -> Option<u64> {
        (self.inner.fsync == SharedStateFsync::Batched).then_some(self.inner.fsync_interval_ms)
    }

    /// The members to disseminate to: reachable members' gossip addresses.
    pub(crate) fn set_peers(&self, peers: Vec<SocketAddr>) {
        self.inner.core.lock().replicator.set_peers(peers);
    }

    /// When the replicator's next timer is due.
    pub(crate) fn next_tick_at(&self) -> Millis {
        self.inner.core.lock().replicator.next_tick_at()
    }

    /// A state packet arrived from `from`.
    pub(crate) fn on_packet(&self, from: SocketAddr, payload: &[u8]) -> Outgoing {
        let now = self.inner.clock.now();
        let wall = wall_ms();
        let mut core = self.inner.core.lock();
        core.replicator.on_packet(now, wall, from, payload);
        self.drain(&mut core)
    }

    /// The replicator's timer is due (or may be): push batches, anti-entropy, tombstone
    /// collection; and compact the log when it has grown enough.
    pub(crate) fn on_tick(&self) -> Outgoing {
        let now = self.inner.clock.now();
        let wall = wall_ms();
        let mut core = self.inner.core.lock();
        if core.replicator.next_tick_at() <= now {
            core.replicator.on_tick(now, wall);
        }
        let outgoing = self.drain(&mut core);
        if core.store.wants_compaction() {
            let live: Vec<Delta> = core
                .replicator
                .map()
                .entries()
                .map(|(key, entry)| Delta {
                    key: key.clone(),
                    entry: entry.clone(),
                })
                .collect();
            if let Err(error) = core.store.compact(&live) {
                tracing::warn!(%error, "shared state log compaction failed; the old log stays");
            }
        }
        outgoing
    }

    /// Make the log durable through `sequence` (the driver calls this before sending what
    /// it drained, unless `fsync = "never"`).
    pub(crate) async fn durable_before_send(&self, sequence: u64) {
        // A poisoned store was reported once when it failed; nothing more can be synced.
        if self.inner.fsync == SharedStateFsync::Never
            || sequence == 0
            || self.inner.sync.is_synced_through(sequence)
            || self.inner.sync.poisoned().is_some()
        {
            return;
        }
        let sync = self.inner.sync.clone();
        match tokio::task::spawn_blocking(move || sync.sync_through(sequence)).await {
            Ok(Ok(())) => {}
            // The store is poisoned and refuses local writes from now on; what is in memory
            // still spreads (the peers' copies are the best remaining record of it).
            Ok(Err(error)) => {
                tracing::error!(%error, "shared state log sync before sending failed")
            }
            Err(error) => tracing::error!(%error, "shared state sync task failed"),
        }
    }

    /// With `fsync = "batched"`: sync whatever was appended (the driver's timer).
    pub(crate) async fn sync_batch(&self) {
        if !self.inner.sync.has_unsynced() {
            return;
        }
        let sync = self.inner.sync.clone();
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || sync.sync()).await {
            tracing::error!(%error, "shared state log batched sync failed");
        }
    }

    /// Take the replicator's effects: sends to return, remote deltas to append to the log.
    fn drain(&self, core: &mut Core) -> Outgoing {
        let mut sends = Vec::new();
        for effect in core.replicator.drain_effects() {
            match effect {
                StateEffect::Send { to, payload } => sends.push((to, payload)),
                StateEffect::Persist(deltas) => {
                    if let Err(error) = core.store.append(deltas.iter()) {
                        // Merged in memory, not stored: a restart forgets them until
                        // anti-entropy brings them back.
                        self.inner
                            .persist_failed
                            .fetch_add(deltas.len() as u64, Ordering::Relaxed);
                        tracing::warn!(%error, "remote shared state deltas not stored");
                    }
                }
            }
        }
        Outgoing {
            durable_through: if sends.is_empty() {
                0
            } else {
                core.local_sequence
            },
            sends,
        }
    }
}
