//! The engine: state, construction, timers, dispatch and role changes.
//!
//! The protocol steps live beside this file, each as an `impl Engine` block: `election.rs`,
//! `replication.rs`, `reads.rs`, `leadership.rs`, `membership_change.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Term};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::engine::apply_lag::ApplyLagMark;
use crate::engine::effect::{After, Effect, Persist, PersistId, TimerKind};
use crate::engine::message::Message;
use crate::engine::operator_membership::OperatorIntents;
use crate::engine::progress::{Progress, ReplicationState};
use crate::engine::refusal::RefusedInputs;
use crate::engine::role::Role;
use crate::engine::settings::EngineSettings;
use crate::entry::{ElectionCause, Entry};
use crate::hard_state::HardState;
use crate::membership::VoterSet;
use crate::raft_log::RaftLog;
use crate::snapshot_meta::SnapshotMeta;

/// What the engine knows about another node from outside the protocol (gossip metadata and
/// failure detection). Used only for choices that do not affect safety: whom to prefer,
/// when to hand over, whom to add or remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's leadership priority.
    pub priority: Priority,
    /// The peer's own health.
    pub health: HealthStatus,
    /// Whether gossip currently reaches it.
    pub reachable: bool,
    /// Whether it wants to be a voter (learners are promoted once caught up).
    pub wants_vote: bool,
    /// Since when it has been unreachable, if it is.
    pub unreachable_since: Option<Millis>,
}

impl PeerInfo {
    /// Whether this peer may stand for election.
    pub fn may_lead(&self) -> bool {
        self.priority.can_lead() && self.health.may_campaign() && self.reachable
    }
}

/// A leadership transfer under way.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) cause: ElectionCause,
    pub(crate) started_at: Millis,
    pub(crate) timeout_now_sent: bool,
}

/// A linearizable read waiting for a quorum to confirm leadership.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub(crate) read_id: u64,
    pub(crate) index: LogIndex,
    pub(crate) round: u64,
}

