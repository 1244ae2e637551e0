//! `/v1/cluster`'s `failover: {"state", "since_ms"}` (issue 14, item 6): where this node sees
//! the cluster in a failover, from a sans-IO [`FailoverTracker`] fed the replica's status and
//! gossip's view of the leader.
//!
//! The states, as this node sees them, checked in this order:
//! - `failing_over`: no leader is known, or this node is a (pre-)candidate: an election is
//!   under way or about to start.
//! - `detecting`: a leader is known but in doubt: this node is not in a working majority
//!   with it (a follower that has not heard it within an election timeout, a leader that has
//!   not heard a majority), or gossip reports it unreachable. (A leader's own health is not a
//!   doubt: an UNHEALTHY leader hands over within a heartbeat when a healthier voter exists,
//!   and otherwise stays, rightly, the leader.)
//! - `recovering`: a leader is known and trusted, but it is new to this node (another
//!   leader or term than the last one seen, including the first leader after a start) and
//!   this node has not yet caught up with it: its commit and applied indexes have not both
//!   reached the target taken when the leader appeared (the commit index then, and for the
//!   new leader itself its last index then, which covers its first entry of the term).
//! - `normal`: a trusted leader, and this node has caught up with it since it appeared.
//!
//! `since_ms` is how long this node has been in that state, in milliseconds.

use std::sync::Weak;
use std::time::Duration;

use ha_core::{MemberInfo, NodeId, StateMachine};
use ha_replicate::driver::ReplicaStatus;
use serde::{Deserialize, Serialize};

use crate::node::Shared;

/// Where this node sees the cluster in a failover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverState {
    /// A trusted leader this node has caught up with.
    Normal,
    /// A leader is known but in doubt.
    Detecting,
    /// No leader: an election is under way.
    #[default]
    FailingOver,
    /// A new leader, not yet caught up with.
    Recovering,
}

impl FailoverState {
    /// The name used in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverState::Normal => "normal",
            FailoverState::Detecting => "detecting",
            FailoverState::FailingOver => "failing_over",
            FailoverState::Recovering => "recovering",
        }
    }
}

/// `/v1/cluster`'s `failover` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// The state.
    pub state: FailoverState,
    /// How long this node has been in it, in milliseconds.
    pub since_ms: u64,
}

/// What the tracker is fed: one look at the replica and at the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverObservation {
    /// The replica's role (`leader`, `follower`, `candidate`, `pre_candidate`, `learner`).
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// Whether this node leads.
    pub leads: bool,
    /// Whether this node is in a working majority with the leader (the status's `quorum`).
    pub quorum: bool,
    /// Whether gossip reaches the leader (true for this node itself).
    pub leader_reachable: bool,
    /// This node's last log index.
    pub last_index: u64,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
}

impl FailoverObservation {
    /// From the replica's status and gossip's members.
    pub fn from_status(status: &ReplicaStatus, members: &[MemberInfo]) -> Self {
        let leads = status.role == "leader";
        let member = status
            .leader
            .as_ref()
            .and_then(|leader| members.iter().find(|member| member.id == *leader));
        // A leader gossip has not met yet is not in doubt: the replica hears it.
        let leader_reachable = leads || member.is_none_or(|member| member.reachable);
        Self {
            role: status.role.clone(),
            term: status.term.0,
            leader: status.leader.clone(),
            leads,
            quorum: status.quorum,
            leader_reachable,
            last_index: status.last_index.0,
            commit_index: status.commit_index.0,
            applied_index: status.applied_index.0,
        }
    }
}

/// Turns observations into a [`FailoverState`] and the time it was entered. Sans-IO: the
/// caller gives the time (milliseconds on a monotonic clock) with each call.
#[derive(Clone, Debug)]
pub struct FailoverTracker {
    state: FailoverState,
    entered_at_ms: u64,
    /// The last (leader, term) seen.
    leader: Option<(NodeId, u64)>,
    /// While recovering: the index commit and apply must both reach.
    recover_to: Option<u64>,
}

impl FailoverTracker {
    /// A node that has just started: no leader yet.
    pub fn new(now_ms: u64) -> Self {
        Self {
            state: FailoverState::FailingOver,
            entered_at_ms: now_ms,
            leader: None,
            recover_to: None,
        }
    }

    /// Take one observation; returns the new state when it changed.
    pub fn observe(&mut self, now_ms: u64, seen: &FailoverObservation) -> Option<FailoverState> {
        let state = self.next_state(seen);
        if state == self.state {
            return None;
        }
        self.state = state;
        self.entered_at_ms = now_ms;
        Some(state)
    }

    fn next_state(&mut self, seen: &FailoverObservation) -> FailoverState {
        let electing = matches!(seen.role.as_str(), "candidate" | "pre_candidate");
        let Some(leader) = seen.leader.as_ref().filter(|_| !electing) else {
            return FailoverState::FailingOver;
        };
        let current = (leader.clone(), seen.term);
        if self.leader.as_ref() != Some(&current) {
            self.leader = Some(current);
            let target = if seen.leads {
                seen.last_index.max(seen.commit_index)
            } else {
                seen.commit_index
            };
            self.recover_to = Some(target);
        }
        if !seen.quorum || !seen.leader_reachable {
            return FailoverState::Detecting;
        }
        match self.recover_to {
            Some(target) if seen.commit_index < target || seen.applied_index < target => {
                FailoverState::Recovering
            }
            _ => {
                self.recover_to = None;
                FailoverState::Normal
            }
        }
    }

    /// The state and how long it has lasted at `now_ms`.
    pub fn status(&self, now_ms: u64) -> FailoverStatus {
        FailoverStatus {
            state: self.state,
            since_ms: now_ms.saturating_sub(self.entered_at_ms),
        }
    }
}

