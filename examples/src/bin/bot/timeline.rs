//! Who led when, as the demo saw it from the nodes' role events, and the table it prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Instant;

use ha::FailoverEvent;

/// One node's time as leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSpan {
    /// The leader.
    pub node: String,
    /// Its term.
    pub term: u64,
    /// When it reported leading.
    pub from: Instant,
    /// When it reported not leading, or was killed or stopped.
    pub until: Option<Instant>,
    /// When it started appending to the journal, and its fencing token.
    pub journal: Option<(Instant, u64)>,
}

/// Leader spans and who claimed each term.
pub struct Timeline {
    spans: Vec<LeaderSpan>,
    terms: BTreeMap<u64, BTreeSet<String>>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self {
            spans: Vec::new(),
            terms: BTreeMap::new(),
        }
    }

    /// A node reported `role` in `term` at `at`.
    pub fn on_role(&mut self, node: &str, role: &str, term: u64, at: Instant) {
        self.close(node, at);
        if role == "leader" {
            self.terms.entry(term).or_default().insert(node.to_string());
            self.spans.push(LeaderSpan {
                node: node.to_string(),
                term,
                from: at,
                until: None,
                journal: None,
            });
        }
    }

    /// A node was killed or stopped at `at`.
    pub fn on_gone(&mut self, node: &str, at: Instant) {
        self.close(node, at);
    }

    /// A node started appending to the journal under `token`.
    pub fn on_journal_started(&mut self, node: &str, token: u64, at: Instant) {
        if let Some(span) = self
            .spans
            .iter_mut()
            .rev()
            .find(|span| span.node == node && span.until.is_none())
            && span.journal.is_none()
        {
            span.journal = Some((at, token));
        }
    }

    fn close(&mut self, node: &str, at: Instant) {
        for span in self.spans.iter_mut().filter(|span| span.node == node) {
            if span.until.is_none() {
                span.until = Some(at);
            }
        }
    }

    /// When the latest leader started leading.
    pub fn last_leader_since(&self) -> Option<Instant> {
        self.spans.last().map(|span| span.from)
    }

    /// Every leader span, in order.
    pub fn leader_spans(&self) -> Vec<LeaderSpan> {
        self.spans.clone()
    }

    /// Each term with a leader, and every node that claimed to lead it (one, if all is well).
    pub fn leaders_per_term(&self) -> Vec<(u64, Vec<String>)> {
        self.terms
            .iter()
            .map(|(term, leaders)| (*term, leaders.iter().cloned().collect()))
            .collect()
    }

    /// The leaders table and the cluster's own failover history.
    pub fn render_leaders(spans: &[LeaderSpan], history: &[FailoverEvent]) -> String {
        let mut out = String::from(
            "leaders (as seen by the demo):\n  node  term  from ms  until ms  led ms  leaderless before  journal resumed after  token\n",
        );
        let origin = spans.first().map(|span| span.from);
        let at = |instant: Instant| {
            origin.map_or(0, |origin| {
                instant.saturating_duration_since(origin).as_millis()
            })
        };
        let mut previous_end: Option<Instant> = None;
        for span in spans {
            let led = span.until.map_or_else(
                || "-".to_string(),
                |until| {
                    until
                        .saturating_duration_since(span.from)
                        .as_millis()
                        .to_string()
                },
            );
            let gap = previous_end.map_or_else(
                || "-".to_string(),
                |end| {
                    format!(
                        "{} ms",
                        span.from.saturating_duration_since(end).as_millis()
                    )
                },
            );
            let (resumed, token) = span.journal.map_or_else(
                || ("-".to_string(), "-".to_string()),
                |(started, token)| {
                    (
                        format!(
                            "{} ms",
                            started.saturating_duration_since(span.from).as_millis()
                        ),
                        token.to_string(),
                    )
                },
            );
            let until = span
                .until
                .map_or_else(|| "-".to_string(), |until| at(until).to_string());
            let _ = writeln!(
                out,
                "  {:<4}  {:>4}  {:>7}  {:>8}  {:>6}  {:>17}  {:>21}  {:>5}",
                span.node,
                span.term,
                at(span.from),
                until,
                led,
                gap,
                resumed,
                token
            );
            previous_end = span.until;
        }
        out.push_str(
            "failover history (GET /v1/failover/history, as the new leaders measured it):\n",
        );
        for event in history {
            let _ = writeln!(
                out,
                "  term {:>3}  {:>4} -> {:<4}  {:<16}  leaderless {} ms",
                event.term,
                event.from.as_ref().map_or("-", |from| from.as_str()),
                event.to.as_str(),
                event.cause,
                event.leaderless_ms
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn spans_close_on_step_down_or_death_and_terms_list_claimants() {
        let origin = Instant::now();
        let later = |ms| origin + Duration::from_millis(ms);
        let mut timeline = Timeline::new();
        timeline.on_role("n1", "leader", 2, later(10));
        timeline.on_journal_started("n1", 5, later(20));
        timeline.on_gone("n1", later(100));
        timeline.on_role("n2", "leader", 3, later(300));
        timeline.on_role("n2", "follower", 4, later(900));
        timeline.on_role("n1", "leader", 4, later(905));
        let spans = timeline.leader_spans();
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].until, Some(later(100)));
        assert_eq!(spans[0].journal, Some((later(20), 5)));
        assert_eq!(spans[1].until, Some(later(900)));
        assert_eq!(spans[2].until, None);
        assert_eq!(
            timeline.leaders_per_term(),
            vec![
                (2, vec!["n1".to_string()]),
                (3, vec!["n2".to_string()]),
                (4, vec!["n1".to_string()])
            ]
        );
        let table = Timeline::render_leaders(&spans, &[]);
        assert!(table.contains("200 ms"), "the gap before n2: {table}");
    }
}
