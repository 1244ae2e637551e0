//! A wait-for graph of sessions in full: every edge stored, searched depth-first.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::SessionId;

/// No successors.
static NO_SESSIONS: BTreeSet<SessionId> = BTreeSet::new();

/// Who waits for whom: an edge `a -> b` means session `a` waits for `b` (a lock `b` holds, or
/// `b`'s place ahead of `a` in a line).
///
/// This is the relation written out edge by edge, for checking a table from outside (the
/// model tests use it as their reference) and for tools. The lock table does not build one:
/// a line of `n` waiters is `n²/2` edges, so the table keeps its lines indexed instead and
/// searches only what a new wait reaches (issue 12; see `wait_lines.rs`).
///
/// ```
/// use ha_lock::{SessionId, WaitForGraph};
/// let mut graph = WaitForGraph::default();
/// let [one, two, three] = [1, 2, 3].map(SessionId);
/// graph.add_wait(one, two); // 1 waits for 2
/// assert_eq!(graph.cycle_if_waits(two, one), Some(vec![two, one]));
/// assert_eq!(graph.cycle_if_waits(three, one), None);
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
    /// explicit stack, so a long chain cannot overflow the thread's stack); each edge is
    /// followed at most once.
    pub fn cycle_if_waits(&self, waiter: SessionId, holder: SessionId) -> Option<Vec<SessionId>> {
        if waiter == holder {
            return Some(vec![waiter]);
        }
        // Each stack frame is a session on the current path and its successors not tried
        // yet, so each edge is followed once: O(edges) in all.
        let successors =
            |session: SessionId| self.edges.get(&session).unwrap_or(&NO_SESSIONS).iter();
        let mut stack = vec![(holder, successors(holder))];
        let mut visited = BTreeSet::from([holder]);
        while let Some((_, untried)) = stack.last_mut() {
            let Some(&candidate) = untried.next() else {
                stack.pop();
                continue;
            };
            if candidate == waiter {
                let mut cycle = vec![waiter];
                cycle.extend(stack.iter().map(|(session, _)| *session));
                return Some(cycle);
            }
            if visited.insert(candidate) {
                stack.push((candidate, successors(candidate)));
            }
        }
        None
    }
}
