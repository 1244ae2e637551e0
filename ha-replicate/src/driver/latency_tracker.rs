//! The driver's bookkeeping behind [`ReplicaMetrics`]: when entries were proposed and
//! learned committed, when forwards and linearizable reads started, and which failovers
//! and leaders this node has already counted.
//!
//! It only reads the core (indexes, role, history) between inputs and the messages the driver
//! passes, and takes `now: Instant` from the driver, so the sans-IO core stays clock-free and
//! the replicated state is untouched. Everything it holds is bounded: pending batches and
//! requests are capped, and past a cap the oldest is forgotten (never observed) rather than
//! memory growing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use ha_core::{Consistency, LogIndex, NodeId, StateMachine, Term};

use crate::driver::replica_metrics::ReplicaMetrics;
use crate::replica::{ClientRequest, ReplicaCore, Rpc};
use crate::storage::LogStore;

/// Batches of proposed (or learned-committed) entries waiting at once, at most. A leader
/// holds far fewer uncommitted batches (one per driver round); past this the newest batch is
/// not timed.
pub const PENDING_BATCHES_MAX: usize = 16_384;
/// Forwards and linearizable reads timed at once, at most: beyond this the oldest is
/// forgotten (a request that never got an answer would otherwise be held forever).
pub const PENDING_REQUESTS_MAX: usize = 4_096;

/// Indexes up to `last` (a run of `count` ending there), stamped when first seen.
#[derive(Clone, Copy, Debug)]
struct Batch {
    last: LogIndex,
    count: u64,
    at: Instant,
}

/// Who is waiting for a linearizable read on the leader.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ReadKey {
    Local(u64),
    Remote(NodeId, u64),
}

/// A FIFO of batches: `push` stamps new indexes, `release` observes those up to an index.
#[derive(Debug, Default)]
struct BatchQueue {
    batches: VecDeque<Batch>,
    /// The highest index stamped (or skipped) so far.
    seen: LogIndex,
}

impl BatchQueue {
    /// Start over from `seen`: indexes up to it are not timed.
    fn reset(&mut self, seen: LogIndex) {
        self.batches.clear();
        self.seen = seen;
    }

    /// Stamp the indexes after `seen` up to `last` with `at`.
    fn push(&mut self, last: LogIndex, at: Instant) {
        if last <= self.seen {
            return;
        }
        let count = last.0 - self.seen.0;
        self.seen = last;
        if self.batches.len() < PENDING_BATCHES_MAX {
            self.batches.push_back(Batch { last, count, at });
        }
    }

