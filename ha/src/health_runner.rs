//! Runs the host's health checks on their intervals, watches a leader's followers for one
//! that cannot be brought up to date, and publishes the aggregate.
//!
//! A follower the leader reports `stalled` (its `catch_up` in `/v1/cluster`) for longer than
//! an election timeout adds the non-critical check
//! [`CATCH_UP_CHECK`](crate::cluster_view::CATCH_UP_CHECK) to the leader's health, with
//! `"<follower>: <reason>"` in the report's `problems`, and a
//! [`NodeEvent::FollowerStalled`] / [`NodeEvent::FollowerUnstalled`] pair. Non-critical means
//! the leader is `DEGRADED`, never `UNHEALTHY`: an unhealthy leader hands leadership over, and
//! a follower that lags is no reason for that (the next leader would face the same follower,
//! after a span without any leader). A degraded leader keeps leading and keeps serving
//! (`/v1/health` still answers 200); gossip shows its health as DEGRADED to the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ha_core::{
    CheckResult, HealthCheck, HealthStatus, NodeId, StateMachine, Timing, aggregate_health,
};
use ha_replicate::driver::PeerStatus;

use crate::cluster_view::{CATCH_UP_CHECK, HealthProblem};
use crate::consistency_view::ConsistencyWatch;
use crate::event::NodeEvent;
use crate::node::{HealthState, Shared};

/// Most health checks one node runs.
pub const HEALTH_CHECKS_MAX: usize = 64;

/// The checks and when each is next due.
pub(crate) struct HealthRunner {
    checks: Vec<(Arc<dyn HealthCheck>, Instant)>,
    results: Vec<CheckResult>,
}

impl HealthRunner {
    pub(crate) fn new(checks: Vec<Arc<dyn HealthCheck>>) -> Self {
        let now = Instant::now();
        let results = checks
            .iter()
            .map(|check| CheckResult {
                name: check.name().to_string(),
                status: HealthStatus::Unknown,
                critical: check.critical(),
            })
            .collect();
        Self {
            checks: checks.into_iter().map(|check| (check, now)).collect(),
            results,
        }
    }

    /// The latest result of every check.
    pub(crate) fn results(&self) -> &[CheckResult] {
        &self.results
    }

    /// The aggregate: healthy with no checks.
    pub(crate) fn status(&self) -> HealthStatus {
        aggregate_health(&self.results)
    }

    /// How long until the next check is due.
    pub(crate) fn next_due(&self) -> Duration {
        let now = Instant::now();
        self.checks
            .iter()
            .map(|(_, due)| due.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    /// Run every check that is due, each on the blocking pool within its timeout (a check that
    /// hangs or panics counts as `Unknown`). Returns whether the aggregate changed.
    pub(crate) async fn run_due(&mut self) -> bool {
        let before = self.status();
        let now = Instant::now();
        for (slot, (check, due)) in self.checks.iter_mut().enumerate() {
            if *due > now {
                continue;
            }
            *due = now + check.interval().max(Duration::from_millis(10));
            let probe = Arc::clone(check);
            let timeout = check.timeout();
            let status = match tokio::time::timeout(
                timeout,
                tokio::task::spawn_blocking(move || probe.check()),
            )
            .await
            {
                Ok(Ok(status)) => status,
                Ok(Err(_)) | Err(_) => HealthStatus::Unknown,
            };
            if let Some(result) = self.results.get_mut(slot) {
                if result.status != status {
                    tracing::info!(check = %result.name, from = %result.status, to = %status, "health check changed");
                }
                result.status = status;
            }
        }
        self.status() != before
    }
}

/// The catch-up state in which nothing the leader can send brings a follower forward.
const STALLED: &str = "stalled";

/// Followers the leader has reported stalled for longer than `stall_after_ms`, from the
/// replica's status. Sans-IO: fed statuses, it returns what changed.
#[derive(Debug)]
pub(crate) struct CatchUpWatch {
    stall_after_ms: u64,
    /// The followers reported, with the reason last seen.
    stalled: BTreeMap<NodeId, String>,
}

/// A follower entering or leaving the reported set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CatchUpChange {
    /// Stalled for longer than the threshold.
    Stalled {
        /// The follower.
        peer: NodeId,
        /// Why, as the leader reports it.
        reason: String,
        /// How long it has made no progress.
        since_progress_ms: u64,
    },
    /// No longer stalled, or no longer this node's to report.
    Unstalled {
        /// The follower.
        peer: NodeId,
    },
}

impl CatchUpWatch {
    pub(crate) fn new(stall_after_ms: u64) -> Self {
        Self {
            stall_after_ms,
            stalled: BTreeMap::new(),
        }
    }

