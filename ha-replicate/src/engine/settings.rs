//! Engine tuning, derived from the node config.

use ha_core::{Config, FailoverMode, NodeId, Priority};

/// Default [`EngineSettings::log_cache_bytes`]: 8 MiB of entry payloads.
pub const LOG_CACHE_BYTES_DEFAULT: usize = 8 << 20;

/// Default [`EngineSettings::follower_backlog_entries_max`]: as many entries as a leader
/// lets its own state machine lag before it refuses writes (`APPLY_LAG_ENTRIES_MAX`).
pub const FOLLOWER_BACKLOG_ENTRIES_MAX_DEFAULT: u64 = 65_536;

/// Default [`EngineSettings::commit_notice_delay_ms`] for a node built from its config.
pub const COMMIT_NOTICE_DELAY_MS_DEFAULT: u64 = 2;

/// Everything the engine needs to know about its own node and timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// This node.
    pub node_id: NodeId,
    /// Its leadership priority; 0 never campaigns.
    pub priority: Priority,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Shortest election timeout.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout (before the priority offset).
    pub election_timeout_max_ms: u64,
    /// Automatic or operator-only elections.
    pub failover_mode: FailoverMode,
    /// Hand back to a caught-up, healthy, higher-priority voter after this long; `None`: never.
    pub failback_after_ms: Option<u64>,
    /// Serve linearizable reads from a leader lease (no round trip) while it holds
    /// (`cluster.lease_reads`; see its doc for the clock assumptions).
    pub lease_reads: bool,
    /// Subtracted from the minimum election timeout to get the lease, to cover clock-rate
    /// differences between nodes (`cluster.lease_clock_drift_margin_ms`).
    pub clock_drift_margin_ms: u64,
    /// Most entries in one append message.
    pub append_entries_max: usize,
    /// Most bytes of entries in one append message.
    pub append_bytes_max: usize,
    /// Payloads of applied and durable log entries are dropped from memory once those held
    /// take more than this many bytes ([`Entry::size_bytes`](crate::entry::Entry::size_bytes)
    /// estimates); a follower that needs them is sent them read back from the store.
    pub log_cache_bytes: usize,
    /// Most unanswered append messages per follower (pipelining window).
    pub appends_in_flight_max: usize,
    /// Most entries appended but not yet committed; proposals beyond it are refused
    /// (back-pressure) until commits catch up.
    pub uncommitted_entries_max: usize,
    /// A leader sends a follower no entry more than this many past the index the follower
    /// last reported handed to its state machine (`AppendResponse::applied_index`): a
    /// follower whose host applies slower than the cluster commits holds at most this many
    /// received entries it has not handed out, plus the apply window it has handed out
    /// (`APPLY_AHEAD_ENTRIES_MAX`), instead of queueing without bound. Heartbeats still go, so
    /// a throttled follower never campaigns; commits go on with the other voters.
    pub follower_backlog_entries_max: u64,
    /// How long a leader waits, once its commit index advanced, before telling followers
    /// that have every entry already (a "commit notice": an empty append) so they apply.
    /// An append sent meanwhile carries the commit index instead, so under a steady load
    /// the notice costs no message and no follower wake-up: at one HTTP client that was
    /// about 13% of the members' CPU per write (issue 17). Followers then apply up to this
    /// much later; a STRONG write, which waits for every voter to apply, has the notice sent
    /// at once ([`Engine::send_commit_notices`](crate::engine::Engine::send_commit_notices)).
    /// 0 sends it at once, always (the unit tests' setting, so effect lists show it where
    /// it arises).
    pub commit_notice_delay_ms: u64,
    /// A leadership transfer that has not completed after this long is abandoned.
    pub transfer_timeout_ms: u64,
    /// Remove a voter unreachable this long, if a majority remains; `None`: never.
    pub dead_voter_after_ms: Option<u64>,
    /// A voter that is not healthy campaigns once it has heard no leader for this long
    /// (DEGRADED) or twice this long (UNHEALTHY, UNKNOWN), so that a cluster in which every
    /// voter is unwell still elects one (`health.unwell_campaign_after_timeouts` maximum
    /// election timeouts). `None`: such a voter never campaigns.
    pub unwell_campaign_after_ms: Option<u64>,
    /// The wall-clock time (Unix milliseconds) at which the engine's `now` was 0. Used only to
    /// stamp the failover history for people reading it; never for any decision. The driver
    /// sets it; the simulator leaves it at 0 so traces stay deterministic.
    pub wall_clock_origin_unix_ms: u64,
    /// Whether this node is configured to vote (`Config::voter`, what its gossip metadata
    /// says as `wants_vote`). Used only to refuse an operator's removal of this node while
    /// it leads: the next leader would add it back (see `operator_membership.rs`).
    pub wants_vote: bool,
    /// A witness (`Config::witness`): a voter that holds no state machine. It never becomes
    /// leader by any path (no election-timeout, unwell, manual or transfer campaign; a
    /// `TimeoutNow` is ignored and counted), still votes and acknowledges appends once they
    /// are persisted, and keeps only the metadata of client commands (their payloads are
    /// dropped as they arrive, so its log and snapshots hold terms, indexes and
    /// configurations). See `docs/ARCHITECTURE.md`, "Witness: inside the engine".
    pub witness: bool,
}

impl EngineSettings {
    /// Settings from a validated node config.
    pub fn from_config(config: &Config) -> Self {
        let timing = &config.timing;
        Self {
            node_id: config.node_id.clone(),
            priority: config.priority,
            heartbeat_interval_ms: timing.heartbeat_interval_ms,
            election_timeout_min_ms: timing.election_timeout_min_ms,
            election_timeout_max_ms: timing.election_timeout_max_ms,
            failover_mode: config.cluster.failover_mode,
            failback_after_ms: config.cluster.failback_after_ms,
            lease_reads: config.cluster.lease_reads,
            clock_drift_margin_ms: config.lease_clock_drift_margin_ms(),
            append_entries_max: 512,
            append_bytes_max: 1024 * 1024,
            log_cache_bytes: LOG_CACHE_BYTES_DEFAULT,
            appends_in_flight_max: 16,
            uncommitted_entries_max: 16_384,
            follower_backlog_entries_max: FOLLOWER_BACKLOG_ENTRIES_MAX_DEFAULT,
            commit_notice_delay_ms: COMMIT_NOTICE_DELAY_MS_DEFAULT,
            transfer_timeout_ms: timing.election_timeout_max_ms * 2,
            dead_voter_after_ms: config.cluster.dead_voter_after_ms,
            unwell_campaign_after_ms: match config.health.unwell_campaign_after_timeouts {
                0 => None,
                timeouts => {
                    Some(u64::from(timeouts).saturating_mul(timing.election_timeout_max_ms))
                }
            },
            wall_clock_origin_unix_ms: 0,
            wants_vote: config.voter,
            witness: false,
        }
    }

    /// Settings for tests: LAN timing, priority 1, commit notices sent at once.
    pub fn for_test(node_id: NodeId) -> Self {
        let config = Config::single(node_id, std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        Self {
            commit_notice_delay_ms: 0,
            ..Self::from_config(&config)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_settings_come_from_the_cluster_config() {
        let mut config = Config::single(
            NodeId::new("a").unwrap(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        );
        assert!(!EngineSettings::from_config(&config).lease_reads);
        config.cluster.lease_reads = true;
        config.cluster.lease_clock_drift_margin_ms = Some(40);
        let settings = EngineSettings::from_config(&config);
        assert!(settings.lease_reads);
        assert_eq!(settings.clock_drift_margin_ms, 40);
    }
}