/// Milliseconds since the node started, the tracker's clock.
pub(crate) fn node_now_ms<S: StateMachine>(shared: &Shared<S>) -> u64 {
    u64::try_from(shared.started_at.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Feed the node's tracker on every role change and every `poll`, so `since_ms` is when the
/// state began, not when someone last asked.
pub(crate) async fn run_failover_status<S: StateMachine>(node: Weak<Shared<S>>, poll: Duration) {
    let mut roles = match node.upgrade() {
        Some(shared) => shared.replica.watch_role(),
        None => return,
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            changed = roles.changed() => {
                if changed.is_err() {
                    return;
                }
                roles.borrow_and_update();
            }
        }
        let Some(shared) = node.upgrade() else { return };
        let Ok(Ok(status)) = tokio::time::timeout(poll, shared.replica.status()).await else {
            continue;
        };
        observe(&shared, &status);
        // Issue 16: failovers this node learns of become `failover` events.
        shared.journal.observe_failovers(&status.failover_history);
    }
}

/// Feed one status to the node's tracker and return its status now.
pub(crate) fn observe<S: StateMachine>(
    shared: &Shared<S>,
    status: &ReplicaStatus,
) -> FailoverStatus {
    let members = shared
        .gossip
        .lock()
        .as_ref()
        .map(|gossip| gossip.members())
        .unwrap_or_default();
    let seen = FailoverObservation::from_status(status, &members);
    let now_ms = node_now_ms(shared);
    let mut tracker = shared.failover.lock();
    if let Some(state) = tracker.observe(now_ms, &seen) {
        tracing::info!(state = state.as_str(), leader = ?seen.leader, term = seen.term, "failover state");
    }
    tracker.status(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("literal id")
    }

    /// A follower of `leader` in `term`, in a working majority, everything applied.
    fn following(
        leader: Option<&str>,
        term: u64,
        commit: u64,
        applied: u64,
    ) -> FailoverObservation {
        FailoverObservation {
            role: "follower".into(),
            term,
            leader: leader.map(id),
            leads: false,
            quorum: leader.is_some(),
            leader_reachable: true,
            last_index: commit,
            commit_index: commit,
            applied_index: applied,
        }
    }

    /// One follower's life through a failover, one observation per line: the state after it
    /// and when it was entered.
    #[test]
    fn a_follower_walks_through_every_state_of_a_failover() {
        let mut tracker = FailoverTracker::new(0);
        assert_eq!(
            tracker.status(40),
            FailoverStatus {
                state: FailoverState::FailingOver,
                since_ms: 40
            }
        );
        let lost = FailoverObservation {
            quorum: false,
            ..following(Some("n1"), 2, 10, 10)
        };
        let unreachable = FailoverObservation {
            leader_reachable: false,
            ..following(Some("n1"), 2, 10, 10)
        };
        let candidate = FailoverObservation {
            role: "candidate".into(),
            ..following(Some("n1"), 3, 10, 10)
        };
        let steps: Vec<(u64, FailoverObservation, FailoverState)> = vec![
            // The first leader after the start: caught up at once (commit 5 applied).
            (100, following(Some("n1"), 2, 5, 5), FailoverState::Normal),
            (200, following(Some("n1"), 2, 10, 10), FailoverState::Normal),
            // Gossip suspects the leader, then the replica loses it.
            (300, unreachable, FailoverState::Detecting),
            (400, lost, FailoverState::Detecting),
            (500, candidate, FailoverState::FailingOver),
            (550, following(None, 3, 10, 10), FailoverState::FailingOver),
            // n2 wins term 4 while this node still applies entry 10.
            (
                600,
                following(Some("n2"), 4, 10, 9),
                FailoverState::Recovering,
            ),
            (
                650,
                following(Some("n2"), 4, 10, 9),
                FailoverState::Recovering,
            ),
            (700, following(Some("n2"), 4, 11, 10), FailoverState::Normal),
            // n3 takes over by transfer, seen directly: recovering until caught up.
            (
                900,
                following(Some("n3"), 5, 12, 11),
                FailoverState::Recovering,
            ),
            (950, following(Some("n3"), 5, 13, 13), FailoverState::Normal),
        ];
        let mut entered = 0;
        for (now, seen, expected) in steps {
            let before = tracker.status(now).state;
            tracker.observe(now, &seen);
            if expected != before {
                entered = now;
            }
            assert_eq!(
                tracker.status(now + 5),
                FailoverStatus {
                    state: expected,
                    since_ms: now + 5 - entered
                },
                "at {now}: {seen:?}"
            );
        }
    }

    /// A new leader recovers until its own first entry of the term (its last index when it
    /// won) is committed and applied.
    #[test]
    fn a_new_leader_recovers_until_its_first_entry_commits() {
        let mut tracker = FailoverTracker::new(0);
        let leader = |commit: u64, applied: u64| FailoverObservation {
            role: "leader".into(),
            leads: true,
            last_index: 21,
            ..following(Some("n1"), 7, commit, applied)
        };
        assert_eq!(
            tracker.observe(10, &leader(20, 20)),
            Some(FailoverState::Recovering)
        );
        assert_eq!(tracker.observe(20, &leader(21, 20)), None);
        assert_eq!(
            tracker.observe(30, &leader(21, 21)),
            Some(FailoverState::Normal)
        );
        let alone = FailoverObservation {
            quorum: false,
            ..leader(21, 21)
        };
        assert_eq!(tracker.observe(40, &alone), Some(FailoverState::Detecting));
        assert_eq!(tracker.status(100).since_ms, 60);
    }
}
