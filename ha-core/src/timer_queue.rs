//! Timers ordered by deadline, ties in scheduling order.

use std::collections::BTreeMap;

use crate::time::Millis;

/// Most timers pending at once. foca keeps a handful per probe and per suspect; hitting this
/// means a bug, and the oldest-deadline timers are still delivered.
pub const PENDING_TIMERS_MAX: usize = 1 << 20;

/// A queue of `(deadline, timer)`, delivered in deadline order. Timers with the same deadline
/// come out in the order they went in: foca relies on that (see foca issue 26).
#[derive(Debug)]
pub struct TimerQueue<T> {
    pending: BTreeMap<(Millis, u64), T>,
    next_sequence: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            next_sequence: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    /// Schedule `timer` at `deadline`. Returns false (and drops it) when the queue is full.
    pub fn push(&mut self, deadline: Millis, timer: T) -> bool {
        if self.pending.len() >= PENDING_TIMERS_MAX {
            return false;
        }
        self.pending.insert((deadline, self.next_sequence), timer);
        self.next_sequence += 1;
        true
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.pending.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Remove and return the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<T> {
        let first = self.pending.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        Some(first.remove())
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_come_out_by_deadline_then_insertion() {
        let mut queue = TimerQueue::default();
        queue.push(Millis(10), "b");
        queue.push(Millis(5), "a");
        queue.push(Millis(10), "c");
        assert_eq!(queue.next_deadline(), Some(Millis(5)));
        assert_eq!(queue.pop_due(Millis(4)), None);
        assert_eq!(queue.pop_due(Millis(10)), Some("a"));
        assert_eq!(queue.pop_due(Millis(10)), Some("b"));
        assert_eq!(queue.pop_due(Millis(10)), Some("c"));
        assert!(queue.is_empty());
    }
}
