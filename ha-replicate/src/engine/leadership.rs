//! Handing leadership over: manual transfer, failback, unhealthy leader, shutdown.

use ha_core::{FailoverMode, HealthStatus, Millis, NodeId, Term};

use crate::engine::engine::{Engine, Transfer};
use crate::engine::error::TransferError;
use crate::engine::message::Message;
use crate::engine::role::Role;
use crate::entry::ElectionCause;

impl Engine {
    /// Hand leadership to `target`, or to the best other voter (highest priority, then most
    /// caught up) when `None`. Proposals are refused until the transfer completes or times
    /// out. Returns the chosen target.
    ///
    /// # Errors
    /// [`TransferError`]; nothing changes.
    pub fn transfer_leadership(
        &mut self,
        now: Millis,
        target: Option<NodeId>,
        cause: ElectionCause,
    ) -> Result<NodeId, TransferError> {
        self.observe(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        if self.transfer.is_some() {
            return Err(TransferError::InProgress);
        }
        let target = match target {
            Some(target) => {
                let eligible = target != self.settings.node_id
                    && self.log.membership().is_voter(&target)
                    && self
                        .peers
                        .get(&target)
                        .is_none_or(|peer| peer.priority.can_lead());
                if !eligible {
                    return Err(TransferError::IneligibleTarget(target));
                }
                target
            }
            None if cause == ElectionCause::UnhealthyLeader => self
                .healthier_transfer_target()
                .ok_or(TransferError::NoEligibleTarget)?,
            None => self
                .best_transfer_target()
                .ok_or(TransferError::NoEligibleTarget)?,
        };
        tracing::info!(%target, cause = cause.as_str(), "transferring leadership");
        self.transfer = Some(Transfer {
            target: target.clone(),
            cause,
            started_at: now,
            timeout_now_sent: false,
        });
        self.continue_transfer(now, &target);
        self.send_append(&target, true);
        Ok(target)
    }

    /// The voter that should lead next: may lead, highest priority, then most caught up.
    pub(crate) fn best_transfer_target(&self) -> Option<NodeId> {
        self.other_voters()
            .into_iter()
            .filter(|voter| self.peers.get(voter).is_some_and(|peer| peer.may_lead()))
            .max_by_key(|voter| {
                let priority = self.peers.get(voter).map(|peer| peer.priority);
                let matched = self
                    .progress
                    .get(voter)
                    .map(|progress| progress.match_index);
                (priority, matched)
            })
    }

    /// The voter an unhealthy leader hands over to: reachable, may lead by priority, and
    /// strictly healthier than this node (a DEGRADED voter is better than an UNHEALTHY
    /// leader, but an equally unhealthy one is not: moving leadership among equally unwell
    /// nodes only adds elections). The healthiest first, then priority, then most caught up.
    pub(crate) fn healthier_transfer_target(&self) -> Option<NodeId> {
        let own = self.local_health;
        self.other_voters()
            .into_iter()
            .filter_map(|voter| {
                let peer = self.peers.get(&voter)?;
                let eligible =
                    peer.reachable && peer.priority.can_lead() && peer.health.is_better_than(own);
                eligible.then(|| {
                    let matched = self
                        .progress
                        .get(&voter)
                        .map(|progress| progress.match_index);
                    let healthiest = [
                        HealthStatus::Healthy,
                        HealthStatus::Degraded,
                        HealthStatus::Unknown,
                    ]
                    .iter()
                    .position(|status| *status == peer.health)
                    .map_or(0, |rank| 3 - rank);
                    ((healthiest, peer.priority, matched), voter)
                })
            })
            .max_by(|(left, _), (right, _)| left.cmp(right))
            .map(|(_, voter)| voter)
    }

    /// Once the target has every entry, tell it to campaign at once.
    pub(crate) fn continue_transfer(&mut self, _now: Millis, peer: &NodeId) {
        let last_index = self.log.last_index();
        let Some(transfer) = &self.transfer else {
            return;
        };
        if transfer.target != *peer || transfer.timeout_now_sent {
            return;
        }
        let caught_up = self
            .progress
            .get(peer)
            .is_some_and(|progress| progress.match_index == last_index);
        if caught_up {
            let cause = transfer.cause;
            if let Some(transfer) = &mut self.transfer {
                transfer.timeout_now_sent = true;
            }
            // The target may win with this at any time in this term: no lease from now on.
            self.lease_forfeited = true;
            let term = self.term;
            self.send(peer.clone(), Message::TimeoutNow { term, cause });
        }
    }

    pub(crate) fn on_timeout_now(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        cause: ElectionCause,
    ) {
        if term != self.term || self.leader.as_ref() != Some(&from) || self.role == Role::Leader {
            return;
        }
        if self.settings.witness {
            // A leader that does not know this node is a witness (no gossip metadata yet)
            // chose it as transfer target: refuse, and say so; the transfer times out and the
            // leader keeps leading (`transfer_timeout_ms`).
            self.timeout_now_ignored += 1;
            tracing::warn!(leader = %from, cause = cause.as_str(), "TimeoutNow ignored: this node is a witness and never leads");
            return;
        }
        if !self.may_ever_lead() {
            return;
        }
        if !self.local_health.may_campaign() && cause != ElectionCause::UnhealthyLeader {
            return;
        }
        self.campaign_cause = cause;
        self.leaderless_since = now;
        self.start_election(now, true);
    }

    /// Leader housekeeping on each heartbeat: abandon a stuck transfer, start failback.
    pub(crate) fn leadership_tick(&mut self, now: Millis) {
        if let Some(transfer) = &self.transfer {
            if now.saturating_since(transfer.started_at) > self.settings.transfer_timeout_ms {
                tracing::warn!(target = %transfer.target, "leadership transfer timed out; keeping leadership");
                self.transfer = None;
            }
            return;
        }
        if self.local_health == ha_core::HealthStatus::Unhealthy {
            let _ = self.transfer_leadership(now, None, ElectionCause::UnhealthyLeader);
            return;
        }
        if self.settings.failover_mode == FailoverMode::Automatic
            && self.hand_over_if_apply_lags(now)
        {
            return;
        }
        let Some(failback_after_ms) = self.settings.failback_after_ms else {
            return;
        };
        if self.settings.failover_mode == FailoverMode::Manual {
            return;
        }
        let last_index = self.log.last_index();
        let own = self.settings.priority;
        let heartbeat_ms = self.settings.heartbeat_interval_ms;
        let entries_close_enough = self.settings.append_entries_max as u64;
        let commit_index = self.commit_index;
        let mut ready: Option<(ha_core::Priority, NodeId)> = None;
        for voter in self.other_voters() {
            let better = self
                .peers
                .get(&voter)
                .filter(|peer| peer.may_lead() && peer.priority > own)
                .map(|peer| peer.priority);
            let Some(progress) = self.progress.get_mut(&voter) else {
                continue;
            };
            let answering = progress
                .last_ack_at
                .is_some_and(|at| now.saturating_since(at) <= 3 * heartbeat_ms);
            // Close enough that the transfer (which pauses proposals) finishes quickly.
            let caught_up =
                last_index.0.saturating_sub(progress.match_index.0) <= entries_close_enough;
            match better {
                Some(priority) if answering && caught_up => {
                    let since = *progress.eligible_since.get_or_insert_with(|| {
                        progress.eligible_commit = commit_index;
                        now
                    });
                    // Applied what was committed when it became eligible: a node still
                    // re-applying its log would keep every client waiting (`apply_lag.rs`).
                    let applied_enough = progress.applied_index >= progress.eligible_commit;
                    if now.saturating_since(since) >= failback_after_ms
                        && applied_enough
                        && ready.as_ref().is_none_or(|(best, _)| priority > *best)
                    {
                        ready = Some((priority, voter));
                    }
                }
                _ => progress.eligible_since = None,
            }
        }
        if let Some((_, target)) = ready {
            let _ = self.transfer_leadership(now, Some(target), ElectionCause::Failback);
        }
    }
}
