//! The replica consistency monitor as the node shows it: the `digest_ok` column of
//! `/v1/cluster`, the `ha_consistency_*` metrics, the non-critical health check
//! [`CONSISTENCY_CHECK`] and the [`NodeEvent::ReplicaDiverged`] /
//! [`NodeEvent::ReplicaRepaired`] events, all read from the replica's
//! [`ConsistencyStatus`].

use std::collections::BTreeMap;

use ha_core::{CheckResult, HealthStatus, LogIndex, NodeId};
use ha_replicate::replica::ConsistencyStatus;

use crate::cluster_view::HealthProblem;
use crate::event::NodeEvent;
use crate::metrics::PrometheusText;

/// The name of the check a diverged node adds to its health: its applied state differs from
/// the majority's at a checkpoint. Not critical: the node is `DEGRADED` (and never campaigns,
/// which the replica enforces itself); a diverged leader hands over on its own.
pub const CONSISTENCY_CHECK: &str = "consistency";

/// `digest_ok` and `digest_index` of the row of `node`: the leader's latest verdict about it;
/// on another node, `false` on its own row while it knows itself diverged, else unknown.
pub fn digest_column(
    status: &ConsistencyStatus,
    answering: &NodeId,
    node: &NodeId,
) -> (Option<bool>, Option<u64>) {
    if let Some(verdict) = status.verdicts.get(node) {
        return (Some(verdict.ok), Some(verdict.index.0));
    }
    match status.diverged_at {
        Some(index) if node == answering => (Some(false), Some(index.0)),
        _ => (None, None),
    }
}

/// Append the `ha_consistency_*` metrics.
pub fn render_metrics(out: &mut PrometheusText, status: &ConsistencyStatus) {
    out.single(
        "ha_consistency_checks_total",
        "counter",
        "Replica digests this node judged as leader at consistency checkpoints, since it started.",
        status.checks as f64,
    );
    out.single(
        "ha_consistency_mismatches_total",
        "counter",
        "Of those, digests that differed from the majority's: a replica whose applied state diverged.",
        status.mismatches as f64,
    );
    out.single(
        "ha_consistency_diverged",
        "gauge",
        "1 while this node's applied state is known diverged (it never campaigns until repaired).",
        if status.diverged_at.is_some() {
            1.0
        } else {
            0.0
        },
    );
    out.single(
        "ha_consistency_repairs_total",
        "counter",
        "Snapshots from the leader this node reinstalled to repair a divergence, since it started.",
        status.repairs as f64,
    );
    out.single(
        "ha_consistency_last_checkpoint_index",
        "gauge",
        "The latest checkpoint index this node computed a digest for (0 before the first).",
        status.last_checkpoint.map_or(0.0, |index| index.0 as f64),
    );
    out.single(
        "ha_consistency_last_checkpoint_state_bytes",
        "gauge",
        "Bytes of the applied state's stream hashed at that checkpoint; a leader waits for as many log bytes before the next.",
        status.last_checkpoint_state_bytes as f64,
    );
    out.family(
        "ha_consistency_digest_ok",
        "gauge",
        "1 when the replica's digest at its latest judged checkpoint equals the majority's, 0 when it differs (leader only).",
    );
    for (peer, verdict) in &status.verdicts {
        out.sample(
            "ha_consistency_digest_ok",
            &[("peer", peer.as_str())],
            if verdict.ok { 1.0 } else { 0.0 },
        );
    }
}

/// Follows the replica's consistency status for the health runner: the health check, and
/// the events when a replica is found diverged or a repair completes.
#[derive(Debug, Default)]
pub(crate) struct ConsistencyWatch {
    /// This node diverged at that checkpoint.
    diverged_at: Option<LogIndex>,
    /// The latest divergence of this node already announced.
    announced: Option<LogIndex>,
    repairs: u64,
    /// On the leader: replicas whose latest verdict is a mismatch.
    mismatched: BTreeMap<NodeId, LogIndex>,
}

