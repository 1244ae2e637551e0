//! The sans-IO consensus engine: Raft elections and replication with pre-vote,
//! check-quorum, priorities, leadership transfer, failback, health gating and linearizable
//! reads.
//!
//! The engine itself (`Engine`, `EngineStart`) and its per-peer `Progress` are crate-internal:
//! a host drives it through [`ReplicaCore`](crate::replica::ReplicaCore) and
//! [`ReplicaNode`](crate::driver::ReplicaNode). With the `test-support` feature they are public,
//! for the workspace's simulators and engine tests that feed it inputs one by one. This module
//! always exports what crosses its boundary: the effects, messages, errors, settings and roles.

mod apply_lag;
mod divergence;
mod effect;
mod election;
mod election_timer;
#[allow(clippy::module_inception)]
mod engine;
mod error;
mod leadership;
mod membership_change;
mod message;
mod operator_membership;
mod progress;
mod quorum_value;
mod reads;
mod refusal;
mod replication;
mod role;
mod settings;

pub use apply_lag::{APPLY_LAG_HANDOVER_TIMEOUTS, DEEP_APPLY_QUEUE_ENTRIES};
pub use effect::{After, Effect, Persist, PersistId, TimerKind};
pub use engine::PeerInfo;
#[cfg(not(feature = "test-support"))]
pub(crate) use engine::{Engine, EngineStart};
#[cfg(feature = "test-support")]
pub use engine::{Engine, EngineStart};
pub use error::{ProposeError, ReadError, TransferError};
pub use message::{APPEND_DECODED_BYTES_MAX, APPEND_ENTRIES_WIRE_MAX, Message};
pub use operator_membership::{
    MemberChangeError, MemberChangeStep, MemberRequest, MembershipRefusal,
};
#[cfg(feature = "test-support")]
pub use progress::{Progress, ReplicationState};
pub use refusal::{INDEX_MAX, REFUSAL_LOG_INTERVAL_MS, RefusalCause, RefusedInputs, TERM_MAX};
pub use role::Role;
pub use settings::{
    COMMIT_NOTICE_DELAY_MS_DEFAULT, EngineSettings, FOLLOWER_BACKLOG_ENTRIES_MAX_DEFAULT,
    LOG_CACHE_BYTES_DEFAULT,
};