    /// Take the leader's view of its peers (`None` when this node does not lead, which
    /// clears every report) and return who entered or left the stalled set, in id order.
    pub(crate) fn observe(&mut self, peers: Option<&[PeerStatus]>) -> Vec<CatchUpChange> {
        let mut stalled = BTreeMap::new();
        let mut entered = Vec::new();
        for peer in peers.unwrap_or_default() {
            let Some(catch_up) = &peer.catch_up else {
                continue;
            };
            if catch_up.state != STALLED || catch_up.since_progress_ms <= self.stall_after_ms {
                continue;
            }
            let reason = catch_up
                .reason
                .clone()
                .unwrap_or_else(|| "the leader gave no reason".to_string());
            if !self.stalled.contains_key(&peer.id) {
                entered.push(CatchUpChange::Stalled {
                    peer: peer.id.clone(),
                    reason: reason.clone(),
                    since_progress_ms: catch_up.since_progress_ms,
                });
            }
            stalled.insert(peer.id.clone(), reason);
        }
        let mut changes: Vec<CatchUpChange> = self
            .stalled
            .keys()
            .filter(|peer| !stalled.contains_key(*peer))
            .map(|peer| CatchUpChange::Unstalled { peer: peer.clone() })
            .collect();
        changes.extend(entered);
        self.stalled = stalled;
        changes
    }

    /// The check result while any follower is reported.
    pub(crate) fn check(&self) -> Option<CheckResult> {
        (!self.stalled.is_empty()).then(|| CheckResult {
            name: CATCH_UP_CHECK.to_string(),
            status: HealthStatus::Degraded,
            critical: false,
        })
    }

    /// One problem per follower reported.
    pub(crate) fn problems(&self) -> Vec<HealthProblem> {
        self.stalled
            .iter()
            .map(|(peer, reason)| HealthProblem {
                check: CATCH_UP_CHECK.to_string(),
                detail: format!("{peer}: {reason}"),
            })
            .collect()
    }
}

/// The health to publish: the host's checks, then the node's own.
fn health_state(
    runner: &HealthRunner,
    watch: &CatchUpWatch,
    consistency: &ConsistencyWatch,
) -> HealthState {
    let mut checks = runner.results().to_vec();
    checks.extend(watch.check());
    checks.extend(consistency.check());
    let mut problems = watch.problems();
    problems.extend(consistency.problems());
    HealthState {
        status: aggregate_health(&checks),
        checks,
        problems,
    }
}

/// How often a leader looks at its followers' catch-up: often enough to report a follower
/// soon after the election timeout it must be stalled for, rarely enough to cost nothing
/// (one status read).
fn catch_up_poll(timing: &Timing) -> Duration {
    Duration::from_millis((timing.election_timeout_min_ms / 2).clamp(50, 1_000))
}

/// Run the host's checks when due and, while this node leads, watch its followers' catch-up;
/// publish the health whenever any of it changed.
pub(crate) async fn run_health_checks<S: StateMachine>(
    node: Weak<Shared<S>>,
    mut runner: HealthRunner,
) {
    let (mut roles, mut watch, poll) = {
        let Some(shared) = node.upgrade() else { return };
        let timing = &shared.config.timing;
        (
            shared.replica.watch_role(),
            CatchUpWatch::new(timing.election_timeout_max_ms),
            catch_up_poll(timing),
        )
    };
    let mut consistency = ConsistencyWatch::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(runner.next_due().min(poll)) => {}
            changed = roles.changed() => {
                if changed.is_err() {
                    return;
                }
                roles.borrow_and_update();
            }
        }
        runner.run_due().await;
        let Some(shared) = node.upgrade() else { return };
        // A replica too busy to answer within a poll (a long apply step) keeps the last
        // report rather than delaying the host's checks.
        // Every node reads its status: a follower for its own consistency verdict.
        let status = match tokio::time::timeout(poll, shared.replica.status()).await {
            Ok(status) => Some(status.ok()),
            Err(_) => None,
        };
        let own = shared.replica.node_id().clone();
        let observed = status.as_ref().and_then(|status| status.as_ref());
        for event in consistency.observe(&own, observed.map(|status| &status.consistency)) {
            announce_consistency(&shared, event);
        }
        if let Some(status) = status {
            let peers = status
                .as_ref()
                .filter(|status| status.role == "leader")
                .map(|status| status.peers.as_slice());
            for change in watch.observe(peers) {
                announce(&shared, change);
            }
        }
        let state = health_state(&runner, &watch, &consistency);
        if *shared.health.borrow() != state {
            shared.health.send_replace(state);
        }
    }
}