impl ConsistencyWatch {
    /// Take the latest status (`None` when the replica did not answer: keep the last) and
    /// return the events to announce.
    pub(crate) fn observe(
        &mut self,
        own: &NodeId,
        status: Option<&ConsistencyStatus>,
    ) -> Vec<NodeEvent> {
        let Some(status) = status else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let mismatched: BTreeMap<NodeId, LogIndex> = status
            .verdicts
            .iter()
            .filter(|(_, verdict)| !verdict.ok)
            .map(|(node, verdict)| (node.clone(), verdict.index))
            .collect();
        for (node, index) in &mismatched {
            if self.mismatched.get(node) != Some(index) && node != own {
                events.push(NodeEvent::ReplicaDiverged {
                    node: node.clone(),
                    index: *index,
                });
            }
        }
        self.mismatched = mismatched;
        // A repair can be over between two looks: the divergence is announced all the same,
        // from the latest one the replica remembers.
        if let Some(index) = status.diverged_at.or(status.last_diverged_at)
            && self.announced != Some(index)
            && (status.diverged_at.is_some() || status.repairs > self.repairs)
        {
            self.announced = Some(index);
            events.push(NodeEvent::ReplicaDiverged {
                node: own.clone(),
                index,
            });
        }
        if status.repairs > self.repairs
            && let Some(index) = status.last_diverged_at
        {
            events.push(NodeEvent::ReplicaRepaired {
                node: own.clone(),
                index,
            });
        }
        self.diverged_at = status.diverged_at;
        self.repairs = status.repairs;
        events
    }

    /// The check while this node is diverged.
    pub(crate) fn check(&self) -> Option<CheckResult> {
        self.diverged_at.map(|_| CheckResult {
            name: CONSISTENCY_CHECK.to_string(),
            status: HealthStatus::Degraded,
            critical: false,
        })
    }

    /// The problem while this node is diverged.
    pub(crate) fn problems(&self) -> Vec<HealthProblem> {
        self.diverged_at
            .map(|index| HealthProblem {
                check: CONSISTENCY_CHECK.to_string(),
                detail: format!(
                    "applied state differs from the majority's at checkpoint {index}; \
                     not campaigning until a snapshot from the leader replaces it"
                ),
            })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ha_replicate::replica::DigestVerdict;

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("valid id")
    }

    #[test]
    fn a_diverged_follower_is_announced_once_then_its_repair() {
        let mut watch = ConsistencyWatch::default();
        let mut status = ConsistencyStatus::default();
        assert_eq!(watch.observe(&id("n3"), Some(&status)), vec![]);
        status.diverged_at = Some(LogIndex(40));
        status.last_diverged_at = Some(LogIndex(40));
        let diverged = NodeEvent::ReplicaDiverged {
            node: id("n3"),
            index: LogIndex(40),
        };
        assert_eq!(watch.observe(&id("n3"), Some(&status)), vec![diverged]);
        assert_eq!(watch.observe(&id("n3"), Some(&status)), vec![]);
        assert_eq!(
            watch.check().map(|check| (check.status, check.critical)),
            Some((HealthStatus::Degraded, false))
        );
        status.diverged_at = None;
        status.repairs = 1;
        assert_eq!(
            watch.observe(&id("n3"), Some(&status)),
            vec![NodeEvent::ReplicaRepaired {
                node: id("n3"),
                index: LogIndex(40)
            }]
        );
        assert_eq!(watch.check(), None);
        assert!(watch.problems().is_empty());
    }

    #[test]
    fn a_repair_over_between_two_looks_is_still_announced() {
        let mut watch = ConsistencyWatch::default();
        let status = ConsistencyStatus {
            last_diverged_at: Some(LogIndex(80)),
            repairs: 1,
            ..ConsistencyStatus::default()
        };
        assert_eq!(
            watch.observe(&id("n3"), Some(&status)),
            vec![
                NodeEvent::ReplicaDiverged {
                    node: id("n3"),
                    index: LogIndex(80)
                },
                NodeEvent::ReplicaRepaired {
                    node: id("n3"),
                    index: LogIndex(80)
                }
            ]
        );
        assert_eq!(watch.observe(&id("n3"), Some(&status)), vec![]);
    }

    #[test]
    fn the_leader_announces_each_new_mismatch_and_shows_the_column() {
        let mut watch = ConsistencyWatch::default();
        let mut status = ConsistencyStatus::default();
        let bad = DigestVerdict {
            index: LogIndex(40),
            ok: false,
        };
        status.verdicts.insert(id("n3"), bad);
        assert_eq!(
            watch.observe(&id("n1"), Some(&status)),
            vec![NodeEvent::ReplicaDiverged {
                node: id("n3"),
                index: LogIndex(40)
            }]
        );
        assert_eq!(watch.observe(&id("n1"), None), vec![]);
        assert_eq!(
            digest_column(&status, &id("n1"), &id("n3")),
            (Some(false), Some(40))
        );
        assert_eq!(digest_column(&status, &id("n1"), &id("n2")), (None, None));
        let mut text = PrometheusText::default();
        render_metrics(&mut text, &status);
        let text = text.finish();
        assert!(
            text.contains("ha_consistency_digest_ok{peer=\"n3\"} 0"),
            "{text}"
        );
    }
}
