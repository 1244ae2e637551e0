//! Replication: proposals, appends, commit, snapshots, heartbeats and check-quorum.

use ha_core::{LogIndex, Millis, NodeId, Term};

use crate::engine::effect::{Effect, Persist, TimerKind};
use crate::engine::engine::Engine;
use crate::engine::error::ProposeError;
use crate::engine::message::Message;
use crate::engine::progress::ReplicationState;
use crate::engine::quorum_value::quorum_value;
use crate::engine::refusal::RefusalCause;
use crate::engine::role::Role;
use crate::entry::{Entry, Payload};
use crate::membership::VoterSet;
use crate::snapshot_meta::SnapshotMeta;

impl Engine {
    /// Append a client command to the log (leader only). Returns its index; the driver learns
    /// the outcome when that index is applied (with this term) or overwritten.
    ///
    /// # Errors
    /// [`ProposeError`]; nothing is appended.
    pub fn propose(&mut self, now: Millis, command: Vec<u8>) -> Result<LogIndex, ProposeError> {
        self.observe(now);
        self.check_can_propose()?;
        let index = self.append_local(now, Payload::Command(command));
        Ok(index)
    }

    /// Append a consistency checkpoint entry (leader only): every replica hashes its applied
    /// state when it applies it. Refused as a command would be (not leader, a transfer under
    /// way, too much uncommitted); the caller tries again later.
    ///
    /// # Errors
    /// [`ProposeError`]; nothing is appended.
    pub fn propose_checkpoint(&mut self, now: Millis) -> Result<LogIndex, ProposeError> {
        self.observe(now);
        self.check_can_propose()?;
        Ok(self.append_local(now, Payload::Checkpoint))
    }

