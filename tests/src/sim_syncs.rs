//! Syncs as a simulated node's storage thread does them: each
//! [`ReplicaEffect::Sync`](ha_replicate::replica::ReplicaEffect::Sync) completes after a
//! seeded delay, one at a time and in the order asked, so messages and answers really wait in
//! the replica's durability gate, and a crash meanwhile loses the writes they rest on.
//!
//! Durability is modelled honestly: a write is on the disk only once a sync that covers it
//! has completed ([`MemoryDisk`](ha_replicate::storage::memory::MemoryDisk) keeps the rest
//! apart), the completion is what reports `on_persisted`, and most crashes lose every write
//! not yet reported durable ([`crash_keeps`]). Some syncs are slow ([`SyncDelays`]), so the
//! window in which a crash can land between a write and its report is wide enough for the
//! fault sweeps to hit it: a build that sends before durable (the mutation
//! [`SimMutation::SendBeforeDurable`]) loses acknowledged writes there.

use std::collections::VecDeque;

use ha_core::Millis;
use ha_replicate::engine::PersistId;

/// How long a simulated sync takes at least, in virtual milliseconds.
pub const SYNC_DELAY_MS: u64 = 1;

/// How long a sync takes: [`SYNC_DELAY_MS`] to `ms_max` (an fsync is often slower than a LAN
/// round trip, so an acknowledgement that waits for it is visibly later than one that does
/// not), or, one sync in `slow_one_in`, a slow one of up to `slow_ms_max` (a disk with a burst
/// of other work, a stalled fsync).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncDelays {
    /// The longest ordinary sync, in virtual milliseconds.
    pub ms_max: u64,
    /// One sync in this many is slow (0: none is).
    pub slow_one_in: u64,
    /// The longest slow sync, in virtual milliseconds.
    pub slow_ms_max: u64,
}

impl SyncDelays {
    /// What the sweeps run with: 1 to 15 ms (slower than a LAN round trip, as an fsync is),
    /// one sync in 8 up to 60 ms.
    pub const fn honest() -> Self {
        Self {
            ms_max: 15,
            slow_one_in: 8,
            slow_ms_max: 60,
        }
    }

    /// Every sync takes [`SYNC_DELAY_MS`] (for scenarios about something else that a slow disk
    /// would only slow down).
    pub const fn fixed() -> Self {
        Self {
            ms_max: SYNC_DELAY_MS,
            slow_one_in: 0,
            slow_ms_max: SYNC_DELAY_MS,
        }
    }
}

impl Default for SyncDelays {
    fn default() -> Self {
        Self::honest()
    }
}

/// A deliberate bug the simulated harness can plant, to show that the sweeps catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimMutation {
    /// The harness reports every sync durable (`on_persisted`) the moment it is asked for,
    /// while the disk still makes the writes durable only after the sync's delay: votes,
    /// append acknowledgements and client answers leave before what they promise is on disk,
    /// and a leader counts its own log towards a commit before it is durable. This is what a
    /// durability gate that released `After::Durable` at once would do.
    SendBeforeDurable,
}

/// Environment variable: plant a [`SimMutation`] in every simulated node
/// (`send-before-durable`), to check that a sweep catches it.
pub const MUTATION_VARIABLE: &str = "HA_SIM_MUTATION";

impl SimMutation {
    /// The mutation named by [`MUTATION_VARIABLE`], if set.
    ///
    /// # Panics
    /// When the variable names no mutation (a typo must not silently run the real code).
    pub fn from_env() -> Option<Self> {
        let text = std::env::var(MUTATION_VARIABLE).ok()?;
        match text.trim() {
            "" => None,
            "send-before-durable" => Some(Self::SendBeforeDurable),
            other => {
                panic!("{MUTATION_VARIABLE}={other:?}: the only mutation is send-before-durable")
            }
        }
    }
}

