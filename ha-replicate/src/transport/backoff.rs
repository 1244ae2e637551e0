//! Reconnect delays: exponential with jitter, between a minimum and a maximum.
//!
//! Sans-IO: the caller supplies the random number, so the sequence is reproducible in tests.

/// The delay before each reconnect attempt to one peer.
///
/// The ceiling starts at the minimum and doubles after every failed attempt up to the maximum;
/// each delay is drawn from the upper half of the ceiling ("equal jitter"), never below the
/// minimum, so peers that lost the same node do not reconnect in lockstep yet never hammer it.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    delay_ms_min: u64,
    delay_ms_max: u64,
    ceiling_ms: u64,
}

impl Backoff {
    /// Delays from `delay_ms_min` to `delay_ms_max` (swapped if given in the wrong order).
    pub(crate) fn new(delay_ms_min: u64, delay_ms_max: u64) -> Self {
        let (delay_ms_min, delay_ms_max) = if delay_ms_min <= delay_ms_max {
            (delay_ms_min, delay_ms_max)
        } else {
            (delay_ms_max, delay_ms_min)
        };
        Self {
            delay_ms_min,
            delay_ms_max,
            ceiling_ms: delay_ms_min,
        }
    }

    /// The next delay, in milliseconds, given a uniformly random `random`.
    pub(crate) fn next_delay_ms(&mut self, random: u64) -> u64 {
        let ceiling_ms = self.ceiling_ms;
        let half_ms = ceiling_ms / 2;
        // `ceiling_ms - half_ms + 1` is at least 1 and at most 2^63 + 1, so the remainder is
        // defined and nothing overflows.
        let jitter_ms = random % (ceiling_ms - half_ms + 1);
        let delay_ms = (half_ms + jitter_ms).clamp(self.delay_ms_min, self.delay_ms_max);
        self.ceiling_ms = ceiling_ms.saturating_mul(2).min(self.delay_ms_max);
        delay_ms
    }

    /// Start again from the minimum (after a connection succeeded, or the address changed).
    pub(crate) fn reset(&mut self) {
        self.ceiling_ms = self.delay_ms_min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_stay_in_bounds() {
        let mut backoff = Backoff::new(20, 1_000);
        let mut ceilings = Vec::new();
        for attempt in 0..20u64 {
            let low = backoff.next_delay_ms(0);
            ceilings.push(backoff.ceiling_ms);
            assert!((20..=1_000).contains(&low), "attempt {attempt}: {low}");
        }
        assert_eq!(ceilings.last(), Some(&1_000));
        for random in [0, 1, 7, u64::MAX, 123_456_789] {
            let delay = backoff.next_delay_ms(random);
            assert!((500..=1_000).contains(&delay), "{delay}");
        }
        backoff.reset();
        assert!(backoff.next_delay_ms(u64::MAX) <= 20);
    }

    #[test]
    fn degenerate_bounds_do_not_panic() {
        let mut backoff = Backoff::new(0, 0);
        assert_eq!(backoff.next_delay_ms(u64::MAX), 0);
        let mut backoff = Backoff::new(10, 1);
        assert!((1..=10).contains(&backoff.next_delay_ms(3)));
        let mut backoff = Backoff::new(u64::MAX, u64::MAX);
        assert_eq!(backoff.next_delay_ms(u64::MAX), u64::MAX);
    }
}
