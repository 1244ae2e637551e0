//! The sans-IO replicator of the shared map: pushes local writes to a few random peers,
//! relays what is new epidemically, and repairs the rest with periodic anti-entropy.
//!
//! ```text
//!  put/delete/increment ──▶ SharedMap ──▶ queue (key → hops) ──every push_interval_ms──▶ Push to `fanout` peers
//!  on_packet(Push/Repair) ──merge──▶ changed? ──▶ Persist(entries) + queue with hops - 1
//!  every anti_entropy_interval_ms: Probe(root) to one peer ──▶ Digest ──▶ Pull + Repair ◀──▶ Repair
//! ```
//!
//! The replicator reads no clock and opens no socket: the driver passes `now` (monotonic, for
//! timers) and `wall_ms` (the wall clock, for the hybrid logical clock) with every input,
//! calls [`StateReplicator::on_tick`] at [`StateReplicator::next_tick_at`], and carries out
//! the [`StateEffect`]s it drains. Its randomness (peer choice, jitter) comes from the seed.
//!
//! Why it converges: a delta that changes a member's map is relayed by that member once (a
//! second copy changes nothing, so it stops there), which reaches most members in
//! O(log N) push rounds; a member the epidemic missed, or that was partitioned or down,
//! finds the difference at its next anti-entropy exchange (push-pull, so both sides repair),
//! and what it repairs is relayed in turn.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::Millis;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::message::{PAYLOAD_BYTES_MAX, StateMessage, digest_root};
use super::replicator_settings::ReplicatorSettings;
use super::{BUCKETS, Delta, Digest, SharedMap, StateError};

/// Bytes a message adds around its deltas: version, variant, hops and the length prefix
/// (a varint of at most 3 bytes for any count that fits a packet), with room to spare.
const MESSAGE_OVERHEAD_BYTES: usize = 16;

/// Repair packets a member may send per anti-entropy interval, in units of
/// `repair_packets_max`: a member answers its own round and, on average, one round started by
/// a peer; four answers' worth leaves room for bursts while a flood of pulls (each a few
/// hundred bytes asking for up to 512 KiB) cannot turn a member into an amplifier.
const REPAIR_ANSWERS_PER_INTERVAL: usize = 4;

/// What the replicator asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum StateEffect {
    /// Send `payload` (a [`StateMessage`] encoding) to `to`, sealed by the gossip envelope.
    Send {
        /// A peer's gossip address.
        to: SocketAddr,
        /// The encoded message, at most `packet_bytes_max` bytes.
        payload: Vec<u8>,
    },
    /// Remote entries that changed the map (each the key's whole entry after the merge): the
    /// driver appends them to the store. They need no fsync of their own: a crash that loses
    /// them loses nothing acknowledged, and anti-entropy fetches them again.
    Persist(Vec<Delta>),
}

/// Counters of what the replicator did, for metrics and the simulator's byte figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicatorStats {
    /// State packets handed to the driver.
    pub packets_sent: u64,
    /// Their payload bytes (without the gossip envelope).
    pub bytes_sent: u64,
    /// State packets received.
    pub packets_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Received packets refused as malformed (bad version, does not decode, bad shape).
    pub dropped: u64,
    /// Remote deltas that changed the map.
    pub deltas_merged: u64,
    /// Remote deltas the map refused (a clock too far ahead, a limit); the rest of their
    /// packet is still merged.
    pub deltas_refused: u64,
    /// Anti-entropy rounds started by this member.
    pub anti_entropy_rounds: u64,
    /// Deltas received by anti-entropy that changed the map (what the epidemic had missed).
    pub repaired_keys: u64,
    /// Keys not queued for push because the queue was full (anti-entropy delivers them).
    pub queue_overflow: u64,
    /// Entries too large even for a packet of their own (`PAYLOAD_BYTES_MAX`), not sent: a
    /// counter written by about a thousand members with long node ids.
    pub oversize_deltas: u64,
    /// Tombstones removed by garbage collection after their grace period.
    pub tombstones_collected: u64,
    /// Repair answers cut short or skipped because this interval's repair budget was spent.
    pub repairs_throttled: u64,
}