    pub(crate) fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let uncommitted = self.log.last_index().0 - self.commit_index.0;
        if uncommitted >= self.settings.uncommitted_entries_max as u64 {
            return Err(ProposeError::Busy { uncommitted });
        }
        Ok(())
    }

    pub(crate) fn append_local(&mut self, now: Millis, payload: Payload) -> LogIndex {
        let entry = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            payload,
        };
        let index = entry.index;
        self.log.push(entry.clone());
        self.persist(Persist::Append(vec![entry]));
        // Sent when the effects are drained, so proposals made together go in one message.
        self.broadcast_pending = true;
        self.maybe_advance_commit(now);
        index
    }

    /// Send what each follower is missing, within its window.
    pub(crate) fn broadcast_append(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        // Only peers with more to send and room in their window are named (and their ids
        // cloned): `send_append` does nothing for the others, and with many clients the
        // window is full on most calls, so most calls clone no id at all. Sending to one peer
        // changes neither another's progress nor the log, so choosing them first is the same.
        let last_index = self.log.last_index();
        let in_flight_max = self.settings.appends_in_flight_max;
        let peers: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, progress)| {
                progress.next_index <= last_index && progress.can_send(in_flight_max)
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in peers {
            self.send_append(&peer, false);
        }
    }

    /// Send one append (or a snapshot) to `peer` if its window allows. A heartbeat is sent
    /// even when the window is full: it carries no entries and only proves leadership.
    pub(crate) fn send_append(&mut self, peer: &NodeId, heartbeat: bool) {
        let Some(progress) = self.progress.get(peer) else {
            return;
        };
        let in_flight_max = self.settings.appends_in_flight_max;
        if !progress.can_send(in_flight_max) {
            if heartbeat && !matches!(progress.state, ReplicationState::Snapshot { .. }) {
                let prev_log_index = progress.match_index.max(self.log.snapshot().last_index);
                let prev_log_term = self.log.term_at(prev_log_index).unwrap_or_default();
                self.send_append_message(peer.clone(), prev_log_index, prev_log_term, Vec::new());
            }
            return;
        }
        if progress.next_index <= self.log.snapshot().last_index {
            self.send_snapshot(peer.clone());
            return;
        }
        let prev_log_index = LogIndex(progress.next_index.0 - 1);
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            self.send_snapshot(peer.clone());
            return;
        };
        // Receivers refuse longer lists while decoding.
        let count_max = self
            .settings
            .append_entries_max
            .min(super::message::APPEND_ENTRIES_WIRE_MAX);
        let from = progress.next_index;
        // Flow control for a slow host on the follower: nothing past what it handed to its
        // state machine plus its backlog window (an empty append still goes as a heartbeat;
        // the window moves with each answer, which reports the follower's applied index).
        let window_end = progress
            .applied_index
            .0
            .saturating_add(self.settings.follower_backlog_entries_max);
        let count_max = if from.0 > window_end {
            0
        } else {
            count_max.min(usize::try_from(window_end - from.0 + 1).unwrap_or(usize::MAX))
        };
        if count_max > 0 && from < self.log.held_from() {
            // Evicted: the driver reads the same batch back from its store.
            let count = self
                .log
                .stored_batch(from, count_max, self.settings.append_bytes_max);
            if count > 0 {
                self.send_stored(peer, prev_log_index, prev_log_term, from, count);
                return;
            }
        }
        let entries = if count_max == 0 {
            Vec::new()
        } else {
            self.log
                .slice(from, count_max, self.settings.append_bytes_max)
        };
        if entries.is_empty() && !heartbeat {
            return;
        }
        let last_sent = entries.last().map(|entry| entry.index);
        if let Some(progress) = self.progress.get_mut(peer) {
            progress.in_flight += 1;
            if let (ReplicationState::Replicate, Some(last)) = (progress.state, last_sent) {
                progress.next_index = last.next();
            }
        }
        self.send_append_message(peer.clone(), prev_log_index, prev_log_term, entries);
    }

    /// Account for a batch of `count` evicted entries from `from` as an in-memory send does,
    /// and ask the driver to send it from its store.
    fn send_stored(
        &mut self,
        peer: &NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        from: LogIndex,
        count: usize,
    ) {
        let last_sent = LogIndex(from.0 + count as u64 - 1);
        let commit_index = self.commit_index;
        if let Some(progress) = self.progress.get_mut(peer) {
            progress.in_flight += 1;
            progress.commit_sent = progress.commit_sent.max(commit_index);
            if progress.state == ReplicationState::Replicate {
                progress.next_index = last_sent.next();
            }
        }
        self.effects.push(Effect::SendStored {
            to: peer.clone(),
            term: self.term,
            prev_log_index,
            prev_log_term,
            from,
            count,
            bytes_max: self.settings.append_bytes_max,
            leader_commit: self.commit_index,
            read_round: self.round,
        });
    }

    fn send_append_message(
        &mut self,
        to: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
    ) {
        let commit_index = self.commit_index;
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.commit_sent = progress.commit_sent.max(commit_index);
        }
        let message = Message::AppendRequest {
            term: self.term,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: commit_index,
            read_round: self.round,
        };
        self.send_replication(to, message);
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        let meta = self.log.snapshot().clone();
        if let Some(progress) = self.progress.get_mut(&peer) {
            progress.state = ReplicationState::Snapshot { sent_at: self.now };
            progress.in_flight = 0;
        }
        tracing::debug!(%peer, last_index = %meta.last_index, "sending snapshot");
        self.send_replication(
            peer,
            Message::InstallSnapshot {
                term: self.term,
                meta,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_append_request(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_round: u64,
    ) {
        if term < self.term {
            // A stale leader's round confirms nothing: echo none, so that a later leader of
            // the current term (perhaps the same node after a restart, counting rounds from
            // 0 again) cannot take this answer for one of its own rounds.
            self.send_append_response(from, false, self.log.last_index().next(), 0);
            return;
        }
        // term == self.term here (a higher term was adopted by the caller), and this node
        // does not lead it (`check_against_state` refused that).
        self.heard_from_leader(now, from.clone(), term);

        // Entries at or below the snapshot are committed and already here: skip them.
        let snapshot_index = self.log.snapshot().last_index;
        let (prev_log_index, prev_log_term, entries) = if prev_log_index < snapshot_index {
            let skipped: Vec<Entry> = entries
                .into_iter()
                .filter(|entry| entry.index > snapshot_index)
                .collect();
            (snapshot_index, self.log.snapshot().last_term, skipped)
        } else {
            (prev_log_index, prev_log_term, entries)
        };

        if prev_log_index > self.log.last_index() {
            self.send_append_response(from, false, self.log.last_index().next(), read_round);
            return;
        }
        match self.log.term_at(prev_log_index) {
            Some(local) if local == prev_log_term => {}
            local => {
                // Hint: the first index of the conflicting term, so the leader skips the
                // whole term in one step.
                let mut hint = prev_log_index;
                if let Some(conflicting) = local {
                    while hint.0 > self.commit_index.0 + 1
                        && self.log.term_at(LogIndex(hint.0 - 1)) == Some(conflicting)
                    {
                        hint = LogIndex(hint.0 - 1);
                    }
                }
                let hint = hint.max(self.commit_index.next());
                self.send_append_response(from, false, hint, read_round);
                return;
            }
        }

        let last_new = LogIndex(prev_log_index.0 + entries.len() as u64);
        let mut to_append = Vec::new();
        for entry in entries {
            if to_append.is_empty() {
                match self.log.term_at(entry.index) {
                    Some(term) if term == entry.term => continue,
                    Some(_) => {
                        if entry.index <= self.commit_index {
                            // `check_against_state` refuses this before anything changes;
                            // kept so that no path ever truncates a committed entry.
                            self.refuse(
                                &from,
                                RefusalCause::OverwriteCommitted,
                                format_args!("overwrite of committed index {}", entry.index),
                            );
                            return;
                        }
                        self.log.truncate_from(entry.index);
                        self.durable_index = self
                            .durable_index
                            .min(LogIndex(entry.index.0.saturating_sub(1)));
                        self.persist(Persist::TruncateFrom(entry.index));
                    }
                    None => {}
                }
            }
            // A witness keeps only the metadata of client commands (see `Entry::metadata_only`):
            // what it persists, and so acknowledges, is every term and index, which is what
            // votes and commits rest on.
            if self.settings.witness {
                to_append.push(entry.metadata_only());
            } else {
                to_append.push(entry);
            }
        }
        if !to_append.is_empty() {
            for entry in &to_append {
                self.log.push(entry.clone());
            }
            self.persist(Persist::Append(to_append));
            let role = self.follower_role();
            if role != self.role {
                self.role = role;
                self.notify_role();
            }
        }
        let commit = leader_commit.min(last_new);
        if commit > self.commit_index {
            self.commit_index = commit;
            self.emit_apply();
        }
        self.send_append_response(from, true, last_new, read_round);
    }

    fn send_append_response(
        &mut self,
        to: NodeId,
        success: bool,
        index: LogIndex,
        read_round: u64,
    ) {
        // Entries handed out for applying are applied before any later read here (effects
        // are carried out in order, and reads queue behind them), so report them while the
        // queue is shallow: STRONG writes then complete without waiting for the next
        // heartbeat. A deep queue reports what is really applied (`apply_lag.rs`).
        let message = Message::AppendResponse {
            term: self.term,
            success,
            index,
            applied_index: self.reported_applied(),
            read_round,
        };
        self.send(to, message);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_append_response(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        success: bool,
        index: LogIndex,
        applied_index: LogIndex,
        read_round: u64,
    ) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.last_ack_at = Some(now);
        progress.applied_index = progress.applied_index.max(applied_index);
        progress.acked_round = progress.acked_round.max(read_round);
        if success {
            progress.in_flight = progress.in_flight.saturating_sub(1);
            if index > progress.match_index {
                progress.match_index = index.min(last_index);
            }
            if progress.next_index <= progress.match_index {
                progress.next_index = progress.match_index.next();
            }
            if progress.state == ReplicationState::Probe {
                progress.state = ReplicationState::Replicate;
                progress.in_flight = 0;
                progress.next_index = progress.match_index.next();
            }
        } else if index > progress.match_index {
            // Rejected: go back to where the follower says the logs may match.
            progress.match_index = progress.match_index.min(last_index);
            progress.state = ReplicationState::Probe;
            progress.in_flight = 0;
            progress.next_index = index
                .min(last_index.next())
                .max(progress.match_index.next());
        } else if matches!(
            progress.state,
            ReplicationState::Replicate | ReplicationState::Probe
        ) {
            // Rejected at or below what it acknowledged: the follower lost entries it had
            // synced (a damaged disk repaired at restart, a restored backup, a replaced disk).
            // Without this the leader would keep sending (or probing) from beyond the hole and
            // the follower would never catch up; a probe matters most, as a silent follower is
            // probed from its last acknowledged index. Lowering match_index is always safe:
            // the commit index never moves back, and fewer counted copies only delay commits.
            // A reordered stale rejection costs one needless probe.
            tracing::warn!(peer = %from, acknowledged = %progress.match_index.0, hint = %index.0, "follower lost acknowledged entries; replicating them again");
            progress.match_index = LogIndex(index.0.saturating_sub(1));
            progress.state = ReplicationState::Probe;
            progress.in_flight = 0;
            progress.next_index = index.min(last_index.next()).max(LogIndex(1));
        } else {
            // A stale rejection while probing: allow the next probe.
            progress.in_flight = 0;
        }
        self.maybe_advance_commit(now);
        self.advance_reads(now);
        self.continue_transfer(now, &from);
        self.send_append(&from, false);
    }

    /// Commit the highest index replicated on a majority of voters, if it is from this term.
    pub(crate) fn maybe_advance_commit(&mut self, _now: Millis) {
        if self.role != Role::Leader {
            return;
        }
        let membership = self.log.membership();
        let matches = membership.voters.iter().map(|voter| {
            if *voter == self.settings.node_id {
                self.durable_index.min(self.log.last_index())
            } else {
                self.progress
                    .get(voter)
                    .map(|progress| progress.match_index)
                    .unwrap_or_default()
            }
        });
        let Some(candidate) = quorum_value(matches, membership.quorum()) else {
            return;
        };
        if candidate > self.commit_index && self.log.term_at(candidate) == Some(self.term) {
            self.commit_index = candidate;
            self.emit_apply();
            self.on_commit_advanced();
            self.broadcast_pending = true;
            // Followers with every entry hear of it by a commit notice: at once, or after the
            // delay unless an append carries it first (see `commit_notice_delay_ms`).
            let delay_ms = self.settings.commit_notice_delay_ms;
            if delay_ms == 0 {
                self.send_commit_notices();
            } else if !self.commit_notice_timer_set() {
                self.set_timer(TimerKind::CommitNotice, delay_ms);
                self.commit_notice_timer =
                    Some(self.timer_generations[TimerKind::CommitNotice.slot()]);
            }
        }
    }

    /// Whether this node must hear at once that its writes are durable (the storage thread's
    /// report wakes the event loop only then, `driver/thread_reports.rs`). Always, unless it
    /// leads and its own copy holds back no commit: a leader's sync that completes before
    /// enough followers have acknowledged the entries it covers changes nothing until their
    /// acknowledgement arrives, and the loop reads the waiting report before that
    /// acknowledgement when it wakes for it. A leader that may commit once its own copy is
    /// durable (the followers' acknowledgements are in, or it is the only voter) waits.
    pub fn waits_for_own_durability(&self) -> bool {
        if self.role != Role::Leader {
            return true;
        }
        let last = self.log.last_index();
        if self.durable_index >= last {
            return false;
        }
        let membership = self.log.membership();
        let matches = membership.voters.iter().map(|voter| {
            if *voter == self.settings.node_id {
                last
            } else {
                self.progress
                    .get(voter)
                    .map(|progress| progress.match_index)
                    .unwrap_or_default()
            }
        });
        quorum_value(matches, membership.quorum()).is_some_and(|candidate| {
            candidate > self.commit_index && self.log.term_at(candidate) == Some(self.term)
        })
    }

    fn commit_notice_timer_set(&self) -> bool {
        self.commit_notice_timer == Some(self.timer_generations[TimerKind::CommitNotice.slot()])
    }

    /// Leader: send the commit index now to every follower that has every entry but was not
    /// sent this commit index yet (an empty append), so it applies. The engine does this
    /// itself when the commit index advances, at once or after
    /// [`EngineSettings::commit_notice_delay_ms`](crate::engine::EngineSettings::commit_notice_delay_ms);
    /// the replica calls it when a write waits for every voter to apply (STRONG).
    pub fn send_commit_notices(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.commit_notice_timer_set() {
            self.cancel_timer(TimerKind::CommitNotice);
            self.commit_notice_timer = None;
        }
        // Only the owed peers' ids are cloned (a heartbeat to one changes no other).
        let last_index = self.log.last_index();
        let commit_index = self.commit_index;
        let owed: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, progress)| {
                progress.next_index > last_index && progress.commit_sent < commit_index
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in owed {
            self.send_append(&peer, true);
        }
    }

    pub(crate) fn on_install_snapshot(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        meta: SnapshotMeta,
    ) {
        if term < self.term {
            self.send(
                from,
                Message::InstallSnapshotResponse {
                    term: self.term,
                    last_index: LogIndex(0),
                },
            );
            return;
        }
        self.heard_from_leader(now, from.clone(), term);
        let last_index = meta.last_index;
        // A diverged node holding its applied state for a repair takes any snapshot at or past
        // it: its state is wrong, so even one its log covers replaces it.
        let repair = self.apply_held && last_index >= self.applied_index;
        if last_index > self.commit_index || repair {
            let agrees = self.log.term_at(last_index) == Some(meta.last_term);
            self.log.install_snapshot(meta.clone());
            if !agrees {
                self.durable_index = self.durable_index.min(last_index);
                self.persist(Persist::TruncateFrom(last_index.next()));
            }
            self.persist(Persist::InstallSnapshot(meta.clone()));
            self.commit_index = self.commit_index.max(last_index);
            self.apply_requested = last_index;
            self.effects.push(Effect::RestoreSnapshot(meta));
            let role = self.follower_role();
            if role != self.role {
                self.role = role;
                self.notify_role();
            }
        }
        self.send(
            from,
            Message::InstallSnapshotResponse {
                term: self.term,
                last_index,
            },
        );
    }

    pub(crate) fn on_install_snapshot_response(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
    ) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&from) {
            progress.last_ack_at = Some(now);
            progress.match_index = progress.match_index.max(last_index);
            progress.become_probe();
        }
        self.maybe_advance_commit(now);
        self.send_append(&from, true);
    }

    pub(crate) fn on_heartbeat_tick(&mut self, now: Millis) {
        if self.role != Role::Leader {
            return;
        }
        self.set_timer(TimerKind::Heartbeat, self.settings.heartbeat_interval_ms);
        self.start_round(now);
        let stale_after_ms = 2 * self.settings.heartbeat_interval_ms;
        let resend_snapshot_after_ms = self.settings.election_timeout_max_ms;
        let peers: Vec<NodeId> = self.progress.keys().cloned().collect();
        for peer in &peers {
            if let Some(progress) = self.progress.get_mut(peer) {
                let silent = progress
                    .last_ack_at
                    .is_none_or(|at| now.saturating_since(at) > stale_after_ms);
                match progress.state {
                    // Lost appends leave the window full; start over from the last match.
                    ReplicationState::Replicate if silent && progress.in_flight > 0 => {
                        progress.become_probe()
                    }
                    ReplicationState::Probe => progress.in_flight = 0,
                    ReplicationState::Snapshot { sent_at }
                        if now.saturating_since(sent_at) > resend_snapshot_after_ms =>
                    {
                        progress.become_probe()
                    }
                    _ => {}
                }
            }
            self.send_append(peer, true);
        }
        self.leadership_tick(now);
        self.membership_tick(now);
    }

    /// Step down unless a majority of voters answered within the last check period, so a
    /// leader cut off on the minority side stops acting as one.
    pub(crate) fn on_check_quorum(&mut self, now: Millis) {
        if self.role != Role::Leader {
            return;
        }
        let window_ms = self.settings.election_timeout_max_ms;
        self.set_timer(TimerKind::CheckQuorum, window_ms);
        let membership: VoterSet = self.log.membership().clone();
        let active: Vec<NodeId> = membership
            .voters
            .iter()
            .filter(|voter| {
                **voter == self.settings.node_id
                    || self.progress.get(*voter).is_some_and(|progress| {
                        progress
                            .last_ack_at
                            .is_some_and(|at| now.saturating_since(at) <= window_ms)
                    })
            })
            .cloned()
            .collect();
        self.quorum_checked_at = now;
        if !membership.is_quorum(&active) {
            tracing::warn!(term = %self.term, "lost contact with a majority; stepping down");
            let term = self.term;
            self.become_follower(now, term, None);
        }
    }
}
