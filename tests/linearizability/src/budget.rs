//! How much work one call to [`check`](crate::check) may do before giving up.

use std::time::{Duration, Instant};

/// The most work one call to [`check`](crate::check) may do, over all keys together.
///
/// Checking linearizability is NP-complete in general, so a pathological history (many
/// overlapping operations with ambiguous results) could search for a very long time; the
/// budget turns that into [`CheckResult::Timeout`](crate::CheckResult::Timeout) instead of a
/// hung CI job. A step is one visit of one entry of the search, so `steps_max` gives the same
/// answer on every machine; `duration_max` is a wall-clock safety net on top of it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use ha_linearizability::Budget;
///
/// let budget = Budget::steps(1_000_000).with_duration_max(Duration::from_secs(10));
/// assert_eq!(budget.steps_max, 1_000_000);
/// assert_eq!(budget.duration_max, Some(Duration::from_secs(10)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The most search steps over all keys.
    pub steps_max: u64,
    /// The most wall-clock time, if any; it makes the outcome depend on the machine, so
    /// deterministic tests rely on `steps_max`.
    pub duration_max: Option<Duration>,
}

impl Budget {
    /// The default step limit. A linearizable history of 50,000 operations over 10 keys,
    /// 10% of them timed out, takes under 100,000 steps, and all 50,000 on one key about
    /// 1.3 million; a step costs 0.1 to 1 µs unoptimized. So this is far more than ordinary
    /// histories need, and still ends a pathological search within about 20 seconds.
    pub const STEPS_MAX_DEFAULT: u64 = 20_000_000;

    /// The default wall-clock limit, in case steps are slower than measured.
    pub const DURATION_MAX_DEFAULT: Duration = Duration::from_secs(60);

    /// A budget of `steps_max` steps and no wall-clock limit.
    pub const fn steps(steps_max: u64) -> Self {
        Self {
            steps_max,
            duration_max: None,
        }
    }

    /// The same budget with a wall-clock limit as well.
    pub const fn with_duration_max(self, duration_max: Duration) -> Self {
        Self {
            duration_max: Some(duration_max),
            ..self
        }
    }
}

impl Default for Budget {
    /// [`Budget::STEPS_MAX_DEFAULT`] steps and [`Budget::DURATION_MAX_DEFAULT`].
    fn default() -> Self {
        Self::steps(Self::STEPS_MAX_DEFAULT).with_duration_max(Self::DURATION_MAX_DEFAULT)
    }
}

/// What is left of a [`Budget`] while a check runs.
#[derive(Debug)]
pub(crate) struct BudgetTracker {
    steps: u64,
    steps_max: u64,
    deadline: Option<Instant>,
}

impl BudgetTracker {
    /// Reading the clock on every step would cost more than the step itself.
    const STEPS_PER_CLOCK_READ: u64 = 4096;

    pub(crate) fn start(budget: &Budget) -> Self {
        Self {
            steps: 0,
            steps_max: budget.steps_max,
            deadline: budget
                .duration_max
                .and_then(|duration| Instant::now().checked_add(duration)),
        }
    }

    /// Counts one step; false once the budget is spent.
    pub(crate) fn spend_step(&mut self) -> bool {
        if self.steps >= self.steps_max {
            return false;
        }
        self.steps += 1;
        if self.steps.is_multiple_of(Self::STEPS_PER_CLOCK_READ)
            && let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            // Pin the count at the limit so every later call also reports exhaustion.
            self.steps_max = self.steps;
            return false;
        }
        true
    }

    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }
}