/// Log a consistency finding and send it to event subscribers.
fn announce_consistency<S: StateMachine>(shared: &Shared<S>, event: NodeEvent) {
    match &event {
        NodeEvent::ReplicaDiverged { node, index } => tracing::error!(
            %node,
            %index,
            "replica diverged: its applied state differs from the majority's (health degraded, \
             check consistency)"
        ),
        NodeEvent::ReplicaRepaired { node, index } => {
            tracing::info!(%node, diverged_at = %index, "diverged replica repaired")
        }
        _ => {}
    }
    let _ = shared.events.send(event);
}

/// Log a catch-up change and send it to event subscribers.
fn announce<S: StateMachine>(shared: &Shared<S>, change: CatchUpChange) {
    let event = match change {
        CatchUpChange::Stalled {
            peer,
            reason,
            since_progress_ms,
        } => {
            tracing::warn!(
                %peer,
                %reason,
                since_progress_ms,
                "follower stalled: nothing this leader can send brings it forward; health \
                 degraded (check catch_up)"
            );
            NodeEvent::FollowerStalled { peer, reason }
        }
        CatchUpChange::Unstalled { peer } => {
            tracing::info!(%peer, "follower no longer stalled");
            NodeEvent::FollowerUnstalled { peer }
        }
    };
    let _ = shared.events.send(event);
}

