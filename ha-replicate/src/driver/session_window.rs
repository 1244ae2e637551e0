//! The writes of one client session in flight: which sequences are unanswered, so that every
//! write (and every retry of one) tells the applier the lowest of them.

use std::collections::BTreeSet;

use crate::replica::SESSION_RESPONSES_MAX;

/// Most writes of one session between its lowest unanswered sequence and its next one. The
/// applier keeps a response for each applied write from the lowest unanswered sequence on,
/// and refuses a write when it keeps [`SESSION_RESPONSES_MAX`]; a client that never lets this
/// span reach that bound is never refused for it. A writer past it waits for older writes to
/// be answered (or given up on).
pub const SESSION_WRITES_IN_FLIGHT_MAX: u64 = SESSION_RESPONSES_MAX as u64;

/// The sequences of one session: the next to hand out and those not answered yet.
#[derive(Debug)]
pub(crate) struct SessionWindow {
    next_sequence: u64,
    unanswered: BTreeSet<u64>,
}

impl SessionWindow {
    /// A session that has written nothing.
    pub(crate) fn new() -> Self {
        Self {
            next_sequence: 1,
            unanswered: BTreeSet::new(),
        }
    }

    /// The lowest sequence with no answer yet (the next one when none is in flight).
    pub(crate) fn lowest_unanswered(&self) -> u64 {
        self.unanswered
            .first()
            .copied()
            .unwrap_or(self.next_sequence)
    }

    /// A sequence for a new write, or `None` while [`SESSION_WRITES_IN_FLIGHT_MAX`] sequences
    /// are between the lowest unanswered one and the next.
    pub(crate) fn begin(&mut self) -> Option<u64> {
        if self.next_sequence - self.lowest_unanswered() >= SESSION_WRITES_IN_FLIGHT_MAX {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.unanswered.insert(sequence);
        Some(sequence)
    }

    /// `sequence` was answered, or given up on: later writes let the applier forget it (and
    /// never apply it from then on).
    pub(crate) fn end(&mut self, sequence: u64) {
        self.unanswered.remove(&sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_unanswered_sequence_follows_the_oldest_write_in_flight() {
        let mut window = SessionWindow::new();
        assert_eq!(window.lowest_unanswered(), 1);
        let first = window.begin().unwrap();
        let second = window.begin().unwrap();
        assert_eq!((first, second), (1, 2));
        window.end(second);
        assert_eq!(window.lowest_unanswered(), 1);
        window.end(first);
        assert_eq!(window.lowest_unanswered(), 3);
    }

    #[test]
    fn a_stuck_write_bounds_how_far_later_ones_run_ahead() {
        let mut window = SessionWindow::new();
        let stuck = window.begin().unwrap();
        for _ in 1..SESSION_WRITES_IN_FLIGHT_MAX {
            let sequence = window.begin().unwrap();
            window.end(sequence);
        }
        assert_eq!(window.begin(), None);
        window.end(stuck);
        assert!(window.begin().is_some());
    }
}