/// How many unsynced writes a crash of a node restarted with `seed` keeps (the `choice`
/// handed to `MemoryDisk::crash`): three crashes in four lose every write not yet reported
/// durable; the fourth keeps a seeded prefix of them (a torn tail, which a real disk may also
/// leave).
pub fn crash_keeps(seed: u64) -> u64 {
    if seed.is_multiple_of(4) { seed / 4 } else { 0 }
}

/// The syncs a simulated node asked for and that have not completed, oldest first.
#[derive(Debug)]
pub struct SimSyncs {
    pending: VecDeque<PersistId>,
    delays: SyncDelays,
    /// When the sync asked last completes: the next one starts after it (one storage thread).
    busy_until: Millis,
    /// splitmix64 state: the delays are a function of the node's start seed.
    state: u64,
}

impl SimSyncs {
    /// No sync pending; delays drawn from `seed`.
    pub fn new(seed: u64, delays: SyncDelays) -> Self {
        Self {
            pending: VecDeque::new(),
            delays,
            busy_until: Millis(0),
            state: seed ^ 0x5eed_5eed_5eed_5eed,
        }
    }

    /// A sync through `through` was asked for at virtual time `now`: returns after how many
    /// virtual milliseconds the caller should call [`complete`](Self::complete). It starts
    /// once every sync asked before it is done, so completions keep the order asked.
    pub fn request(&mut self, now: Millis, through: PersistId) -> u64 {
        self.pending.push_back(through);
        let spread = self.delays.ms_max.saturating_sub(SYNC_DELAY_MS);
        let mut delay = SYNC_DELAY_MS + self.next() % (spread + 1);
        if self.delays.slow_one_in > 0 && self.next().is_multiple_of(self.delays.slow_one_in) {
            let extra = self.delays.slow_ms_max.saturating_sub(delay);
            delay += self.next() % (extra + 1);
        }
        let done = self.busy_until.max(now) + delay;
        self.busy_until = done;
        done.0 - now.0
    }

    /// The oldest pending sync completes (syncs finish in the order asked, as on one storage
    /// thread): the write id to report durable.
    pub fn complete(&mut self) -> Option<PersistId> {
        self.pending.pop_front()
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_complete_in_the_order_asked_with_bounded_seeded_delays() {
        let delays = SyncDelays::honest();
        let mut syncs = SimSyncs::new(7, delays);
        let mut again = SimSyncs::new(7, delays);
        let mut slow = 0;
        // Asked far apart: each sync runs alone on the disk.
        for id in 1..=400 {
            let now = Millis(id * 100);
            let delay = syncs.request(now, PersistId(id));
            assert!(
                (SYNC_DELAY_MS..=delays.slow_ms_max).contains(&delay),
                "{delay} ms"
            );
            if delay > delays.ms_max {
                slow += 1;
            }
            assert_eq!(
                delay,
                again.request(now, PersistId(id)),
                "same seed, same delays"
            );
        }
        assert!((10..=100).contains(&slow), "{slow} of 400 syncs were slow");
        // Asked in a burst: each ends after the one asked before it.
        let mut previous_done = 0;
        for id in 401..=800 {
            let now = Millis(100_000 + id);
            let done = now.0 + syncs.request(now, PersistId(id));
            assert!(
                done > previous_done,
                "sync {id} ends before the one asked before it"
            );
            previous_done = done;
        }
        for id in 1..=800 {
            assert_eq!(syncs.complete(), Some(PersistId(id)));
        }
        assert_eq!(syncs.complete(), None);
    }

    #[test]
    fn fixed_delays_are_never_slow() {
        let mut syncs = SimSyncs::new(3, SyncDelays::fixed());
        for id in 1..=100 {
            assert_eq!(syncs.request(Millis(id * 5), PersistId(id)), SYNC_DELAY_MS);
        }
    }

    #[test]
    fn most_crashes_lose_every_unsynced_write() {
        let losing_all = (0..1_000).filter(|seed| crash_keeps(*seed) == 0).count();
        assert!((700..=800).contains(&losing_all), "{losing_all}");
    }
}
