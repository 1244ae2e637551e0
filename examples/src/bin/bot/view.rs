//! What each demo node reports about the others, rebuilt from their event lines.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::event::{EventKind, EventLine};

/// The state the demo shows for a member that left gracefully and is gone.
pub const LEFT: &str = "LEFT";

/// One member as one observer last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// ACTIVE, JOINING, UNREACHABLE, LEAVING, [`LEFT`], ...
    pub state: String,
    /// The member's incarnation.
    pub incarnation: u64,
    /// When the demo read the line that set this state.
    pub since: Instant,
}

/// A change of one observer's view of one member, for the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The reporting node.
    pub observer: String,
    /// The member reported on.
    pub member: String,
    /// The new state.
    pub state: String,
    /// The member's incarnation, when it differs from the one seen before.
    pub new_incarnation: Option<u64>,
}

/// Every observer's view of every member: observer id -> member id -> view.
#[derive(Debug, Default)]
pub struct ClusterView {
    seen: BTreeMap<String, BTreeMap<String, MemberView>>,
}

impl ClusterView {
    /// Apply one event line read at `at`. Returns the change, if the line changed the
    /// observer's view of a member (same-state metadata refreshes do not).
    pub fn apply(&mut self, line: &EventLine, at: Instant) -> Option<Change> {
        let state = match line.kind {
            EventKind::Up | EventKind::Updated | EventKind::Unreachable | EventKind::Member => {
                line.state.clone()?
            }
            EventKind::Left => LEFT.to_string(),
            _ => return None,
        };
        let member = line.member.clone()?;
        let incarnation = line.incarnation.unwrap_or(0);
        let views = self.seen.entry(line.node.clone()).or_default();
        let previous = views.get(&member);
        let new_incarnation = match previous {
            Some(previous) if previous.incarnation == incarnation => None,
            _ => Some(incarnation),
        };
        if previous.is_some_and(|previous| previous.state == state) && new_incarnation.is_none() {
            return None;
        }
        views.insert(
            member.clone(),
            MemberView {
                state: state.clone(),
                incarnation,
                since: at,
            },
        );
        Some(Change {
            observer: line.node.clone(),
            member,
            state,
            new_incarnation,
        })
    }

    /// Drop everything `observer` reported: its process is gone, and a restarted one starts
    /// with an empty view.
    pub fn forget_observer(&mut self, observer: &str) {
        self.seen.remove(observer);
    }

    /// `observer`'s view of `member`, if it reported one.
    pub fn get(&self, observer: &str, member: &str) -> Option<&MemberView> {
        self.seen.get(observer)?.get(member)
    }

    /// Whether `observer` currently reports `member` in `state`.
    pub fn is(&self, observer: &str, member: &str, state: &str) -> bool {
        self.get(observer, member)
            .is_some_and(|view| view.state == state)
    }

    /// A one-line summary of what each of `observers` reports about the others, for timeout
    /// messages: `n1 sees n2 ACTIVE, n3 UNREACHABLE; n2 sees ...`.
    pub fn describe(&self, observers: &[&str], members: &[&str]) -> String {
        let mut parts = Vec::new();
        for observer in observers {
            let seen: Vec<String> = members
                .iter()
                .filter(|member| *member != observer)
                .map(|member| match self.get(observer, member) {
                    Some(view) => format!("{member} {}", view.state),
                    None => format!("{member} not yet"),
                })
                .collect();
            parts.push(format!("{observer} sees {}", seen.join(", ")));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: EventKind, state: &str, incarnation: u64) -> EventLine {
        let mut line = EventLine::new("n1", kind, 0, 0);
        line.member = Some("n2".into());
        line.state = Some(state.into());
        line.incarnation = Some(incarnation);
        line
    }

    #[test]
    fn only_state_or_incarnation_changes_are_reported() {
        let mut view = ClusterView::default();
        let now = Instant::now();
        let first = view.apply(&line(EventKind::Up, "JOINING", 1), now);
        assert_eq!(first.map(|change| change.state), Some("JOINING".into()));
        assert!(
            view.apply(&line(EventKind::Updated, "ACTIVE", 1), now)
                .is_some()
        );
        assert!(
            view.apply(&line(EventKind::Updated, "ACTIVE", 1), now)
                .is_none()
        );
        assert!(view.is("n1", "n2", "ACTIVE"));
        let restarted = view.apply(&line(EventKind::Up, "ACTIVE", 2), now);
        assert_eq!(restarted.and_then(|change| change.new_incarnation), Some(2));
        assert!(
            view.apply(&line(EventKind::Left, "LEAVING", 2), now)
                .is_some()
        );
        assert!(view.is("n1", "n2", LEFT));
    }

    #[test]
    fn forgetting_an_observer_clears_its_view() {
        let mut view = ClusterView::default();
        view.apply(&line(EventKind::Up, "ACTIVE", 1), Instant::now());
        view.forget_observer("n1");
        assert!(view.get("n1", "n2").is_none());
        assert_eq!(view.describe(&["n1"], &["n1", "n2"]), "n1 sees n2 not yet");
    }
}
