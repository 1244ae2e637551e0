//! # ha-core
//!
//! The vocabulary every part of `ha` shares, and nothing that does IO: identifiers, monotonic
//! [`Millis`], [`Consistency`] levels, node states, health, the host's [`StateMachine`] trait,
//! membership events, configuration with presets and validation, bounded codecs, and the
//! cluster [`Keyring`](keyring::Keyring).
//!
//! ```text
//!   ha-gossip ──MemberEvent──▶ ha-replicate ──▶ ha-lock ──▶ ha (facade)
//!        ╲                         │
//!         ╰──── all of them use ha-core: ids, Millis, Config, codec, keyring
//! ```
//!
//! Nothing crosses an IO boundary here: cores receive `now: Millis` from their driver and
//! return effects; this crate only defines the types they speak.
//!
//! ## Example
//!
//! ```
//! use ha_core::{Config, Consistency, NodeId, Priority, Timing};
//!
//! let mut config = Config::full_ha(
//!     NodeId::new("n1")?,
//!     "127.0.0.1:7101".parse()?,
//!     vec!["127.0.0.1:7102".parse()?, "127.0.0.1:7103".parse()?],
//! )
//! .with_timing(Timing::lan());
//! config.priority = Priority(10);
//! config.validate()?;
//! assert_eq!(Consistency::default(), Consistency::Quorum);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backup_config;
pub mod codec;
mod config;
mod consistency;
mod consistency_check_config;
mod error;
mod health;
mod host_checks_config;
mod ids;
pub mod keyring;
mod latency_histogram;
mod membership;
mod node_state;
mod shared_state_config;
mod snapshot_source;
mod state_machine;
mod time;
mod timer_queue;
mod wal_archive_config;

pub use backup_config::{
    BACKUP_INTERVAL_S_DEFAULT, BACKUP_INTERVAL_S_MAX, BACKUP_INTERVAL_S_MIN, BACKUP_KEEP_DEFAULT,
    BACKUP_KEEP_MAX, BackupConfig,
};
pub use config::{
    CLUSTER_NAME_LENGTH_MAX, ClusterConfig, Config, EVENT_BYTES_MAX, EVENTS_CLIENTS_MAX_DEFAULT,
    EVENTS_CLIENTS_MAX_LIMIT, EVENTS_RING_MAX_DEFAULT, EVENTS_RING_MAX_LIMIT, Exposure,
    FailoverMode, Protection, SEEDS_MAX, SecurityConfig, Timing, TlsFiles, is_valid_cluster_name,
};
pub use consistency::{Consistency, UnknownConsistency};
pub use consistency_check_config::{
    CONSISTENCY_CHECK_EVERY_ENTRIES_DEFAULT, CONSISTENCY_CHECK_EVERY_ENTRIES_MIN,
    ConsistencyCheckConfig,
};
pub use error::{CodecError, ConfigError, InvalidNodeId, StateMachineError};
pub use health::{CheckResult, HealthCheck, HealthStatus, aggregate_health};
pub use host_checks_config::{HealthConfig, UNWELL_CAMPAIGN_AFTER_TIMEOUTS_MAX};
pub use ids::{LogIndex, NODE_ID_LENGTH_MAX, NodeId, Priority, SessionId, Term};
pub use latency_histogram::{
    FAILOVER_BUCKETS_SECONDS, HISTOGRAM_BUCKETS_MAX, HistogramSnapshot, LATENCY_BUCKETS_SECONDS,
    LatencyHistogram,
};
pub use membership::{MemberEvent, MemberInfo, NodeMetadata};
pub use node_state::NodeState;
pub use shared_state_config::{
    SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_DEFAULT, SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MAX,
    SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MIN, SHARED_STATE_FANOUT_DEFAULT,
    SHARED_STATE_FANOUT_MAX, SHARED_STATE_FSYNC_INTERVAL_MS_DEFAULT,
    SHARED_STATE_FSYNC_INTERVAL_MS_MAX, SHARED_STATE_KEYS_MAX_DEFAULT, SHARED_STATE_KEYS_MAX_LIMIT,
    SHARED_STATE_TOMBSTONE_GRACE_S_DEFAULT, SHARED_STATE_TOMBSTONE_GRACE_S_MAX,
    SHARED_STATE_TOMBSTONE_GRACE_S_MIN, SHARED_STATE_TOMBSTONES_MAX_DEFAULT,
    SHARED_STATE_VALUE_BYTES_MAX_DEFAULT, SharedStateConfig, SharedStateFsync,
};
pub use snapshot_source::{
    BytesSource, IN_MEMORY_SNAPSHOT_BYTES_MAX, SnapshotSource, read_bounded,
};
pub use state_machine::StateMachine;
pub use time::{Clock, Millis, MonotonicClock};
pub use timer_queue::{PENDING_TIMERS_MAX, TimerQueue};
pub use wal_archive_config::{WAL_ARCHIVE_SEGMENT_BYTES_MIN, WalArchiveConfig};