/// The sans-IO consensus engine of one node: Raft with pre-vote, check-quorum, priorities,
/// leadership transfer, failback, health gating, read-index and lease reads.
///
/// Feed it inputs (`on_message`, `on_timer`, `propose`, `read_index`, ...) with the current
/// time; after each, carry out [`drain_effects`](Self::drain_effects) in order, honouring the
/// persist-before-send contract of [`Effect`]. It never reads a clock, sleeps, spawns or does
/// IO, and its randomness comes from the seed it is given.
pub struct Engine {
    pub(crate) settings: EngineSettings,
    pub(crate) rng: StdRng,
    // Durable state (mirrored by Persist effects).
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) log: RaftLog,
    // Volatile state.
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) commit_index: LogIndex,
    pub(crate) apply_requested: LogIndex,
    pub(crate) applied_index: LogIndex,
    pub(crate) timer_generations: [u64; TimerKind::COUNT],
    pub(crate) votes: BTreeSet<NodeId>,
    pub(crate) leader_heard_at: Option<Millis>,
    /// When a valid message last arrived from each member, across terms (the leader's
    /// `Progress::last_ack_at` restarts at every term as check-quorum's grace period, so it
    /// cannot say how long a dead peer has been silent). Bounded by the membership.
    pub(crate) heard_from_at: BTreeMap<NodeId, Millis>,
    /// When this engine started. A voter refuses votes for `election_timeout_min` after it,
    /// as it would after hearing a leader: before a restart it may have acknowledged a round
    /// that a leader's lease rests on (see `lease_valid`).
    pub(crate) started_at: Millis,
    /// The highest index of this node's log known synced to disk. A leader sends appends
    /// before its own fsync, so it counts its own log towards a commit only up to here.
    pub(crate) durable_index: LogIndex,
    /// The id of the latest storage write issued ([`Effect::Persist`]).
    pub(crate) persist_issued: PersistId,
    /// The latest write id the driver reported durable.
    pub(crate) persisted: PersistId,
    /// The log's last index after each log write not yet reported durable, in id order (a
    /// truncation issued later caps the earlier ones): what `durable_index` becomes once
    /// that write is durable. At most one per write issued since the last sync.
    pub(crate) log_writes: VecDeque<(PersistId, LogIndex)>,
    pub(crate) last_leader: Option<NodeId>,
    pub(crate) campaign_cause: ElectionCause,
    pub(crate) leaderless_since: Millis,
    pub(crate) peers: BTreeMap<NodeId, PeerInfo>,
    pub(crate) local_health: HealthStatus,
    /// The consistency monitor found this node's applied state diverged: it never campaigns.
    pub(crate) diverged: bool,
    /// Committed entries are not handed out for applying (a diverged node awaiting repair).
    pub(crate) apply_held: bool,
    /// Most entries handed out for applying and not yet reported applied (`None`: no limit,
    /// for a driver that applies each `Apply` at once).
    pub(crate) apply_ahead_entries_max: Option<u64>,
    // Leader state.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) round: u64,
    pub(crate) round_sent_at: VecDeque<(u64, Millis)>,
    pub(crate) pending_reads: VecDeque<PendingRead>,
    pub(crate) reads_awaiting_term_commit: Vec<u64>,
    pub(crate) transfer: Option<Transfer>,
    /// Since when, and behind which commit index, this leader's state machine has lagged
    /// (see `apply_lag.rs`).
    pub(crate) apply_lag: Option<ApplyLagMark>,
    /// Set once this leader has sent `TimeoutNow` in its term: the target may win an election
    /// with it at any time (voters grant transfer votes however recently they heard a
    /// leader), so the lease cannot be trusted again in this term.
    pub(crate) lease_forfeited: bool,
    pub(crate) broadcast_pending: bool,
    /// The generation of the [`TimerKind::CommitNotice`] timer set for owed commit notices,
    /// while it is set (a timer cancelled since has another generation: not set).
    pub(crate) commit_notice_timer: Option<u64>,
    pub(crate) heartbeat_pending: bool,
    pub(crate) quorum_checked_at: Millis,
    /// The latest time any input carried; used where a step needs "now" but is reached
    /// from several inputs.
    pub(crate) now: Millis,
    // Counters.
    pub(crate) elections_started: u64,
    /// `TimeoutNow` messages a witness ignored (it never campaigns).
    pub(crate) timeout_now_ignored: u64,
    pub(crate) refused: RefusedInputs,
    /// When a refusal from each peer was last logged (bounded; see `refusal.rs`).
    pub(crate) refusal_logged_at: BTreeMap<NodeId, Millis>,
    pub(crate) effects: Vec<Effect>,
    /// Learners an operator asked this leader to promote (see `operator_membership.rs`).
    pub(crate) operator_intents: OperatorIntents,
}

/// What the engine starts from: the store's recovered state.
#[derive(Clone, Debug, Default)]
pub struct EngineStart {
    /// The last synced term and vote.
    pub hard_state: HardState,
    /// The latest snapshot, already restored into the state machine by the driver.
    pub snapshot: Option<SnapshotMeta>,
    /// The entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl Engine {
    /// An engine resuming from `start`. `seed` drives its election-timeout randomness.
    pub fn new(settings: EngineSettings, start: EngineStart, now: Millis, seed: u64) -> Self {
        let log = RaftLog::new(start.snapshot.unwrap_or_default(), start.entries);
        let snapshot_index = log.snapshot().last_index;
        let mut engine = Self {
            settings,
            rng: StdRng::seed_from_u64(seed),
            term: start.hard_state.term,
            voted_for: start.hard_state.voted_for,
            log,
            role: Role::Follower,
            leader: None,
            commit_index: snapshot_index,
            apply_requested: snapshot_index,
            applied_index: snapshot_index,
            timer_generations: [0; TimerKind::COUNT],
            votes: BTreeSet::new(),
            leader_heard_at: None,
            heard_from_at: BTreeMap::new(),
            started_at: now,
            durable_index: LogIndex(0),
            persist_issued: PersistId(0),
            persisted: PersistId(0),
            log_writes: VecDeque::new(),
            last_leader: None,
            campaign_cause: ElectionCause::Startup,
            leaderless_since: now,
            peers: BTreeMap::new(),
            local_health: HealthStatus::Healthy,
            diverged: false,
            apply_held: false,
            apply_ahead_entries_max: None,
            progress: BTreeMap::new(),
            round: 0,
            round_sent_at: VecDeque::new(),
            pending_reads: VecDeque::new(),
            reads_awaiting_term_commit: Vec::new(),
            transfer: None,
            apply_lag: None,
            lease_forfeited: false,
            broadcast_pending: false,
            commit_notice_timer: None,
            heartbeat_pending: false,
            quorum_checked_at: now,
            now,
            elections_started: 0,
            timeout_now_ignored: 0,
            refused: RefusedInputs::default(),
            refusal_logged_at: BTreeMap::new(),
            effects: Vec::new(),
            operator_intents: OperatorIntents::default(),
        };
        // A recovered log is on disk.
        engine.durable_index = engine.log.last_index();
        engine.role = engine.follower_role();
        engine.reset_election_timer();
        engine
    }

