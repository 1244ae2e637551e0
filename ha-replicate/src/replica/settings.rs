//! Replica tuning.

use ha_core::{Config, NodeId};

use crate::engine::EngineSettings;
use crate::replica::consistency_monitor::ConsistencySettings;
use crate::replica::snapshot_sender::TransferSettings;

/// Default [`ReplicaSettings::snapshot_log_bytes`]: the log since the last snapshot (on disk,
/// replayed at a restart) stays under about this many bytes. What stays in memory of it is
/// bounded separately by [`EngineSettings::log_cache_bytes`].
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 64 << 20;

/// Default [`ReplicaSettings::snapshot_log_percent_of_last`] for a node built from its
/// config: a new snapshot waits until the log since the last one is as large as it.
pub const SNAPSHOT_LOG_PERCENT_OF_LAST_DEFAULT: u64 = 100;

/// However large the last snapshot, [`ReplicaSettings::snapshot_log_percent_of_last`] holds a
/// snapshot back for at most this many times
/// [`snapshot_every_entries`](ReplicaSettings::snapshot_every_entries): memory keeps 16 bytes
/// per entry since the last snapshot (its term and size, once its payload is evicted), so
/// small entries under a large state must not grow that without a bound of their own (at the
/// default 10,000, at most 100,000 entries, 1.6 MB).
pub const SNAPSHOT_HOLD_BACK_FACTOR_MAX: u64 = 10;

/// When the replica makes its writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync at the end of every input: lowest latency for a lone request.
    EveryInput,
    /// Sync when the driver calls `flush` (group commit): the driver feeds a batch of inputs,
    /// then flushes once. Messages and answers wait for that sync.
    Batch,
}

/// Settings of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// The consensus engine's settings.
    pub engine: EngineSettings,
    /// When writes are synced.
    pub sync_policy: SyncPolicy,
    /// Take a snapshot once this many entries were applied since the last one.
    ///
    /// While the consistency monitor places checkpoints, this and the byte thresholds below
    /// are stretched by half (150%) for the housekeeping rule, and a checkpoint that finds
    /// the snapshot at least half due writes it from its own copy of the state, hashing the
    /// digest in the same pass: one pass over the state for both (issue 17: each pass cost
    /// 6-7% of a follower's CPU at 64 HTTP clients).
    pub snapshot_every_entries: u64,
    /// Or once the entries since the last one take this many bytes, whether their payloads
    /// are still in memory or were evicted (so a log of large values does not grow on disk,
    /// and in replay time, until the entry count is reached).
    pub snapshot_log_bytes: u64,
    /// And, for the entry count above, not before the log since the last snapshot takes at
    /// least this percentage of that snapshot's bytes (0: the entry count alone decides).
    /// Writing a snapshot costs CPU in proportion to the state, so a state of 100,000 keys
    /// written every 10,000 small writes cost more than the writes themselves (issue 17:
    /// snapshots and their digests were 28% of a follower's CPU). With 100%, the bytes
    /// snapshots write are at most about the bytes the log took, whatever the state's size,
    /// and a restart replays a log no longer than the snapshot it starts from (or
    /// [`snapshot_log_bytes`](Self::snapshot_log_bytes), which still forces one), and never
    /// past [`SNAPSHOT_HOLD_BACK_FACTOR_MAX`] times the entry count.
    pub snapshot_log_percent_of_last: u64,
    /// How snapshots are streamed to followers.
    pub transfer: TransferSettings,
    /// How often deadlines are checked and snapshots considered.
    pub housekeeping_interval_ms: u64,
    /// The replica consistency monitor (checkpoint digests and repair).
    pub consistency: ConsistencySettings,
    /// This replica is a witness: a voter with no state machine that never leads (see
    /// [`EngineSettings::witness`]). The host's `apply` and `snapshot` are never called, reads
    /// are refused with [`ClientError::Witness`](crate::replica::ClientError::Witness),
    /// writes are forwarded to the leader. Either this or `engine.witness` makes the replica a
    /// witness; [`ReplicaCore::new`](crate::replica::ReplicaCore::new) sets both.
    pub witness: bool,
    /// Found a new cluster once this many voters (this node included) have met through the
    /// member events given to [`ReplicaCore::on_member_event`](crate::replica::ReplicaCore::on_member_event)
    /// (the rule: [`MembershipFeed::founding_voters`](crate::membership_feed::MembershipFeed::founding_voters)).
    /// Only for a node that votes: with it, this node counts itself as a founding voter; leave
    /// it `None` on a non-voter, and on a node founded by an explicit voter set
    /// ([`ReplicaCore::on_bootstrap`](crate::replica::ReplicaCore::on_bootstrap)) or added by
    /// a leader.
    pub bootstrap_expect: Option<usize>,
}

impl ReplicaSettings {
    /// Settings for tests and benchmarks: [`EngineSettings::for_test`] for `node_id`, batched
    /// syncs, a snapshot every 10,000 entries (or [`SNAPSHOT_LOG_BYTES_DEFAULT`]) whatever the
    /// last snapshot's size, default snapshot transfers, a 10 ms housekeeping tick, no consistency monitor, not a witness,
    /// no founding rule. A test changes only what it is about, with struct update syntax:
    /// `ReplicaSettings { sync_policy: SyncPolicy::EveryInput, ..ReplicaSettings::for_test(id) }`.
    pub fn for_test(node_id: NodeId) -> Self {
        Self {
            engine: EngineSettings::for_test(node_id),
            sync_policy: SyncPolicy::Batch,
            snapshot_every_entries: 10_000,
            snapshot_log_bytes: SNAPSHOT_LOG_BYTES_DEFAULT,
            snapshot_log_percent_of_last: 0,
            transfer: TransferSettings::default(),
            housekeeping_interval_ms: 10,
            consistency: ConsistencySettings::off(),
            witness: false,
            bootstrap_expect: None,
        }
    }

    /// Settings from a validated node config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            engine: EngineSettings::from_config(config),
            sync_policy: SyncPolicy::Batch,
            snapshot_every_entries: 10_000,
            snapshot_log_bytes: SNAPSHOT_LOG_BYTES_DEFAULT,
            snapshot_log_percent_of_last: SNAPSHOT_LOG_PERCENT_OF_LAST_DEFAULT,
            transfer: TransferSettings {
                resend_after_ms: config.timing.election_timeout_max_ms,
                stalled_after_ms: 10 * config.timing.election_timeout_max_ms,
                ..TransferSettings::default()
            },
            housekeeping_interval_ms: 10,
            consistency: ConsistencySettings::from_config(&config.consistency_check),
            witness: false,
            bootstrap_expect: bootstrap_expect_from_config(config),
        }
    }
}

/// The [`ReplicaSettings::bootstrap_expect`] of a node with `config`: founding through gossip
/// is for clusters of more than one voter (a one-voter cluster founds itself with an explicit
/// voter set), and only voters found: a node given `bootstrap_expect` counts itself as a
/// founding voter, so a non-voter waits to be added instead (the founding simulation saw a
/// non-voter found {n0, n2, n4} next to the voters' {n0, n1, n2}).
fn bootstrap_expect_from_config(config: &Config) -> Option<usize> {
    let expect = usize::try_from(config.cluster.bootstrap_expect).unwrap_or(usize::MAX);
    (expect > 1 && config.voter).then_some(expect)
}