/// The replicator: owns the [`SharedMap`] and turns writes, packets and ticks into
/// [`StateEffect`]s.
///
/// ```
/// use ha_core::{Millis, NodeId};
/// use ha_gossip::{ReplicatorSettings, SharedMap, StateEffect, StateLimits, StateReplicator};
///
/// let node = |name: &str| SharedMap::new(NodeId::new(name).unwrap(), StateLimits::default());
/// let (a_addr, b_addr) = ("127.0.0.1:7001".parse().unwrap(), "127.0.0.1:7002".parse().unwrap());
/// let mut a = StateReplicator::new(node("a"), ReplicatorSettings::default(), 1);
/// let mut b = StateReplicator::new(node("b"), ReplicatorSettings::default(), 2);
/// a.set_peers(vec![b_addr]);
/// b.set_peers(vec![a_addr]);
/// a.put(Millis(0), 1_000, "colour", b"blue".to_vec()).unwrap();
/// // The write is pushed after push_interval_ms (20 ms by default).
/// a.on_tick(Millis(20), 1_020);
/// for effect in a.drain_effects() {
///     if let StateEffect::Send { to, payload } = effect {
///         assert_eq!(to, b_addr);
///         b.on_packet(Millis(21), 1_021, a_addr, &payload);
///     }
/// }
/// assert_eq!(b.map().get("colour").map(|value| value.stamp.node.to_string()), Some("a".into()));
/// ```
pub struct StateReplicator {
    map: SharedMap,
    settings: ReplicatorSettings,
    rng: StdRng,
    peers: Vec<SocketAddr>,
    /// Keys whose entries go out at the next push, with the hops left to give them.
    queue: BTreeMap<String, u8>,
    push_due_at: Option<Millis>,
    /// `None` until the first tick, which draws the first round's time.
    anti_entropy_due_at: Option<Millis>,
    /// Repair packets this member may still send before the next anti-entropy round.
    repair_packets_left: usize,
    effects: Vec<StateEffect>,
    stats: ReplicatorStats,
}

impl StateReplicator {
    /// A replicator around `map` (fresh or loaded from a store). `seed` seeds peer choice and
    /// timer jitter.
    pub fn new(map: SharedMap, settings: ReplicatorSettings, seed: u64) -> Self {
        let settings = settings.clamped();
        Self {
            repair_packets_left: repair_budget(&settings),
            map,
            settings,
            rng: StdRng::seed_from_u64(seed),
            peers: Vec::new(),
            queue: BTreeMap::new(),
            push_due_at: None,
            anti_entropy_due_at: None,
            effects: Vec::new(),
            stats: ReplicatorStats::default(),
        }
    }

    /// The map, for reads.
    pub fn map(&self) -> &SharedMap {
        &self.map
    }

    /// The settings in force (clamped).
    pub fn settings(&self) -> &ReplicatorSettings {
        &self.settings
    }

