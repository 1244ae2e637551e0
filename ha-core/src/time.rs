//! Monotonic time in milliseconds, injected into every core.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A point on a monotonic clock, in milliseconds since an arbitrary origin (the node's start, or
/// the simulator's zero).
///
/// Cores never read a clock: their driver passes `now: Millis` with every input. Wall-clock
/// time is never used for safety.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    /// The origin.
    pub const ZERO: Millis = Millis(0);

    /// Milliseconds from `earlier` to `self`, or 0 when `earlier` is later.
    pub fn saturating_since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This point plus a duration, saturating at the end of time.
    pub fn plus_duration(self, duration: Duration) -> Millis {
        let added = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(added))
    }

    /// The offset from the origin as a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, milliseconds: u64) -> Millis {
        Millis(self.0.saturating_add(milliseconds))
    }
}

impl Sub<Millis> for Millis {
    type Output = u64;
    fn sub(self, earlier: Millis) -> u64 {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}ms", self.0)
    }
}

/// A source of monotonic time. Drivers hold one; cores only see the [`Millis`] it returns.
pub trait Clock: Send + Sync {
    /// The current time. Never goes backwards.
    fn now(&self) -> Millis;
}

/// The process's monotonic clock ([`Instant`]), counted from when this value was made.
///
/// ```
/// use ha_core::{Clock, MonotonicClock};
/// let clock = MonotonicClock::new();
/// let first = clock.now();
/// assert!(clock.now() >= first);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The instant this clock calls zero, for converting back to tokio deadlines.
    pub fn origin(&self) -> Instant {
        self.origin
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Millis {
        let elapsed = self.origin.elapsed().as_millis();
        Millis(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Millis(5) - Millis(9), 0);
        assert_eq!(Millis(u64::MAX) + 1, Millis(u64::MAX));
        assert_eq!(
            Millis(10).plus_duration(Duration::from_millis(5)),
            Millis(15)
        );
        assert_eq!(Millis(7).saturating_since(Millis(2)), 5);
    }
}