#[cfg(test)]
mod tests {
    use ha_core::LogIndex;
    use ha_replicate::driver::CatchUp;

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("literal id")
    }

    fn peer(name: &str, state: Option<&str>, since_progress_ms: u64) -> PeerStatus {
        PeerStatus {
            id: id(name),
            voter: true,
            match_index: LogIndex(0),
            lag_entries: 10_900,
            applied_index: LogIndex(0),
            apply_backlog: 0,
            apply_window_full: false,
            last_contact_ms: Some(5),
            catch_up: state.map(|state| CatchUp {
                state: state.to_string(),
                sent_bytes: 0,
                total_bytes: 60_111_763,
                reason: (state == STALLED).then(|| "snapshot larger than a frame".to_string()),
                since_progress_ms,
            }),
        }
    }

    fn stalled(name: &str, since_progress_ms: u64) -> CatchUpChange {
        CatchUpChange::Stalled {
            peer: id(name),
            reason: "snapshot larger than a frame".to_string(),
            since_progress_ms,
        }
    }

    /// Stalled for longer than the election timeout (2,000 ms here) is reported once, with
    /// the reason; a stream in progress, a short stall and a caught-up follower are not;
    /// progress, and losing leadership, end the report.
    #[test]
    fn a_follower_stalled_past_the_election_timeout_is_reported_once_until_it_moves() {
        let mut watch = CatchUpWatch::new(2_000);
        let quiet = [
            peer("n2", Some("snapshot"), 60_000),
            peer("n3", Some(STALLED), 2_000),
            peer("n4", None, 0),
        ];
        assert_eq!(watch.observe(Some(&quiet)), Vec::new());
        assert_eq!(watch.check(), None);
        assert_eq!(watch.problems(), Vec::new());

        let n3_stalled = [peer("n3", Some(STALLED), 2_001), peer("n4", None, 0)];
        assert_eq!(watch.observe(Some(&n3_stalled)), vec![stalled("n3", 2_001)]);
        assert_eq!(
            watch.check(),
            Some(CheckResult {
                name: "catch_up".into(),
                status: HealthStatus::Degraded,
                critical: false,
            })
        );
        assert_eq!(
            watch.problems(),
            vec![HealthProblem {
                check: "catch_up".into(),
                detail: "n3: snapshot larger than a frame".into(),
            }]
        );
        let later = [
            peer("n3", Some(STALLED), 9_000),
            peer("n4", Some(STALLED), 2_500),
        ];
        assert_eq!(
            watch.observe(Some(&later)),
            vec![stalled("n4", 2_500)],
            "n3 is announced once"
        );
        assert_eq!(watch.problems().len(), 2);

        let n3_moves = [
            peer("n3", Some("snapshot"), 10),
            peer("n4", Some(STALLED), 2_800),
        ];
        assert_eq!(
            watch.observe(Some(&n3_moves)),
            vec![CatchUpChange::Unstalled { peer: id("n3") }]
        );
        assert_eq!(
            watch.observe(None),
            vec![CatchUpChange::Unstalled { peer: id("n4") }],
            "a node that no longer leads reports nothing"
        );
        assert_eq!(watch.check(), None);
    }

    /// The check degrades the aggregate but never makes it unhealthy (an unhealthy leader
    /// would hand leadership over), and a host check that is worse still decides.
    #[test]
    fn the_catch_up_check_degrades_the_leader_and_never_makes_it_unhealthy() {
        let runner = HealthRunner::new(Vec::new());
        let mut watch = CatchUpWatch::new(2_000);
        assert_eq!(
            health_state(&runner, &watch, &ConsistencyWatch::default()).status,
            HealthStatus::Healthy
        );
        watch.observe(Some(&[peer("n2", Some(STALLED), 60_000)]));
        let state = health_state(&runner, &watch, &ConsistencyWatch::default());
        assert_eq!(state.status, HealthStatus::Degraded);
        assert_eq!(state.checks.len(), 1);
        assert_eq!(state.problems.len(), 1);

        /// A critical host check not run yet: `Unknown`, which is worse than degraded.
        struct Disk;
        impl HealthCheck for Disk {
            fn name(&self) -> &str {
                "disk"
            }
            fn check(&self) -> HealthStatus {
                HealthStatus::Healthy
            }
        }
        let runner = HealthRunner::new(vec![Arc::new(Disk)]);
        let state = health_state(&runner, &watch, &ConsistencyWatch::default());
        assert_eq!(
            state.status,
            HealthStatus::Unknown,
            "the worse host check decides"
        );
        let names: Vec<&str> = state
            .checks
            .iter()
            .map(|check| check.name.as_str())
            .collect();
        assert_eq!(names, ["disk", "catch_up"], "the host's checks first");
    }

    #[test]
    fn a_stall_without_a_reason_still_names_the_follower() {
        let mut watch = CatchUpWatch::new(100);
        let mut silent = peer("n2", Some(STALLED), 500);
        if let Some(catch_up) = &mut silent.catch_up {
            catch_up.reason = None;
        }
        watch.observe(Some(&[silent]));
        assert_eq!(watch.problems()[0].detail, "n2: the leader gave no reason");
    }
}
