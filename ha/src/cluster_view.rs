//! What a node reports about itself and the cluster: the bodies of `/v1/health`,
//! `/v1/cluster` and `/v1/failover/history` (docs/ARCHITECTURE.md, "Admin HTTP contract"),
//! built from the replica's status and gossip's member list.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::{CheckResult, HealthStatus, MemberInfo, NodeId, NodeState, Priority};
use ha_replicate::driver::{CatchUp, ReplicaStatus};
use ha_replicate::replica::FailoverRecord;
use serde::{Deserialize, Serialize};

/// The name of the check a leader adds to its health while a follower is stalled: nothing
/// the leader can send brings it forward, for longer than an election timeout. The check is
/// not critical, so it makes the leader `DEGRADED`, never `UNHEALTHY`: a lagging follower is
/// the leader's problem to report, not a reason to hand leadership over (a new leader would
/// face the same follower, after an election without a leader). The detail is in
/// [`HealthReport::problems`].
pub const CATCH_UP_CHECK: &str = "catch_up";

/// What is behind a check that is not healthy, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProblem {
    /// The check's name (for example [`CATCH_UP_CHECK`]).
    pub check: String,
    /// What is wrong: for `catch_up`, `"<follower>: <reason>"`.
    pub detail: String,
}

/// This node's health: `GET /v1/health` (200 when `quorum` and not unhealthy, else 503).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// This node.
    pub node: NodeId,
    /// Its replication role: `leader`, `follower`, `candidate`, `pre_candidate`, `learner`,
    /// or `witness` on a witness (issue 15).
    pub role: String,
    /// The state it advertises by gossip.
    pub state: NodeState,
    /// Its aggregated health.
    pub health: HealthStatus,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// Whether it is part of a working majority.
    pub quorum: bool,
    /// Each health check's latest result (the host's, then the node's own such as
    /// [`CATCH_UP_CHECK`] while it applies).
    pub checks: Vec<CheckResult>,
    /// The details of the node's own checks that are not healthy, one per problem (empty
    /// when there is none).
    #[serde(default)]
    pub problems: Vec<HealthProblem>,
    /// The built-in host checks' last readings with their measured values (issue 14; empty
    /// when `health.host_checks` is off). Each is also one of `checks`.
    #[serde(default)]
    pub host_checks: Vec<crate::host_checks::HostCheckReport>,
}

impl HealthReport {
    /// Whether `/v1/health` answers 200: in a quorum, and not unhealthy (a degraded node
    /// still serves).
    pub fn is_ok(&self) -> bool {
        self.quorum && self.health != HealthStatus::Unhealthy
    }
}

/// The cluster table: `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// The commit index as this node knows it.
    pub commit_index: u64,
    /// Which node answered.
    pub answered_by: NodeId,
    /// Every member known by gossip or in the replicated configuration, this node included,
    /// by id.
    pub members: Vec<MemberView>,
    /// Where the answering node sees the cluster in a failover (issue 14; see
    /// [`failover_status`](crate::failover_status) for each state's definition).
    #[serde(default)]
    pub failover: crate::failover_status::FailoverStatus,
}