    /// Write `value` under `key` locally and queue it for push.
    ///
    /// # Errors
    /// As [`SharedMap::put`]; nothing changed and nothing is queued.
    pub fn put(
        &mut self,
        now: Millis,
        wall_ms: u64,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Delta, StateError> {
        let delta = self.map.put(wall_ms, key, value)?;
        self.queue_local(now, key);
        Ok(delta)
    }

    /// Delete `key` locally (a tombstone) and queue it for push. `Ok(None)`: the key was
    /// absent or already deleted, nothing to send.
    ///
    /// # Errors
    /// As [`SharedMap::delete`]; nothing changed.
    pub fn delete(
        &mut self,
        now: Millis,
        wall_ms: u64,
        key: &str,
    ) -> Result<Option<Delta>, StateError> {
        let delta = self.map.delete(wall_ms, key)?;
        if delta.is_some() {
            self.queue_local(now, key);
        }
        Ok(delta)
    }

    /// Add `by` to the counter `key` locally and queue it for push; returns the new value.
    ///
    /// # Errors
    /// As [`SharedMap::increment`]; nothing changed.
    pub fn increment(
        &mut self,
        now: Millis,
        wall_ms: u64,
        key: &str,
        by: i64,
    ) -> Result<(i64, Delta), StateError> {
        let (value, delta) = self.map.increment(wall_ms, key, by)?;
        self.queue_local(now, key);
        Ok((value, delta))
    }

    /// The members to replicate with: every reachable member other than this one (the
    /// gossip view). Duplicates are ignored.
    pub fn set_peers(&mut self, mut peers: Vec<SocketAddr>) {
        peers.sort_unstable();
        peers.dedup();
        self.peers = peers;
    }

    /// The peers in use, sorted.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// A state packet from `from`. A malformed packet is counted in
    /// [`ReplicatorStats::dropped`] and changes nothing; a delta the map refuses is counted in
    /// [`ReplicatorStats::deltas_refused`] and the rest of the packet still applies.
    pub fn on_packet(&mut self, now: Millis, wall_ms: u64, from: SocketAddr, payload: &[u8]) {
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;
        let message = match StateMessage::decode(payload) {
            Ok(message) => message,
            Err(error) => {
                self.stats.dropped += 1;
                tracing::debug!(%from, %error, "state packet dropped");
                return;
            }
        };
        match message {
            StateMessage::Push { hops_left, deltas } => {
                self.merge_remote(now, wall_ms, deltas, hops_left.checked_sub(1), false);
            }
            StateMessage::Repair { deltas } => {
                let hops = self.settings.relay_hops_for(self.peers.len());
                self.merge_remote(now, wall_ms, deltas, Some(hops), true);
            }
            StateMessage::Probe { root } => {
                let digest = self.map.digest();
                if digest_root(&digest.buckets) != root {
                    self.send(
                        from,
                        &StateMessage::Digest {
                            buckets: digest.buckets,
                        },
                    );
                }
            }
            StateMessage::Digest { buckets } => {
                let differing = self.map.differing_buckets(&Digest { buckets });
                if !differing.is_empty() {
                    self.send(
                        from,
                        &StateMessage::Pull {
                            buckets: differing.clone(),
                        },
                    );
                    self.send_repair(from, &differing);
                }
            }
            StateMessage::Pull { buckets } => self.send_repair(from, &buckets),
        }
    }

    /// Timers: push the queued batch when due, start an anti-entropy round and collect old
    /// tombstones when due. Calling it early does nothing that is not due.
    pub fn on_tick(&mut self, now: Millis, wall_ms: u64) {
        if self.push_due_at.is_some_and(|due| due <= now) {
            self.push_due_at = None;
            self.push_queue();
        }
        match self.anti_entropy_due_at {
            None => {
                // The first round comes at a random point of the first interval, so members
                // started together do not probe in step.
                let first = self
                    .rng
                    .random_range(0..=self.settings.anti_entropy_interval_ms);
                self.anti_entropy_due_at = Some(now + first);
            }
            Some(due) if due <= now => {
                self.repair_packets_left = repair_budget(&self.settings);
                self.anti_entropy_round();
                let collected = self.map.collect_tombstones(wall_ms);
                self.stats.tombstones_collected += collected as u64;
                let interval = self.settings.anti_entropy_interval_ms;
                let next = self
                    .rng
                    .random_range(interval * 3 / 4..=interval + interval / 4);
                self.anti_entropy_due_at = Some(now + next);
            }
            Some(_) => {}
        }
    }

    /// When [`on_tick`](Self::on_tick) has something to do next (`Millis::ZERO`: now).
    pub fn next_tick_at(&self) -> Millis {
        let anti_entropy = self.anti_entropy_due_at.unwrap_or(Millis::ZERO);
        self.push_due_at
            .map_or(anti_entropy, |push| push.min(anti_entropy))
    }

    /// The effects produced since the last call, in order.
    pub fn drain_effects(&mut self) -> Vec<StateEffect> {
        self.debug_check_invariants();
        std::mem::take(&mut self.effects)
    }

    /// Counters so far.
    pub fn stats(&self) -> ReplicatorStats {
        self.stats
    }

    /// Keys waiting for the next push.
    pub fn queued_keys(&self) -> usize {
        self.queue.len()
    }

    /// What must hold after every input; checked in debug builds (the simulator's) each time
    /// the driver drains effects, which it does after every input. O(1).
    fn debug_check_invariants(&self) {
        debug_assert!(
            self.queue.len() <= self.settings.queue_keys_max,
            "push queue of {} keys over queue_keys_max {}",
            self.queue.len(),
            self.settings.queue_keys_max
        );
        debug_assert!(
            self.queue.is_empty() || self.push_due_at.is_some(),
            "{} queued keys and no push scheduled: they would never leave",
            self.queue.len()
        );
        debug_assert!(
            self.repair_packets_left <= repair_budget(&self.settings),
            "repair budget above its maximum"
        );
    }

    fn queue_local(&mut self, now: Millis, key: &str) {
        let hops = self.settings.relay_hops_for(self.peers.len());
        self.enqueue(now, key, hops);
    }

    fn enqueue(&mut self, now: Millis, key: &str, hops: u8) {
        if let Some(queued) = self.queue.get_mut(key) {
            *queued = (*queued).max(hops);
        } else if self.queue.len() < self.settings.queue_keys_max {
            self.queue.insert(key.to_owned(), hops);
        } else {
            self.stats.queue_overflow += 1;
            return;
        }
        if self.push_due_at.is_none() {
            self.push_due_at = Some(now + self.settings.push_interval_ms);
        }
    }

    fn merge_remote(
        &mut self,
        now: Millis,
        wall_ms: u64,
        deltas: Vec<Delta>,
        relay_hops: Option<u8>,
        repair: bool,
    ) {
        let mut changed = Vec::new();
        for delta in deltas {
            let key = delta.key.clone();
            match self.map.merge(wall_ms, delta) {
                Ok(true) => {
                    self.stats.deltas_merged += 1;
                    if repair {
                        self.stats.repaired_keys += 1;
                    }
                    if let Some(entry) = self.map.entry(&key) {
                        changed.push(Delta {
                            key: key.clone(),
                            entry: entry.clone(),
                        });
                    }
                    if let Some(hops) = relay_hops {
                        self.enqueue(now, &key, hops);
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    self.stats.deltas_refused += 1;
                    tracing::debug!(%key, %error, "remote delta refused");
                }
            }
        }
        if !changed.is_empty() {
            self.effects.push(StateEffect::Persist(changed));
        }
    }

    fn push_queue(&mut self) {
        let queue = std::mem::take(&mut self.queue);
        if self.peers.is_empty() {
            return;
        }
        let mut by_hops: BTreeMap<u8, Vec<Delta>> = BTreeMap::new();
        for (key, hops) in queue {
            // The entry as it is now: later writes and merges of the key since it was queued
            // are joined into it, so one delta per key carries all of them.
            if let Some(entry) = self.map.entry(&key) {
                by_hops.entry(hops).or_default().push(Delta {
                    key,
                    entry: entry.clone(),
                });
            }
        }
        let targets = self.random_peers(self.settings.fanout);
        for (hops_left, deltas) in by_hops {
            let (packets, oversize) = pack(
                deltas.into_iter(),
                self.settings.packet_bytes_max,
                usize::MAX,
                |deltas| StateMessage::Push { hops_left, deltas },
            );
            self.stats.oversize_deltas += oversize;
            for packet in packets {
                for to in &targets {
                    self.send_payload(*to, packet.clone());
                }
            }
        }
    }

    fn anti_entropy_round(&mut self) {
        let Some(peer) = self.random_peers(1).first().copied() else {
            return;
        };
        self.stats.anti_entropy_rounds += 1;
        let root = digest_root(&self.map.digest().buckets);
        self.send(peer, &StateMessage::Probe { root });
    }

    /// Send `to` this map's entries of `buckets`, at most `repair_packets_max` packets.
    ///
    /// When the buckets hold more than fits, a random subset of them is sent, starting at a
    /// random entry and wrapping around: a fixed prefix would be resent every round while the
    /// rest never went, so a large difference is repaired over rounds instead of stalling.
    fn send_repair(&mut self, to: SocketAddr, buckets: &[u16]) {
        let packets_max = self
            .settings
            .repair_packets_max
            .min(self.repair_packets_left);
        if packets_max < self.settings.repair_packets_max {
            self.stats.repairs_throttled += 1;
        }
        if packets_max == 0 {
            return;
        }
        let budget_bytes = packets_max.saturating_mul(self.settings.packet_bytes_max);
        let stats = self.map.stats();
        let entries = (stats.live + stats.tombstones).max(1);
        let bytes_per_bucket = (stats.bytes / BUCKETS).max(1) + entries / BUCKETS * 16;
        let buckets_fitting = (budget_bytes / bytes_per_bucket).max(1);
        let chosen: Vec<u16> = if buckets.len() > buckets_fitting {
            rand::seq::index::sample(&mut self.rng, buckets.len(), buckets_fitting)
                .into_iter()
                .map(|index| buckets[index])
                .collect()
        } else {
            buckets.to_vec()
        };
        let total = self.map.entries_in_buckets(&chosen, None).count();
        if total == 0 {
            return;
        }
        let start = self.rng.random_range(0..total);
        let deltas = self
            .map
            .entries_in_buckets(&chosen, None)
            .skip(start)
            .chain(self.map.entries_in_buckets(&chosen, None).take(start))
            .map(|(key, entry)| Delta {
                key: key.clone(),
                entry: entry.clone(),
            });
        let (packets, oversize) = pack(
            deltas,
            self.settings.packet_bytes_max,
            packets_max,
            |deltas| StateMessage::Repair { deltas },
        );
        self.stats.oversize_deltas += oversize;
        self.repair_packets_left = self.repair_packets_left.saturating_sub(packets.len());
        for packet in packets {
            self.send_payload(to, packet);
        }
    }

    /// Up to `count` distinct random peers.
    fn random_peers(&mut self, count: usize) -> Vec<SocketAddr> {
        let amount = count.min(self.peers.len());
        rand::seq::index::sample(&mut self.rng, self.peers.len(), amount)
            .into_iter()
            .map(|index| self.peers[index])
            .collect()
    }

    fn send(&mut self, to: SocketAddr, message: &StateMessage) {
        self.send_payload(to, message.encode());
    }

    fn send_payload(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.effects.push(StateEffect::Send { to, payload });
    }
}

fn repair_budget(settings: &ReplicatorSettings) -> usize {
    settings
        .repair_packets_max
        .saturating_mul(REPAIR_ANSWERS_PER_INTERVAL)
}

/// Split `deltas` into encoded messages of at most `packet_bytes_max` bytes each, at most
/// `packets_max` of them (the rest of `deltas` is not even cloned). A delta larger than that
/// goes alone in a packet of up to `PAYLOAD_BYTES_MAX` bytes; one larger still is left out and
/// counted in the second result.
fn pack(
    deltas: impl Iterator<Item = Delta>,
    packet_bytes_max: usize,
    packets_max: usize,
    message: impl Fn(Vec<Delta>) -> StateMessage,
) -> (Vec<Vec<u8>>, u64) {
    let budget = packet_bytes_max.saturating_sub(MESSAGE_OVERHEAD_BYTES);
    let mut packets = Vec::new();
    let mut oversize = 0;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for delta in deltas {
        if packets.len() >= packets_max {
            return (packets, oversize);
        }
        let bytes = postcard::experimental::serialized_size(&delta).unwrap_or(usize::MAX);
        if bytes > budget {
            // Alone in a larger packet (IP fragments it), or not at all.
            if bytes.saturating_add(MESSAGE_OVERHEAD_BYTES) <= PAYLOAD_BYTES_MAX {
                packets.push(message(vec![delta]).encode());
            } else {
                oversize += 1;
            }
            continue;
        }
        if batch_bytes + bytes > budget {
            packets.push(message(std::mem::take(&mut batch)).encode());
            batch_bytes = 0;
            if packets.len() >= packets_max {
                return (packets, oversize);
            }
        }
        batch_bytes += bytes;
        batch.push(delta);
    }
    if !batch.is_empty() && packets.len() < packets_max {
        packets.push(message(batch).encode());
    }
    (packets, oversize)
}

impl std::fmt::Debug for StateReplicator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StateReplicator")
            .field("node", self.map.node())
            .field("peers", &self.peers.len())
            .field("queued_keys", &self.queue.len())
            .field("stats", &self.stats)
            .finish()
    }
}
