//! The `EVENT {json}` lines a node prints on stdout, one per membership change.
//!
//! They are the node's machine-readable output: `bot demo` parses them from its children, and
//! so can any script. Everything else (logs) goes to stderr.

use std::net::SocketAddr;

use ha_core::{MemberEvent, MemberInfo, NodeState};
use serde::{Deserialize, Serialize};

/// Every event line starts with this, so a parent can tell events from anything else.
pub const EVENT_PREFIX: &str = "EVENT ";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// This node bound its socket and started gossiping (`member` is the node itself).
    Started,
    /// A member became reachable: it joined, or came back (possibly restarted).
    Up,
    /// A member's metadata changed (state, priority, addresses).
    Updated,
    /// A member left gracefully.
    Left,
    /// The failure detector declared a member down.
    Unreachable,
    /// This node is known by at least one other member.
    SelfActive,
    /// This node knows no reachable member.
    SelfIdle,
    /// The cluster had declared this node down; it rejoined under a new incarnation.
    SelfRejoined,
    /// This node fell behind its own event stream and missed `missed` events; `member` lines
    /// follow with the current view.
    Lagged,
    /// One member of the current view, printed after `lagged`.
    Member,
    /// This node is leaving gracefully (`reason` says why).
    Stopping,
    /// This node has left and is about to exit.
    Stopped,
    /// This node's replication role, term or known leader changed (`role`, `term`, `leader`).
    Role,
    /// This node's aggregated health changed (`state` holds it).
    Health,
    /// This node holds the journal lock (`token`) and starts appending at `seq`.
    JournalStarted,
    /// This node stopped appending (`reason`), having written `written` entries, the last
    /// numbered `seq`.
    JournalStopped,
    /// The consistency monitor found `member`'s applied state different from the majority's
    /// (`reason`: `checkpoint N`).
    ReplicaDiverged,
    /// `member` (this node) reinstalled the leader's snapshot, repairing the divergence found
    /// at the checkpoint in `reason`.
    ReplicaRepaired,
}

/// One event line's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Milliseconds since this node process started (monotonic clock).
    pub at_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch, only to correlate with other logs.
    pub unix_ms: u64,
    /// The id of the node that reports the event.
    pub node: String,
    /// What happened.
    pub kind: EventKind,
    /// The member the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The member's gossip address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// The member's state as the reporting node sees it (ACTIVE, UNREACHABLE, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The member's incarnation (grows with every restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// The member's advertised priority, once its metadata arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The member's advertised admin HTTP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Why the node is stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many events were missed (for `lagged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
    /// The replication role (for `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The term (for `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The known leader (for `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The journal lock's fencing token (for `journal_started` / `journal_stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// A journal sequence number (the first to write, or the last written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Journal entries written under one token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<u64>,
}

impl EventLine {
    /// A line about nothing in particular, to fill in.
    pub fn new(node: &str, kind: EventKind, at_ms: u64, unix_ms: u64) -> Self {
        Self {
            at_ms,
            unix_ms,
            node: node.to_string(),
            kind,
            member: None,
            addr: None,
            state: None,
            incarnation: None,
            priority: None,
            http: None,
            reason: None,
            missed: None,
            role: None,
            term: None,
            leader: None,
            token: None,
            seq: None,
            written: None,
        }
    }

    /// The same line with a member's id, address, incarnation and advertised metadata.
    pub fn with_member(mut self, member: &MemberInfo, state: NodeState) -> Self {
        self.member = Some(member.id.to_string());
        self.addr = Some(member.gossip_addr);
        self.state = Some(state.as_str().to_string());
        self.incarnation = Some(member.incarnation);
        if let Some(metadata) = &member.metadata {
            self.priority = Some(metadata.priority.0);
            self.http = metadata.http_addr;
        }
        self
    }

