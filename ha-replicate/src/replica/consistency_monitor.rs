//! The replica consistency monitor: checkpoint digests, the leader's comparison, and the
//! diverged state that ends with a repair.
//!
//! The host's state machine must be deterministic (see [`StateMachine`]'s correctness
//! requirements); nothing else checks it. The leader appends a checkpoint entry
//! ([`Payload::Checkpoint`](crate::entry::Payload::Checkpoint)) when
//! [`ConsistencySettings::checkpoint_due`] says so: at least
//! [`check_every_entries`](ConsistencySettings::check_every_entries) entries since the last
//! one, and at least as many log bytes as the state's stream held at the last one, so hashing
//! costs at most one state byte per byte written however large the state grows. Every replica
//! that applies a checkpoint entry takes a point-in-time copy of its applied state there and
//! hashes it off the apply path ([`DigestJob`](crate::replica::DigestJob)); the log is what
//! makes every replica's digest describe the same index. Followers send theirs to the leader
//! ([`Rpc::Digest`](crate::replica::Rpc::Digest)); the leader judges each replica against the
//! digest a majority of voters agree on (its own when every voter reported and no majority
//! agrees) and tells each replica its verdict
//! ([`Rpc::DigestVerdict`](crate::replica::Rpc::DigestVerdict)). A replica judged different is
//! *diverged*: it never campaigns (a leader hands over), and with `repair` it stops applying
//! and asks the leader for its snapshot until it has reinstalled one.
//!
//! Everything here is sans-IO: digests come in as inputs, verdicts go out as data.
//!
//! [`StateMachine`]: ha_core::StateMachine

use std::collections::{BTreeMap, BTreeSet};

use ha_core::{ConsistencyCheckConfig, LogIndex, Millis, NodeId};
use serde::{Deserialize, Serialize};

use crate::replica::digest_job::StateDigest;

/// Checkpoint rounds the leader keeps open (and own digests every replica keeps): reports for
/// older checkpoints are dropped. Bounded, whatever peers send.
pub const CONSISTENCY_ROUNDS_KEPT: usize = 8;

/// What the monitor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsistencySettings {
    /// Fewest log entries between two checkpoints (more when the state is large: see
    /// [`checkpoint_due`](Self::checkpoint_due)); 0 turns the monitor off.
    pub check_every_entries: u64,
    /// Whether a diverged replica reinstalls the leader's snapshot by itself.
    pub repair: bool,
}

impl ConsistencySettings {
    /// From the node config's `[consistency_check]`.
    pub fn from_config(config: &ConsistencyCheckConfig) -> Self {
        Self {
            check_every_entries: config.every_entries,
            repair: config.repair,
        }
    }

    /// The monitor off (no digests, no verdicts).
    pub fn off() -> Self {
        Self {
            check_every_entries: 0,
            repair: true,
        }
    }

    /// Whether the monitor runs (replicas digest at checkpoint entries, a leader appends
    /// them).
    pub fn enabled(&self) -> bool {
        self.check_every_entries != 0
    }

    /// On the leader: whether a checkpoint entry is due, with `entries` and `bytes` (estimated,
    /// [`Entry::size_bytes`](crate::entry::Entry::size_bytes)) in the log since the last
    /// checkpoint, and `state_bytes` the length of the state's stream this node hashed at its
    /// latest checkpoint (0 before its first).
    ///
    /// Both must be reached: at least `check_every_entries` entries, and at least as many log
    /// bytes as the state held. Hashing the whole state then costs at most one state byte per
    /// log byte written, whatever the state's size: with a fixed interval alone a follower
    /// spent 23% of its CPU hashing a 150,000-key state every 10,000 writes
    /// (docs/ARCHITECTURE.md, "Replica consistency monitor").
    pub fn checkpoint_due(&self, entries: u64, bytes: usize, state_bytes: u64) -> bool {
        self.enabled()
            && entries >= self.check_every_entries
            && u64::try_from(bytes).unwrap_or(u64::MAX) >= state_bytes
    }
}

