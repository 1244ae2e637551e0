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
    /// `waiter`), found by a depth-first search from `holder` back to `waiter`. Bounded by the
    /// number of sessions.
    pub fn cycle_if_waits(&self, waiter: SessionId, holder: SessionId) -> Option<Vec<SessionId>> {
        if waiter == holder {
            return Some(vec![waiter]);
        }
        let mut path = vec![waiter, holder];
        let mut visited = BTreeSet::from([holder]);
        if self.search(holder, waiter, &mut path, &mut visited) {
            // The path ends with `waiter` again; report each session once.
            path.pop();
            Some(path)
        } else {
            None
        }
    }

    fn search(
        &self,
        from: SessionId,
        target: SessionId,
        path: &mut Vec<SessionId>,
        visited: &mut BTreeSet<SessionId>,
    ) -> bool {
        let Some(next) = self.edges.get(&from) else {
            return false;
        };
        for &session in next {
            if session == target {
                path.push(session);
                return true;
            }
            if visited.insert(session) {
                path.push(session);
                if self.search(session, target, path, visited) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
}
