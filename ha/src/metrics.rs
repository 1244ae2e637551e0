//! `GET /v1/metrics`: the node's figures in the Prometheus text format (version 0.0.4).
//!
//! Every figure is read at scrape time from the replica's status, gossip's member list and
//! drop counters, and the lock table, so nothing is recorded twice and several nodes in one
//! process (tests, the bot) each report their own (a global recorder such as the `metrics`
//! crate's would mix them).

use std::fmt::Write;

use ha_core::{Consistency, HealthStatus, NodeState, StateMachine};
use ha_gossip::DropCause;
use ha_lock::{Limit, LockQuery, LockQueryResponse, LockStats};
use ha_replicate::driver::ReplicaStatus;

use crate::error::NodeError;
use crate::node::Node;

/// Every replication role, for the one-hot `ha_role` gauge.
const ROLES: [&str; 5] = [
    "leader",
    "follower",
    "candidate",
    "pre_candidate",
    "learner",
];
/// Every health status, for the one-hot `ha_health` gauge.
const HEALTH: [HealthStatus; 4] = [
    HealthStatus::Healthy,
    HealthStatus::Degraded,
    HealthStatus::Unhealthy,
    HealthStatus::Unknown,
];

/// Writes metric families in the text format.
#[derive(Default)]
pub struct PrometheusText {
    text: String,
}

impl PrometheusText {
    /// Start a family: its HELP and TYPE lines. `kind` is `gauge` or `counter`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// One sample with labels (`&[]` for none).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (position, (label, value)) in labels.iter().enumerate() {
                if position > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A gauge family with one sample per peer (peers without a value are left out).
    pub fn peer_family<'a>(
        &mut self,
        name: &str,
        help: &str,
        values: impl Iterator<Item = (&'a str, Option<u64>)>,
    ) -> &mut Self {
        self.family(name, "gauge", help);
        for (peer, value) in values {
            if let Some(value) = value {
                self.sample(name, &[("peer", peer)], value as f64);
            }
        }
        self
    }

