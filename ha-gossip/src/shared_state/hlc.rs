//! Hybrid logical clock: wall time in milliseconds plus a logical counter, so stamps follow
//! real time closely and still grow past every stamp a node has seen.

use serde::{Deserialize, Serialize};

use super::StateError;

/// A hybrid logical clock reading, ordered by (`wall_ms`, `logical`).
///
/// `Hlc::default()` (0, 0) is never produced by [`HlcClock::tick`]; it is the generation of a
/// counter created on an absent key.
///
/// ```
/// use ha_gossip::Hlc;
/// assert!(Hlc { wall_ms: 5, logical: 9 } < Hlc { wall_ms: 6, logical: 0 });
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch of the wall clock that made it (or of the largest
    /// stamp that clock had seen).
    pub wall_ms: u64,
    /// Orders readings within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// The zero reading (0, 0).
    pub const ZERO: Hlc = Hlc {
        wall_ms: 0,
        logical: 0,
    };

    /// The next reading after `self` when the wall clock does not move forward.
    fn successor(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc {
                wall_ms: self.wall_ms,
                logical,
            },
            // 4 billion writes in one millisecond: borrow the next millisecond. Saturates at
            // the end of time rather than panic (only a corrupt stamp gets there).
            None => Hlc {
                wall_ms: self.wall_ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

/// The clock of one node: every reading it hands out is larger than every reading it handed
/// out or observed before, and close to the wall clock.
///
/// It takes the wall time as an argument (`wall_ms`) and never reads a clock itself, so the
/// map stays deterministic under the simulator.
///
/// ```
/// use ha_gossip::{Hlc, HlcClock};
/// let mut clock = HlcClock::new(60_000);
/// let first = clock.tick(1_000);
/// clock.observe(Hlc { wall_ms: 2_000, logical: 7 }, 1_000).unwrap();
/// let second = clock.tick(1_001);
/// assert!(second > Hlc { wall_ms: 2_000, logical: 7 } && second > first);
/// // A stamp two minutes ahead of our wall clock is refused.
/// assert!(clock.observe(Hlc { wall_ms: 200_000, logical: 0 }, 1_001).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
    drift_ms_max: u64,
}

impl HlcClock {
    /// A clock that has seen nothing, refusing remote readings more than `drift_ms_max`
    /// ahead of the wall clock.
    pub fn new(drift_ms_max: u64) -> Self {
        Self {
            last: Hlc::ZERO,
            drift_ms_max,
        }
    }

    /// A new reading for a local write: the wall clock if it is ahead of everything seen,
    /// otherwise the last reading plus one logical step.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let next = if wall_ms > self.last.wall_ms {
            Hlc {
                wall_ms,
                logical: 0,
            }
        } else {
            self.last.successor()
        };
        self.last = next;
        next
    }

    /// Takes in a reading from a peer, so later local readings are larger.
    ///
    /// # Errors
    /// [`StateError::ClockAhead`] when `remote` is more than `drift_ms_max` ahead of `wall_ms`;
    /// the clock is unchanged.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), StateError> {
        self.check_drift(remote, wall_ms)?;
        self.advance_to(remote);
        Ok(())
    }

    /// The drift check of [`HlcClock::observe`] without taking the reading in.
    ///
    /// # Errors
    /// [`StateError::ClockAhead`] when `remote` is more than `drift_ms_max` ahead of `wall_ms`.
    pub fn check_drift(&self, remote: Hlc, wall_ms: u64) -> Result<(), StateError> {
        if remote.wall_ms > wall_ms.saturating_add(self.drift_ms_max) {
            return Err(StateError::ClockAhead {
                ahead_ms: remote.wall_ms - wall_ms,
            });
        }
        Ok(())
    }

    /// Takes in a reading without the drift check: for stamps this node stored itself (the
    /// store advances the clock past them on start).
    pub fn advance_to(&mut self, reading: Hlc) {
        self.last = self.last.max(reading);
    }

    /// The largest reading handed out or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The drift bound given to [`HlcClock::new`], in milliseconds.
    pub fn drift_ms_max(&self) -> u64 {
        self.drift_ms_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_the_wall_clock_and_never_goes_back() {
        let mut clock = HlcClock::new(1_000);
        assert_eq!(
            clock.tick(10),
            Hlc {
                wall_ms: 10,
                logical: 0
            }
        );
        assert_eq!(
            clock.tick(10),
            Hlc {
                wall_ms: 10,
                logical: 1
            }
        );
        // The wall clock stepped back: the logical part keeps order.
        assert_eq!(
            clock.tick(5),
            Hlc {
                wall_ms: 10,
                logical: 2
            }
        );
        assert_eq!(
            clock.tick(11),
            Hlc {
                wall_ms: 11,
                logical: 0
            }
        );
    }

    #[test]
    fn the_first_tick_at_time_zero_is_not_the_zero_reading() {
        let mut clock = HlcClock::new(0);
        assert!(clock.tick(0) > Hlc::ZERO);
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let mut clock = HlcClock::new(0);
        clock.advance_to(Hlc {
            wall_ms: 7,
            logical: u32::MAX,
        });
        assert_eq!(
            clock.tick(7),
            Hlc {
                wall_ms: 8,
                logical: 0
            }
        );
        clock.advance_to(Hlc {
            wall_ms: u64::MAX,
            logical: u32::MAX,
        });
        // Saturates instead of panicking.
        assert_eq!(
            clock.tick(0),
            Hlc {
                wall_ms: u64::MAX,
                logical: 0
            }
        );
    }

    #[test]
    fn observe_refuses_a_clock_too_far_ahead_and_keeps_the_clock() {
        let mut clock = HlcClock::new(100);
        assert_eq!(
            clock.observe(
                Hlc {
                    wall_ms: 1_100,
                    logical: 3
                },
                1_000
            ),
            Ok(())
        );
        assert_eq!(
            clock.last(),
            Hlc {
                wall_ms: 1_100,
                logical: 3
            }
        );
        assert_eq!(
            clock.observe(
                Hlc {
                    wall_ms: 1_101,
                    logical: 0
                },
                1_000
            ),
            Err(StateError::ClockAhead { ahead_ms: 101 })
        );
        assert_eq!(
            clock.last(),
            Hlc {
                wall_ms: 1_100,
                logical: 3
            }
        );
        assert_eq!(
            clock.observe(
                Hlc {
                    wall_ms: u64::MAX,
                    logical: 0
                },
                u64::MAX - 5
            ),
            Ok(()),
            "no overflow near the end of time"
        );
    }
}