/// One row of the cluster table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member.
    pub id: NodeId,
    /// Its gossip and RPC address (`None` when only the replicated configuration knows it).
    pub addr: Option<SocketAddr>,
    /// Its admin HTTP address, if it serves one.
    pub http: Option<SocketAddr>,
    /// Its leadership priority.
    pub priority: u32,
    /// `leader`, `follower` (a voter), `witness` (a voter that holds no state and never
    /// leads, as its gossip metadata says; issue 15), `learner`, or `none` (known by gossip
    /// only, not in the replicated configuration). For the answering node, its own engine
    /// role (`witness` on a witness).
    pub role: String,
    /// The state it advertises (UNREACHABLE when the failure detector says so).
    pub state: NodeState,
    /// Its health as it advertises it.
    pub health: HealthStatus,
    /// Whether it votes.
    pub voter: bool,
    /// Highest index known replicated on it (reported by the leader only).
    pub match_index: Option<u64>,
    /// Entries behind the leader's log (leader only).
    pub lag_entries: Option<u64>,
    /// Milliseconds since it last answered the leader (leader only).
    pub last_contact_ms: Option<u64>,
    /// How the leader is bringing it up to date when it is far behind (leader only; `null`
    /// while it is caught up or sent entries normally): `state` is `snapshot` while a
    /// snapshot streams to it (`sent_bytes` of `total_bytes` acknowledged) or `stalled` when
    /// nothing the leader can send brings it forward (`reason` says why);
    /// `since_progress_ms` is the time since it last acknowledged anything.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
    /// The consistency monitor's verdict (leader only; on another node only its own row,
    /// `false` while it knows itself diverged): `true` when the member's digest of its applied
    /// state at checkpoint `digest_index` equals the majority's, `false` when it differs,
    /// `null` when not judged yet or the monitor is off.
    #[serde(default)]
    pub digest_ok: Option<bool>,
    /// The checkpoint index `digest_ok` is about.
    #[serde(default)]
    pub digest_index: Option<u64>,
}

impl MemberView {
    /// A row with no address, progress or metadata yet.
    fn without_progress(id: NodeId, role: String, voter: bool) -> Self {
        Self {
            id,
            addr: None,
            http: None,
            priority: 0,
            role,
            state: NodeState::Joining,
            health: HealthStatus::Unknown,
            voter,
            match_index: None,
            lag_entries: None,
            last_contact_ms: None,
            catch_up: None,
            digest_ok: None,
            digest_index: None,
        }
    }
}

/// One leadership change: an element of `GET /v1/failover/history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverEvent {
    /// The new leader's term.
    pub term: u64,
    /// The previous leader, if the new one knew it.
    pub from: Option<NodeId>,
    /// The new leader.
    pub to: NodeId,
    /// Why: `startup`, `leader_lost`, `manual_transfer`, `failback`, `unhealthy_leader`,
    /// `shutdown`, `manual_election`.
    pub cause: String,
    /// How long the cluster had no leader, as the new leader measured it.
    pub leaderless_ms: u64,
    /// When the new leader won, in Unix milliseconds by its clock.
    pub at_ms: u64,
}

impl From<&FailoverRecord> for FailoverEvent {
    fn from(record: &FailoverRecord) -> Self {
        Self {
            term: record.term.0,
            from: record.from.clone(),
            to: record.to.clone(),
            cause: record.cause.as_str().to_string(),
            leaderless_ms: record.leaderless_ms,
            at_ms: record.at_ms,
        }
    }
}

/// What the answering node knows about itself that gossip does not list.
#[derive(Clone, Debug)]
pub struct LocalMember {
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its admin HTTP address.
    pub http: Option<SocketAddr>,
    /// Its priority.
    pub priority: Priority,
    /// Its advertised state.
    pub state: NodeState,
    /// Its health.
    pub health: HealthStatus,
    /// Whether it is a witness (`config.witness`).
    pub witness: bool,
}

/// The role a node reports for itself: its engine role, or `witness` on a witness (which
/// never leads or campaigns, so its engine role would only ever say `follower`).
pub fn own_role(engine_role: &str, witness: bool) -> String {
    if witness && engine_role != "leader" {
        "witness".to_string()
    } else {
        engine_role.to_string()
    }
}