    // ----- Accessors -----

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.settings.node_id
    }

    /// The settings it runs with.
    #[cfg(any(test, feature = "test-support"))]
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Whether this node is a witness ([`EngineSettings::witness`]): it never leads.
    pub fn is_witness(&self) -> bool {
        self.settings.witness
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<&NodeId> {
        self.leader.as_ref()
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    /// The highest index the driver reported applied.
    #[cfg(any(test, feature = "test-support"))]
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The highest index the driver reported durable in this node's log
    /// ([`on_persisted`](Self::on_persisted)).
    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    /// The last index in the log.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The estimated bytes of the entries since the last snapshot, whether their payloads are
    /// held in memory or were evicted (what compaction bounds).
    pub fn log_bytes(&self) -> usize {
        self.log.bytes()
    }

    /// The log since its latest consistency checkpoint entry (since the snapshot when it
    /// holds none): `(entries, estimated bytes)`, what the leader's checkpoint schedule
    /// weighs.
    pub fn since_checkpoint(&self) -> (u64, usize) {
        (
            self.log.entries_since_checkpoint(),
            self.log.bytes_since_checkpoint(),
        )
    }

    /// Whether the log holds a consistency checkpoint entry at `index` (false once it was
    /// compacted into a snapshot).
    pub fn is_checkpoint(&self, index: LogIndex) -> bool {
        self.log.is_checkpoint(index)
    }

    /// The estimated bytes of the entries whose payloads are held in memory (at most about
    /// [`EngineSettings::log_cache_bytes`] beyond those not yet applied or synced).
    #[cfg(any(test, feature = "test-support"))]
    pub fn log_held_bytes(&self) -> usize {
        self.log.held_bytes()
    }

    /// The log's snapshot metadata.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        self.log.snapshot()
    }

    /// The configuration in force.
    pub fn membership(&self) -> &VoterSet {
        self.log.membership()
    }

    /// The term of the entry at `index`, when still held.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// The entry at `index`, when still held in memory (not compacted, and not evicted: see
    /// [`EngineSettings::log_cache_bytes`]).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The leader's view of each follower (empty on followers).
    pub fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self.progress
    }

    /// When this node last took a valid message from `peer` (any term, any role), if it
    /// has since it started. What "last contact" means in the status and metrics.
    pub fn heard_from_at(&self, peer: &NodeId) -> Option<Millis> {
        self.heard_from_at.get(peer).copied()
    }

    /// The lowest applied index among voters (this node's own included): a STRONG write at or
    /// below it has been applied everywhere. Leader only; 0 elsewhere.
    pub fn voters_applied_index(&self) -> LogIndex {
        if !self.is_leader() {
            return LogIndex(0);
        }
        self.log
            .membership()
            .voters
            .iter()
            .map(|voter| {
                if *voter == self.settings.node_id {
                    self.applied_index
                } else {
                    self.progress
                        .get(voter)
                        .map(|progress| progress.applied_index)
                        .unwrap_or_default()
                }
            })
            .min()
            .unwrap_or_default()
    }

    /// Whether this node is part of a working majority now: a leader that a majority of voters
    /// (itself included) answered within the longest election timeout, or a follower that
    /// heard from its leader within it. What `/v1/health` reports as `quorum`.
    pub fn in_quorum(&self, now: Millis) -> bool {
        let window_ms = self.settings.election_timeout_max_ms;
        let recent = |at: Option<Millis>| at.is_some_and(|at| now.saturating_since(at) < window_ms);
        match self.role {
            Role::Leader => {
                let membership = self.log.membership();
                let answered = membership.voters.iter().filter(|voter| {
                    **voter == self.settings.node_id
                        || self
                            .progress
                            .get(*voter)
                            .is_some_and(|progress| recent(progress.last_ack_at))
                });
                answered.count() >= membership.quorum()
            }
            _ => self.leader.is_some() && recent(self.leader_heard_at),
        }
    }

    /// The driver made every storage write through `id` durable (written and synced). On a
    /// leader this may commit: the leader's appends leave before its own fsync (the two disks
    /// write in parallel), and its own log counts towards a majority only once durable.
    /// Messages waiting for it ([`After::Durable`]) may now leave (the driver's gate releases
    /// them; the engine holds nothing).
    pub fn on_persisted(&mut self, now: Millis, id: PersistId) {
        self.observe(now);
        if id <= self.persisted {
            return;
        }
        // A report past the writes issued is the driver's mistake; never trust more than was
        // written.
        self.persisted = id.min(self.persist_issued);
        let mut durable = None;
        while let Some((write, last_index)) = self.log_writes.front().copied() {
            if write > self.persisted {
                break;
            }
            durable = Some(last_index);
            self.log_writes.pop_front();
        }
        if let Some(index) = durable
            && index > self.durable_index
        {
            self.durable_index = index;
            self.maybe_advance_commit(now);
            self.evict_log();
        }
    }

    /// The id of the latest storage write issued (0 before any).
    pub fn persist_issued(&self) -> PersistId {
        self.persist_issued
    }

    /// The latest write id reported durable ([`on_persisted`](Self::on_persisted)).
    #[cfg(any(test, feature = "test-support"))]
    pub fn persisted(&self) -> PersistId {
        self.persisted
    }

    /// How many elections this node has started.
    pub fn elections_started(&self) -> u64 {
        self.elections_started
    }

    /// How many `TimeoutNow` messages this node ignored because it is a witness (a leader
    /// that did not know it was one chose it as transfer target).
    #[cfg(any(test, feature = "test-support"))]
    pub fn timeout_now_ignored(&self) -> u64 {
        self.timeout_now_ignored
    }

    /// The local health the engine gates leadership on.
    #[cfg(any(test, feature = "test-support"))]
    pub fn local_health(&self) -> HealthStatus {
        self.local_health
    }

    /// Whether a leadership transfer is under way.
    #[cfg(any(test, feature = "test-support"))]
    pub fn transfer_in_progress(&self) -> bool {
        self.transfer.is_some()
    }

    /// The generation of the latest setting of a timer kind (a delivered timer with any other
    /// generation is ignored).
    #[cfg(any(test, feature = "test-support"))]
    pub fn timer_generation(&self, kind: TimerKind) -> u64 {
        self.timer_generations[kind.slot()]
    }

    /// Take the effects produced so far, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append();
        }
        if self.heartbeat_pending {
            self.heartbeat_pending = false;
            if self.role == Role::Leader {
                let peers: Vec<NodeId> = self.progress.keys().cloned().collect();
                for peer in peers {
                    self.send_append(&peer, true);
                }
            }
        }
        std::mem::take(&mut self.effects)
    }

    // ----- Inputs -----

    /// A message arrived from `from`.
    pub fn on_message(&mut self, now: Millis, from: NodeId, message: Message) {
        let _span = tracing::debug_span!(
            "engine_message",
            node = %self.settings.node_id,
            term = %self.term,
            %from,
            kind = message.kind()
        )
        .entered();
        self.observe(now);
        if from == self.settings.node_id {
            return;
        }
        if let Err(cause) =
            Self::check_message(&message).and_then(|()| self.check_against_state(&message))
        {
            self.refuse(
                &from,
                cause,
                format_args!("{} of term {}", message.kind(), message.term()),
            );
            return;
        }
        self.note_heard_from(now, &from);
        let message_term = message.term();
        match message {
            Message::PreVoteRequest {
                term,
                last_log_index,
                last_log_term,
                priority,
            } => self.on_pre_vote_request(now, from, term, last_log_index, last_log_term, priority),
            Message::PreVoteResponse {
                term,
                granted,
                current_term,
            } => self.on_pre_vote_response(now, from, term, granted, current_term),
            Message::VoteRequest {
                term,
                last_log_index,
                last_log_term,
                priority: _,
                transfer,
            } => self.on_vote_request(now, from, term, last_log_index, last_log_term, transfer),
            other => {
                if message_term > self.term {
                    let leader = match &other {
                        Message::AppendRequest { .. }
                        | Message::InstallSnapshot { .. }
                        | Message::TimeoutNow { .. } => Some(from.clone()),
                        _ => None,
                    };
                    self.become_follower(now, message_term, leader);
                }
                match other {
                    Message::VoteResponse { term, granted } => {
                        self.on_vote_response(now, from, term, granted)
                    }
                    Message::AppendRequest {
                        term,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        read_round,
                    } => self.on_append_request(
                        now,
                        from,
                        term,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        read_round,
                    ),
                    Message::AppendResponse {
                        term,
                        success,
                        index,
                        applied_index,
                        read_round,
                    } => self.on_append_response(
                        now,
                        from,
                        term,
                        success,
                        index,
                        applied_index,
                        read_round,
                    ),
                    Message::InstallSnapshot { term, meta } => {
                        self.on_install_snapshot(now, from, term, meta)
                    }
                    Message::InstallSnapshotResponse { term, last_index } => {
                        self.on_install_snapshot_response(now, from, term, last_index)
                    }
                    Message::TimeoutNow { term, cause } => {
                        self.on_timeout_now(now, from, term, cause)
                    }
                    Message::PreVoteRequest { .. }
                    | Message::PreVoteResponse { .. }
                    | Message::VoteRequest { .. } => {}
                }
            }
        }
    }

    /// A timer set earlier fired. Timers from an older generation are ignored.
    pub fn on_timer(&mut self, now: Millis, kind: TimerKind, generation: u64) {
        self.observe(now);
        if self.timer_generations[kind.slot()] != generation {
            return;
        }
        let _span = tracing::debug_span!(
            "engine_timer",
            node = %self.settings.node_id,
            term = %self.term,
            ?kind
        )
        .entered();
        match kind {
            TimerKind::Election => self.on_election_timeout(now),
            TimerKind::Heartbeat => self.on_heartbeat_tick(now),
            TimerKind::CheckQuorum => self.on_check_quorum(now),
            TimerKind::CommitNotice => {
                self.commit_notice_timer = None;
                self.send_commit_notices();
            }
        }
    }

    /// The driver applied every entry up to `index` (or restored a snapshot ending there).
    pub fn on_applied(&mut self, _now: Millis, index: LogIndex) {
        if index > self.applied_index {
            self.applied_index = index;
            self.evict_log();
            if self.apply_ahead_entries_max.is_some() {
                // The window moved: hand out what it held back.
                self.emit_apply();
            }
        }
    }

    /// Hand out at most `ahead_entries_max` entries beyond the applied index (what
    /// [`on_applied`](Self::on_applied) reported): a driver whose state machine runs
    /// elsewhere keeps a bounded backlog; the rest waits in the log and goes out as the
    /// applied index moves. `None` (the default) hands out everything committed at once.
    pub fn set_apply_ahead_entries_max(&mut self, ahead_entries_max: Option<u64>) {
        self.apply_ahead_entries_max = ahead_entries_max.map(|max| max.max(1));
        self.emit_apply();
    }

    /// What a snapshot of the state machine as of `index` (applied, not yet compacted away)
    /// covers, or `None` when `index` is not in the log after the current snapshot or not
    /// applied yet. The driver takes the snapshot with this meta, then reports
    /// [`on_snapshot_taken`](Self::on_snapshot_taken).
    pub fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        if index <= self.log.snapshot().last_index || index > self.applied_index {
            return None;
        }
        Some(SnapshotMeta {
            last_index: index,
            last_term: self.log.term_at(index)?,
            membership: self.log.membership_at(index),
        })
    }

    /// The driver's store holds a snapshot described by `meta` (from
    /// [`snapshot_meta_at`](Self::snapshot_meta_at)), durably, and has dropped the entries it
    /// covers: the engine compacts its log to match. A meta no later than the current
    /// snapshot (one installed from the leader meanwhile) is ignored.
    pub fn on_snapshot_taken(&mut self, _now: Millis, meta: SnapshotMeta) {
        if meta.last_index <= self.log.snapshot().last_index
            || meta.last_index > self.applied_index
            || self.log.term_at(meta.last_index) != Some(meta.last_term)
        {
            return;
        }
        self.log.install_snapshot(meta);
    }

    /// A chunk of the snapshot described by `meta` arrived from `from` in `term`. It counts as
    /// hearing from the leader (a long transfer must not look like a silent leader). Returns
    /// whether this node takes chunks from `from`: `false` for a stale term (the sender is
    /// then told this node's term) and for a chunk a correct leader does not send (refused
    /// and counted).
    pub fn on_snapshot_chunk(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        meta: &SnapshotMeta,
    ) -> bool {
        self.observe(now);
        if from == self.settings.node_id {
            return false;
        }
        let as_message = Message::InstallSnapshot {
            term,
            meta: meta.clone(),
        };
        if let Err(cause) =
            Self::check_message(&as_message).and_then(|()| self.check_against_state(&as_message))
        {
            self.refuse(&from, cause, format_args!("snapshot chunk of term {term}"));
            return false;
        }
        if term < self.term {
            return false;
        }
        self.heard_from_leader(now, from, term);
        true
    }

    /// `from` spoke as leader of `term` (this node's term or a later one, which is adopted):
    /// follow it, or, already following it, count it as heard from (no election for a while).
    pub(crate) fn heard_from_leader(&mut self, now: Millis, from: NodeId, term: Term) {
        if term > self.term
            || self.role != self.follower_role()
            || self.leader.as_ref() != Some(&from)
        {
            self.become_follower(now, term, Some(from));
        } else {
            self.leader_heard_at = Some(now);
            self.reset_election_timer();
        }
    }

    /// A follower acknowledged snapshot bytes in `term`: a leader counts it as an answer (for
    /// check-quorum) and keeps waiting for the transfer instead of starting it over; a later
    /// term makes this node step down.
    pub fn on_snapshot_ack(&mut self, now: Millis, from: NodeId, term: Term) {
        self.observe(now);
        self.note_heard_from(now, &from);
        if term > self.term {
            self.become_follower(now, term, None);
            return;
        }
        if self.role != Role::Leader || term != self.term {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&from) {
            progress.last_ack_at = Some(now);
            if let ReplicationState::Snapshot { sent_at } = &mut progress.state {
                *sent_at = now;
            }
        }
    }

    /// Gossip told us about a peer's metadata or reachability.
    pub fn set_peer_info(&mut self, _now: Millis, node: NodeId, info: PeerInfo) {
        if node != self.settings.node_id {
            self.peers.insert(node, info);
        }
    }

    /// The peers' latest known metadata.
    #[cfg(any(test, feature = "test-support"))]
    pub fn peers(&self) -> &BTreeMap<NodeId, PeerInfo> {
        &self.peers
    }

    /// The node's own health changed. An unhealthy leader hands over; an unhealthy or
    /// degraded node does not campaign.
    pub fn set_local_health(&mut self, now: Millis, health: HealthStatus) {
        self.local_health = health;
        if self.is_leader()
            && health == HealthStatus::Unhealthy
            && self.transfer.is_none()
            && let Err(error) = self.transfer_leadership(now, None, ElectionCause::UnhealthyLeader)
        {
            tracing::warn!(%error, "unhealthy leader cannot hand over");
        }
    }

    // ----- Shared helpers -----

    pub(crate) fn observe(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    pub(crate) fn set_timer(&mut self, kind: TimerKind, after_ms: u64) {
        let slot = kind.slot();
        self.timer_generations[slot] += 1;
        self.effects.push(Effect::SetTimer {
            kind,
            generation: self.timer_generations[slot],
            after_ms,
        });
    }

    pub(crate) fn cancel_timer(&mut self, kind: TimerKind) {
        self.timer_generations[kind.slot()] += 1;
    }

    /// Random in [`Engine::election_jitter_range`] (`[min, max)` unless this node's priority
    /// is its own), plus the whole width of `[min, max)` for every eligible voter with a
    /// higher priority (the failed leader excepted): the ranges of different ranks do not
    /// overlap, so the best eligible candidate always fires first.
    pub(crate) fn reset_election_timer(&mut self) {
        let minimum = self.settings.election_timeout_min_ms;
        let maximum = self.settings.election_timeout_max_ms.max(minimum + 1);
        let (low, high) = self.election_jitter_range(minimum, maximum);
        let jitter = self.rng.random_range(low..high);
        let rank = self.priority_rank() as u64;
        self.set_timer(TimerKind::Election, jitter + rank * (maximum - minimum));
    }

    fn priority_rank(&self) -> usize {
        let own = self.settings.priority;
        self.log
            .membership()
            .voters
            .iter()
            .filter(|voter| **voter != self.settings.node_id)
            .filter(|voter| Some(*voter) != self.last_leader.as_ref())
            .filter(|voter| {
                self.peers
                    .get(*voter)
                    .is_some_and(|peer| peer.may_lead() && peer.priority > own)
            })
            .count()
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.log.membership().is_voter(&self.settings.node_id)
    }

    pub(crate) fn follower_role(&self) -> Role {
        if self.is_voter() {
            Role::Follower
        } else {
            Role::Learner
        }
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for.clone(),
        }
    }

    pub(crate) fn persist_hard_state(&mut self) {
        let hard_state = self.hard_state();
        self.persist(Persist::HardState(hard_state));
    }

    /// Issue a storage write, after the in-memory change it mirrors (so the log's last index
    /// is the one the write leaves on the disk).
    pub(crate) fn persist(&mut self, persist: Persist) {
        let id = self.persist_issued.next();
        self.persist_issued = id;
        match &persist {
            Persist::HardState(_) => {}
            Persist::TruncateFrom(from) => {
                // Entries from `from` on are gone: an earlier write becoming durable no longer
                // makes them durable.
                let kept = LogIndex(from.0.saturating_sub(1));
                for (_, last_index) in self.log_writes.iter_mut() {
                    *last_index = (*last_index).min(kept);
                }
                self.log_writes.push_back((id, self.log.last_index()));
            }
            Persist::Append(_) | Persist::InstallSnapshot(_) => {
                self.log_writes.push_back((id, self.log.last_index()));
            }
        }
        self.effects.push(Effect::Persist { id, persist });
    }

    /// The barrier for a message that promises what this node wrote: every write issued
    /// so far must be durable first.
    pub(crate) fn durable_barrier(&self) -> After {
        if self.persist_issued > self.persisted {
            After::Durable(self.persist_issued)
        } else {
            After::Now
        }
    }

    /// Send a message once every write issued before it is durable (votes, acknowledgements,
    /// and by default everything else).
    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        let after = self.durable_barrier();
        self.effects.push(Effect::Send { to, message, after });
    }

    /// Send a leader's append or snapshot offer at once: it promises nothing about this
    /// node's disk, since the leader counts its own log towards a commit only once durable
    /// (Raft thesis 10.2.1), so the followers' fsyncs run in parallel with its own.
    pub(crate) fn send_replication(&mut self, to: NodeId, message: Message) {
        debug_assert_eq!(self.role, Role::Leader, "only a leader replicates");
        self.effects.push(Effect::Send {
            to,
            message,
            after: After::Now,
        });
    }

    pub(crate) fn other_voters(&self) -> Vec<NodeId> {
        self.log
            .membership()
            .voters
            .iter()
            .filter(|voter| **voter != self.settings.node_id)
            .cloned()
            .collect()
    }

    pub(crate) fn notify_role(&mut self) {
        self.effects.push(Effect::RoleChanged {
            role: self.role,
            term: self.term,
            leader: self.leader.clone(),
        });
    }

    /// Step down (or stay) as follower in `term`, following `leader` when known.
    pub(crate) fn become_follower(&mut self, now: Millis, term: Term, leader: Option<NodeId>) {
        let was = (self.role, self.term, self.leader.clone());
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state();
        }
        if self.role == Role::Leader {
            self.step_down_cleanup(now);
        }
        self.role = self.follower_role();
        if let Some(leader) = leader {
            self.leader_heard_at = Some(now);
            self.last_leader = Some(leader.clone());
            self.leader = Some(leader);
        } else if term > was.1 || was.0 == Role::Leader {
            self.leader = None;
        }
        if was.2.is_some() && self.leader.is_none() {
            // The cluster is leaderless from here (a leader stepping down) or from when the
            // lost leader was last heard. Without this, a later election measured its
            // leaderless time from the end of an earlier one (minutes, growing each time).
            self.leaderless_since = if was.0 == Role::Leader {
                now
            } else {
                self.leader_heard_at.unwrap_or(now)
            };
        }
        self.votes.clear();
        self.reset_election_timer();
        if (self.role, self.term, self.leader.clone()) != was {
            if was.0 == Role::Leader {
                tracing::info!(term = %self.term, leader = ?self.leader, "stepped down");
            }
            self.notify_role();
        }
    }

    /// Remember that `from` spoke, if it is a member (so the map stays bounded).
    fn note_heard_from(&mut self, now: Millis, from: &NodeId) {
        let membership = self.log.membership();
        if membership.members().any(|member| member == from) {
            // Updated in place: cloning the id for every message was an allocation per
            // message on the leader.
            match self.heard_from_at.get_mut(from) {
                Some(heard_at) => *heard_at = now,
                None => {
                    self.heard_from_at.insert(from.clone(), now);
                }
            }
        }
        if self.heard_from_at.len() > membership.members().count() {
            // Some peer was removed from the configuration: forget it.
            let members: BTreeSet<&NodeId> = membership.members().collect();
            self.heard_from_at.retain(|peer, _| members.contains(peer));
        }
    }

    fn step_down_cleanup(&mut self, _now: Millis) {
        self.cancel_timer(TimerKind::Heartbeat);
        self.cancel_timer(TimerKind::CheckQuorum);
        self.progress.clear();
        self.transfer = None;
        let leader = None;
        for read in std::mem::take(&mut self.pending_reads) {
            self.effects.push(Effect::ReadFailed {
                read_id: read.read_id,
                leader: leader.clone(),
            });
        }
        for read_id in std::mem::take(&mut self.reads_awaiting_term_commit) {
            self.effects.push(Effect::ReadFailed {
                read_id,
                leader: leader.clone(),
            });
        }
        self.round_sent_at.clear();
    }

    /// Drop the payloads of entries that are applied and durable while those held pass the
    /// budget. Applied entries were handed out already, and durable ones can be read back
    /// from the store ([`Effect::SendStored`]).
    pub(crate) fn evict_log(&mut self) {
        let evictable = self
            .applied_index
            .min(self.durable_index)
            .min(self.apply_requested);
        self.log.evict(evictable, self.settings.log_cache_bytes);
    }

    /// Hand committed entries to the driver.
    pub(crate) fn emit_apply(&mut self) {
        if self.apply_held {
            return;
        }
        let mut end = self.commit_index;
        if let Some(ahead) = self.apply_ahead_entries_max {
            end = end.min(LogIndex(self.applied_index.0.saturating_add(ahead)));
        }
        if end > self.apply_requested {
            let entries = self.log.range(self.apply_requested, end);
            if let Some(last) = entries.last() {
                self.apply_requested = last.index;
            }
            if !entries.is_empty() {
                self.effects.push(Effect::Apply(entries));
            }
        }
    }
}