    /// The line for a gossip membership event.
    pub fn from_member_event(node: &str, event: &MemberEvent, at_ms: u64, unix_ms: u64) -> Self {
        match event {
            MemberEvent::Up(member) => {
                Self::new(node, EventKind::Up, at_ms, unix_ms).with_member(member, member.state())
            }
            MemberEvent::Updated(member) => Self::new(node, EventKind::Updated, at_ms, unix_ms)
                .with_member(member, member.state()),
            // A member is only reported as left after it announced LEAVING; its `state()` says
            // UNREACHABLE merely because it no longer answers.
            MemberEvent::Left(member) => Self::new(node, EventKind::Left, at_ms, unix_ms)
                .with_member(member, NodeState::Leaving),
            MemberEvent::Unreachable(member) => {
                Self::new(node, EventKind::Unreachable, at_ms, unix_ms)
                    .with_member(member, NodeState::Unreachable)
            }
            MemberEvent::SelfActive => Self::new(node, EventKind::SelfActive, at_ms, unix_ms),
            MemberEvent::SelfIdle => Self::new(node, EventKind::SelfIdle, at_ms, unix_ms),
            MemberEvent::SelfRejoined { incarnation } => {
                let mut line = Self::new(node, EventKind::SelfRejoined, at_ms, unix_ms);
                line.incarnation = Some(*incarnation);
                line
            }
        }
    }

    /// The full line, prefix included, without a newline.
    pub fn to_line(&self) -> String {
        // Serialising a struct of strings, numbers and addresses cannot fail; fall back to a
        // minimal line rather than panic if it somehow does.
        let json = serde_json::to_string(self).unwrap_or_else(|error| {
            format!(
                "{{\"node\":{:?},\"kind\":\"error\",\"reason\":{:?}}}",
                self.node,
                error.to_string()
            )
        });
        format!("{EVENT_PREFIX}{json}")
    }

    /// Parse a line printed by [`to_line`](Self::to_line). `None` for lines without the prefix
    /// (anything else a node might print).
    ///
    /// # Errors
    /// The JSON error when the line has the prefix but is not a valid event.
    pub fn parse(line: &str) -> Option<Result<Self, serde_json::Error>> {
        let json = line.trim_end().strip_prefix(EVENT_PREFIX)?;
        Some(serde_json::from_str(json))
    }
}

#[cfg(test)]
mod tests {
    use ha_core::{NodeId, NodeMetadata, Priority};

    use super::*;

    fn member() -> MemberInfo {
        let addr: SocketAddr = "127.0.0.1:7102".parse().expect("literal address");
        let mut metadata = NodeMetadata::new(Priority(20), addr);
        metadata.state = NodeState::Active;
        metadata.http_addr = "127.0.0.1:8102".parse().ok();
        MemberInfo {
            id: NodeId::new("n2").expect("literal id"),
            gossip_addr: addr,
            incarnation: 7,
            metadata: Some(metadata),
            reachable: true,
        }
    }

    #[test]
    fn member_events_round_trip_through_a_line() {
        let event = MemberEvent::Up(member());
        let line = EventLine::from_member_event("n1", &event, 12, 34).to_line();
        assert!(line.starts_with("EVENT {\"at_ms\":12,"), "{line}");
        assert!(line.contains("\"kind\":\"up\""), "{line}");
        assert!(line.contains("\"state\":\"ACTIVE\""), "{line}");
        let parsed = EventLine::parse(&line).expect("has prefix").expect("valid");
        assert_eq!(parsed.member.as_deref(), Some("n2"));
        assert_eq!(parsed.incarnation, Some(7));
        assert_eq!(parsed.priority, Some(20));
        assert_eq!(parsed.http, "127.0.0.1:8102".parse().ok());
    }

    #[test]
    fn unreachable_and_left_report_their_state() {
        let line = EventLine::from_member_event("n1", &MemberEvent::Unreachable(member()), 0, 0);
        assert_eq!(line.state.as_deref(), Some("UNREACHABLE"));
        let line = EventLine::from_member_event("n1", &MemberEvent::Left(member()), 0, 0);
        assert_eq!(line.state.as_deref(), Some("LEAVING"));
    }

    #[test]
    fn other_lines_are_ignored_and_bad_events_are_errors() {
        assert!(EventLine::parse("hello").is_none());
        assert!(matches!(EventLine::parse("EVENT {oops"), Some(Err(_))));
    }
}