    /// Observe every stamped index up to `upto` into `histogram`, each as `now - stamp`.
    fn release(&mut self, upto: LogIndex, now: Instant, histogram: &ha_core::LatencyHistogram) {
        while let Some(front) = self.batches.front_mut() {
            let first = front.last.0 + 1 - front.count;
            if upto.0 < first {
                break;
            }
            let took = now.saturating_duration_since(front.at);
            if upto >= front.last {
                histogram.observe_many(took, front.count);
                self.batches.pop_front();
            } else {
                // Part of the batch: observe that part, keep the rest.
                let done = upto.0 + 1 - first;
                histogram.observe_many(took, done);
                front.count -= done;
            }
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct LatencyTracker {
    metrics: ReplicaMetrics,
    /// Entries this leader appended in `leading_term`, until committed.
    proposed: BatchQueue,
    leading_term: Option<Term>,
    /// Indexes learned committed, until applied.
    committed: BatchQueue,
    forwards: BTreeMap<u64, Instant>,
    reads: BTreeMap<ReadKey, Instant>,
    last_leader: Option<NodeId>,
    /// Failover records of this term or older are not observed (already counted, or applied
    /// before this node started: a restart replays its log and must not count them again).
    failover_term_seen: Term,
    /// The applied index at the last look at the failover history.
    applied_seen: LogIndex,
}

impl LatencyTracker {
    /// A tracker for a replica that starts with `core` as recovered.
    pub(crate) fn new<S: StateMachine, L: LogStore>(
        metrics: ReplicaMetrics,
        core: &ReplicaCore<S, L>,
    ) -> Self {
        let engine = core.engine();
        let mut committed = BatchQueue::default();
        committed.reset(engine.commit_index());
        Self {
            metrics,
            proposed: BatchQueue::default(),
            leading_term: None,
            committed,
            forwards: BTreeMap::new(),
            reads: BTreeMap::new(),
            last_leader: engine.leader().cloned(),
            failover_term_seen: engine.term(),
            applied_seen: core.applied_index(),
        }
    }

    /// Look at the core after an input (or a flush) that began at `started`: stamp new
    /// appends and newly learned commits with `started`, observe at `now` what committed and
    /// what was applied, and new failover records.
    ///
    /// The core applies an index in the same step that learns it committed, so stamping at
    /// the step's start (not its end) is what makes commit->apply the apply's real cost (an
    /// upper bound: the step's other work is in it) instead of zero.
    pub(crate) fn after_step<S: StateMachine, L: LogStore>(
        &mut self,
        started: Instant,
        now: Instant,
        core: &ReplicaCore<S, L>,
    ) {
        let engine = core.engine();
        let commit = engine.commit_index();
        if engine.is_leader() {
            if self.leading_term != Some(engine.term()) {
                // Entries appended before this node led (or in another term) are not timed.
                self.leading_term = Some(engine.term());
                self.proposed.reset(engine.last_index());
            } else {
                self.proposed.push(engine.last_index(), started);
            }
            self.proposed
                .release(commit, now, &self.metrics.propose_commit);
        } else if self.leading_term.take().is_some() {
            self.proposed.reset(LogIndex(0));
        }
        if engine.is_witness() {
            // A witness applies metadata only; it has no host state to time.
            self.committed.reset(commit);
        } else {
            self.committed.push(commit, started);
            self.committed
                .release(core.applied_index(), now, &self.metrics.commit_apply);
        }
        // The history changes only by applying entries.
        let applied = core.applied_index();
        if applied != self.applied_seen {
            self.applied_seen = applied;
            self.observe_failovers(core);
        }
    }

    fn observe_failovers<S: StateMachine, L: LogStore>(&mut self, core: &ReplicaCore<S, L>) {
        let seen = self.failover_term_seen;
        let mut newest = seen;
        for record in core
            .failover_history()
            .iter()
            .filter(|record| record.term > seen)
        {
            self.metrics
                .failover_leaderless
                .observe(std::time::Duration::from_millis(record.leaderless_ms));
            newest = newest.max(record.term);
        }
        self.failover_term_seen = newest;
    }

    /// A role change effect named `leader`: count a change from one known node to another.
    pub(crate) fn on_leader(&mut self, leader: Option<&NodeId>) {
        let Some(leader) = leader else { return };
        if self
            .last_leader
            .as_ref()
            .is_some_and(|previous| previous != leader)
        {
            self.metrics.count_leader_change();
        }
        self.last_leader = Some(leader.clone());
    }

    /// A local request is submitted as `request_id`; a linearizable read on the leader is timed.
    pub(crate) fn on_submit<S: StateMachine, L: LogStore>(
        &mut self,
        now: Instant,
        request_id: u64,
        request: &ClientRequest,
        core: &ReplicaCore<S, L>,
    ) {
        if core.engine().is_leader() && is_linearizable_read(request) {
            insert_bounded(&mut self.reads, ReadKey::Local(request_id), now);
        }
    }

    /// A local request was answered.
    pub(crate) fn on_reply(&mut self, now: Instant, request_id: u64) {
        if let Some(started) = self.reads.remove(&ReadKey::Local(request_id)) {
            self.metrics
                .read_index_round_trip
                .observe(now.saturating_duration_since(started));
        }
    }

    /// An RPC arrived from `from`: a forwarded linearizable read on the leader starts its
    /// timer, an answer to one of our forwarded writes stops its.
    pub(crate) fn on_inbound<S: StateMachine, L: LogStore>(
        &mut self,
        now: Instant,
        from: &NodeId,
        rpc: &Rpc,
        core: &ReplicaCore<S, L>,
    ) {
        match rpc {
            Rpc::Forward {
                forward_id,
                request,
            }
            | Rpc::TracedForward {
                forward_id,
                request,
                ..
            } if core.engine().is_leader() && is_linearizable_read(request) => {
                insert_bounded(
                    &mut self.reads,
                    ReadKey::Remote(from.clone(), *forward_id),
                    now,
                );
            }
            Rpc::ForwardReply { forward_id, .. } => {
                if let Some(sent) = self.forwards.remove(forward_id) {
                    self.metrics
                        .forward_round_trip
                        .observe(now.saturating_duration_since(sent));
                }
            }
            _ => {}
        }
    }

    /// Whether [`on_send`](Self::on_send) times `rpc` (the driver skips the call, and the
    /// clock read, for the rest).
    pub(crate) fn wants(&self, rpc: &Rpc) -> bool {
        matches!(rpc, Rpc::Forward { .. } | Rpc::ForwardReply { .. })
    }

    /// An RPC leaves for `to`: a forwarded write starts its timer, the answer to a forwarded
    /// read stops its.
    pub(crate) fn on_send(&mut self, now: Instant, to: &NodeId, rpc: &Rpc) {
        match rpc {
            Rpc::Forward {
                forward_id,
                request: ClientRequest::Write(_),
            } => insert_bounded(&mut self.forwards, *forward_id, now),
            Rpc::ForwardReply { forward_id, .. } => {
                if let Some(started) = self.reads.remove(&ReadKey::Remote(to.clone(), *forward_id))
                {
                    self.metrics
                        .read_index_round_trip
                        .observe(now.saturating_duration_since(started));
                }
            }
            _ => {}
        }
    }
}

fn is_linearizable_read(request: &ClientRequest) -> bool {
    matches!(request, ClientRequest::Read(read) if read.consistency != Consistency::Eventual)
}

/// Insert, forgetting the smallest key first when the map is full.
fn insert_bounded<K: Ord>(map: &mut BTreeMap<K, Instant>, key: K, at: Instant) {
    if map.len() >= PENDING_REQUESTS_MAX {
        map.pop_first();
    }
    map.insert(key, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use ha_core::LatencyHistogram;

    #[test]
    fn a_batch_is_observed_once_per_entry_when_committed_even_in_parts() {
        let histogram = LatencyHistogram::latency();
        let mut queue = BatchQueue::default();
        queue.reset(LogIndex(10));
        let start = Instant::now();
        // Indexes 11..=14 proposed together, 15 a millisecond later.
        queue.push(LogIndex(14), start);
        queue.push(LogIndex(14), start + Duration::from_millis(1));
        queue.push(LogIndex(15), start + Duration::from_millis(1));
        // 11 and 12 commit after 2 ms.
        queue.release(LogIndex(12), start + Duration::from_millis(2), &histogram);
        assert_eq!(histogram.snapshot().count, 2);
        // The rest after 20 ms (15 was proposed 1 ms later).
        queue.release(LogIndex(15), start + Duration::from_millis(20), &histogram);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.cumulative_count_at(0.0025), Some(2));
        assert_eq!(snapshot.cumulative_count_at(0.025), Some(5));
        let sum = 2.0 * 0.002 + 2.0 * 0.020 + 0.019;
        assert!((snapshot.sum_seconds - sum).abs() < 1e-9, "{snapshot:?}");
        // Nothing is observed twice.
        queue.release(LogIndex(20), start + Duration::from_secs(1), &histogram);
        assert_eq!(histogram.snapshot().count, 5);
    }

    #[test]
    fn indexes_up_to_the_reset_point_are_not_timed() {
        let histogram = LatencyHistogram::latency();
        let mut queue = BatchQueue::default();
        queue.reset(LogIndex(100));
        queue.push(LogIndex(90), Instant::now());
        queue.release(LogIndex(100), Instant::now(), &histogram);
        assert_eq!(histogram.snapshot().count, 0);
    }

    #[test]
    fn pending_batches_and_requests_are_bounded() {
        let mut queue = BatchQueue::default();
        let now = Instant::now();
        for index in 1..=(PENDING_BATCHES_MAX as u64 + 10) {
            queue.push(LogIndex(index), now);
        }
        assert_eq!(queue.batches.len(), PENDING_BATCHES_MAX);
        let mut map = BTreeMap::new();
        for key in 0..(PENDING_REQUESTS_MAX as u64 + 10) {
            insert_bounded(&mut map, key, now);
        }
        assert_eq!(map.len(), PENDING_REQUESTS_MAX);
        assert_eq!(map.first_key_value().map(|(key, _)| *key), Some(10));
    }
}