/// The leader's latest verdict about one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestVerdict {
    /// The checkpoint judged.
    pub index: LogIndex,
    /// Whether the replica's digest there equals the reference.
    pub ok: bool,
}

/// One replica judged at one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    /// The replica.
    pub node: NodeId,
    /// The checkpoint.
    pub index: LogIndex,
    /// Whether its digest equals the reference.
    pub ok: bool,
}

/// What the monitor reports about itself (in [`ReplicaStatus`](crate::driver::ReplicaStatus)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyStatus {
    /// Fewest log entries between checkpoints (0: off).
    pub check_every_entries: u64,
    /// Whether a diverged replica repairs itself.
    pub repair: bool,
    /// The latest checkpoint this replica computed a digest for.
    pub last_checkpoint: Option<LogIndex>,
    /// The length in bytes of the state's stream hashed at `last_checkpoint` (0 before the
    /// first): a leader waits for at least this many log bytes before its next checkpoint.
    #[serde(default)]
    pub last_checkpoint_state_bytes: u64,
    /// Set while this replica is diverged: the checkpoint at which the leader found its
    /// digest different. Cleared when it reinstalls a snapshot from the leader.
    pub diverged_at: Option<LogIndex>,
    /// The checkpoint of this replica's latest divergence, kept after its repair.
    #[serde(default)]
    pub last_diverged_at: Option<LogIndex>,
    /// Snapshots this replica reinstalled to repair a divergence, since start.
    pub repairs: u64,
    /// Replica digests judged by this node as leader, since start.
    pub checks: u64,
    /// Of those, the ones that differed from the reference.
    pub mismatches: u64,
    /// On the leader: the latest verdict per replica (itself included) this term.
    pub verdicts: BTreeMap<NodeId, DigestVerdict>,
}

/// The digests reported for one checkpoint.
#[derive(Clone, Debug, Default)]
struct Round {
    reports: BTreeMap<NodeId, StateDigest>,
    reference: Option<StateDigest>,
    judged: BTreeSet<NodeId>,
}

/// The digest the replicas at `index` are judged against: the one a majority of `voters`
/// reported; when every voter reported and no digest has a majority, the leader's own.
/// `None` while that cannot be told yet. Learners' reports never count.
pub fn reference_digest(
    voters: &BTreeSet<NodeId>,
    reports: &BTreeMap<NodeId, StateDigest>,
    leader: &NodeId,
) -> Option<StateDigest> {
    let mut counts: BTreeMap<StateDigest, usize> = BTreeMap::new();
    for (node, digest) in reports {
        if voters.contains(node) {
            *counts.entry(*digest).or_default() += 1;
        }
    }
    let majority = voters.len() / 2 + 1;
    if let Some((digest, _)) = counts.iter().find(|(_, count)| **count >= majority) {
        return Some(*digest);
    }
    let all_reported = voters.iter().all(|voter| reports.contains_key(voter));
    if all_reported {
        return reports.get(leader).copied();
    }
    None
}

/// The monitor's state on one replica: its own digests, and on the leader the open rounds and
/// verdicts.
#[derive(Clone, Debug)]
pub struct ConsistencyMonitor {
    settings: ConsistencySettings,
    own: BTreeMap<LogIndex, StateDigest>,
    /// The stream length of the newest own digest.
    state_bytes: u64,
    /// Checkpoints this replica took a copy at, newest [`CONSISTENCY_ROUNDS_KEPT`]: on the
    /// leader, reports for them are accepted after the log compacted the entry away.
    taken: BTreeSet<LogIndex>,
    rounds: BTreeMap<LogIndex, Round>,
    verdicts: BTreeMap<NodeId, DigestVerdict>,
    checks: u64,
    mismatches: u64,
    diverged_at: Option<LogIndex>,
    last_diverged_at: Option<LogIndex>,
    repair_requested_at: Option<Millis>,
    repairs: u64,
    generation: u64,
    /// On the leader: replicas that asked for a repair, and the applied index the snapshot
    /// sent to each must reach.
    repair_wanted: BTreeMap<NodeId, LogIndex>,
}