    /// The text so far.
    pub fn finish(self) -> String {
        self.text
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// Everything one scrape reports, gathered first so rendering is a pure function.
pub struct MetricsSnapshot {
    /// The replica's status.
    pub status: ReplicaStatus,
    /// This node's aggregated health.
    pub health: HealthStatus,
    /// Members by advertised state, this node included.
    pub members_by_state: Vec<(NodeState, usize)>,
    /// Gossip packets dropped, by cause.
    pub drops: Vec<(DropCause, u64)>,
    /// The lock table's counts (`None` when the local read failed).
    pub locks: Option<LockStats>,
    /// Milliseconds this node has known no leader since it started.
    pub leaderless_ms_total: u64,
    /// Seconds since the node started.
    pub uptime_seconds: f64,
}

/// Render a snapshot.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let status = &snapshot.status;
    let mut out = PrometheusText::default();
    out.single(
        "ha_term",
        "gauge",
        "The current term.",
        status.term.0 as f64,
    );
    out.family("ha_role", "gauge", "1 for this node's replication role.");
    for role in ROLES {
        out.sample("ha_role", &[("role", role)], flag(status.role == role));
    }
    out.single(
        "ha_is_leader",
        "gauge",
        "1 when this node leads.",
        flag(status.role == "leader"),
    );
    out.single(
        "ha_quorum",
        "gauge",
        "1 when this node is part of a working majority.",
        flag(status.quorum),
    );
    out.single(
        "ha_last_index",
        "gauge",
        "The last index in this node's log.",
        status.last_index.0 as f64,
    );
    out.single(
        "ha_commit_index",
        "gauge",
        "The commit index as this node knows it.",
        status.commit_index.0 as f64,
    );
    out.single(
        "ha_applied_index",
        "gauge",
        "The highest index applied to this node's state machine.",
        status.applied_index.0 as f64,
    );
    let peers = &status.peers;
    out.peer_family(
        "ha_peer_lag_entries",
        "Entries each peer is behind the leader's log (leader only).",
        peers
            .iter()
            .map(|peer| (peer.id.as_str(), Some(peer.lag_entries))),
    );
    out.peer_family(
        "ha_peer_match_index",
        "The highest index known replicated on each peer (leader only).",
        peers
            .iter()
            .map(|peer| (peer.id.as_str(), Some(peer.match_index.0))),
    );
    out.peer_family(
        "ha_peer_last_contact_ms",
        "Milliseconds since each peer last answered the leader (leader only).",
        peers
            .iter()
            .map(|peer| (peer.id.as_str(), peer.last_contact_ms)),
    );
    out.single(
        "ha_elections_started_total",
        "counter",
        "Elections this node started.",
        status.elections_started as f64,
    );
    out.family(
        "ha_refused_inputs_total",
        "counter",
        "Received replication messages refused (no correct peer sends them), by cause.",
    );
    for (cause, count) in &status.refused_inputs {
        out.sample(
            "ha_refused_inputs_total",
            &[("cause", cause.as_str())],
            *count as f64,
        );
    }
    let failovers = status
        .failover_history
        .iter()
        .filter(|record| record.from.is_some())
        .count();
    out.single(
        "ha_failovers_recorded",
        "gauge",
        "Leadership changes from a known leader in the retained failover history (last 64).",
        failovers as f64,
    );
    if let Some(last) = status.failover_history.last() {
        out.single(
            "ha_failover_last_leaderless_ms",
            "gauge",
            "How long the cluster had no leader before the latest leader won.",
            last.leaderless_ms as f64,
        );
    }
    out.single(
        "ha_leaderless_ms_total",
        "counter",
        "Milliseconds this node knew no leader since it started.",
        snapshot.leaderless_ms_total as f64,
    );
    out.family("ha_health", "gauge", "1 for this node's aggregated health.");
    for health in HEALTH {
        out.sample(
            "ha_health",
            &[("status", health.as_str())],
            flag(snapshot.health == health),
        );
    }
    out.family(
        "ha_gossip_members",
        "gauge",
        "Members by advertised state, this node included.",
    );
    for (state, count) in &snapshot.members_by_state {
        out.sample(
            "ha_gossip_members",
            &[("state", state.as_str())],
            *count as f64,
        );
    }
    out.family(
        "ha_gossip_packets_dropped_total",
        "counter",
        "Gossip packets dropped, by cause.",
    );
    for (cause, count) in &snapshot.drops {
        out.sample(
            "ha_gossip_packets_dropped_total",
            &[("cause", cause.as_str())],
            *count as f64,
        );
    }
    if let Some(locks) = &snapshot.locks {
        out.single(
            "ha_lock_grants_total",
            "counter",
            "Locks granted since the cluster began.",
            locks.grants_total as f64,
        );
        out.single(
            "ha_lock_waits_total",
            "counter",
            "Lock acquires that had to queue since the cluster began.",
            locks.waits_total as f64,
        );
        out.single(
            "ha_lock_deadlocks_total",
            "counter",
            "Lock waits refused because they would have deadlocked.",
            locks.deadlocks_total as f64,
        );
        out.family(
            "ha_lock_limit_refusals_total",
            "counter",
            "Lock-table commands refused at a named limit (HTTP 429 `limit`), by limit, since this node started.",
        );
        for limit in Limit::ALL {
            out.sample(
                "ha_lock_limit_refusals_total",
                &[("limit", limit.constant())],
                locks.limit_refusals.get(limit) as f64,
            );
        }
        out.single(
            "ha_locks_held",
            "gauge",
            "Locks held now.",
            locks.locks_held as f64,
        );
        out.single(
            "ha_lock_waiters",
            "gauge",
            "Sessions queued for a lock now.",
            locks.waiters as f64,
        );
        out.single("ha_leases", "gauge", "Live leases.", locks.leases as f64);
        out.single("ha_kv_keys", "gauge", "Keys stored.", locks.keys as f64);
    }
    out.single(
        "ha_uptime_seconds",
        "gauge",
        "Seconds since this node started.",
        snapshot.uptime_seconds,
    );
    out.finish()
}

impl<S: StateMachine> Node<S> {
    /// The node's metrics in the Prometheus text format (`GET /v1/metrics`).
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn metrics_text(&self) -> Result<String, NodeError> {
        let status = self.status().await?;
        let mut states = vec![self.advertised_state()];
        states.extend(self.members().iter().map(|member| member.state()));
        let members_by_state = NodeState::ALL
            .iter()
            .map(|state| {
                (
                    *state,
                    states.iter().filter(|known| *known == state).count(),
                )
            })
            .collect();
        let drops = self.gossip_drops();
        let locks = match self
            .lock_query(
                LockQuery::Stats,
                Consistency::Eventual,
                self.shared.request_timeout,
            )
            .await
        {
            Ok(LockQueryResponse::Stats(stats)) => Some(stats),
            _ => None,
        };
        let snapshot = MetricsSnapshot {
            status,
            health: self.health_status(),
            members_by_state,
            drops: DropCause::ALL
                .iter()
                .map(|cause| (*cause, drops.get(*cause)))
                .collect(),
            locks,
            leaderless_ms_total: self.leaderless_ms_total(),
            uptime_seconds: self.uptime().as_secs_f64(),
        };
        Ok(render(&snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        let mut out = PrometheusText::default();
        out.family("m", "gauge", "a\\b\nc")
            .sample("m", &[("peer", "x\"y\\z\n")], 1.5);
        assert_eq!(
            out.finish(),
            "# HELP m a\\\\b\\nc\n# TYPE m gauge\nm{peer=\"x\\\"y\\\\z\\n\"} 1.5\n"
        );
    }
    #[test]
    fn refused_inputs_are_a_counter_by_cause() {
        use ha_core::{LogIndex, NodeId, Term};
        let id = NodeId::new("n1").unwrap();
        let status = ReplicaStatus {
            node_id: id.clone(),
            role: "follower".into(),
            term: Term(2),
            leader: None,
            quorum: false,
            last_index: LogIndex(0),
            commit_index: LogIndex(0),
            applied_index: LogIndex(0),
            membership: ha_replicate::membership::Membership::with_voters([id]),
            peers: Vec::new(),
            failover_history: Vec::new(),
            elections_started: 0,
            refused_inputs: [("non_contiguous_entries", 0), ("overwrite_committed", 2)]
                .into_iter()
                .map(|(cause, count)| (cause.to_string(), count))
                .collect(),
            snapshot_transfer: Default::default(),
        };
        let text = render(&MetricsSnapshot {
            status,
            health: HealthStatus::Healthy,
            members_by_state: Vec::new(),
            drops: Vec::new(),
            locks: None,
            leaderless_ms_total: 0,
            uptime_seconds: 1.0,
        });
        assert!(
            text.contains(
                "# TYPE ha_refused_inputs_total counter\n\
                 ha_refused_inputs_total{cause=\"non_contiguous_entries\"} 0\n\
                 ha_refused_inputs_total{cause=\"overwrite_committed\"} 2\n"
            ),
            "{text}"
        );
    }
}
