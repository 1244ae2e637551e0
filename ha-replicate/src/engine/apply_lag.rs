//! A leader whose state machine lags far behind hands leadership to a voter that keeps up.
//!
//! A leader answers a write only once it has applied it, and serves reads from its applied
//! state, so a leader that is re-applying its log (after a power failure nothing is applied
//! until the new term commits, and the highest-priority node wins that election) keeps every
//! client waiting while a follower that has applied everything could serve them. Priority
//! alone would keep such a node leading, and failback would hand leadership straight back to
//! it while it re-applies.
//!
//! Both sides measure progress the same way, by [`Engine::reported_applied`]: the index handed
//! to the state machine while fewer than [`DEEP_APPLY_QUEUE_ENTRIES`] wait in its queue (a
//! later read on that node queues behind them, so for a client they are applied, and STRONG
//! writes complete without waiting for the next heartbeat), else the index really applied.
//! The leader notes its commit index and the time whenever its own measure is behind it; if
//! after [`APPLY_LAG_HANDOVER_TIMEOUTS`] election timeouts it still has not reached that mark
//! while a voter it can hand over to has, it hands over (cause `unhealthy_leader`, which the
//! target obeys whatever its own health). On equal hosts the leader hands each entry out
//! before any follower even learns it is committed, and when every host is slow their queues
//! are equally deep, so no follower passes the leader's mark first and nothing moves: an
//! `apply` of 200 ms per entry everywhere triggers no election.

use ha_core::{LogIndex, Millis, NodeId};

use crate::engine::engine::Engine;
use crate::entry::ElectionCause;

/// Entries waiting in a node's apply queue from which it reports what it really applied
/// rather than what it handed out (see the module doc). Far above a group commit's batch on
/// a fast host, far below a restarted node's log.
pub const DEEP_APPLY_QUEUE_ENTRIES: u64 = 64;

/// Election timeouts a leader must lag its mark before it hands over: long enough that a
/// burst of writes on a slow host does not move leadership, short against a re-applied log.
pub const APPLY_LAG_HANDOVER_TIMEOUTS: u64 = 2;

/// The leader's applied index has been behind `commit` since `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ApplyLagMark {
    pub(crate) since: Millis,
    pub(crate) commit: LogIndex,
}

impl Engine {
    /// What this node reports as applied (in its append answers) and measures its own lag
    /// by: the index handed out for applying while the queue is shallow, the index really
    /// applied once it is deep (see the module doc).
    pub(crate) fn reported_applied(&self) -> LogIndex {
        let queued = self.apply_requested.0.saturating_sub(self.applied_index.0);
        if queued < DEEP_APPLY_QUEUE_ENTRIES {
            self.applied_index.max(self.apply_requested)
        } else {
            self.applied_index
        }
    }

    /// Leader housekeeping on each heartbeat: hand over if this node's state machine has
    /// lagged a mark for [`APPLY_LAG_HANDOVER_TIMEOUTS`] election timeouts while a voter's has
    /// passed it. Returns whether a transfer started.
    pub(crate) fn hand_over_if_apply_lags(&mut self, now: Millis) -> bool {
        let applied = self.reported_applied();
        let mark = match self.apply_lag {
            Some(mark) if applied < mark.commit => mark,
            _ if applied < self.commit_index => {
                self.apply_lag = Some(ApplyLagMark {
                    since: now,
                    commit: self.commit_index,
                });
                return false;
            }
            _ => {
                self.apply_lag = None;
                return false;
            }
        };
        let patience_ms = self
            .settings
            .election_timeout_max_ms
            .saturating_mul(APPLY_LAG_HANDOVER_TIMEOUTS);
        if now.saturating_since(mark.since) < patience_ms {
            return false;
        }
        let Some(target) = self.applied_further(now, mark.commit) else {
            return false;
        };
        tracing::warn!(
            applied = %applied,
            mark = %mark.commit,
            lagging_ms = now.saturating_since(mark.since),
            %target,
            "this leader's state machine lags a voter's: handing leadership over"
        );
        self.apply_lag = None;
        self.transfer_leadership(now, Some(target), ElectionCause::UnhealthyLeader)
            .is_ok()
    }

    /// The voter to hand over to: it may lead, answered within three heartbeats, holds the
    /// log to within one append, and reported applied at least to `mark`. The furthest
    /// applied first, then the highest priority.
    fn applied_further(&self, now: Millis, mark: LogIndex) -> Option<NodeId> {
        let last_index = self.log.last_index();
        let answer_window_ms = 3 * self.settings.heartbeat_interval_ms;
        let close_enough = self.settings.append_entries_max as u64;
        self.other_voters()
            .into_iter()
            .filter_map(|voter| {
                let peer = self.peers.get(&voter).filter(|peer| peer.may_lead())?;
                let progress = self.progress.get(&voter)?;
                let answering = progress
                    .last_ack_at
                    .is_some_and(|at| now.saturating_since(at) <= answer_window_ms);
                let log_close = last_index.0.saturating_sub(progress.match_index.0) <= close_enough;
                let eligible = answering && log_close && progress.applied_index >= mark;
                eligible.then_some(((progress.applied_index, peer.priority), voter))
            })
            .max_by(|(left, _), (right, _)| left.cmp(right))
            .map(|(_, voter)| voter)
    }
}
