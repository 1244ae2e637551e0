//! `GET /v1/metrics`: the node's figures in the Prometheus text format (version 0.0.4).
//!
//! Every figure is read at scrape time from the replica's status, gossip's member list and
//! drop counters, and the lock table, so nothing is recorded twice and several nodes in one
//! process (tests, the bot) each report their own (a global recorder such as the `metrics`
//! crate's would mix them).
//!
//! Names follow Prometheus' conventions (issue 16): base units (`_seconds`, `_bytes`),
//! `_total` only on counters, and histograms for latencies. The histograms
//! ([`ha_core::LatencyHistogram`]: fixed buckets, lock-free atomics) are owned per node and
//! read into the snapshot like everything else; we render them ourselves rather than through
//! the `prometheus-client` crate because the renderer is a pure function over a per-scrape
//! snapshot with no registry at all, which already keeps several nodes in one process apart,
//! and one histogram type (~150 lines) did not justify moving ~70 families to another
//! crate's registry and types.

use std::fmt::Write;

use ha_core::{Consistency, HealthStatus, HistogramSnapshot, NodeState, StateMachine};
use ha_gossip::DropCause;
use ha_lock::{Limit, LockQuery, LockQueryResponse, LockStats};
use ha_replicate::driver::ReplicaStatus;
use ha_replicate::transport::{SendDropCause, SendDropCounts};

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
/// Every catch-up state a leader reports for a follower, for `ha_catch_up_followers`.
const CATCH_UP_STATES: [&str; 2] = ["snapshot", "stalled"];
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

    /// A `histogram` family: its cumulative `_bucket{le}` samples (seconds), `_sum` and
    /// `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        histogram: &HistogramSnapshot,
    ) -> &mut Self {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (position, cumulative) in histogram.cumulative.iter().enumerate() {
            let bound = histogram
                .bounds_seconds
                .get(position)
                .map(|bound| bound.to_string())
                .unwrap_or_else(|| "+Inf".to_string());
            self.sample(&bucket, &[("le", &bound)], *cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), &[], histogram.sum_seconds);
        self.sample(&format!("{name}_count"), &[], histogram.count as f64)
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

/// Milliseconds as seconds.
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1_000.0
}

/// The replicated lock table's cluster-wide counters (leader only, see the caller).
fn render_lock_counters(out: &mut PrometheusText, locks: &LockStats) {
    const SCOPE: &str = "Cluster-wide (the replicated lock table's count) and exported by the leader only, so that a sum over nodes counts each once.";
    out.single(
        "ha_lock_grants_total",
        "counter",
        &format!("Locks granted since the cluster began. {SCOPE}"),
        locks.grants_total as f64,
    );
    out.single(
        "ha_lock_waits_total",
        "counter",
        &format!("Lock acquires that had to queue since the cluster began. {SCOPE}"),
        locks.waits_total as f64,
    );
    out.single(
        "ha_lock_deadlocks_total",
        "counter",
        &format!("Lock waits refused because they would have deadlocked. {SCOPE}"),
        locks.deadlocks_total as f64,
    );
    out.family(
        "ha_lock_limit_refusals_total",
        "counter",
        &format!(
            "Lock-table commands refused at a named limit (HTTP 429 `limit`), by limit. {SCOPE}"
        ),
    );
    for limit in Limit::ALL {
        out.sample(
            "ha_lock_limit_refusals_total",
            &[("limit", limit.constant())],
            locks.limit_refusals.get(limit) as f64,
        );
    }
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
    /// Milliseconds this node has known no leader since it started (rendered in seconds).
    pub leaderless_ms_total: u64,
    /// Issue 16: the latency histograms and the leader-change counter.
    pub latency: crate::latency_metrics::LatencySnapshot,
    /// Seconds since the node started.
    pub uptime_seconds: f64,
    /// Replication messages the transport dropped before a socket write, by cause (`None`
    /// when the replica does not report them; the metrics from it are then left out).
    pub transport_send_drops: Option<SendDropCounts>,
    /// What the admin API's HTTPS listeners counted (`None` without HTTPS).
    pub https: Option<HttpsCounts>,
}