impl ClusterView {
    /// Merge the replica's status with gossip's members.
    pub fn build(status: &ReplicaStatus, local: &LocalMember, members: &[MemberInfo]) -> Self {
        let membership = &status.membership;
        let mut rows: BTreeMap<NodeId, MemberView> = BTreeMap::new();
        let witnesses: Vec<&NodeId> = members
            .iter()
            .filter(|member| {
                member
                    .metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.witness)
            })
            .map(|member| &member.id)
            .collect();
        let role_of = |id: &NodeId| -> String {
            if status.leader.as_ref() == Some(id) {
                "leader"
            } else if membership.is_voter(id) && witnesses.contains(&id) {
                "witness"
            } else if membership.is_voter(id) {
                "follower"
            } else if membership.contains(id) {
                "learner"
            } else {
                "none"
            }
            .to_string()
        };
        for member in members {
            let metadata = member.metadata.as_ref();
            rows.insert(
                member.id.clone(),
                MemberView {
                    addr: Some(member.gossip_addr),
                    http: metadata.and_then(|metadata| metadata.http_addr),
                    priority: metadata.map_or(0, |metadata| metadata.priority.0),
                    state: member.state(),
                    health: metadata.map_or(HealthStatus::Unknown, |metadata| metadata.health),
                    ..MemberView::without_progress(
                        member.id.clone(),
                        role_of(&member.id),
                        membership.is_voter(&member.id),
                    )
                },
            );
        }
        for id in membership.members() {
            // Known to the log but not (or no longer) to gossip.
            rows.entry(id.clone()).or_insert_with(|| MemberView {
                addr: None,
                http: None,
                priority: 0,
                state: NodeState::Unreachable,
                health: HealthStatus::Unknown,
                ..MemberView::without_progress(id.clone(), role_of(id), membership.is_voter(id))
            });
        }
        rows.insert(
            status.node_id.clone(),
            MemberView {
                id: status.node_id.clone(),
                addr: Some(local.addr),
                http: local.http,
                priority: local.priority.0,
                role: own_role(&status.role, local.witness),
                state: local.state,
                health: local.health,
                voter: membership.is_voter(&status.node_id),
                match_index: (status.role == "leader").then_some(status.last_index.0),
                lag_entries: (status.role == "leader").then_some(0),
                last_contact_ms: (status.role == "leader").then_some(0),
                catch_up: None,
                digest_ok: None,
                digest_index: None,
            },
        );
        for row in rows.values_mut() {
            (row.digest_ok, row.digest_index) = crate::consistency_view::digest_column(
                &status.consistency,
                &status.node_id,
                &row.id,
            );
        }
        for peer in &status.peers {
            if let Some(row) = rows.get_mut(&peer.id) {
                row.match_index = Some(peer.match_index.0);
                row.lag_entries = Some(peer.lag_entries);
                row.last_contact_ms = peer.last_contact_ms;
                row.catch_up = peer.catch_up.clone();
            }
        }
        Self {
            leader: status.leader.clone(),
            term: status.term.0,
            commit_index: status.commit_index.0,
            answered_by: status.node_id.clone(),
            members: rows.into_values().collect(),
            failover: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ha_core::{LogIndex, NodeMetadata, Term};
    use ha_replicate::driver::PeerStatus;
    use ha_replicate::membership::VoterSet;

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("literal id")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn merges_gossip_and_replication_and_marks_the_leader() {
        let status = ReplicaStatus {
            node_id: id("n1"),
            role: "leader".into(),
            term: Term(4),
            leader: Some(id("n1")),
            quorum: true,
            last_index: LogIndex(20),
            commit_index: LogIndex(19),
            applied_index: LogIndex(19),
            apply_backlog: 0,
            membership: VoterSet::with_voters([id("n1"), id("n2"), id("n3")]),
            peers: vec![PeerStatus {
                id: id("n2"),
                voter: true,
                match_index: LogIndex(18),
                lag_entries: 2,
                applied_index: LogIndex(18),
                apply_backlog: 0,
                apply_window_full: false,
                last_contact_ms: Some(12),
                catch_up: None,
            }],
            failover_history: Vec::new(),
            elections_started: 1,
            refused_inputs: Default::default(),
            snapshot_transfer: Default::default(),
            transport_send_drops: Default::default(),
            transport_refusals: Default::default(),
            consistency: Default::default(),
            witness: false,
        };
        let mut metadata = NodeMetadata::new(Priority(5), addr(7102));
        metadata.state = NodeState::Active;
        metadata.health = HealthStatus::Healthy;
        metadata.http_addr = Some(addr(8102));
        let n2 = MemberInfo {
            id: id("n2"),
            gossip_addr: addr(7102),
            incarnation: 1,
            metadata: Some(metadata),
            reachable: true,
        };
        let gossip_only = MemberInfo {
            id: id("w"),
            gossip_addr: addr(7109),
            incarnation: 1,
            metadata: None,
            reachable: false,
        };
        let local = LocalMember {
            addr: addr(7101),
            http: Some(addr(8101)),
            priority: Priority(10),
            state: NodeState::Leader,
            health: HealthStatus::Healthy,
            witness: false,
        };
        let view = ClusterView::build(&status, &local, &[n2, gossip_only]);
        let ids: Vec<&str> = view.members.iter().map(|row| row.id.as_str()).collect();
        assert_eq!(ids, ["n1", "n2", "n3", "w"]);
        let row = |name: &str| &view.members[ids.iter().position(|id| *id == name).unwrap()];
        assert_eq!(row("n1").role, "leader");
        assert_eq!(row("n1").lag_entries, Some(0));
        assert_eq!(row("n2").role, "follower");
        assert_eq!(row("n2").lag_entries, Some(2));
        assert_eq!(row("n2").http, Some(addr(8102)));
        assert_eq!(
            row("n3").state,
            NodeState::Unreachable,
            "known only to the log"
        );
        assert_eq!(row("n3").match_index, None);
        assert_eq!(row("w").role, "none");
        assert_eq!(row("w").state, NodeState::Unreachable);
        assert_eq!(view.commit_index, 19);
    }

    fn leader_status(peers: Vec<PeerStatus>) -> ReplicaStatus {
        ReplicaStatus {
            node_id: id("n1"),
            role: "leader".into(),
            term: Term(4),
            leader: Some(id("n1")),
            quorum: true,
            last_index: LogIndex(20),
            commit_index: LogIndex(20),
            applied_index: LogIndex(20),
            apply_backlog: 0,
            membership: VoterSet::with_voters([id("n1"), id("n2"), id("n3")]),
            peers,
            failover_history: Vec::new(),
            elections_started: 1,
            refused_inputs: Default::default(),
            snapshot_transfer: Default::default(),
            transport_send_drops: Default::default(),
            transport_refusals: Default::default(),
            consistency: Default::default(),
            witness: false,
        }
    }

    fn peer(name: &str, catch_up: Option<CatchUp>) -> PeerStatus {
        PeerStatus {
            id: id(name),
            voter: true,
            match_index: LogIndex(0),
            lag_entries: 20,
            applied_index: LogIndex(0),
            apply_backlog: 0,
            apply_window_full: false,
            last_contact_ms: Some(3),
            catch_up,
        }
    }

    /// `/v1/cluster` only grows: every member keeps the fields of the contract, in order, and
    /// gains `catch_up`, `null` for a follower sent entries normally and an object for one
    /// receiving a snapshot.
    #[test]
    fn each_peer_shows_its_catch_up_state_and_keeps_every_earlier_field() {
        let streaming = CatchUp {
            state: "snapshot".into(),
            sent_bytes: 4_194_304,
            total_bytes: 62_914_560,
            reason: None,
            since_progress_ms: 40,
        };
        let status = leader_status(vec![peer("n2", Some(streaming)), peer("n3", None)]);
        let local = LocalMember {
            addr: addr(7101),
            http: Some(addr(8101)),
            priority: Priority(10),
            state: NodeState::Leader,
            health: HealthStatus::Healthy,
            witness: false,
        };
        let view = ClusterView::build(&status, &local, &[]);
        let body = serde_json::to_value(&view).expect("the view serializes");
        let members = body["members"].as_array().expect("members is a list");
        let keys: Vec<&str> = members[0]
            .as_object()
            .expect("a member is an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "id",
            "addr",
            "http",
            "priority",
            "role",
            "state",
            "health",
            "voter",
            "match_index",
            "lag_entries",
            "last_contact_ms",
            "catch_up",
            "digest_ok",
            "digest_index",
        ];
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(members[0]["id"], "n1");
        assert_eq!(members[0]["catch_up"], serde_json::Value::Null);
        assert_eq!(members[1]["id"], "n2");
        assert_eq!(
            members[1]["catch_up"],
            serde_json::json!({
                "state": "snapshot",
                "sent_bytes": 4_194_304,
                "total_bytes": 62_914_560,
                "reason": null,
                "since_progress_ms": 40,
            })
        );
        assert_eq!(members[2]["id"], "n3");
        assert_eq!(members[2]["catch_up"], serde_json::Value::Null);
        let parsed: ClusterView = serde_json::from_value(body).expect("the body parses back");
        assert_eq!(parsed, view);
    }

    /// A witness (issue 15) is a voter in the replicated configuration; the table shows it
    /// with role `witness`, from its gossip metadata, and a witness answering shows itself so.
    #[test]
    fn witnesses_show_role_witness_on_every_node() {
        let mut status = leader_status(Vec::new());
        let mut metadata = NodeMetadata::new(Priority(0), addr(7103));
        metadata.witness = true;
        let witness = MemberInfo {
            id: id("n3"),
            gossip_addr: addr(7103),
            incarnation: 1,
            metadata: Some(metadata),
            reachable: true,
        };
        let data = MemberInfo {
            id: id("n2"),
            gossip_addr: addr(7102),
            incarnation: 1,
            metadata: Some(NodeMetadata::new(Priority(1), addr(7102))),
            reachable: true,
        };
        let mut local = LocalMember {
            addr: addr(7101),
            http: None,
            priority: Priority(1),
            state: NodeState::Leader,
            health: HealthStatus::Healthy,
            witness: false,
        };
        let view = ClusterView::build(&status, &local, &[data.clone(), witness]);
        let roles: Vec<(&str, &str, bool)> = view
            .members
            .iter()
            .map(|row| (row.id.as_str(), row.role.as_str(), row.voter))
            .collect();
        assert_eq!(
            roles,
            [
                ("n1", "leader", true),
                ("n2", "follower", true),
                ("n3", "witness", true)
            ]
        );
        // The same table as the witness n3 answers it, n1 leading.
        status.node_id = id("n3");
        status.role = "follower".into();
        local.witness = true;
        local.priority = Priority(0);
        local.state = NodeState::Active;
        let mut n1 = NodeMetadata::new(Priority(1), addr(7101));
        n1.state = NodeState::Leader;
        let leader = MemberInfo {
            id: id("n1"),
            gossip_addr: addr(7101),
            incarnation: 1,
            metadata: Some(n1),
            reachable: true,
        };
        let view = ClusterView::build(&status, &local, &[leader, data]);
        let roles: Vec<(&str, &str)> = view
            .members
            .iter()
            .map(|row| (row.id.as_str(), row.role.as_str()))
            .collect();
        assert_eq!(
            roles,
            [("n1", "leader"), ("n2", "follower"), ("n3", "witness")]
        );
        assert_eq!(own_role("follower", true), "witness");
        assert_eq!(own_role("follower", false), "follower");
    }

    /// A body from a node that predates the field still parses (the field is an addition).
    #[test]
    fn a_member_without_catch_up_parses_as_none() {
        let row = serde_json::json!({
            "id": "n2", "addr": null, "http": null, "priority": 0, "role": "follower",
            "state": "ACTIVE", "health": "HEALTHY", "voter": true, "match_index": 3,
            "lag_entries": 0, "last_contact_ms": 5,
        });
        let parsed: MemberView = serde_json::from_value(row).expect("an older row parses");
        assert_eq!(parsed.catch_up, None);
    }
}
