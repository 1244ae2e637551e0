//! The consistency monitor in the replica: digests at checkpoints, the leader's comparison,
//! verdicts, and the repair of a diverged replica by a snapshot from the leader (see
//! [`consistency_monitor`](crate::replica::consistency_monitor)).

use ha_core::{LogIndex, Millis, NodeId, StateMachine, Term};

use super::{ReplicaCore, ReplicaEffect};
use crate::replica::consistency_monitor::ConsistencyStatus;
use crate::replica::digest_job::{DigestComputed, StateDigest, digest_prefix};
use crate::replica::rpc::Rpc;
use crate::storage::LogStore;

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// A digest job handed out as [`ReplicaEffect::ComputeDigest`] finished: keep the digest,
    /// and judge it (on the leader) or send it to the leader. A digest of a state replaced
    /// since the copy was taken is dropped.
    pub fn on_digest_computed(&mut self, now: Millis, computed: DigestComputed) {
        if self.fatal.is_some() || computed.generation != self.monitor.generation() {
            return;
        }
        let digest = match computed.result {
            Ok(digest) => digest,
            Err(error) => {
                tracing::warn!(index = %computed.index, %error, "consistency digest failed; checkpoint skipped");
                return;
            }
        };
        let index = computed.index;
        tracing::debug!(%index, digest = %digest_prefix(&digest), elapsed_ms = computed.elapsed_ms, "consistency digest");
        self.monitor
            .on_own_digest(index, digest, computed.state_bytes);
        if self.engine.is_leader() {
            let me = self.engine.node_id().clone();
            self.on_digest_report(now, me, index, digest);
        } else if let Some(leader) = self.engine.leader().cloned() {
            // A statement about applied state, not about this node's disk: it leaves at once.
            self.outputs.push(ReplicaEffect::Send {
                to: leader,
                rpc: Rpc::Digest {
                    term: self.engine.term(),
                    index,
                    digest,
                },
            });
        }
        self.after_input(now);
    }

    /// On the leader: append a checkpoint entry when one is due
    /// ([`ConsistencySettings::checkpoint_due`](crate::replica::ConsistencySettings::checkpoint_due)):
    /// enough entries since the last, and as many log bytes as the state held there. A
    /// refused proposal (a transfer under way, too much uncommitted) is tried again after the
    /// next input.
    pub(super) fn propose_checkpoint_if_due(&mut self, now: Millis) {
        // Not while the store is failed: like a client write, nothing is appended then.
        if !self.engine.is_leader() || self.fatal.is_some() || self.stall.is_some() {
            return;
        }
        let (entries, bytes) = self.engine.since_checkpoint();
        if !self
            .monitor
            .settings()
            .checkpoint_due(entries, bytes, self.monitor.state_bytes())
        {
            return;
        }
        match self.engine.propose_checkpoint(now) {
            Ok(index) => {
                tracing::debug!(%index, entries, bytes, state_bytes = self.monitor.state_bytes(), "consistency checkpoint proposed");
            }
            Err(error) => {
                tracing::debug!(%error, "consistency checkpoint not proposed yet");
            }
        }
    }

    /// What the consistency monitor reports.
    pub fn consistency_status(&self) -> ConsistencyStatus {
        self.monitor.status()
    }

    /// The consistency messages of [`Rpc`].
    pub(super) fn on_consistency_rpc(&mut self, now: Millis, from: NodeId, rpc: Rpc) {
        match rpc {
            Rpc::Digest {
                term,
                index,
                digest,
            } if self.engine.is_leader() && term == self.engine.term() => {
                self.on_digest_report(now, from, index, digest);
            }
            Rpc::DigestVerdict { term, index, ok } => {
                let from_leader = term == self.engine.term() && self.engine.leader() == Some(&from);
                if from_leader && !ok {
                    self.become_diverged(now, index);
                }
            }
            Rpc::RepairRequest {
                term,
                applied_index,
            } if self.engine.is_leader() && term == self.engine.term() => {
                tracing::info!(peer = %from, %applied_index, "diverged replica asks for a snapshot");
                self.monitor.on_repair_request(from, applied_index);
                self.serve_repairs(now);
            }
            _ => {}
        }
    }

    /// On the leader: `from` (this node included) reported `digest` at checkpoint `index`.
    fn on_digest_report(
        &mut self,
        now: Millis,
        from: NodeId,
        index: LogIndex,
        digest: StateDigest,
    ) {
        // No replica can have applied past the leader's commit index, and checkpoints are
        // entries of the log: anything else is dropped (a confused peer), with no round
        // opened for it. One compacted away since is known from this node's own copy there.
        let checkpoint = self.engine.is_checkpoint(index) || self.monitor.knows_checkpoint(index);
        if index > self.engine.commit_index() || !checkpoint {
            tracing::debug!(peer = %from, %index, "digest for no checkpoint of this leader; dropped");
            return;
        }
        let voters = self.engine.membership().voters.clone();
        let me = self.engine.node_id().clone();
        let term: Term = self.engine.term();
        for judged in self.monitor.on_report(from, index, digest, &voters, &me) {
            if judged.ok {
                tracing::debug!(peer = %judged.node, index = %judged.index, "consistency check passed");
            } else {
                tracing::error!(
                    peer = %judged.node,
                    index = %judged.index,
                    "consistency check FAILED: this replica's applied state differs from the \
                     majority's (a nondeterministic state machine?)"
                );
            }
            if judged.node == me {
                if !judged.ok {
                    self.become_diverged(now, judged.index);
                }
            } else {
                self.outputs.push(ReplicaEffect::Send {
                    to: judged.node,
                    rpc: Rpc::DigestVerdict {
                        term,
                        index: judged.index,
                        ok: judged.ok,
                    },
                });
            }
        }
    }

    fn become_diverged(&mut self, now: Millis, index: LogIndex) {
        if !self.monitor.mark_diverged(index) {
            return;
        }
        let repair = self.monitor.settings().repair;
        tracing::error!(
            %index,
            repair,
            "this replica's applied state DIVERGED from the majority's: it will not campaign \
             until it reinstalls a snapshot from the leader"
        );
        self.engine
            .set_diverged(now, true, self.monitor.holds_apply());
        self.repair_housekeeping(now);
    }

    /// The whole applied state was just replaced by a snapshot from the leader: a divergence
    /// is repaired.
    pub(super) fn on_state_replaced(&mut self, now: Millis) {
        if let Some(index) = self.monitor.on_snapshot_reinstalled() {
            tracing::info!(
                diverged_at = %index,
                applied_index = %self.apply.applied_index,
                "diverged replica repaired: the leader's snapshot replaced its state"
            );
            self.engine.set_diverged(now, false, false);
        }
    }

    /// Housekeeping: a diverged replica asks its leader for a snapshot (again, once per
    /// longest election timeout, until it has one); a leader serves what was asked.
    pub(super) fn repair_housekeeping(&mut self, now: Millis) {
        let every_ms = self.settings.engine.election_timeout_max_ms;
        if self.monitor.repair_request_due(now, every_ms) {
            match self.engine.leader().cloned() {
                Some(leader) if leader != *self.engine.node_id() => {
                    self.outputs.push(ReplicaEffect::Send {
                        to: leader,
                        rpc: Rpc::RepairRequest {
                            term: self.engine.term(),
                            applied_index: self.apply.applied_index,
                        },
                    });
                }
                _ => {
                    tracing::debug!("diverged replica knows no other leader to repair from yet");
                }
            }
        }
        self.serve_repairs(now);
    }

    /// On the leader: stream the current snapshot to each replica that asked for a repair,
    /// once it reaches the index asked for; otherwise take a fresh one first.
    pub(super) fn serve_repairs(&mut self, now: Millis) {
        if !self.engine.is_leader() || self.monitor.repairs_wanted().is_empty() {
            return;
        }
        let wanted: Vec<(NodeId, LogIndex)> = self
            .monitor
            .repairs_wanted()
            .iter()
            .map(|(node, index)| (node.clone(), *index))
            .collect();
        let meta = self.engine.snapshot_meta().clone();
        let term = self.engine.term();
        for (node, at) in wanted {
            let current = self
                .current_snapshot
                .filter(|id| id.last_index == meta.last_index && id.last_term == meta.last_term);
            match current {
                Some(id) if id.last_index >= at => {
                    tracing::info!(peer = %node, last_index = %id.last_index, "sending a snapshot to repair a diverged replica");
                    self.sender.stop(&node);
                    self.sender.start(now, node.clone(), term, meta.clone(), id);
                    self.monitor.repair_started(&node);
                }
                _ => self.snapshot_for_repair = true,
            }
        }
        self.send_snapshot_chunks(now);
    }
}