/// Counts of the admin API's HTTPS listeners (summed over the node's servers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpsCounts {
    /// TLS handshakes that finished.
    pub handshakes_done: u64,
    /// Handshakes that failed (garbage, truncated records, a client that left).
    pub handshakes_failed: u64,
    /// Handshakes that did not finish within the handshake timeout.
    pub handshakes_timed_out: u64,
    /// Unfinished handshakes closed to make room for newer ones (the handshake cap).
    pub handshakes_evicted: u64,
    /// Connections closed after their handshake because the connection cap was reached.
    pub refused_over_cap: u64,
    /// Established connections closed for being idle.
    pub idle_closed: u64,
}

/// Render a snapshot.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let status = &snapshot.status;
    let mut out = PrometheusText::default();
    crate::latency_metrics::render_metrics(&mut out, &snapshot.latency);
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
        "ha_witness",
        "gauge",
        "1 when this node is a witness: it votes, holds no state and never leads.",
        flag(status.witness),
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
    out.single(
        "ha_apply_backlog_entries",
        "gauge",
        "Entries in this node's log its state machine has not applied yet (a slow host).",
        status.apply_backlog as f64,
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
        "ha_peer_apply_backlog_entries",
        "Entries each peer holds but has not applied, as last reported (leader only).",
        peers
            .iter()
            .map(|peer| (peer.id.as_str(), Some(peer.apply_backlog))),
    );
    out.peer_family(
        "ha_peer_apply_window_full",
        "1 while the leader holds entries back from a peer whose apply backlog reached \
         follower_backlog_entries_max (leader only).",
        peers
            .iter()
            .map(|peer| (peer.id.as_str(), Some(u64::from(peer.apply_window_full)))),
    );
    out.family(
        "ha_peer_last_contact_seconds",
        "gauge",
        "Seconds since each peer last answered the leader (leader only).",
    );
    for peer in peers {
        if let Some(ms) = peer.last_contact_ms {
            out.sample(
                "ha_peer_last_contact_seconds",
                &[("peer", peer.id.as_str())],
                seconds(ms),
            );
        }
    }
    out.family(
        "ha_catch_up_followers",
        "gauge",
        "Followers the leader is bringing up to date by snapshot, or that nothing it can send brings forward (stalled), by state (leader only; 0 elsewhere).",
    );
    for state in CATCH_UP_STATES {
        let followers = peers
            .iter()
            .filter(|peer| {
                peer.catch_up
                    .as_ref()
                    .is_some_and(|catch_up| catch_up.state == state)
            })
            .count();
        out.sample(
            "ha_catch_up_followers",
            &[("state", state)],
            followers as f64,
        );
    }
    let transfer = &status.snapshot_transfer;
    out.single(
        "ha_snapshot_bytes_sent_total",
        "counter",
        "Snapshot bytes sent to followers, resends included.",
        transfer.bytes_sent as f64,
    );
    out.single(
        "ha_snapshot_bytes_received_total",
        "counter",
        "Snapshot bytes received and kept (duplicates and refused chunks not counted).",
        transfer.bytes_received as f64,
    );
    out.single(
        "ha_snapshot_installs_total",
        "counter",
        "Snapshots received, verified and installed.",
        transfer.installs as f64,
    );
    out.single(
        "ha_snapshot_resumes_total",
        "counter",
        "Snapshot transfers resumed from a partial snapshot this node held.",
        transfer.resumes as f64,
    );
    out.single(
        "ha_snapshot_discards_total",
        "counter",
        "Received snapshots thrown away: replaced by a newer one, or failed their checksum.",
        transfer.discards as f64,
    );
    out.single(
        "ha_snapshots_taken_total",
        "counter",
        "Snapshots this node took of its own state.",
        transfer.taken as f64,
    );
    out.single(
        "ha_snapshot_last_take_seconds",
        "gauge",
        "How long the last snapshot of this node's own state took to write, in seconds.",
        seconds(transfer.last_take_ms),
    );
    out.single(
        "ha_snapshot_bytes",
        "gauge",
        "The size of this node's current snapshot in bytes.",
        transfer.current_bytes as f64,
    );
    if let Some(drops) = &snapshot.transport_send_drops {
        out.single(
            "ha_transport_oversize_dropped_total",
            "counter",
            "Replication messages larger than a frame, dropped before a socket write (a bug: the sender must split them; logged at most once a minute per peer).",
            drops.get(SendDropCause::TooLarge) as f64,
        );
    }
    out.family(
        "ha_transport_refusals_total",
        "counter",
        "Replication connections (or frames on them) refused, by cause, since this node started: wrong key or cluster, plaintext or bad TLS, wrong CA, expired or missing certificate, a certificate used for another node, and the rest.",
    );
    for (cause, count) in status.transport_refusals.iter() {
        out.sample(
            "ha_transport_refusals_total",
            &[("cause", cause.as_str())],
            count as f64,
        );
    }
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
    if let Some(last) = status.failover_history.last() {
        out.single(
            "ha_failover_last_leaderless_seconds",
            "gauge",
            "Seconds the cluster had no leader before the latest leader won.",
            seconds(last.leaderless_ms),
        );
    }
    crate::consistency_view::render_metrics(&mut out, &status.consistency);
    out.single(
        "ha_leaderless_seconds_total",
        "counter",
        "Seconds this node knew no leader since it started.",
        seconds(snapshot.leaderless_ms_total),
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
        // The lock table is replicated: every node holds the same cluster-wide counts. Only
        // the leader exports them, so that `sum` over nodes counts each grant once.
        if status.role == "leader" {
            render_lock_counters(&mut out, locks);
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
    if let Some(https) = &snapshot.https {
        out.family(
            "ha_https_handshakes_total",
            "counter",
            "TLS handshakes on the admin API by outcome: done, failed (garbage, truncated, the client left), timed_out, evicted (closed unfinished to make room under the handshake cap).",
        );
        for (outcome, count) in [
            ("done", https.handshakes_done),
            ("failed", https.handshakes_failed),
            ("timed_out", https.handshakes_timed_out),
            ("evicted", https.handshakes_evicted),
        ] {
            out.sample(
                "ha_https_handshakes_total",
                &[("outcome", outcome)],
                count as f64,
            );
        }
        out.single(
            "ha_https_connections_refused_total",
            "counter",
            "Admin API connections closed after their handshake because the connection cap was reached.",
            https.refused_over_cap as f64,
        );
        out.single(
            "ha_https_idle_closed_total",
            "counter",
            "Admin API connections closed for being idle.",
            https.idle_closed as f64,
        );
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
    /// The admin API's HTTPS counts, summed over the node's HTTPS servers; `None` without one.
    fn https_counts(&self) -> Option<HttpsCounts> {
        #[cfg(feature = "http")]
        {
            use std::sync::atomic::Ordering::Relaxed;
            let listeners = self.shared.https_counters.lock();
            if listeners.is_empty() {
                return None;
            }
            let mut sum = HttpsCounts::default();
            for counters in listeners.iter() {
                sum.handshakes_done += counters.handshakes_done.load(Relaxed);
                sum.handshakes_failed += counters.handshakes_failed.load(Relaxed);
                sum.handshakes_timed_out += counters.handshakes_timed_out.load(Relaxed);
                sum.handshakes_evicted += counters.handshakes_evicted.load(Relaxed);
                sum.refused_over_cap += counters.refused_over_cap.load(Relaxed);
                sum.idle_closed += counters.idle_closed.load(Relaxed);
            }
            Some(sum)
        }
        #[cfg(not(feature = "http"))]
        None
    }

    /// The node's metrics in the Prometheus text format (`GET /v1/metrics`).
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn metrics_text(&self) -> Result<String, NodeError> {
        let status = self.status().await?;
        let failover = crate::failover_status::observe(&self.shared, &status);
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
        let transport_send_drops = Some(status.transport_send_drops);
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
            latency: crate::latency_metrics::LatencySnapshot::capture(
                self.shared.replica.metrics(),
                &self.shared.wal_fsync,
            ),
            uptime_seconds: self.uptime().as_secs_f64(),
            transport_send_drops,
            https: self.https_counts(),
        };
        let mut text = render(&snapshot);
        // Issue 14: the built-in host checks' values and the failover state.
        text.push_str(&crate::host_checks::render_metrics(
            &self.shared.host_checks.reports(),
            failover,
        ));
        // Issue 16: every health check's status, the host's own included.
        let checks = self.shared.health.borrow().checks.clone();
        text.push_str(&crate::health_check_metrics::render_metrics(&checks));
        text.push_str(&crate::backup_schedule::render_metrics(
            self.shared.backup.schedule.as_ref(),
        ));
        text.push_str(&crate::shared_state_metrics::render_metrics(
            &self.shared.shared_state.stats(),
        ));
        Ok(text)
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
            apply_backlog: 0,
            membership: ha_replicate::membership::VoterSet::with_voters([id]),
            peers: Vec::new(),
            failover_history: Vec::new(),
            elections_started: 0,
            refused_inputs: [("non_contiguous_entries", 0), ("overwrite_committed", 2)]
                .into_iter()
                .map(|(cause, count)| (cause.to_string(), count))
                .collect(),
            snapshot_transfer: Default::default(),
            transport_send_drops: Default::default(),
            transport_refusals: Default::default(),
            consistency: Default::default(),
            witness: false,
        };
        let text = render(&MetricsSnapshot {
            status,
            health: HealthStatus::Healthy,
            members_by_state: Vec::new(),
            drops: Vec::new(),
            locks: None,
            leaderless_ms_total: 0,
            latency: Default::default(),
            uptime_seconds: 1.0,
            transport_send_drops: None,
            https: None,
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

    fn status_with(
        peers: Vec<ha_replicate::driver::PeerStatus>,
        snapshot_transfer: ha_replicate::driver::SnapshotTransferStats,
    ) -> ReplicaStatus {
        use ha_core::{LogIndex, NodeId, Term};
        let id = NodeId::new("n1").unwrap();
        ReplicaStatus {
            node_id: id.clone(),
            role: "leader".into(),
            term: Term(3),
            leader: Some(id.clone()),
            quorum: true,
            last_index: LogIndex(900),
            commit_index: LogIndex(900),
            applied_index: LogIndex(900),
            apply_backlog: 0,
            membership: ha_replicate::membership::VoterSet::with_voters([id]),
            peers,
            failover_history: Vec::new(),
            elections_started: 1,
            refused_inputs: Default::default(),
            snapshot_transfer,
            transport_send_drops: Default::default(),
            transport_refusals: Default::default(),
            consistency: Default::default(),
            witness: false,
        }
    }

    fn peer(name: &str, state: Option<&str>) -> ha_replicate::driver::PeerStatus {
        ha_replicate::driver::PeerStatus {
            id: ha_core::NodeId::new(name).unwrap(),
            voter: true,
            match_index: ha_core::LogIndex(0),
            lag_entries: 900,
            applied_index: ha_core::LogIndex(0),
            apply_backlog: 0,
            apply_window_full: false,
            last_contact_ms: Some(5),
            catch_up: state.map(|state| ha_replicate::driver::CatchUp {
                state: state.to_string(),
                sent_bytes: 10,
                total_bytes: 100,
                reason: None,
                since_progress_ms: 1,
            }),
        }
    }

    fn render_status(
        status: ReplicaStatus,
        transport_send_drops: Option<SendDropCounts>,
    ) -> String {
        render(&MetricsSnapshot {
            status,
            health: HealthStatus::Healthy,
            members_by_state: Vec::new(),
            drops: Vec::new(),
            locks: None,
            leaderless_ms_total: 0,
            latency: Default::default(),
            uptime_seconds: 1.0,
            transport_send_drops,
            https: None,
        })
    }

    /// Both states are always present (a dashboard's alert on `stalled > 0` needs the series
    /// to exist at 0), and each counts the peers in that state.
    #[test]
    fn catch_up_followers_count_each_state_and_both_are_always_present() {
        let idle = render_status(status_with(Vec::new(), Default::default()), None);
        assert!(
            idle.contains(
                "# TYPE ha_catch_up_followers gauge\n\
                 ha_catch_up_followers{state=\"snapshot\"} 0\n\
                 ha_catch_up_followers{state=\"stalled\"} 0\n"
            ),
            "{idle}"
        );
        let peers = vec![
            peer("n2", Some("snapshot")),
            peer("n3", Some("stalled")),
            peer("n4", Some("snapshot")),
            peer("n5", None),
        ];
        let busy = render_status(status_with(peers, Default::default()), None);
        assert!(
            busy.contains(
                "ha_catch_up_followers{state=\"snapshot\"} 2\n\
                 ha_catch_up_followers{state=\"stalled\"} 1\n"
            ),
            "{busy}"
        );
    }

    /// A slow follower's apply backlog and the leader's window, per peer, and this node's own.
    #[test]
    fn apply_backlogs_are_gauges_per_peer_and_for_the_node() {
        let mut slow = peer("n2", None);
        slow.apply_backlog = 64;
        slow.apply_window_full = true;
        let mut status = status_with(vec![slow, peer("n3", None)], Default::default());
        status.apply_backlog = 7;
        let text = render_status(status, None);
        for expected in [
            "# TYPE ha_apply_backlog_entries gauge\nha_apply_backlog_entries 7\n",
            "ha_peer_apply_backlog_entries{peer=\"n2\"} 64\nha_peer_apply_backlog_entries{peer=\"n3\"} 0\n",
            "ha_peer_apply_window_full{peer=\"n2\"} 1\nha_peer_apply_window_full{peer=\"n3\"} 0\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
    }

    #[test]
    fn snapshot_transfer_counts_are_counters_and_gauges_with_their_values() {
        let transfer = ha_replicate::driver::SnapshotTransferStats {
            bytes_sent: 62_914_560,
            bytes_received: 1_048_576,
            installs: 2,
            resumes: 3,
            discards: 4,
            taken: 5,
            last_take_ms: 812,
            current_bytes: 60_111_763,
        };
        let text = render_status(status_with(Vec::new(), transfer), None);
        for (name, kind, value) in [
            ("ha_snapshot_bytes_sent_total", "counter", "62914560"),
            ("ha_snapshot_bytes_received_total", "counter", "1048576"),
            ("ha_snapshot_installs_total", "counter", "2"),
            ("ha_snapshot_resumes_total", "counter", "3"),
            ("ha_snapshot_discards_total", "counter", "4"),
            ("ha_snapshots_taken_total", "counter", "5"),
            ("ha_snapshot_last_take_seconds", "gauge", "0.812"),
            ("ha_snapshot_bytes", "gauge", "60111763"),
        ] {
            let block = format!("# TYPE {name} {kind}\n{name} {value}\n");
            assert!(text.contains(&block), "missing {block:?} in {text}");
        }
    }

    /// Every refusal cause of the transport has a sample, zeros included, so a dashboard
    /// can alert on any of them from the first scrape.
    #[test]
    fn transport_refusals_are_a_counter_for_every_cause_zeros_included() {
        use ha_replicate::transport::{RejectCause, RejectCounts};
        let mut status = status_with(Vec::new(), Default::default());
        let mut refusals = RejectCounts::default();
        refusals.record(RejectCause::WrongCa);
        refusals.record(RejectCause::WrongCa);
        refusals.record(RejectCause::IdentityMismatch);
        status.transport_refusals = refusals;
        let text = render_status(status, None);
        assert!(
            text.contains("# TYPE ha_transport_refusals_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP ha_transport_refusals_total "),
            "{text}"
        );
        for cause in RejectCause::ALL {
            let expected = match cause {
                RejectCause::WrongCa => 2,
                RejectCause::IdentityMismatch => 1,
                _ => 0,
            };
            let line = format!(
                "ha_transport_refusals_total{{cause=\"{}\"}} {expected}\n",
                cause.as_str()
            );
            assert!(text.contains(&line), "missing {line:?} in {text}");
        }
    }

    /// The oversize counter appears with the transport's count when the counts are known,
    /// and is left out (not a misleading 0) when they are not.
    #[test]
    fn oversize_drops_are_a_counter_when_the_transport_counts_are_known() {
        let mut drops = SendDropCounts::default();
        for _ in 0..7 {
            drops.record(SendDropCause::TooLarge);
        }
        drops.record(SendDropCause::QueueFull);
        let known = render_status(status_with(Vec::new(), Default::default()), Some(drops));
        assert!(
            known.contains(
                "# TYPE ha_transport_oversize_dropped_total counter\n\
                 ha_transport_oversize_dropped_total 7\n"
            ),
            "{known}"
        );
        let unknown = render_status(status_with(Vec::new(), Default::default()), None);
        assert!(
            !unknown.contains("ha_transport_oversize_dropped_total"),
            "{unknown}"
        );
    }
}