impl ConsistencyMonitor {
    /// A monitor with no digests yet.
    pub fn new(settings: ConsistencySettings) -> Self {
        Self {
            settings,
            own: BTreeMap::new(),
            state_bytes: 0,
            taken: BTreeSet::new(),
            rounds: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            checks: 0,
            mismatches: 0,
            diverged_at: None,
            last_diverged_at: None,
            repair_requested_at: None,
            repairs: 0,
            generation: 0,
            repair_wanted: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> ConsistencySettings {
        self.settings
    }

    /// The state generation: a repair starts a new one, and digests of copies taken before it
    /// are dropped.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this replica is diverged (and so never campaigns).
    pub fn diverged(&self) -> bool {
        self.diverged_at.is_some()
    }

    /// This replica's own digest at `index`, if kept.
    pub fn own_digest(&self, index: LogIndex) -> Option<StateDigest> {
        self.own.get(&index).copied()
    }

    /// Record this replica's own digest at a checkpoint, of a state stream `state_bytes` long.
    pub fn on_own_digest(&mut self, index: LogIndex, digest: StateDigest, state_bytes: u64) {
        if self
            .own
            .last_key_value()
            .is_none_or(|(newest, _)| *newest < index)
        {
            self.state_bytes = state_bytes;
        }
        self.own.insert(index, digest);
        while self.own.len() > CONSISTENCY_ROUNDS_KEPT {
            self.own.pop_first();
        }
    }

    /// The length of the state's stream at this replica's newest digest (0 before the first):
    /// the leader's checkpoint schedule waits for this many log bytes.
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes
    }

    /// This replica took a copy of its state at the checkpoint `index` (its digest follows).
    pub fn on_copy_taken(&mut self, index: LogIndex) {
        self.taken.insert(index);
        while self.taken.len() > CONSISTENCY_ROUNDS_KEPT {
            self.taken.pop_first();
        }
    }

    /// Whether this replica knows `index` as a checkpoint it passed: it took a copy there, or
    /// a round for it is open.
    pub fn knows_checkpoint(&self, index: LogIndex) -> bool {
        self.taken.contains(&index) || self.rounds.contains_key(&index)
    }

    /// On the leader: `node` (the leader itself included) reported `digest` at the checkpoint
    /// `index`. Returns the replicas judged because of it (possibly several, once a round's
    /// reference becomes known), each judged once per checkpoint. A report for a checkpoint
    /// older than every open round, when [`CONSISTENCY_ROUNDS_KEPT`] are open, is dropped;
    /// a second report from the same replica for the same checkpoint is ignored.
    pub fn on_report(
        &mut self,
        node: NodeId,
        index: LogIndex,
        digest: StateDigest,
        voters: &BTreeSet<NodeId>,
        leader: &NodeId,
    ) -> Vec<Judged> {
        if !self.rounds.contains_key(&index) {
            let full = self.rounds.len() >= CONSISTENCY_ROUNDS_KEPT;
            if full
                && self
                    .rounds
                    .first_key_value()
                    .is_some_and(|(oldest, _)| index < *oldest)
            {
                return Vec::new();
            }
            let mut round = Round::default();
            if let Some(own) = self.own.get(&index) {
                round.reports.insert(leader.clone(), *own);
            }
            self.rounds.insert(index, round);
            while self.rounds.len() > CONSISTENCY_ROUNDS_KEPT {
                self.rounds.pop_first();
            }
        }
        let Some(round) = self.rounds.get_mut(&index) else {
            return Vec::new();
        };
        round.reports.entry(node).or_insert(digest);
        if round.reference.is_none() {
            round.reference = reference_digest(voters, &round.reports, leader);
        }
        let Some(reference) = round.reference else {
            return Vec::new();
        };
        let mut judged = Vec::new();
        for (node, digest) in &round.reports {
            if round.judged.insert(node.clone()) {
                judged.push(Judged {
                    node: node.clone(),
                    index,
                    ok: *digest == reference,
                });
            }
        }
        for verdict in &judged {
            self.checks += 1;
            if !verdict.ok {
                self.mismatches += 1;
            }
            let newer = self
                .verdicts
                .get(&verdict.node)
                .is_none_or(|latest| latest.index <= index);
            if newer {
                self.verdicts.insert(
                    verdict.node.clone(),
                    DigestVerdict {
                        index,
                        ok: verdict.ok,
                    },
                );
            }
        }
        judged
    }

    /// This node stopped leading: its rounds, verdicts and repair requests belong to its term.
    pub fn on_leadership_lost(&mut self) {
        self.rounds.clear();
        self.verdicts.clear();
        self.repair_wanted.clear();
    }

    /// The leader found this replica's digest different at `index`. Returns whether this is
    /// news (it was not diverged already).
    pub fn mark_diverged(&mut self, index: LogIndex) -> bool {
        if self.diverged_at.is_some() {
            return false;
        }
        self.diverged_at = Some(index);
        self.last_diverged_at = Some(index);
        self.repair_requested_at = None;
        true
    }

    /// Whether a diverged replica should ask its leader for a snapshot now: repair is on, and
    /// it has not asked within `every_ms` (a lost request or a new leader is asked again).
    pub fn repair_request_due(&mut self, now: Millis, every_ms: u64) -> bool {
        if self.diverged_at.is_none() || !self.settings.repair {
            return false;
        }
        let due = self
            .repair_requested_at
            .is_none_or(|at| now.saturating_since(at) >= every_ms);
        if due {
            self.repair_requested_at = Some(now);
        }
        due
    }

    /// Whether a diverged replica holds its applied state where it is until the repair (so
    /// the leader's snapshot, taken after the request, is never older than it).
    pub fn holds_apply(&self) -> bool {
        self.diverged_at.is_some() && self.settings.repair
    }

    /// A snapshot from the leader replaced the whole applied state. Returns the checkpoint
    /// the replica had diverged at, if it had: the divergence is repaired.
    pub fn on_snapshot_reinstalled(&mut self) -> Option<LogIndex> {
        self.generation += 1;
        let repaired = self.diverged_at.take();
        if repaired.is_some() {
            self.repairs += 1;
        }
        self.repair_requested_at = None;
        // Own digests of the replaced state say nothing about the new one.
        self.own.clear();
        self.taken.clear();
        repaired
    }

    /// On the leader: `node` asks for a snapshot at or past `applied`.
    pub fn on_repair_request(&mut self, node: NodeId, applied: LogIndex) {
        let wanted = self.repair_wanted.entry(node).or_insert(applied);
        *wanted = (*wanted).max(applied);
    }

    /// On the leader: the repair requests not yet served, by replica.
    pub fn repairs_wanted(&self) -> &BTreeMap<NodeId, LogIndex> {
        &self.repair_wanted
    }

    /// On the leader: a snapshot transfer to `node` for its repair started.
    pub fn repair_started(&mut self, node: &NodeId) {
        self.repair_wanted.remove(node);
    }

    /// What the monitor reports.
    pub fn status(&self) -> ConsistencyStatus {
        ConsistencyStatus {
            check_every_entries: self.settings.check_every_entries,
            repair: self.settings.repair,
            last_checkpoint: self.own.last_key_value().map(|(index, _)| *index),
            last_checkpoint_state_bytes: self.state_bytes,
            diverged_at: self.diverged_at,
            last_diverged_at: self.last_diverged_at,
            repairs: self.repairs,
            checks: self.checks,
            mismatches: self.mismatches,
            verdicts: self.verdicts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The comparison, one table row per case: voters, reports, the reference.

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("valid id")
    }

    fn voters(names: &[&str]) -> BTreeSet<NodeId> {
        names.iter().map(|name| id(name)).collect()
    }

    /// Reports written as `"n1=a n2=b"`: digest `a` is `[b'a'; 32]`.
    fn reports(text: &str) -> BTreeMap<NodeId, StateDigest> {
        text.split_whitespace()
            .map(|pair| {
                let (node, digest) = pair.split_once('=').expect("node=digest");
                (id(node), [digest.as_bytes()[0]; 32])
            })
            .collect()
    }

    #[test]
    fn the_reference_is_the_majority_digest_else_the_leaders_once_all_reported() {
        // voters | reports | reference (leader n1); `-` for none yet.
        let table = [
            ("n1 n2 n3", "n1=a", "-"),
            ("n1 n2 n3", "n1=a n2=a", "a"),
            ("n1 n2 n3", "n1=a n2=b", "-"),
            ("n1 n2 n3", "n1=a n2=b n3=b", "b"),
            ("n1 n2 n3", "n1=a n2=b n3=c", "a"),
            ("n1 n2 n3", "n2=b n3=b", "b"),
            ("n1", "n1=a", "a"),
            ("n1 n2", "n1=a n2=b", "a"),
            ("n1 n2 n3 n4 n5", "n1=a n2=a n3=b n4=b", "-"),
            ("n1 n2 n3 n4 n5", "n1=a n2=a n3=b n4=b n5=b", "b"),
            // A learner's report never counts towards the majority.
            ("n1 n2 n3", "n1=a n4=a", "-"),
        ];
        for (voter_names, report_text, expected) in table {
            let names: Vec<&str> = voter_names.split(' ').collect();
            let reference = reference_digest(&voters(&names), &reports(report_text), &id("n1"));
            let expected = (expected != "-").then(|| [expected.as_bytes()[0]; 32]);
            assert_eq!(
                reference, expected,
                "voters {voter_names}, reports {report_text}"
            );
        }
    }

    fn monitor() -> ConsistencyMonitor {
        ConsistencyMonitor::new(ConsistencySettings {
            check_every_entries: 100,
            repair: true,
        })
    }

    fn judged(node: &str, index: u64, ok: bool) -> Judged {
        Judged {
            node: id(node),
            index: LogIndex(index),
            ok,
        }
    }

    #[test]
    fn a_follower_with_another_digest_is_judged_diverged_once_a_majority_agrees() {
        let mut monitor = monitor();
        let voters = voters(&["n1", "n2", "n3"]);
        let leader = id("n1");
        monitor.on_own_digest(LogIndex(100), [1; 32], 500);
        // The diverged follower reports first: nothing can be told yet.
        assert_eq!(
            monitor.on_report(id("n3"), LogIndex(100), [9; 32], &voters, &leader),
            vec![]
        );
        // The leader's own digest was seeded into the round; n2 agrees: a majority.
        assert_eq!(
            monitor.on_report(id("n2"), LogIndex(100), [1; 32], &voters, &leader),
            vec![
                judged("n1", 100, true),
                judged("n2", 100, true),
                judged("n3", 100, false)
            ]
        );
        // A duplicate report is not judged again.
        assert_eq!(
            monitor.on_report(id("n3"), LogIndex(100), [1; 32], &voters, &leader),
            vec![]
        );
        let status = monitor.status();
        assert_eq!((status.checks, status.mismatches), (3, 1));
        assert_eq!(
            status.verdicts.get(&id("n3")),
            Some(&DigestVerdict {
                index: LogIndex(100),
                ok: false
            })
        );
        // The next checkpoint matches: the verdict follows the newest one.
        monitor.on_own_digest(LogIndex(200), [2; 32], 800);
        assert_eq!(
            monitor.on_report(id("n3"), LogIndex(200), [2; 32], &voters, &leader),
            vec![judged("n1", 200, true), judged("n3", 200, true)]
        );
        assert_eq!(
            monitor.status().verdicts.get(&id("n3")),
            Some(&DigestVerdict {
                index: LogIndex(200),
                ok: true
            })
        );
    }

    #[test]
    fn a_leader_in_the_minority_judges_itself_diverged() {
        let mut monitor = monitor();
        let voters = voters(&["n1", "n2", "n3"]);
        let leader = id("n1");
        monitor.on_own_digest(LogIndex(100), [7; 32], 500);
        monitor.on_report(id("n2"), LogIndex(100), [1; 32], &voters, &leader);
        assert_eq!(
            monitor.on_report(id("n3"), LogIndex(100), [1; 32], &voters, &leader),
            vec![
                judged("n1", 100, false),
                judged("n2", 100, true),
                judged("n3", 100, true)
            ]
        );
    }

    #[test]
    fn rounds_are_bounded_whatever_peers_report() {
        let mut monitor = monitor();
        let voters = voters(&["n1", "n2", "n3"]);
        let leader = id("n1");
        for round in 1..=100u64 {
            monitor.on_report(id("n2"), LogIndex(round * 100), [1; 32], &voters, &leader);
        }
        assert_eq!(monitor.rounds.len(), CONSISTENCY_ROUNDS_KEPT);
        // A report older than every open round is dropped, not judged and not kept.
        assert_eq!(
            monitor.on_report(id("n3"), LogIndex(100), [1; 32], &voters, &leader),
            vec![]
        );
        assert_eq!(monitor.rounds.len(), CONSISTENCY_ROUNDS_KEPT);
    }

    #[test]
    fn a_diverged_replica_asks_for_repair_at_intervals_until_reinstalled() {
        let mut monitor = monitor();
        assert!(!monitor.repair_request_due(Millis(0), 100));
        assert!(monitor.mark_diverged(LogIndex(100)));
        assert!(!monitor.mark_diverged(LogIndex(200)), "already diverged");
        assert!(monitor.holds_apply());
        assert!(monitor.repair_request_due(Millis(10), 100));
        assert!(!monitor.repair_request_due(Millis(50), 100));
        assert!(monitor.repair_request_due(Millis(110), 100));
        let generation = monitor.generation();
        assert_eq!(monitor.on_snapshot_reinstalled(), Some(LogIndex(100)));
        assert!(!monitor.diverged());
        assert_eq!(monitor.generation(), generation + 1);
        assert_eq!(monitor.status().repairs, 1);
        // A snapshot installed while not diverged (catching up) repairs nothing.
        assert_eq!(monitor.on_snapshot_reinstalled(), None);
    }

    #[test]
    fn without_repair_a_diverged_replica_keeps_applying_and_asks_nothing() {
        let mut monitor = ConsistencyMonitor::new(ConsistencySettings {
            check_every_entries: 100,
            repair: false,
        });
        monitor.mark_diverged(LogIndex(100));
        assert!(monitor.diverged());
        assert!(!monitor.holds_apply());
        assert!(!monitor.repair_request_due(Millis(10), 100));
    }

    #[test]
    fn a_checkpoint_is_due_after_the_interval_and_as_many_log_bytes_as_the_state_held() {
        let settings = ConsistencySettings {
            check_every_entries: 100,
            repair: true,
        };
        // entries since, log bytes since, state bytes at the last checkpoint | due
        let table = [
            (99, 10_000, 0, false),
            (100, 0, 0, true),
            (100, 4_999, 5_000, false),
            (100, 5_000, 5_000, true),
            (10_000, 4_999, 5_000, false),
            (100, usize::MAX, u64::MAX, true),
        ];
        for (entries, bytes, state, due) in table {
            assert_eq!(
                settings.checkpoint_due(entries, bytes, state),
                due,
                "{entries} entries, {bytes} bytes, state {state}"
            );
        }
        assert!(!ConsistencySettings::off().checkpoint_due(1_000_000, 1 << 30, 0));
    }

    #[test]
    fn the_schedule_follows_the_newest_own_digest_and_known_checkpoints_are_bounded() {
        let mut monitor = monitor();
        assert_eq!(monitor.state_bytes(), 0);
        monitor.on_own_digest(LogIndex(200), [2; 32], 800);
        // An older digest finishing late does not move the schedule back.
        monitor.on_own_digest(LogIndex(100), [1; 32], 500);
        assert_eq!(monitor.state_bytes(), 800);
        assert_eq!(monitor.status().last_checkpoint_state_bytes, 800);
        for index in 1..=100u64 {
            monitor.on_copy_taken(LogIndex(index * 10));
        }
        assert!(monitor.knows_checkpoint(LogIndex(1000)));
        assert!(
            !monitor.knows_checkpoint(LogIndex(10)),
            "bounded: the oldest went"
        );
        assert!(!monitor.knows_checkpoint(LogIndex(1001)));
        monitor.on_snapshot_reinstalled();
        assert!(!monitor.knows_checkpoint(LogIndex(1000)));
    }
}
