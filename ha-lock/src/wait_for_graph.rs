//! Deadlock detection: would a new wait close a cycle of sessions waiting for each other?

use std::collections::{BTreeMap, BTreeSet};

use crate::command::SessionId;

/// Who waits for whom: an edge `a -> b` means session `a` waits for a lock `b` holds.
///
/// ```
/// use ha_lock::WaitForGraph;
/// let mut graph = WaitForGraph::default();
/// graph.add_wait(1, 2); // 1 waits for 2
/// assert_eq!(graph.cycle_if_waits(2, 1), Some(vec![2, 1]));
/// assert_eq!(graph.cycle_if_waits(3, 1), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitForGraph {
    edges: BTreeMap<SessionId, BTreeSet<SessionId>>,
}

impl WaitForGraph {
    /// Record that `waiter` waits for `holder`.
    pub fn add_wait(&mut self, waiter: SessionId, holder: SessionId) {
        self.edges.entry(waiter).or_default().insert(holder);
    }

    /// If `waiter` started waiting for `holder`, the cycle it would close (starting with
    /// `waiter`), found by a depth-first search from `holder` back to `waiter`. Iterative (an
    /// explicit stack, so a long chain cannot overflow the thread's stack) and bounded by the
    /// number of edges.
    pub fn cycle_if_waits(&self, waiter: SessionId, holder: SessionId) -> Option<Vec<SessionId>> {
        if waiter == holder {
            return Some(vec![waiter]);
        }
        // Each stack frame is a session on the current path and the index of the next of its
        // successors to try.
        let mut stack: Vec<(SessionId, usize)> = vec![(holder, 0)];
        let mut visited = BTreeSet::from([holder]);
        while let Some((session, next)) = stack.last_mut() {
            let successors = self.edges.get(session);
            let Some(&candidate) = successors.and_then(|set| set.iter().nth(*next)) else {
                stack.pop();
                continue;
            };
            *next += 1;
            if candidate == waiter {
                let mut cycle = vec![waiter];
                cycle.extend(stack.iter().map(|(session, _)| *session));
                return Some(cycle);
            }
            if visited.insert(candidate) {
                stack.push((candidate, 0));
            }
        }
        None
    }
}
